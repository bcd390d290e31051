//! One RMCP+ session over UDP: open (Open Session, RAKP 1-4), raise privilege, send commands,
//! close.

use std::net::SocketAddr;
use std::time::Instant;

use tokio::net::UdpSocket;

use super::IpmiConfig;
use super::crypto::{CipherSuite, SessionKeys, ct_eq};
use super::packet::{self, DecodeError, payload};
use crate::PowerError;

/// Privilege level: administrator (chassis control and boot options need operator at least;
/// Set System Boot Options needs administrator on many BMCs).
const ADMINISTRATOR: u8 = 0x04;
/// Largest datagram a BMC sends us; anything bigger is not an IPMI reply.
const MAX_DATAGRAM: usize = 1024;

/// An open session.
pub(crate) struct Session<'c> {
    cfg: &'c IpmiConfig,
    bmc: String,
    sock: UdpSocket,
    managed_id: u32,
    console_id: u32,
    seq: u32,
    rq_seq: u8,
    keys: SessionKeys,
}

fn random<const N: usize>(bmc: &str) -> Result<[u8; N], PowerError> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).map_err(|e| PowerError::Io {
        bmc: bmc.to_string(),
        what: "reading random bytes".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(b)
}

/// Sends `pkt` and waits for a datagram that `accept` takes, resending after each timeout up
/// to the configured retries. `accept` returns `Ok(None)` for datagrams to ignore (stale
/// replies, garbage), so one bad packet cannot end the wait.
async fn exchange<T>(
    sock: &UdpSocket,
    cfg: &IpmiConfig,
    bmc: &str,
    what: &str,
    mut pkt: impl FnMut() -> Result<Vec<u8>, PowerError>,
    mut accept: impl FnMut(&[u8]) -> Result<Option<T>, PowerError>,
) -> Result<T, PowerError> {
    let start = Instant::now();
    let mut last_ignored = String::new();
    let attempts = cfg.limits.retries + 1;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    for _ in 0..attempts {
        let bytes = pkt()?;
        sock.send(&bytes).await.map_err(|e| io(bmc, what, e))?;
        let deadline = tokio::time::Instant::now() + cfg.limits.request_timeout;
        loop {
            match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                Err(_) => break,
                // ICMP port unreachable surfaces as ECONNREFUSED on a connected socket: the
                // host is there but nothing listens. Keep trying like a silent BMC.
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    last_ignored = "connection refused (nothing listening on that port)".into();
                    tokio::time::sleep_until(deadline).await;
                    break;
                }
                Ok(Err(e)) => return Err(io(bmc, what, e)),
                Ok(Ok(n)) => match accept(&buf[..n]) {
                    Ok(Some(v)) => return Ok(v),
                    Ok(None) => {}
                    Err(PowerError::Protocol { detail, .. }) => {
                        tracing::debug!(bmc, what, %detail, "ignoring a datagram");
                        last_ignored = detail;
                    }
                    Err(e) => return Err(e),
                },
            }
        }
    }
    Err(PowerError::Timeout {
        bmc: bmc.to_string(),
        what: what.to_string(),
        after: start.elapsed(),
        attempts,
        detail: if last_ignored.is_empty() {
            String::new()
        } else {
            format!("; last: {last_ignored}")
        },
    })
}

fn io(bmc: &str, what: &str, e: std::io::Error) -> PowerError {
    PowerError::Io {
        bmc: bmc.to_string(),
        what: what.to_string(),
        source: e,
    }
}

fn proto(bmc: &str, e: DecodeError) -> PowerError {
    PowerError::Protocol {
        bmc: bmc.to_string(),
        detail: e.to_string(),
    }
}

impl<'c> Session<'c> {
    /// Opens a session and raises it to administrator.
    pub(crate) async fn open(cfg: &'c IpmiConfig, bmc: &str) -> Result<Session<'c>, PowerError> {
        let addr: SocketAddr = tokio::net::lookup_host((cfg.host.as_str(), cfg.port))
            .await
            .map_err(|e| io(bmc, "resolving the BMC address", e))?
            .next()
            .ok_or_else(|| PowerError::Protocol {
                bmc: bmc.to_string(),
                detail: format!("{} resolves to no address", cfg.host),
            })?;
        let local: SocketAddr = if addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(local)
            .await
            .map_err(|e| io(bmc, "binding a UDP socket", e))?;
        sock.connect(addr)
            .await
            .map_err(|e| io(bmc, "connecting the UDP socket", e))?;

        let suite = cfg.suite;
        let console_id = u32::from_le_bytes(random::<4>(bmc)?) | 1;
        let tag = random::<1>(bmc)?[0];

        // Open Session.
        let req = packet::open_session_request(tag, console_id, ADMINISTRATOR, suite.algorithms());
        let open = exchange(
            &sock,
            cfg,
            bmc,
            "the RMCP+ Open Session Request",
            || {
                Ok(packet::encode_packet(
                    payload::OPEN_SESSION_REQUEST,
                    false,
                    0,
                    0,
                    &req,
                    None,
                ))
            },
            |d| {
                let p = packet::decode_packet(d, 0).map_err(|e| proto(bmc, e))?;
                if p.payload_type != payload::OPEN_SESSION_RESPONSE {
                    return Ok(None);
                }
                let r =
                    packet::decode_open_session_response(p.payload).map_err(|e| proto(bmc, e))?;
                let ours = r.console_id == console_id || (r.status != 0 && r.console_id == 0);
                Ok((r.tag == tag && ours).then_some(r))
            },
        )
        .await?;
        if open.status != 0 {
            return Err(session_status(cfg, bmc, "Open Session", open.status));
        }
        let managed_id = open.managed_id;
        if open.algorithms != Some(suite.algorithms()) {
            return Err(PowerError::Session {
                bmc: bmc.to_string(),
                detail: format!(
                    "asked for cipher suite {} and the BMC chose other algorithms ({:?})",
                    suite.id(),
                    open.algorithms
                ),
                transient: false,
            });
        }

        // RAKP 1/2.
        let rm = random::<16>(bmc)?;
        // Name-only lookup (bit 4) with the privilege we asked for.
        let role = 0x10 | ADMINISTRATOR;
        let user = cfg.username.as_bytes();
        if user.len() > 16 {
            return Err(PowerError::Auth {
                bmc: bmc.to_string(),
                user: cfg.username.clone(),
                detail: "IPMI user names are at most 16 bytes".into(),
            });
        }
        let tag1 = tag.wrapping_add(1);
        let r1 = packet::rakp1(tag1, managed_id, &rm, role, user);
        let r2 = exchange(
            &sock,
            cfg,
            bmc,
            "RAKP Message 1",
            || {
                Ok(packet::encode_packet(
                    payload::RAKP1,
                    false,
                    0,
                    0,
                    &r1,
                    None,
                ))
            },
            |d| {
                let p = packet::decode_packet(d, 0).map_err(|e| proto(bmc, e))?;
                if p.payload_type != payload::RAKP2 {
                    return Ok(None);
                }
                let r = packet::decode_rakp2(p.payload).map_err(|e| proto(bmc, e))?;
                Ok((r.tag == tag1 && r.console_id == console_id).then_some(r))
            },
        )
        .await?;
        if r2.status != 0 {
            return Err(session_status(cfg, bmc, "RAKP Message 2", r2.status));
        }
        let kuid = cfg.password.expose().as_bytes();
        if kuid.len() > 20 {
            return Err(PowerError::Auth {
                bmc: bmc.to_string(),
                user: cfg.username.clone(),
                detail: "IPMI v2.0 passwords are at most 20 bytes".into(),
            });
        }
        let ulen = [user.len() as u8];
        let expected = suite.hmac(
            kuid,
            &[
                &console_id.to_le_bytes(),
                &managed_id.to_le_bytes(),
                &rm,
                &r2.rc,
                &r2.guid,
                &[role],
                &ulen,
                user,
            ],
        );
        if !ct_eq(&expected, &r2.auth_code) {
            // The BMC knows the user but signed with another key: the password is wrong.
            // Nothing is sent back and nothing retried, so BMC lockout counters see one try.
            return Err(PowerError::Auth {
                bmc: bmc.to_string(),
                user: cfg.username.clone(),
                detail:
                    "the BMC's RAKP Message 2 code does not match this password (wrong password)"
                        .into(),
            });
        }

        // RAKP 3/4.
        let sik = suite.hmac(kuid, &[&rm, &r2.rc, &[role], &ulen, user]);
        let code3 = suite.hmac(
            kuid,
            &[&r2.rc, &console_id.to_le_bytes(), &[role], &ulen, user],
        );
        let tag3 = tag.wrapping_add(2);
        let r3 = packet::rakp3(tag3, 0, managed_id, &code3);
        let r4 = exchange(
            &sock,
            cfg,
            bmc,
            "RAKP Message 3",
            || {
                Ok(packet::encode_packet(
                    payload::RAKP3,
                    false,
                    0,
                    0,
                    &r3,
                    None,
                ))
            },
            |d| {
                let p = packet::decode_packet(d, 0).map_err(|e| proto(bmc, e))?;
                if p.payload_type != payload::RAKP4 {
                    return Ok(None);
                }
                let r = packet::decode_rakp4(p.payload).map_err(|e| proto(bmc, e))?;
                Ok((r.tag == tag3 && r.console_id == console_id).then_some(r))
            },
        )
        .await?;
        if r4.status != 0 {
            return Err(session_status(cfg, bmc, "RAKP Message 4", r4.status));
        }
        let mut icv = suite.hmac(&sik, &[&rm, &managed_id.to_le_bytes(), &r2.guid]);
        icv.truncate(suite.icv_len());
        if !ct_eq(&icv, &r4.icv) {
            return Err(PowerError::Session {
                bmc: bmc.to_string(),
                detail: "RAKP Message 4 integrity check value does not match".into(),
                transient: false,
            });
        }

        let mut s = Session {
            cfg,
            bmc: bmc.to_string(),
            sock,
            managed_id,
            console_id,
            seq: 0,
            rq_seq: 0,
            keys: SessionKeys::derive(suite, &sik),
        };
        // Sessions start at the lowest privilege (user); chassis control needs more.
        s.command(
            0x06,
            0x3B,
            &[ADMINISTRATOR],
            "Set Session Privilege Level (administrator)",
        )
        .await?;
        Ok(s)
    }

    /// Sends one IPMI request and returns the response data after a zero completion code.
    pub(crate) async fn command(
        &mut self,
        netfn: u8,
        cmd: u8,
        data: &[u8],
        what: &str,
    ) -> Result<Vec<u8>, PowerError> {
        self.rq_seq = (self.rq_seq + 1) & 0x3F;
        let rq_seq = self.rq_seq;
        let msg = packet::encode_request(netfn, cmd, rq_seq, data);
        let keys = self.keys.clone();
        let bmc = self.bmc.clone();
        let managed_id = self.managed_id;
        let console_id = self.console_id;
        let seq = &mut self.seq;
        let resp = exchange(
            &self.sock,
            self.cfg,
            &bmc,
            what,
            || {
                // A retransmission is a new packet to the session (new sequence number) but the
                // same request (same rqSeq), so a BMC that did act answers it as a duplicate.
                *seq = seq.wrapping_add(1).max(1);
                let body = keys.encrypt(&msg).map_err(|e| PowerError::Io {
                    bmc: bmc.clone(),
                    what: "reading random bytes".into(),
                    source: std::io::Error::other(e.to_string()),
                })?;
                let sign = |b: &[u8]| keys.sign(b);
                Ok(packet::encode_packet(
                    payload::IPMI,
                    true,
                    managed_id,
                    *seq,
                    &body,
                    Some(&sign),
                ))
            },
            |d| {
                let p = packet::decode_packet(d, keys.icv_len()).map_err(|e| proto(&bmc, e))?;
                if p.session_id != console_id || p.payload_type != payload::IPMI {
                    return Ok(None);
                }
                if !p.authenticated || !keys.verify(p.signed, p.auth_code) {
                    return Err(PowerError::Protocol {
                        bmc: bmc.clone(),
                        detail: "a reply with a missing or wrong integrity code".into(),
                    });
                }
                let plain = if p.encrypted {
                    keys.decrypt(p.payload).map_err(|e| proto(&bmc, e))?
                } else {
                    p.payload.to_vec()
                };
                let r = packet::decode_response(&plain).map_err(|e| proto(&bmc, e))?;
                Ok((r.rq_seq == rq_seq && r.cmd == cmd && r.netfn == netfn + 1).then_some(r))
            },
        )
        .await?;
        if resp.completion != 0 {
            return Err(PowerError::Completion {
                bmc: self.bmc.clone(),
                what: what.to_string(),
                code: resp.completion,
                meaning: packet::completion_text(resp.completion, netfn, cmd),
            });
        }
        Ok(resp.data)
    }

    /// Closes the session (best effort: a BMC frees it after its own timeout anyway).
    pub(crate) async fn close(mut self) {
        let id = self.managed_id.to_le_bytes();
        let saved = self.cfg.limits;
        let _ = tokio::time::timeout(
            saved.request_timeout,
            self.command(0x06, 0x3C, &id, "Close Session"),
        )
        .await;
    }
}

fn session_status(cfg: &IpmiConfig, bmc: &str, step: &str, status: u8) -> PowerError {
    let text = packet::rmcp_status_text(status);
    match status {
        // Unknown user, role not allowed for this user, or bad credentials: never retried.
        0x09 | 0x0A | 0x0D | 0x0F => PowerError::Auth {
            bmc: bmc.to_string(),
            user: cfg.username.clone(),
            detail: format!("{step}: status {status:#04x} ({text})"),
        },
        0x04 | 0x05 | 0x10 | 0x11 => PowerError::Session {
            bmc: bmc.to_string(),
            detail: format!(
                "{step}: status {status:#04x} ({text}): the BMC does not offer cipher suite {}{}",
                cfg.suite.id(),
                if cfg.suite == CipherSuite::Seventeen {
                    "; try cipher_suite = 3"
                } else {
                    ""
                }
            ),
            transient: false,
        },
        _ => PowerError::Session {
            bmc: bmc.to_string(),
            detail: format!("{step}: status {status:#04x} ({text})"),
            transient: matches!(status, 0x01 | 0x0B),
        },
    }
}
