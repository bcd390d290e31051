//! The Redfish driver against sushy-tools' emulator with its fake driver (`sushy-emulator
//! --fake`, PyPI `sushy-tools`, installed into a venv by scripts/install-test-deps). Its power
//! changes land 1-11 s after the request, so the driver's polling is exercised for real.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use roundhouse_config::RedfishAuth;
use roundhouse_power::redfish::{RedfishBmc, RedfishConfig};
use roundhouse_power::{
    Bmc, BootDevice, BootOverride, Limits, Password, PowerAction, PowerError, PowerState,
    boot_from_disk, pxe_boot,
};

/// Where scripts/install-test-deps puts the emulator; `ROUNDHOUSE_SUSHY_EMULATOR` overrides.
fn emulator() -> PathBuf {
    let p = std::env::var_os("ROUNDHOUSE_SUSHY_EMULATOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/roundhouse-sushy/bin/sushy-emulator"));
    assert!(
        p.exists(),
        "{} is missing: run scripts/install-test-deps (it installs PyPI sushy-tools into a venv; needs Debian python3-venv)",
        p.display()
    );
    p
}

struct Sushy {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl Drop for Sushy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const USER: &str = "root";
const PASSWORD: &str = "calvin";

impl Sushy {
    /// `tls`: serve HTTPS with a fresh self-signed certificate for 127.0.0.1 (returned as the
    /// CA file). `auth`: require basic authentication as root/calvin.
    fn start(tls: bool, auth: bool) -> (Sushy, Option<PathBuf>) {
        let exe = emulator();
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut conf = String::new();
        if auth {
            let python = exe.with_file_name("python3");
            let out = Command::new(&python)
                .args([
                    "-c",
                    &format!(
                        "import bcrypt; print('{USER}:' + bcrypt.hashpw(b'{PASSWORD}', bcrypt.gensalt(4)).decode())"
                    ),
                ])
                .output()
                .expect("running the venv's python3");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, &out.stdout).unwrap();
            conf.push_str(&format!(
                "SUSHY_EMULATOR_AUTH_FILE = '{}'\n",
                htpasswd.display()
            ));
        }
        let conf_path = dir.path().join("sushy.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut cmd = Command::new(&exe);
        cmd.args(["--fake", "-i", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .arg("--config")
            .arg(&conf_path);
        let ca = if tls {
            assert!(
                Path::new("/usr/bin/openssl").exists(),
                "/usr/bin/openssl is missing: install the Debian package `openssl`"
            );
            // A CA and a leaf it signed: webpki does not accept a self-signed CA certificate
            // as the server's own.
            let d = dir.path();
            let openssl = |args: &[&str]| {
                let ok = Command::new("openssl")
                    .current_dir(d)
                    .args(args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "openssl {args:?} failed");
            };
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=test-ca",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
            ]);
            openssl(&[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                "/CN=test-bmc",
                "-keyout",
                "bmc.key",
                "-out",
                "bmc.csr",
            ]);
            std::fs::write(
                d.join("ext.cnf"),
                "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
            )
            .unwrap();
            openssl(&[
                "x509",
                "-req",
                "-in",
                "bmc.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
                "-out",
                "bmc.crt",
            ]);
            let (crt, key) = (d.join("bmc.crt"), d.join("bmc.key"));
            cmd.arg("--ssl-certificate")
                .arg(&crt)
                .arg("--ssl-key")
                .arg(&key);
            Some(d.join("ca.crt"))
        } else {
            None
        };
        let log = std::fs::File::create(dir.path().join("sushy.log")).unwrap();
        // The fake driver keeps its machines in $TMPDIR/sushy-emulator: one per test, or
        // tests running at once would share (and change) each other's machines.
        let child = cmd
            .env("TMPDIR", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting sushy-emulator");
        let s = Sushy { dir, port, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sushy-emulator did not listen: {}",
                std::fs::read_to_string(s.dir.path().join("sushy.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        (s, ca)
    }

    fn config(&self, scheme: &str, password: &str) -> RedfishConfig {
        RedfishConfig {
            node: "w3".into(),
            endpoint: format!("{scheme}://127.0.0.1:{}", self.port),
            system_id: None,
            username: USER.into(),
            password: Password::new(password),
            ca_file: None,
            insecure: false,
            auth: RedfishAuth::Auto,
            limits: Limits {
                request_timeout: Duration::from_secs(10),
                retries: 2,
                settle: Duration::from_secs(40),
                poll: Duration::from_millis(500),
            },
        }
    }
}

#[tokio::test]
async fn boot_override_reset_and_polling_through_delayed_power_changes() {
    let (sushy, _) = Sushy::start(false, false);
    let bmc = RedfishBmc::new(sushy.config("http", PASSWORD)).unwrap();

    // Start from a known state: off (the fake driver starts systems off).
    if bmc.power_state().await.unwrap() == PowerState::On {
        bmc.power(PowerAction::Off).await.unwrap();
    }

    let started = Instant::now();
    let out = pxe_boot(&bmc, true, false).await.unwrap();
    let took = started.elapsed();
    assert!(
        out.steps
            .iter()
            .any(|s| s.contains("power was off: power on")),
        "{out:?}"
    );
    // pxe_boot returns only once PowerState reads On, however late the emulator applies it.
    assert_eq!(bmc.power_state().await.unwrap(), PowerState::On);
    eprintln!("power on observed after {took:?}");
    let boot = bmc.boot_setting().await.unwrap();
    assert_eq!(boot.device, "pxe", "{boot}");
    assert_eq!(boot.efi, Some(true), "{boot}");

    // Reinstall of a running machine: a restart, then disk after the install.
    let out = pxe_boot(&bmc, true, false).await.unwrap();
    assert!(
        out.steps
            .iter()
            .any(|s| s.contains("power was on: power cycle")),
        "{out:?}"
    );
    boot_from_disk(&bmc, true).await.unwrap();
    let boot = bmc.boot_setting().await.unwrap();
    assert_eq!(
        (boot.device.as_str(), boot.persistent),
        ("disk", Some(true)),
        "{boot}"
    );

    // Off is polled the same way.
    bmc.power(PowerAction::Off).await.unwrap();
    assert_eq!(bmc.power_state().await.unwrap(), PowerState::Off);
}

#[tokio::test]
async fn legacy_bios_mode_and_an_unknown_system_id() {
    let (sushy, _) = Sushy::start(false, false);
    let bmc = RedfishBmc::new(sushy.config("http", PASSWORD)).unwrap();
    bmc.set_boot(BootOverride {
        device: BootDevice::Pxe,
        persistent: true,
        efi: false,
    })
    .await
    .unwrap();
    let boot = bmc.boot_setting().await.unwrap();
    assert_eq!(
        (boot.efi, boot.persistent),
        (Some(false), Some(true)),
        "{boot}"
    );

    let mut cfg = sushy.config("http", PASSWORD);
    cfg.system_id = Some("no-such-system".into());
    let err = RedfishBmc::new(cfg)
        .unwrap()
        .power_state()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no ComputerSystem \"no-such-system\"") && err.contains("node w3"),
        "{err}"
    );
}

#[tokio::test]
async fn https_with_a_ca_file_or_insecure_and_refused_without() {
    let (sushy, ca) = Sushy::start(true, false);

    let mut cfg = sushy.config("https", PASSWORD);
    cfg.ca_file = ca;
    let state = RedfishBmc::new(cfg).unwrap().power_state().await;
    assert!(state.is_ok(), "{state:?}");

    let mut cfg = sushy.config("https", PASSWORD);
    cfg.insecure = true;
    let state = RedfishBmc::new(cfg).unwrap().power_state().await;
    assert!(state.is_ok(), "{state:?}");

    // Neither: the self-signed certificate is not trusted.
    let mut cfg = sushy.config("https", PASSWORD);
    cfg.limits.retries = 0;
    let err = RedfishBmc::new(cfg)
        .unwrap()
        .power_state()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

#[tokio::test]
async fn wrong_password_is_an_authentication_error_naming_the_node() {
    let (sushy, _) = Sushy::start(false, true);
    let good = RedfishBmc::new(sushy.config("http", PASSWORD)).unwrap();
    assert!(good.power_state().await.is_ok());

    let bad = RedfishBmc::new(sushy.config("http", "Xq9-notit")).unwrap();
    let started = Instant::now();
    let err = bad.power_state().await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PowerError::Auth { .. }), "{msg}");
    assert!(msg.contains("node w3") && msg.contains("\"root\""), "{msg}");
    assert!(!msg.contains("Xq9-notit"), "the password leaked: {msg}");
    assert!(started.elapsed() < Duration::from_secs(3));
}
