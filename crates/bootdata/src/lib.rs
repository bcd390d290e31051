//! The data a matchbox-compatible boot server serves: MAC addresses parsed the way matchbox
//! (Go's `net.ParseMAC`) parses them, and the profile and group documents of a matchbox data
//! directory.
//!
//! This crate knows nothing of roundhouse's cluster file or reconciler. The renderer writes these
//! types, the boot server reads them; keeping them here is what makes `roundhouse render` output
//! and a real matchbox data directory the same thing.

pub mod mac;
pub mod objects;

pub use mac::{Mac, MacParseError};
pub use objects::{Boot, Group, Profile};
