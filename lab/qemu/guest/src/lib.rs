//! Helpers that run inside the QEMU lab's Flatcar-like image (see `docs/qemu-lab.md`): the
//! image has busybox, the real CoreOS Ignition and dropbear, but no systemd and no sudo.
//!
//! - [`systemd`]: a stand-in for systemd's private D-Bus socket, which Ignition's `disks`
//!   stage needs to wait for devices.
//! - [`sudo`]: the `sudo` that roundhouse's in-place re-provisioning calls as user `core`.

pub mod sudo;
pub mod systemd;
pub mod wire;
