//! Networks under extra-EU control: the curated list in `platform/data/extra-eu-control.yaml`,
//! embedded at build time so every binary judges with the same list and names its digest.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::country::Country;
use crate::policy::Asn;

/// The list as shipped.
const TEXT: &str = include_str!("../../data/extra-eu-control.yaml");

/// One network and who controls it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ControlledNetwork {
    /// The autonomous system.
    pub asn: Asn,
    /// The name of its registry record.
    pub name: String,
    /// Where it is registered.
    pub registered: Country,
    /// Its ultimate parent company.
    pub parent: String,
    /// The parent's country, whose law reaches the network.
    pub parent_country: Country,
    /// Where the control is documented.
    pub source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: String,
    networks: Vec<ControlledNetwork>,
}

/// The curated list of networks under extra-EU control.
#[derive(Debug)]
pub struct ExtraEuControl {
    version: String,
    digest: String,
    by_asn: BTreeMap<Asn, ControlledNetwork>,
}

impl ExtraEuControl {
    /// The shipped list (parsed once).
    pub fn shipped() -> &'static ExtraEuControl {
        static LIST: OnceLock<ExtraEuControl> = OnceLock::new();
        LIST.get_or_init(|| {
            // The file is part of the source tree and checked by this crate's tests.
            ExtraEuControl::parse(TEXT).expect("platform/data/extra-eu-control.yaml is valid")
        })
    }

    /// Parses a list in the shipped layout.
    pub fn parse(text: &str) -> Result<ExtraEuControl, String> {
        let file: File = yaml_serde::from_str(text).map_err(|e| e.to_string())?;
        let mut by_asn = BTreeMap::new();
        for n in file.networks {
            if let Some(prev) = by_asn.insert(n.asn, n) {
                return Err(format!("{} is listed twice", prev.asn));
            }
        }
        Ok(ExtraEuControl {
            version: file.version,
            digest: crate::digest::sha256_tag(text.as_bytes()),
            by_asn,
        })
    }

    /// The list's version (the date it was last reviewed).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// `sha256:<hex>` of the list's text, recorded with every evaluation that used it.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The entry for `asn`, when the network is under extra-EU control.
    pub fn get(&self, asn: Asn) -> Option<&ControlledNetwork> {
        self.by_asn.get(&asn)
    }

    /// Every entry, by AS number.
    pub fn networks(&self) -> impl Iterator<Item = &ControlledNetwork> {
        self.by_asn.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(asn: u32, expected: Option<(&str, &str)>) {
        let got = ExtraEuControl::shipped()
            .get(Asn(asn))
            .map(|n| (n.registered.as_str(), n.parent_country.as_str()));
        assert_eq!(got, expected, "AS{asn}");
    }

    #[test]
    fn subsidiaries_registered_in_the_eu_are_listed_with_their_parent() {
        check(202213, Some(("FR", "US"))); // IBM France
        check(20940, Some(("NL", "US"))); // Akamai International B.V.
        check(214101, Some(("DE", "US"))); // AWS European Sovereign Cloud
        check(8987, Some(("IE", "US"))); // Amazon Data Services Ireland
        check(16276, None); // OVH SAS
        check(12876, None); // Scaleway
    }

    #[test]
    fn duplicates_are_refused() {
        let text = "version: x\nnetworks:\n- {asn: 1, name: a, registered: US, parent: a, parentCountry: US, source: s}\n- {asn: 1, name: a, registered: US, parent: a, parentCountry: US, source: s}\n";
        assert_eq!(
            ExtraEuControl::parse(text).map(|_| ()),
            Err("AS1 is listed twice".into())
        );
    }
}
