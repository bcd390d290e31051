//! The boot server: a drop-in replacement for matchbox's HTTP API that answers from an
//! in-memory index, reloads without restarting, records which config each machine fetched and
//! can stop installed machines from reinstalling on every network boot.
//!
//! Layers, from the disk up:
//!
//! - [`index`]: a data directory → an immutable [`Index`] (groups in matchbox precedence order
//!   with a per-selector lookup table, profiles with pre-rendered boot scripts, validated
//!   Ignition configs, parsed templates).
//! - [`state`]: roundhouse's own state: netboot decisions and the fetch journal, as traits
//!   with file-backed and in-memory implementations.
//! - [`http`]: the axum router ([`app`]) over an [`AppState`] that swaps snapshots atomically.
//! - [`server`]: binding, TLS, reload polling and graceful shutdown.
//!
//! Request labels are parsed in [`labels`], bodies that need no template engine are built in
//! [`render`].

pub mod engine;
pub mod http;
pub mod ignition;
pub mod index;
pub mod labels;
pub mod logfmt;
pub mod logwrite;
pub mod metrics;
pub mod render;
pub mod server;
pub mod state;

pub use http::{AppState, Health, Snapshot, app};
pub use index::Index;
pub use labels::Labels;
pub use server::{ServeConfig, Server, ServerError};
