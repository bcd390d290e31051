//! roundhouse's executor: carries out a plan on real machines.
//!
//! - [`keys`]: the SSH keys roundhouse manages (operator key, one pinned host key per node).
//! - [`publish`]: writing the boot server's data directory and remembering what was published.
//! - [`netboot`]: the boot server's netboot decisions (`netboot.json`).
//! - [`journal`]: reading the boot server's fetch journal.
//! - [`evidence`]: signs outside the store that a machine was installed (gating, journal, SSH).
//! - [`bootserver`]: waiting until the boot server serves what was published.
//! - [`power`]: power actions behind a small trait (the `command` driver today).
//! - [`recover`]: rebuilding lost records from what each node reports over SSH.
//! - [`exec`]: the [`Executor`]: rollout limits, the PXE and in-place paths, waits with
//!   deadlines and backoff, crash-safe resume from the intent journal.
//!
//! The flow, the waits and their defaults are described in `docs/reconciler.md`.

#![deny(missing_docs)]

pub mod bootserver;
pub mod evidence;
pub mod exec;
pub mod journal;
pub mod keys;
pub mod netboot;
pub mod power;
pub mod publish;
pub mod recover;

pub use exec::{
    Executor, HookSpec, NodeResult, NodeSpec, Outcome, Progress, ProgressSink, Report, Settings,
};
