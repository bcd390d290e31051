//! Profiles and groups as matchbox stores them in `<data>/profiles/<id>.json` and
//! `<data>/groups/<id>.json`. Field names and omission rules follow matchbox's JSON so files
//! round-trip between the two servers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A boot profile: what to boot (kernel, initrds, arguments) and which config templates apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Profile identifier; also the file name without `.json`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub id: String,
    /// Human-readable name.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    /// Network boot settings.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Option::is_none"
    )]
    pub boot: Option<Boot>,
    /// File under `<data>/ignition/` served at `/ignition`.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub ignition_id: String,
    /// File under `<data>/generic/` served at `/generic`.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub generic_id: String,
}

/// Kernel, initrds and kernel command line of a profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Boot {
    /// Kernel URL (absolute, or a path on the boot server such as `/assets/…`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub kernel: String,
    /// Initrd URLs, loaded in order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub initrd: Vec<String>,
    /// Kernel arguments, passed unexpanded to the client (iPXE expands `${mac}` and friends).
    #[serde(default, deserialize_with = "null_as_default")]
    pub args: Vec<String>,
}

/// A group matches machines by selector labels and names the profile they boot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// Group identifier; also the file name without `.json`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub id: String,
    /// Human-readable name.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    /// Profile id this group boots.
    #[serde(default, deserialize_with = "null_as_default")]
    pub profile: String,
    /// Labels a request must carry, all of them, for this group to match.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub selector: BTreeMap<String, String>,
    /// Free-form data for templates.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "serde_json::Map::is_empty"
    )]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// Go's `encoding/json` leaves a field at its zero value when the document says `null`, and
/// matchbox data directories rely on that (`"metadata": null`); serde would reject it.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    // matchbox storagepb/profile_test.go TestProfileParse and group_test.go TestGroupParse.
    #[test]
    fn matchbox_documents() {
        let p: Profile = serde_json::from_str(
            r#"{"id": "id", "cloud_id": "cloud.yaml", "ignition_id": "ignition.json"}"#,
        )
        .unwrap();
        assert_eq!(p.id, "id");
        assert_eq!(p.ignition_id, "ignition.json");
        let g: Group = serde_json::from_str(
            r#"{"id":"node1","name":"test group","profile":"g1h2i3j4","selector":{"uuid":"a1b2c3d4","mac":"52:da:00:89:d8:10"},"metadata":{"some-key":"some-val"}}"#,
        )
        .unwrap();
        assert_eq!(g.selector["mac"], "52:da:00:89:d8:10");
        assert_eq!(g.metadata["some-key"], "some-val");
    }

    #[test]
    fn nulls_read_as_zero_values() {
        let g: Group = serde_json::from_str(
            r#"{"id":"g","name":null,"profile":null,"selector":null,"metadata":null}"#,
        )
        .unwrap();
        assert_eq!(
            g,
            Group {
                id: "g".into(),
                ..Group::default()
            }
        );
        let p: Profile = serde_json::from_str(
            r#"{"id":null,"boot":{"kernel":null,"initrd":null,"args":null},"ignition_id":null}"#,
        )
        .unwrap();
        assert_eq!(p.boot, Some(Boot::default()));
        assert!(p.id.is_empty());
        // Not every type error is forgiven.
        assert!(serde_json::from_str::<Group>(r#"{"selector":[]}"#).is_err());
    }

    #[test]
    fn round_trip_omits_empty_fields() {
        let g = Group {
            id: "g".into(),
            profile: "p".into(),
            ..Group::default()
        };
        assert_eq!(
            serde_json::to_string(&g).unwrap(),
            r#"{"id":"g","profile":"p"}"#
        );
    }
}
