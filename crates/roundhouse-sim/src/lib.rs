//! A simulated fleet of bare-metal machines that honours Flatcar's provisioning contract at
//! the protocol level: iPXE over HTTP, Ignition, the installer's shell script, a bootloader
//! reading the OEM `grub.cfg`, an SSH server per machine and a Redfish-style BMC per machine.
//! It shares no code with roundhouse; it only talks to it over HTTP, SSH and Redfish.

pub mod bmc;
pub mod clock;
pub mod fleet;
pub mod ignition;
pub mod ipxe;
pub mod mac;
pub mod machine;
pub mod net;
pub mod os;
pub mod sandbox;
pub mod shims;
pub mod spec;
pub mod ssh;
pub mod systemd;
pub mod tree;

pub use fleet::{Fleet, FleetError};
pub use mac::Mac;
pub use machine::{Machine, MachineInfo};
pub use spec::{BootDevice, Faults, FleetSpec, MachineSpec};
