//! A whole store as one JSON document (`roundhouse state export` / `import`): the stable,
//! documented backup format, and the way between backends.
//!
//! ```json
//! {"format": "roundhouse-state/v1", "exported_at": "…",
//!  "nodes": [NodeRecord…], "events": [Event…], "fetches": [FetchRecord…]}
//! ```
//!
//! Records, events (with their sequence numbers: history keeps its order and paging cursors)
//! and the fetch journal are copied as they are. Importing is allowed into an empty store only:
//! merging two histories would invent one that never happened.

use std::collections::BTreeSet;

use bootdata::Mac;
use roundhouse_plan::Timestamp;
use serde::{Deserialize, Serialize};

use crate::record::{Event, FetchRecord, NodeRecord};

/// The format tag of an export.
pub const EXPORT_FORMAT: &str = "roundhouse-state/v1";

/// Everything a store holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Export {
    /// Always [`EXPORT_FORMAT`].
    pub format: String,
    /// When it was taken.
    pub exported_at: Timestamp,
    /// Every record, ordered by MAC.
    pub nodes: Vec<NodeRecord>,
    /// Every event, ordered by sequence number.
    pub events: Vec<Event>,
    /// The fetch journal, oldest first.
    pub fetches: Vec<FetchRecord>,
}

/// Why an export cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// Not JSON of this shape.
    #[error("not a roundhouse state export: {0}")]
    Syntax(String),
    /// Another format (a newer roundhouse's, or another file).
    #[error("format {found:?} is not {EXPORT_FORMAT:?}")]
    Format {
        /// The tag found.
        found: String,
    },
    /// Two records for one MAC.
    #[error("two records for MAC {0}")]
    DuplicateNode(Mac),
    /// Two events with one sequence number.
    #[error("two events with sequence number {0}")]
    DuplicateSeq(u64),
}

impl Export {
    /// Parses and checks an export.
    pub fn from_json(bytes: &[u8]) -> Result<Export, ExportError> {
        // Look at the tag first, so a newer format is named as such rather than as a syntax
        // error about a field this build does not know.
        #[derive(Deserialize)]
        struct Tag {
            format: Option<String>,
        }
        let tag: Tag =
            serde_json::from_slice(bytes).map_err(|e| ExportError::Syntax(e.to_string()))?;
        match tag.format {
            Some(f) if f == EXPORT_FORMAT => {}
            found => {
                return Err(ExportError::Format {
                    found: found.unwrap_or_default(),
                });
            }
        }
        let export: Export =
            serde_json::from_slice(bytes).map_err(|e| ExportError::Syntax(e.to_string()))?;
        export.check()?;
        Ok(export)
    }

    /// The document, pretty-printed, with a final newline.
    pub fn to_json(&self) -> Vec<u8> {
        // Plain data with string keys: serialising cannot fail.
        let mut out = serde_json::to_vec_pretty(self).expect("encoding a state export as JSON");
        out.push(b'\n');
        out
    }

    /// Rejects duplicates that no store could have produced.
    pub fn check(&self) -> Result<(), ExportError> {
        let mut macs = BTreeSet::new();
        for n in &self.nodes {
            if !macs.insert(n.mac) {
                return Err(ExportError::DuplicateNode(n.mac));
            }
        }
        let mut seqs = BTreeSet::new();
        for e in &self.events {
            if !seqs.insert(e.seq) {
                return Err(ExportError::DuplicateSeq(e.seq));
            }
        }
        Ok(())
    }

    /// The highest event sequence number (0 for none).
    pub fn max_seq(&self) -> u64 {
        self.events.iter().map(|e| e.seq).max().unwrap_or(0)
    }
}
