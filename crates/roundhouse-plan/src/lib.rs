//! roundhouse's planner: a pure function from desired state (the cluster file's nodes, their
//! rendered config digests and the per-role change policy) and observed state (the state
//! store's per-node lifecycle records) to one action per node. No I/O, no clock: `now` is an
//! argument, so the same inputs always give the same plan.
//!
//! # API
//!
//! - Inputs: [`Desired`] (a [`Policy`](roundhouse_config::model::Policy) and [`DesiredNode`]s,
//!   built with [`DesiredNode::from_config`] from a config `Node` plus its digest string),
//!   [`Observed`] (a map MAC → [`ObservedNode`]: [`NodeState`] + pending [`RecreateRequest`];
//!   the state store fills it), and a [`Timestamp`].
//! - [`plan()`] returns a [`Plan`]: `items` (one [`PlanItem`] per node, controllers first, then
//!   by name), a [`Summary`] of counts per [`Action`], `warnings` (controller majority,
//!   orphaned records) and `orphans`; or a [`PlanInputError`] for duplicate MACs or names.
//!   [`Plan::has_changes`] drives `--detailed-exitcode`; [`Plan::has_errors`] must stop
//!   `apply`.
//! - Output: [`render_table`] (aligned text: node, role, action, old→new digest, why; then the
//!   summary and warnings) and `serde_json::to_string(&plan)` for `--output json`.
//! - The lifecycle: [`NodeState`] with guarded transitions (`begin_install`,
//!   `begin_reprovision`, `mark_triggered`, `confirm`, `fail`, `abandon`, `adopt`, `forget`),
//!   each returning a [`TransitionError`] when the current state does not allow it. The store
//!   and the executor move nodes only through these.
//!
//! The decision table, the state machine and the reasons behind both are in `docs/planner.md`.

#![deny(missing_docs)]

mod plan;
mod state;
mod table;
mod time;

pub use plan::{
    Action, Desired, DesiredHook, DesiredNode, Evidence, Observed, ObservedNode, Orphan, Plan,
    PlanInputError, PlanItem, RecreateRequest, Summary, plan,
};
pub use state::{
    AppliedDigest, Installed, Intent, IntentStage, NodeState, ProvisionPath, TransitionError,
    short_digest,
};
pub use table::{render_table, summary_line};
pub use time::{Timestamp, TimestampParseError, human_duration};
