//! A machine's sshd: the SSH protocol (russh), public-key authentication against the keys the
//! machine's Ignition wrote (`~/.ssh/authorized_keys` and `~/.ssh/authorized_keys.d/*`), the
//! host key from `/etc/ssh/ssh_host_ed25519_key`, and exec requests run by `sh -c` in the
//! machine's sandbox. A command that asks for a reboot ends the connection without an exit
//! status, as a rebooting machine does.

use std::collections::HashMap;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{Algorithm, PrivateKey, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::process::ChildStdin;
use tokio::sync::{mpsc, watch};

use crate::sandbox::{Layout, Sandbox};
use crate::tree::Tree;

/// What a command run over SSH asked the machine to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OsEvent {
    /// `systemctl reboot` / `reboot`.
    Reboot,
    /// `systemctl poweroff` / `halt`.
    Poweroff,
    /// Anything else worth logging (`systemctl stop etcd`, `wipefs /dev/sdb`, ...).
    Note(String),
}

/// Reads and clears the events the shims wrote to `<run>/sim/events`.
pub fn take_events(run_dir: &std::path::Path) -> Vec<OsEvent> {
    let p = run_dir.join("sim/events");
    let text = fs::read_to_string(&p).unwrap_or_default();
    if !text.is_empty() {
        let _ = fs::write(&p, "");
    }
    text.lines()
        .map(|l| match l.trim() {
            "reboot" | "kexec" => OsEvent::Reboot,
            "poweroff" | "halt" => OsEvent::Poweroff,
            other => OsEvent::Note(other.to_string()),
        })
        .collect()
}

/// The running OS an SSH server serves.
pub struct OsContext {
    /// The machine's tree (keys, passwd).
    pub tree: Tree,
    /// Where commands run.
    pub layout: Layout,
    /// How commands are isolated.
    pub sandbox: Sandbox,
    /// Where reboot requests go.
    pub events: mpsc::UnboundedSender<OsEvent>,
}

impl OsContext {
    fn home_of(&self, user: &str) -> Option<String> {
        let passwd = fs::read_to_string(self.tree.host_path("/etc/passwd")).ok()?;
        passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&user)).then(|| f.get(5).unwrap_or(&"/").to_string())
        })
    }

    /// The keys `user` may log in with, as sshd on Flatcar sees them.
    pub fn authorized_keys(&self, user: &str) -> Vec<PublicKey> {
        let Some(home) = self.home_of(user) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> =
            vec![self.tree.host_path(&format!("{home}/.ssh/authorized_keys"))];
        let d = self
            .tree
            .host_path(&format!("{home}/.ssh/authorized_keys.d"));
        let mut frags: Vec<PathBuf> = fs::read_dir(&d)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        frags.sort();
        files.extend(frags);
        let mut keys = Vec::new();
        for f in files {
            for line in fs::read_to_string(&f).unwrap_or_default().lines() {
                if let Some(k) = parse_key_line(line) {
                    keys.push(k);
                }
            }
        }
        keys
    }
}

/// A key from an `authorized_keys` line; options before the key type are skipped.
fn parse_key_line(line: &str) -> Option<PublicKey> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words
        .iter()
        .position(|w| w.starts_with("ssh-") || w.starts_with("ecdsa-") || w.starts_with("sk-"))?;
    let text = words[i..]
        .iter()
        .take(2)
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    PublicKey::from_openssh(&text).ok()
}

/// The machine's host key: the one at `/etc/ssh/ssh_host_ed25519_key` when there is one (an
/// Ignition config can pin it), else a new one written there, as sshd-keygen does on first boot.
pub fn host_key(tree: &Tree) -> Result<PrivateKey, String> {
    let p = tree.host_path("/etc/ssh/ssh_host_ed25519_key");
    if let Ok(text) = fs::read_to_string(&p) {
        return PrivateKey::from_openssh(text.trim_end().to_string() + "\n")
            .map_err(|e| format!("/etc/ssh/ssh_host_ed25519_key: {e}"));
    }
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .map_err(|e| format!("generating host key: {e}"))?;
    if let Some(parent) = p.parent() {
        let _ = fs::create_dir_all(parent);
    }
    if let Ok(text) = key.to_openssh(russh::keys::ssh_key::LineEnding::LF) {
        let _ = fs::write(&p, text.as_bytes());
        let _ = fs::set_permissions(&p, fs::Permissions::from_mode(0o600));
    }
    if let Ok(public) = key.public_key().to_openssh() {
        let _ = fs::write(p.with_extension("pub"), public + "\n");
    }
    Ok(key)
}

/// A listening sshd; dropping it closes the listeners and every session soon after,
/// [`SshServer::stop`] before it returns.
pub struct SshServer {
    stop: watch::Sender<()>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Where it listens (the first address when it listens on several).
    pub addr: SocketAddr,
}

impl SshServer {
    /// Stops listening and cuts every session; the port refuses connections once this returns.
    pub async fn stop(self) {
        let SshServer { stop, tasks, .. } = self;
        drop(stop);
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// Starts an sshd on `127.0.0.1:port` for `ctx`.
pub async fn serve(port: u16, ctx: Arc<OsContext>, key: PrivateKey) -> std::io::Result<SshServer> {
    serve_on(&[Ipv4Addr::LOCALHOST], port, ctx, key).await
}

/// Starts an sshd on `port` of each of `addrs` for `ctx`. With port 0 the first address picks
/// a free port and the others use the same one.
pub async fn serve_on(
    addrs: &[Ipv4Addr],
    port: u16,
    ctx: Arc<OsContext>,
    key: PrivateKey,
) -> std::io::Result<SshServer> {
    let mut listeners = Vec::with_capacity(addrs.len());
    let mut port = port;
    for a in addrs {
        let sock = TcpSocket::new_v4()?;
        sock.set_reuseaddr(true)?;
        sock.bind(SocketAddr::from((*a, port)))?;
        let listener = sock.listen(256)?;
        port = listener.local_addr()?.port();
        listeners.push(listener);
    }
    let addr = match listeners.first() {
        Some(l) => l.local_addr()?,
        None => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "sshd: no address to listen on",
            ));
        }
    };
    let config = Arc::new(russh::server::Config {
        keys: vec![key],
        auth_rejection_time: Duration::from_millis(20),
        auth_rejection_time_initial: Some(Duration::ZERO),
        inactivity_timeout: Some(Duration::from_secs(600)),
        server_id: russh::SshId::Standard("SSH-2.0-OpenSSH_9.3 roundhouse-sim".into()),
        ..Default::default()
    });
    let (stop, stopped) = watch::channel(());
    let tasks = listeners
        .into_iter()
        .map(|l| tokio::spawn(accept_loop(l, ctx.clone(), config.clone(), stopped.clone())))
        .collect();
    Ok(SshServer { stop, tasks, addr })
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    ctx: Arc<OsContext>,
    config: Arc<russh::server::Config>,
    mut stopped: watch::Receiver<()>,
) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
            _ = stopped.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        // russh runs the session in a task of its own; a second handle on the socket lets
        // the machine cut the connection when it goes down.
        let Ok(std_stream) = stream.into_std() else {
            continue;
        };
        let Ok(killer) = std_stream.try_clone() else {
            continue;
        };
        let Ok(stream) = tokio::net::TcpStream::from_std(std_stream) else {
            continue;
        };
        let handler = Conn {
            ctx: ctx.clone(),
            user: String::new(),
            stdins: HashMap::new(),
        };
        let config = config.clone();
        let mut stop_session = stopped.clone();
        tokio::spawn(async move {
            let Ok(session) = russh::server::run_stream(config, stream, handler).await else {
                return;
            };
            tokio::select! {
                _ = session => {},
                _ = stop_session.changed() => {
                    let _ = killer.shutdown(std::net::Shutdown::Both);
                },
            }
        });
    }
}

struct Conn {
    ctx: Arc<OsContext>,
    user: String,
    stdins: HashMap<ChannelId, ChildStdin>,
}

impl Conn {
    fn key_allowed(&self, user: &str, key: &PublicKey) -> bool {
        self.ctx
            .authorized_keys(user)
            .iter()
            .any(|k| k.key_data() == key.key_data())
    }
}

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.key_allowed(user, offer.public_key) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.key_allowed(user, key.public_key) {
            self.user = user.to_string();
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Commands run without a terminal; accepting keeps `ssh -t` working.
        session.channel_success(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Interactive shells are not simulated: run a command instead.
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let cmd = String::from_utf8_lossy(data).to_string();
        let home = self.ctx.home_of(&self.user).unwrap_or_else(|| "/".into());
        let user = self.user.clone();
        let mut c = self.ctx.sandbox.command(
            &self.ctx.layout,
            &cmd,
            &[
                ("HOME", &home),
                ("USER", &user),
                ("LOGNAME", &user),
                ("SHELL", "/bin/bash"),
            ],
        );
        c.stdin(Stdio::piped());
        session.channel_success(channel)?;
        let handle = session.handle();
        let mut child = match c.spawn() {
            Ok(ch) => ch,
            Err(e) => {
                let msg = format!("sh: cannot start: {e}\n");
                tokio::spawn(async move {
                    let _ = handle.extended_data(channel, 1, msg.into_bytes()).await;
                    let _ = handle.exit_status_request(channel, 127).await;
                    let _ = handle.eof(channel).await;
                    let _ = handle.close(channel).await;
                });
                return Ok(());
            }
        };
        if let Some(stdin) = child.stdin.take() {
            self.stdins.insert(channel, stdin);
        }
        let mut out = child.stdout.take();
        let mut err = child.stderr.take();
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            let h1 = handle.clone();
            let pump_out = async {
                if let Some(o) = out.as_mut() {
                    let mut buf = vec![0u8; 32 * 1024];
                    while let Ok(n) = o.read(&mut buf).await {
                        if n == 0 || h1.data(channel, buf[..n].to_vec()).await.is_err() {
                            break;
                        }
                    }
                }
            };
            let h2 = handle.clone();
            let pump_err = async {
                if let Some(e) = err.as_mut() {
                    let mut buf = vec![0u8; 8 * 1024];
                    while let Ok(n) = e.read(&mut buf).await {
                        if n == 0
                            || h2
                                .extended_data(channel, 1, buf[..n].to_vec())
                                .await
                                .is_err()
                        {
                            break;
                        }
                    }
                }
            };
            tokio::join!(pump_out, pump_err);
            let status = child.wait().await;
            let mut going_down = false;
            for ev in take_events(&ctx.layout.run_dir) {
                if matches!(ev, OsEvent::Reboot | OsEvent::Poweroff) {
                    going_down = true;
                }
                let _ = ctx.events.send(ev);
            }
            if going_down {
                // The machine takes the connection down with it; no exit status is sent.
                return;
            }
            let code = status.ok().and_then(|s| s.code()).unwrap_or(255);
            let _ = handle.exit_status_request(channel, code as u32).await;
            let _ = handle.eof(channel).await;
            let _ = handle.close(channel).await;
        });
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(stdin) = self.stdins.get_mut(&channel)
            && stdin.write_all(data).await.is_err()
        {
            self.stdins.remove(&channel);
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Closing the child's stdin is how `tee` and `cat` learn the input ended.
        self.stdins.remove(&channel);
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.stdins.remove(&channel);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lines() {
        assert!(parse_key_line("# comment").is_none());
        assert!(parse_key_line("").is_none());
        assert!(parse_key_line("ssh-ed25519 garbage").is_none());
        let k =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl op@x";
        assert!(parse_key_line(k).is_some());
        assert!(parse_key_line(&format!("no-pty,from=\"1.2.3.4\" {k}")).is_some());
    }
}
