//! `roundhouse lab`: a simulated fleet and boot server on this machine (docs/lab.md). The
//! work is in `crates/roundhouse-lab`; this module parses and prints.

use std::path::PathBuf;

use roundhouse_lab::{LabError, PowerAction, PowerMode, UpOptions};

use crate::cmd::common::OutputFormat;
use crate::exit::Exit;

/// Try roundhouse without a rack: simulated machines, a boot server, a cluster file.
///
/// `lab up` starts a boot server (`roundhouse serve`) and a simulated fleet in the background
/// and writes a cluster file for it; then use `roundhouse plan/apply/status` on
/// DIR/cluster.hcl as on real machines. Each simulated machine has a Redfish BMC, a disk,
/// an iPXE client, an installer and Ignition that really run, and an SSH server on its own
/// loopback address. `lab demo` runs the whole story in under a minute.
///
/// Exit codes: 0 success, 1 failure, 64 bad command line, 69 this machine lacks a program
/// or privilege the simulator needs, or a file of --image-dir is missing (the message says
/// what to install, allow or download).
///
/// Examples:
///   roundhouse lab demo
///   roundhouse lab up --controllers 3 --workers 3
///   roundhouse lab up --qemu 2 --controllers 1
///   roundhouse lab up --qemu 1 --image-dir flatcar --memory 3072 --disk-size 12G
///   roundhouse apply roundhouse-lab/cluster.hcl --yes
///   roundhouse lab status
///   roundhouse lab power worker-1 cycle
///   roundhouse lab fault worker-2 installer-fails
///   roundhouse lab down --purge
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct LabArgs {
    #[command(subcommand)]
    pub command: LabCommand,
}

/// The lab directory argument.
#[derive(Debug, clap::Args)]
pub struct DirArg {
    /// The lab directory (cluster file, state, logs, simulated disks).
    #[arg(long, default_value = "roundhouse-lab", value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Debug, clap::Subcommand)]
pub enum LabCommand {
    /// Create (or restart) a lab and start its boot server and machines in the background.
    ///
    /// Writes DIR/cluster.hcl (controllers and workers, role snippets in DIR/snippets, a
    /// post-provision hook for controllers, power through `roundhouse lab power`), starts
    /// the boot server and the simulator (with --qemu: QEMU machines, each behind its own
    /// IPMI BMC), and records pids and ports in DIR/lab.json. A restarted lab keeps its
    /// files, ports and installed disks.
    Up {
        #[command(flatten)]
        dir: DirArg,
        /// Number of controllers (default 3; 1 with --qemu).
        #[arg(long)]
        controllers: Option<usize>,
        /// Number of workers (default 3).
        #[arg(long)]
        workers: Option<usize>,
        /// Multiplies every simulated boot duration (1 = a Flatcar VM's timings, PXE install
        /// about a minute; default 0.02 = about a second).
        #[arg(long, value_name = "F")]
        time_scale: Option<f64>,
        /// How the cluster file powers machines: roundhouse's Redfish driver against each
        /// simulated BMC (default), or a command driver running `roundhouse lab power NODE pxe`.
        #[arg(long, value_name = "redfish|command")]
        power: Option<PowerMode>,
        /// Real machines instead of simulated ones: N QEMU VMs (UEFI, iPXE, GRUB, a Debian
        /// kernel, CoreOS Ignition; image built by lab/qemu/build-image.sh and cached), each
        /// behind its own IPMI BMC (OpenIPMI ipmi_sim); the cluster file uses the IPMI driver.
        /// The first --controllers are controllers, the rest workers. See docs/lab.md.
        #[arg(long, value_name = "N", conflicts_with_all = ["workers", "time_scale", "power"])]
        qemu: Option<usize>,
        /// Serve the image in DIR as it is instead of building the Flatcar-like one: Flatcar's
        /// own flatcar_production_pxe.vmlinuz, flatcar_production_pxe_image.cpio.gz,
        /// flatcar_production_image.bin.bz2 and its .sig (Flatcar's installer checks it), as in
        /// README.md "The same lab with real Flatcar"; or a directory lab/qemu/build-image.sh
        /// wrote (no .sig needed). Missing files are named before anything starts (exit 69).
        #[arg(long, value_name = "DIR", requires = "qemu")]
        image_dir: Option<PathBuf>,
        /// Where --qemu builds and caches the Flatcar-like image when there is no --image-dir
        /// (default ~/.cache/roundhouse/qemu-image).
        #[arg(
            long,
            value_name = "DIR",
            requires = "qemu",
            conflicts_with = "image_dir"
        )]
        image_cache: Option<PathBuf>,
        /// The OS version the cluster file names and the image is served as
        /// (boot-assets/flatcar/VERSION/); default: FLATCAR_VERSION= in the image directory's
        /// version.txt, or 9999.0.0 for the Flatcar-like image.
        #[arg(long, value_name = "VERSION", requires = "qemu",
              value_parser = roundhouse_lab::qemu::parse_os_version)]
        os_version: Option<String>,
        /// Memory of each --qemu machine in MiB (default 1024, plenty for the Flatcar-like
        /// image). Flatcar's PXE boot unpacks the whole OS into RAM: give it 3072 or more.
        #[arg(long, value_name = "MiB", requires = "qemu",
              value_parser = clap::value_parser!(u32).range(256..=1_048_576))]
        memory: Option<u32>,
        /// Size of each --qemu machine's sparse disk: a whole number with K, M, G or T (powers
        /// of 1024), e.g. 12G or 2048M (default 2G). Flatcar's image writes about 7.8 GiB: give
        /// it 12G (at least 9G is required).
        #[arg(long, value_name = "SIZE", requires = "qemu",
              value_parser = roundhouse_lab::qemu::parse_size)]
        disk_size: Option<u64>,
        /// The address the --qemu boot server listens on; the VMs reach it through QEMU's NAT
        /// (default: the host's address towards its default route).
        #[arg(long, value_name = "IP", requires = "qemu")]
        host_ip: Option<String>,
    },
    /// Stop the lab's processes and remove its mounts (files stay unless --purge).
    Down {
        #[command(flatten)]
        dir: DirArg,
        /// Delete the lab directory too.
        #[arg(long)]
        purge: bool,
    },
    /// Each machine's power, boot settings, disk, and the OS and config it runs.
    Status {
        #[command(flatten)]
        dir: DirArg,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        output: OutputFormat,
    },
    /// Power a machine through its BMC: on, off, cycle, pxe (network boot once and
    /// restart), disk (disk boot once and restart).
    Power {
        #[command(flatten)]
        dir: DirArg,
        /// Node name, as in the cluster file.
        node: String,
        /// on, off, cycle, pxe or disk.
        action: PowerAction,
    },
    /// Make a machine misbehave: bmc-unreachable, netboot-fails, installer-fails,
    /// hang-after-reboot, ssh-refused, slow-boot=F (replaces the faults in force; `none`
    /// clears them). See docs/simulator.md#faults.
    Fault {
        #[command(flatten)]
        dir: DirArg,
        /// Node name, as in the cluster file.
        node: String,
        /// Faults to put in force.
        #[arg(required = true, value_name = "FAULT")]
        faults: Vec<String>,
    },
    /// The narrated scenario: provision by PXE, change snippets, plan, apply, status,
    /// re-create a controller, verify every node over SSH. Under a minute.
    Demo {
        #[command(flatten)]
        dir: DirArg,
        /// Time factor of the simulated machines (see `lab up`).
        #[arg(long, default_value_t = 0.02, value_name = "F")]
        time_scale: f64,
        /// Leave the lab running afterwards (stop it with `roundhouse lab down`).
        #[arg(long)]
        keep: bool,
    },
    /// Runs the simulated fleet of SPEC in the foreground (started by `lab up`).
    #[command(hide = true)]
    FleetRun {
        /// Fleet spec (JSON or TOML; docs/simulator.md).
        spec: PathBuf,
    },
}

fn lab_error(e: LabError) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code: e.exit_code(),
        message: format!("error: {e}"),
    })
}

fn binary() -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()?)
}

pub fn run(args: LabArgs) -> anyhow::Result<()> {
    match args.command {
        LabCommand::Up {
            dir,
            controllers,
            workers,
            time_scale,
            power,
            qemu,
            image_dir,
            image_cache,
            os_version,
            memory,
            disk_size,
            host_ip,
        } => {
            let state = match qemu {
                Some(n) => roundhouse_lab::qemu::up(&roundhouse_lab::qemu::QemuOptions {
                    dir: dir.dir.clone(),
                    machines: n,
                    controllers: controllers.unwrap_or(1),
                    binary: binary()?,
                    image_dir,
                    image_cache,
                    os_version,
                    memory_mib: memory,
                    disk_bytes: disk_size,
                    scripts: roundhouse_lab::qemu::default_scripts(),
                    host_ip,
                }),
                None => roundhouse_lab::up(&UpOptions {
                    dir: dir.dir.clone(),
                    controllers: controllers.unwrap_or(3),
                    workers: workers.unwrap_or(3),
                    time_scale: time_scale.unwrap_or(0.02),
                    binary: binary()?,
                    power: power.unwrap_or(PowerMode::Redfish),
                    detach: true,
                }),
            }
            .map_err(lab_error)?;
            let lab = roundhouse_lab::LabDir::new(&dir.dir).map_err(lab_error)?;
            println!("{}", roundhouse_lab::demo::up_summary(&lab, &state));
            Ok(())
        }
        LabCommand::Down { dir, purge } => {
            let report = roundhouse_lab::down(&dir.dir, purge).map_err(lab_error)?;
            for (what, pid, killed) in &report.stopped {
                let how = if *killed { "killed" } else { "stopped" };
                println!("{how} the {what} (pid {pid})");
            }
            if report.stopped.is_empty() {
                println!("nothing was running");
            }
            if report.unmounted > 0 {
                println!("removed {} mounts", report.unmounted);
            }
            if report.purged {
                println!("deleted {}", dir.dir.display());
            }
            Ok(())
        }
        LabCommand::Status { dir, output } => {
            let lab = roundhouse_lab::LabDir::new(&dir.dir).map_err(lab_error)?;
            let state = lab.load().map_err(lab_error)?;
            let rows = roundhouse_lab::status::collect(&lab, &state).map_err(lab_error)?;
            match output {
                OutputFormat::Json => {
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                }
                OutputFormat::Text => print!("{}", roundhouse_lab::status::table(&rows)),
            }
            Ok(())
        }
        LabCommand::Power { dir, node, action } => {
            let line = roundhouse_lab::power::power(&dir.dir, &node, action).map_err(lab_error)?;
            println!("{line}");
            Ok(())
        }
        LabCommand::Fault { dir, node, faults } => {
            let line = roundhouse_lab::fault::set(&dir.dir, &node, &faults).map_err(lab_error)?;
            println!("{line}");
            Ok(())
        }
        LabCommand::Demo {
            dir,
            time_scale,
            keep,
        } => roundhouse_lab::demo::run(&roundhouse_lab::demo::DemoOptions {
            dir: dir.dir,
            time_scale,
            keep,
            binary: binary()?,
        })
        .map_err(lab_error),
        LabCommand::FleetRun { spec } => roundhouse_lab::fleet::run(&spec).map_err(lab_error),
    }
}
