//! The machine's iPXE: reads scripts the way iPXE does (settings expansion, `chain`, `kernel`,
//! `initrd`, `boot`, `sanboot`, `exit`, `set`, `goto`, `||`/`&&`) and fetches every URL a script
//! names, so the boot server sees the same requests a real network-booting machine makes.

use std::collections::HashMap;

use reqwest::Url;

use crate::mac::Mac;
use crate::net::{Agent, Fetched, Http};

/// What iPXE knows about the machine before any script runs (DHCP and SMBIOS settings).
#[derive(Debug, Clone)]
pub struct Settings {
    vars: HashMap<String, String>,
    mac: Mac,
}

impl Settings {
    /// Settings of a machine with this MAC, UUID, serial and build architecture.
    pub fn new(mac: Mac, uuid: &str, serial: &str, arch: &str, hostname: &str) -> Settings {
        let mut vars = HashMap::new();
        vars.insert("uuid".into(), uuid.to_string());
        vars.insert("serial".into(), serial.to_string());
        vars.insert("buildarch".into(), arch.to_string());
        vars.insert(
            "platform".into(),
            if arch == "i386" { "pcbios" } else { "efi" }.into(),
        );
        vars.insert("hostname".into(), hostname.to_string());
        vars.insert("manufacturer".into(), "roundhouse-sim".into());
        vars.insert("product".into(), "Simulated Flatcar machine".into());
        Settings { vars, mac }
    }

    /// Expands `${name}` and `${name:type}` like iPXE: unknown settings become empty strings.
    pub fn expand(&self, line: &str) -> String {
        let mut out = String::with_capacity(line.len());
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                // iPXE leaves an unterminated expansion as it is.
                out.push_str(&rest[start..]);
                return out;
            };
            let spec = &after[..end];
            let (name, ty) = match spec.split_once(':') {
                Some((n, t)) => (n, Some(t)),
                None => (spec, None),
            };
            out.push_str(&self.value(name, ty));
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    fn value(&self, name: &str, ty: Option<&str>) -> String {
        // `net0/mac` and `netX/mac` name the same single NIC of a simulated machine.
        let base = name.rsplit('/').next().unwrap_or(name);
        if base == "mac" {
            return match ty {
                Some("hexhyp") => self.mac.hexhyp(),
                Some("hexraw") => self.mac.with_sep(""),
                Some("uristring") => uri_encode(&self.mac.to_string()),
                _ => self.mac.to_string(),
            };
        }
        let raw = self.vars.get(base).cloned().unwrap_or_default();
        match ty {
            Some("uristring") => uri_encode(&raw),
            _ => raw,
        }
    }

    fn set(&mut self, name: &str, value: &str) {
        let base = name.rsplit('/').next().unwrap_or(name);
        self.vars.insert(base.to_string(), value.to_string());
    }
}

/// iPXE's `uristring` formatting: everything but unreserved characters is percent-encoded.
fn uri_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One HTTP request iPXE made, for the machine's log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FetchRecord {
    /// What the URL was fetched for: `script`, `kernel`, `initrd`.
    pub kind: &'static str,
    /// The URL after expansion and resolution.
    pub url: String,
    /// `ok (N bytes)`, `HTTP 404`, or `external, not contacted`.
    pub result: String,
}

/// How a network boot ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `boot` with a kernel loaded: the kernel command line as the kernel will see it.
    Kernel {
        /// Kernel URL.
        kernel: String,
        /// Initrd URLs.
        initrds: Vec<String>,
        /// Arguments after expansion.
        cmdline: String,
    },
    /// `sanboot --drive 0x80` (or another local drive) or `exit`: boot the local disk.
    LocalBoot,
    /// The script failed; firmware moves on to its next boot device.
    Failed(String),
}

/// Runs iPXE from `url` (the DHCP boot file name), following chains.
pub async fn netboot(
    http: &Http,
    settings: &mut Settings,
    url: &str,
) -> (Outcome, Vec<FetchRecord>) {
    let mut log = Vec::new();
    let outcome = match Url::parse(url) {
        Ok(u) => run_chain(http, settings, u, &mut log).await,
        Err(e) => Outcome::Failed(format!("invalid boot file URL {url}: {e}")),
    };
    (outcome, log)
}

async fn run_chain(
    http: &Http,
    settings: &mut Settings,
    mut url: Url,
    log: &mut Vec<FetchRecord>,
) -> Outcome {
    // A real iPXE has no chain limit, but a boot server that chains to itself forever would
    // keep a simulated machine busy forever; 16 levels is far beyond any real setup.
    for _ in 0..16 {
        let body = match http.get_text(&url, Agent::Ipxe).await {
            Ok((status, body)) if (200..300).contains(&status) => {
                log.push(FetchRecord {
                    kind: "script",
                    url: url.to_string(),
                    result: format!("ok ({} bytes)", body.len()),
                });
                body
            }
            Ok((status, _)) => {
                log.push(FetchRecord {
                    kind: "script",
                    url: url.to_string(),
                    result: format!("HTTP {status}"),
                });
                return Outcome::Failed(format!("fetching {url}: HTTP {status}"));
            }
            Err(e) => {
                log.push(FetchRecord {
                    kind: "script",
                    url: url.to_string(),
                    result: e.clone(),
                });
                return Outcome::Failed(format!("fetching {url}: {e}"));
            }
        };
        match run_script(http, settings, &url, &body, log).await {
            Step::Chain(next) => url = next,
            Step::Done(o) => return o,
        }
    }
    Outcome::Failed("too many chained scripts".into())
}

enum Step {
    Chain(Url),
    Done(Outcome),
}

async fn run_script(
    http: &Http,
    settings: &mut Settings,
    base: &Url,
    body: &str,
    log: &mut Vec<FetchRecord>,
) -> Step {
    let lines: Vec<&str> = body.lines().collect();
    match lines.first().map(|l| l.trim_end()) {
        Some("#!ipxe") | Some("#!gpxe") => {}
        _ => return Step::Done(Outcome::Failed(format!("{base} is not an iPXE script"))),
    }
    let labels: HashMap<&str, usize> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.trim().strip_prefix(':').map(|n| (n.trim(), i)))
        .collect();
    let mut kernel: Option<(String, String)> = None;
    let mut initrds = Vec::new();
    let mut pc = 1;
    let mut steps = 0;
    while pc < lines.len() {
        steps += 1;
        if steps > 10_000 {
            return Step::Done(Outcome::Failed("script loops".into()));
        }
        let line = lines[pc].trim();
        pc += 1;
        if line.is_empty() || line.starts_with('#') || line.starts_with(':') {
            continue;
        }
        // `a || b` runs b when a fails; `a && b` runs b when a succeeds. iPXE expands
        // settings per command, when the command runs.
        let mut ok;
        let mut rest = line;
        loop {
            let (cmd, op, next) = split_op(rest);
            let expanded = settings.expand(cmd);
            let words: Vec<&str> = expanded.split_whitespace().collect();
            let res = match words.first().copied() {
                None => Ok(Flow::Next),
                Some(c) => {
                    exec(
                        http,
                        settings,
                        base,
                        c,
                        &words[1..],
                        &mut kernel,
                        &mut initrds,
                        log,
                    )
                    .await
                }
            };
            match res {
                Ok(Flow::Next) => ok = true,
                Ok(Flow::Goto(label)) => match labels.get(label.as_str()) {
                    Some(&i) => {
                        pc = i + 1;
                        break;
                    }
                    None => {
                        ok = false;
                    }
                },
                Ok(Flow::Stop(step)) => return step,
                Err(e) => {
                    ok = false;
                    if op.is_none() {
                        return Step::Done(Outcome::Failed(e));
                    }
                }
            }
            match (op, next) {
                (Some("||"), Some(n)) if !ok => rest = n,
                (Some("&&"), Some(n)) if ok => rest = n,
                (Some("||"), Some(_)) => break,
                (Some("&&"), Some(_)) => {
                    // `a && b` with a failed: iPXE treats the line as failed.
                    return Step::Done(Outcome::Failed(format!("command failed: {line}")));
                }
                _ => break,
            }
        }
    }
    // Falling off the end of a script is `exit`: firmware boots the next device.
    Step::Done(Outcome::LocalBoot)
}

/// Splits off the first command of a `||`/`&&` chain.
fn split_op(s: &str) -> (&str, Option<&'static str>, Option<&str>) {
    let o = s.find(" || ");
    let a = s.find(" && ");
    match (o, a) {
        (Some(i), Some(j)) if j < i => (&s[..j], Some("&&"), Some(&s[j + 4..])),
        (Some(i), _) => (&s[..i], Some("||"), Some(&s[i + 4..])),
        (None, Some(j)) => (&s[..j], Some("&&"), Some(&s[j + 4..])),
        (None, None) => (s, None, None),
    }
}

enum Flow {
    Next,
    Goto(String),
    Stop(Step),
}

#[allow(clippy::too_many_arguments)]
async fn exec(
    http: &Http,
    settings: &mut Settings,
    base: &Url,
    cmd: &str,
    args: &[&str],
    kernel: &mut Option<(String, String)>,
    initrds: &mut Vec<String>,
    log: &mut Vec<FetchRecord>,
) -> Result<Flow, String> {
    // Options before the URL belong to the command; some take a value (`--drive 0x80`,
    // `--name x`, `--timeout 5000`), the others are flags (`--no-describe`, `--autofree`).
    let takes_value: &[&str] = match cmd {
        "sanboot" | "sanhook" => &[
            "--drive",
            "-d",
            "--filename",
            "-f",
            "--extra",
            "-e",
            "--label",
            "-l",
            "--uuid",
            "-u",
        ],
        _ => &["--name", "-n", "--timeout", "-t"],
    };
    let mut i = 0;
    while i < args.len() && args[i].starts_with('-') {
        let opt = args[i].split('=').next().unwrap_or("");
        i += if takes_value.contains(&opt) && !args[i].contains('=') {
            2
        } else {
            1
        };
    }
    let positional: Vec<&str> = args.iter().copied().skip(i).collect();
    match cmd {
        "dhcp" | "ifopen" | "ifconf" | "imgfree" | "sleep" | "prompt" | "ntp" => Ok(Flow::Next),
        "echo" => Ok(Flow::Next),
        "set" => {
            let name = positional.first().ok_or("set: missing name")?;
            settings.set(name, &positional[1..].join(" "));
            Ok(Flow::Next)
        }
        "goto" => Ok(Flow::Goto(
            positional.first().ok_or("goto: missing label")?.to_string(),
        )),
        "chain" => {
            let url = resolve(base, positional.first().ok_or("chain: missing URL")?)?;
            Ok(Flow::Stop(Step::Chain(url)))
        }
        "kernel" | "imgexec" => {
            let url = resolve(base, positional.first().ok_or("kernel: missing URL")?)?;
            fetch_image(http, "kernel", &url, log).await?;
            let cmdline = positional[1..].join(" ");
            if cmd == "imgexec" {
                return Ok(Flow::Stop(Step::Done(Outcome::Kernel {
                    kernel: url.to_string(),
                    initrds: initrds.clone(),
                    cmdline,
                })));
            }
            *kernel = Some((url.to_string(), cmdline));
            Ok(Flow::Next)
        }
        "initrd" | "module" | "imgfetch" => {
            let url = resolve(base, positional.first().ok_or("initrd: missing URL")?)?;
            fetch_image(http, "initrd", &url, log).await?;
            initrds.push(url.to_string());
            Ok(Flow::Next)
        }
        "boot" => match kernel.take() {
            Some((k, cmdline)) => Ok(Flow::Stop(Step::Done(Outcome::Kernel {
                kernel: k,
                initrds: std::mem::take(initrds),
                cmdline,
            }))),
            None => Err("boot: no kernel loaded".into()),
        },
        "sanboot" => {
            // Without a URL, `sanboot --drive 0x80` boots the first local disk.
            if positional.is_empty() {
                Ok(Flow::Stop(Step::Done(Outcome::LocalBoot)))
            } else {
                Err(format!(
                    "sanboot from {}: SAN boot is not simulated",
                    positional[0]
                ))
            }
        }
        "exit" => Ok(Flow::Stop(Step::Done(Outcome::LocalBoot))),
        other => Err(format!(
            "{other}: command not supported by the simulated iPXE"
        )),
    }
}

fn resolve(base: &Url, s: &str) -> Result<Url, String> {
    base.join(s).map_err(|e| format!("invalid URL {s}: {e}"))
}

async fn fetch_image(
    http: &Http,
    kind: &'static str,
    url: &Url,
    log: &mut Vec<FetchRecord>,
) -> Result<(), String> {
    let r = http.download(url, Agent::Ipxe).await;
    let (result, err) = match r {
        Ok(Fetched::Bytes(n)) => (format!("ok ({n} bytes)"), None),
        Ok(Fetched::External) => (
            "external, not contacted (assumed fetched)".to_string(),
            None,
        ),
        Ok(Fetched::Status(s)) => (
            format!("HTTP {s}"),
            Some(format!("fetching {url}: HTTP {s}")),
        ),
        Err(e) => (e.clone(), Some(format!("fetching {url}: {e}"))),
    };
    log.push(FetchRecord {
        kind,
        url: url.to_string(),
        result,
    });
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::new(
            Mac::parse("52:54:00:ab:cd:01").unwrap(),
            "5e1a0000-0000-4000-8000-525400abcd01",
            "SN1",
            "x86_64",
            "",
        )
    }

    #[test]
    fn expands_like_ipxe() {
        let s = settings();
        assert_eq!(
            s.expand("chain ipxe?uuid=${uuid}&mac=${mac:hexhyp}&domain=${domain}&hostname=${hostname}&serial=${serial}&arch=${buildarch:uristring}"),
            "chain ipxe?uuid=5e1a0000-0000-4000-8000-525400abcd01&mac=52-54-00-ab-cd-01&domain=&hostname=&serial=SN1&arch=x86_64"
        );
        assert_eq!(s.expand("${mac}"), "52:54:00:ab:cd:01");
        assert_eq!(s.expand("${net0/mac:hexhyp}"), "52-54-00-ab-cd-01");
        assert_eq!(s.expand("${mac:uristring}"), "52%3A54%3A00%3Aab%3Acd%3A01");
        assert_eq!(s.expand("a ${unterminated"), "a ${unterminated");
    }

    #[test]
    fn splits_operators() {
        assert_eq!(split_op("a || b"), ("a", Some("||"), Some("b")));
        assert_eq!(split_op("a && b || c"), ("a", Some("&&"), Some("b || c")));
        assert_eq!(split_op("a"), ("a", None, None));
    }
}
