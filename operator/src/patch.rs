//! Merge patches that write a status whole. A JSON merge patch (RFC 7386) keeps every field it
//! does not name, and a status leaves out its empty optional fields: written as it serializes,
//! a field emptied since the last write (a policy's `error` once its rules are fixed, a
//! Workplace's violations once its pods are back on compliant nodes) would stay for ever.

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Value, json};

/// `{"status": …}` with every field of the status type (from its JSON schema, so a field added
/// later is covered) that `status` leaves out named null.
pub(crate) fn whole_status<T: Serialize + JsonSchema>(status: &T) -> Value {
    let mut body = serde_json::to_value(status).expect("a status serializes");
    let schema = schemars::schema_for!(T);
    if let (Some(fields), Some(Value::Object(properties))) =
        (body.as_object_mut(), schema.get("properties"))
    {
        for name in properties.keys() {
            fields.entry(name.clone()).or_insert(Value::Null);
        }
    }
    json!({ "status": body })
}

#[cfg(test)]
mod tests {
    use hexagone_platform::k8s::LocalityPolicyStatus;
    use hexagone_platform::workplace::WorkplaceStatus;

    use super::whole_status;

    /// Every field the status type has is named: an emptied one (no more error, no more
    /// violations) as null, so the merge removes it.
    #[test]
    fn a_status_patch_names_every_field_of_its_type() {
        let patch = whole_status(&LocalityPolicyStatus::default());
        let status = patch["status"].as_object().unwrap();
        for field in [
            "observedGeneration",
            "eligibleNodes",
            "evaluatedNodes",
            "policyDigest",
            "error",
            "nodes",
        ] {
            assert!(status.contains_key(field), "{field} missing: {patch}");
        }
        assert_eq!(patch["status"]["error"], serde_json::Value::Null);
        assert_eq!(status.len(), 6, "{patch}");
        let patch = whole_status(&WorkplaceStatus::default());
        let status = patch["status"].as_object().unwrap();
        for field in [
            "observedGeneration",
            "conditions",
            "eligibleNodes",
            "eligibleZones",
            "components",
            "violations",
            "backups",
        ] {
            assert!(status.contains_key(field), "{field} missing: {patch}");
        }
        assert_eq!(status.len(), 7, "{patch}");
    }
}
