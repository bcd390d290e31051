//! A simulated fleet of bare-metal machines that honours Flatcar's provisioning contract at
//! the protocol level: iPXE over HTTP, Ignition, the installer's shell script, a bootloader
//! reading the OEM `grub.cfg`, an SSH server per machine and a Redfish-style BMC per machine.
//! It shares no code with roundhouse; it only talks to it over HTTP, SSH and Redfish.

pub mod clock;
pub mod ignition;
pub mod ipxe;
pub mod mac;
pub mod net;
pub mod os;
pub mod sandbox;
pub mod shims;
pub mod ssh;
pub mod systemd;
pub mod tree;
