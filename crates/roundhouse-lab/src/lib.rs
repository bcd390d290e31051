//! `roundhouse lab`: a simulated fleet and a boot server on this machine, ready for
//! `plan`/`apply`/`status`, and the narrated demo. See docs/lab.md.
//!
//! The lab runs two background processes, both the roundhouse binary: `roundhouse serve` and
//! `roundhouse lab fleet-run` (the simulator, `roundhouse-sim` as a library). Their pids,
//! ports and the machines' addresses are in `<dir>/lab.json`; everything else a user touches
//! (cluster file, snippets) is plain files beside it.
//!
//! `lab up --qemu N` ([`qemu`]) runs real QEMU machines instead of the simulator, each behind
//! an OpenIPMI `ipmi_sim` BMC, through the scripts in `lab/qemu/`.

pub mod cluster;
pub mod demo;
pub mod error;
pub mod fault;
pub mod fleet;
pub mod layout;
pub mod power;
pub mod preflight;
pub mod procs;
pub mod qemu;
pub mod status;
pub mod up;

pub use cluster::PowerMode;
pub use error::{EXIT_PREREQUISITES, LabError};
pub use layout::{LabDir, LabMachine, LabState};
pub use power::PowerAction;
pub use up::{DownReport, UpOptions, down, up};
