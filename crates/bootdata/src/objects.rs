//! Profiles and groups as matchbox stores them in `<data>/profiles/<id>.json` and
//! `<data>/groups/<id>.json`. Field names and omission rules follow matchbox's JSON so files
//! round-trip between the two servers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A boot profile: what to boot (kernel, initrds, arguments) and which config templates apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Profile identifier; also the file name without `.json`.
    pub id: String,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Network boot settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<Boot>,
    /// File under `<data>/ignition/` served at `/ignition`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ignition_id: String,
    /// File under `<data>/generic/` served at `/generic`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub generic_id: String,
}

/// Kernel, initrds and kernel command line of a profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Boot {
    /// Kernel URL (absolute, or a path on the boot server such as `/assets/…`).
    #[serde(default)]
    pub kernel: String,
    /// Initrd URLs, loaded in order.
    #[serde(default)]
    pub initrd: Vec<String>,
    /// Kernel arguments, passed unexpanded to the client (iPXE expands `${mac}` and friends).
    #[serde(default)]
    pub args: Vec<String>,
}

/// A group matches machines by selector labels and names the profile they boot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// Group identifier; also the file name without `.json`.
    pub id: String,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Profile id this group boots.
    #[serde(default)]
    pub profile: String,
    /// Labels a request must carry, all of them, for this group to match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    /// Free-form data for templates.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}
