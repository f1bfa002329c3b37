//! JSON Schemas of the policy's value types, for the `LocalityPolicy` custom resource definition
//! (feature `schema`). They mirror the checks the `Deserialize` impls make, as far as a
//! Kubernetes structural schema can say them.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use crate::country::{Country, CountrySet, Territory};
use crate::policy::{Asn, Quorum};

impl JsonSchema for Country {
    fn schema_name() -> Cow<'static, str> {
        "Country".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[A-Z]{2}$",
            "description": "An assigned ISO 3166-1 alpha-2 country code in capitals, such as FR."
        })
    }
}

impl JsonSchema for Territory {
    fn schema_name() -> Cow<'static, str> {
        "Territory".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^(EEA|[A-Z]{2})$",
            "description": "An ISO 3166-1 alpha-2 country code (FR) or a group: EU, EEA."
        })
    }
}

impl JsonSchema for CountrySet {
    fn schema_name() -> Cow<'static, str> {
        "CountrySet".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let item = generator.subschema_for::<Territory>();
        json_schema!({
            "type": "array",
            "minItems": 1,
            "items": item
        })
    }
}

impl JsonSchema for Asn {
    fn schema_name() -> Cow<'static, str> {
        "Asn".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": 4294967294_u64},
                {"type": "string", "pattern": "^(AS|as)?[0-9]+$"}
            ],
            "description": "An autonomous system number: 16509 or AS16509."
        })
    }
}

impl JsonSchema for Quorum {
    fn schema_name() -> Cow<'static, str> {
        "Quorum".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "integer",
            "minimum": 1,
            "maximum": 4,
            "description": "How many distinct location sources (topology label, address, attestation, latency) must place the node in an allowed country."
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::LocalityPolicy;

    fn check(pointer: &str, expected: serde_json::Value) {
        let schema = serde_json::to_value(schemars::schema_for!(LocalityPolicy)).unwrap();
        assert_eq!(
            schema.pointer(pointer),
            Some(&expected),
            "{pointer} in {schema:#}"
        );
    }

    #[test]
    fn policy_schema() {
        check(
            "/required",
            serde_json::json!(["classification", "allowedCountries", "networkOperator"]),
        );
        check("/additionalProperties", serde_json::json!(false));
        check("/properties/quorum/maximum", serde_json::json!(4));
        check(
            "/properties/allowedCountries/items/pattern",
            serde_json::json!("^(EEA|[A-Z]{2})$"),
        );
        check(
            "/properties/regions/additionalProperties/pattern",
            serde_json::json!("^[A-Z]{2}$"),
        );
        check("/$defs/Mode/oneOf/0/const", serde_json::json!("enforce"));
        check(
            "/$defs/OnUnknown/oneOf/1/const",
            serde_json::json!("unknown"),
        );
        check(
            "/properties/requiredSources/items/$ref",
            serde_json::json!("#/$defs/LocationSource"),
        );
        check(
            "/$defs/NetworkOperatorRule/properties/deniedAsns/items/x-kubernetes-int-or-string",
            serde_json::json!(true),
        );
    }
}
