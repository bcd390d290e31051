//! RMCP / IPMI v2.0 (RMCP+) wire format: building requests and taking apart replies.
//!
//! Everything here reads bytes that came off the network from a BMC, which may be buggy,
//! misconfigured or hostile: every read is bounds-checked and every malformed reply becomes a
//! [`DecodeError`], never a panic (see the proptests at the bottom and in `tests/decoder_props.rs`).

/// RMCP header: version 1.0, reserved, sequence 0xFF (no RMCP ack), class IPMI.
pub const RMCP_HEADER: [u8; 4] = [0x06, 0x00, 0xFF, 0x07];
/// Authentication type / format byte that marks an IPMI v2.0 RMCP+ session header.
pub const AUTH_RMCP_PLUS: u8 = 0x06;

/// Payload types used by this client (IPMI v2.0 table 13-16).
pub mod payload {
    /// An IPMI message.
    pub const IPMI: u8 = 0x00;
    /// RMCP+ Open Session Request.
    pub const OPEN_SESSION_REQUEST: u8 = 0x10;
    /// RMCP+ Open Session Response.
    pub const OPEN_SESSION_RESPONSE: u8 = 0x11;
    /// RAKP Message 1.
    pub const RAKP1: u8 = 0x12;
    /// RAKP Message 2.
    pub const RAKP2: u8 = 0x13;
    /// RAKP Message 3.
    pub const RAKP3: u8 = 0x14;
    /// RAKP Message 4.
    pub const RAKP4: u8 = 0x15;
}

/// Address of the BMC on the IPMB.
pub const BMC_ADDR: u8 = 0x20;
/// Software ID of a remote console.
pub const CONSOLE_SWID: u8 = 0x81;

/// A reply that cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the structure needs.
    #[error("reply truncated: {what} needs {need} bytes, {have} left")]
    Truncated {
        /// Which part.
        what: &'static str,
        /// Bytes it needs.
        need: usize,
        /// Bytes there were.
        have: usize,
    },
    /// A field holds a value this client cannot accept.
    #[error("{0}")]
    Invalid(String),
}

/// Bounds-checked reader over a reply.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let have = self.buf.len() - self.pos;
        if n > have {
            return Err(DecodeError::Truncated {
                what,
                need: n,
                have,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    pub(crate) fn u16le(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32le(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
}

/// One RMCP+ packet as received, before decryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The payload is encrypted.
    pub encrypted: bool,
    /// The packet carries an integrity trailer.
    pub authenticated: bool,
    /// Payload type (bits 5:0).
    pub payload_type: u8,
    /// Session ID as sent (the receiver's ID).
    pub session_id: u32,
    /// Session sequence number.
    pub seq: u32,
    /// The payload bytes (still encrypted when `encrypted`).
    pub payload: &'a [u8],
    /// Bytes the integrity code covers (session header through next-header byte); empty when
    /// not authenticated.
    pub signed: &'a [u8],
    /// The integrity code from the trailer; empty when not authenticated.
    pub auth_code: &'a [u8],
}

/// Takes apart an RMCP+ packet. `integrity_len` is the length of the integrity code the
/// session negotiated (0 before a session exists).
pub fn decode_packet(buf: &[u8], integrity_len: usize) -> Result<Packet<'_>, DecodeError> {
    let mut c = Cursor::new(buf);
    let rmcp = c.take(4, "RMCP header")?;
    if rmcp[0] != 0x06 || rmcp[3] & 0x1F != 0x07 {
        return Err(DecodeError::Invalid(format!(
            "not an RMCP IPMI packet (version {:#04x}, class {:#04x})",
            rmcp[0], rmcp[3]
        )));
    }
    let session_start = c.pos;
    let auth = c.u8("authentication type")?;
    if auth != AUTH_RMCP_PLUS {
        return Err(DecodeError::Invalid(format!(
            "the BMC answered with an IPMI v1.5 header (authentication type {auth:#04x}), not RMCP+"
        )));
    }
    let ptype = c.u8("payload type")?;
    let payload_type = ptype & 0x3F;
    if payload_type == 0x02 {
        return Err(DecodeError::Invalid(
            "OEM explicit payloads are not supported".into(),
        ));
    }
    let session_id = c.u32le("session ID")?;
    let seq = c.u32le("session sequence")?;
    let len = c.u16le("payload length")? as usize;
    let payload = c.take(len, "payload")?;
    let authenticated = ptype & 0x40 != 0;
    let (signed, auth_code) = if authenticated {
        if integrity_len == 0 {
            return Err(DecodeError::Invalid(
                "an authenticated packet outside a session with integrity".into(),
            ));
        }
        let trailer = c.rest();
        // Trailer: pad (0xFF...), pad length, next header (0x07), integrity code.
        if trailer.len() < integrity_len + 2 {
            return Err(DecodeError::Truncated {
                what: "session trailer",
                need: integrity_len + 2,
                have: trailer.len(),
            });
        }
        let code_at = trailer.len() - integrity_len;
        let next_header = trailer[code_at - 1];
        let pad_len = trailer[code_at - 2] as usize;
        if next_header != 0x07 {
            return Err(DecodeError::Invalid(format!(
                "session trailer next header is {next_header:#04x}, not 0x07"
            )));
        }
        if pad_len != code_at - 2 {
            return Err(DecodeError::Invalid(format!(
                "session trailer says {pad_len} pad bytes, there are {}",
                code_at - 2
            )));
        }
        let signed_end = buf.len() - integrity_len;
        (&buf[session_start..signed_end], &trailer[code_at..])
    } else {
        (&buf[..0], &buf[..0])
    };
    Ok(Packet {
        encrypted: ptype & 0x80 != 0,
        authenticated,
        payload_type,
        session_id,
        seq,
        payload,
        signed,
        auth_code,
    })
}

/// Computes a packet's integrity code over the bytes it covers.
pub type Signer<'a> = dyn Fn(&[u8]) -> Vec<u8> + 'a;

/// Builds an RMCP+ packet. With `integrity` the trailer is added and `sign` computes its code
/// over the session header through the next-header byte.
pub fn encode_packet(
    payload_type: u8,
    encrypted: bool,
    session_id: u32,
    seq: u32,
    payload: &[u8],
    integrity: Option<&Signer<'_>>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 48);
    out.extend_from_slice(&RMCP_HEADER);
    out.push(AUTH_RMCP_PLUS);
    let mut ptype = payload_type & 0x3F;
    if encrypted {
        ptype |= 0x80;
    }
    if integrity.is_some() {
        ptype |= 0x40;
    }
    out.push(ptype);
    out.extend_from_slice(&session_id.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    // Callers never build payloads near 64 KiB: the largest is an encrypted IPMI request of a
    // few dozen bytes.
    out.extend_from_slice(&(payload.len() as u16).to_le_bytes());
    out.extend_from_slice(payload);
    if let Some(sign) = integrity {
        // Pad so that session header .. next header is a multiple of 4 bytes.
        let covered = out.len() - 4 + 2;
        let pad = (4 - covered % 4) % 4;
        out.extend(std::iter::repeat_n(0xFF, pad));
        out.push(pad as u8);
        out.push(0x07);
        let code = sign(&out[4..]);
        out.extend_from_slice(&code);
    }
    out
}

fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |acc, b| acc.wrapping_add(*b))
        .wrapping_neg()
}

/// An IPMI request message (LAN format) from the remote console to the BMC.
pub fn encode_request(netfn: u8, cmd: u8, rq_seq: u8, data: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(7 + data.len());
    m.push(BMC_ADDR);
    m.push(netfn << 2);
    m.push(checksum(&m[0..2]));
    m.push(CONSOLE_SWID);
    m.push((rq_seq & 0x3F) << 2);
    m.push(cmd);
    m.extend_from_slice(data);
    m.push(checksum(&m[3..]));
    m
}

/// An IPMI response message from the BMC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Network function (odd: a response).
    pub netfn: u8,
    /// Command it answers.
    pub cmd: u8,
    /// Request sequence it answers.
    pub rq_seq: u8,
    /// Completion code (0 is success).
    pub completion: u8,
    /// Response data after the completion code.
    pub data: Vec<u8>,
}

/// Takes apart an IPMI response message, checking both checksums.
pub fn decode_response(m: &[u8]) -> Result<Response, DecodeError> {
    if m.len() < 8 {
        return Err(DecodeError::Truncated {
            what: "IPMI response",
            need: 8,
            have: m.len(),
        });
    }
    if checksum(&m[0..2]) != m[2] {
        return Err(DecodeError::Invalid("IPMI response header checksum".into()));
    }
    let last = m.len() - 1;
    if checksum(&m[3..last]) != m[last] {
        return Err(DecodeError::Invalid("IPMI response data checksum".into()));
    }
    Ok(Response {
        netfn: m[1] >> 2,
        rq_seq: m[4] >> 2,
        cmd: m[5],
        completion: m[6],
        data: m[7..last].to_vec(),
    })
}

/// Algorithms proposed in an Open Session Request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Algorithms {
    /// Authentication (RAKP) algorithm number.
    pub auth: u8,
    /// Integrity algorithm number.
    pub integrity: u8,
    /// Confidentiality algorithm number.
    pub confidentiality: u8,
}

/// RMCP+ Open Session Request payload.
pub fn open_session_request(tag: u8, console_id: u32, privilege: u8, alg: Algorithms) -> Vec<u8> {
    let mut p = vec![tag, privilege, 0, 0];
    p.extend_from_slice(&console_id.to_le_bytes());
    for (kind, value) in [
        (0u8, alg.auth),
        (1, alg.integrity),
        (2, alg.confidentiality),
    ] {
        p.extend_from_slice(&[kind, 0, 0, 8, value, 0, 0, 0]);
    }
    p
}

/// RMCP+ Open Session Response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSessionResponse {
    /// Message tag echoed.
    pub tag: u8,
    /// RMCP+ status code (0 is success).
    pub status: u8,
    /// The console's session ID echoed.
    pub console_id: u32,
    /// The BMC's session ID (only meaningful on success).
    pub managed_id: u32,
    /// Algorithms the BMC chose (only on success).
    pub algorithms: Option<Algorithms>,
}

/// Takes apart an Open Session Response.
pub fn decode_open_session_response(p: &[u8]) -> Result<OpenSessionResponse, DecodeError> {
    let mut c = Cursor::new(p);
    let tag = c.u8("message tag")?;
    let status = c.u8("status code")?;
    if status != 0 {
        // Failure answers may stop right after the status (OpenIPMI's simulator does): the
        // console ID is read when present, else reported as 0.
        let _ = c.take(2, "maximum privilege, reserved");
        let console_id = c.u32le("console session ID").unwrap_or(0);
        return Ok(OpenSessionResponse {
            tag,
            status,
            console_id,
            managed_id: 0,
            algorithms: None,
        });
    }
    let _privilege = c.u8("maximum privilege")?;
    let _ = c.u8("reserved")?;
    let console_id = c.u32le("console session ID")?;
    let managed_id = c.u32le("managed system session ID")?;
    let mut algs = [0u8; 3];
    for (i, slot) in algs.iter_mut().enumerate() {
        let rec = c.take(8, "algorithm payload")?;
        if rec[0] != i as u8 {
            return Err(DecodeError::Invalid(format!(
                "algorithm payload {i} has type {:#04x}",
                rec[0]
            )));
        }
        *slot = rec[4] & 0x3F;
    }
    Ok(OpenSessionResponse {
        tag,
        status,
        console_id,
        managed_id,
        algorithms: Some(Algorithms {
            auth: algs[0],
            integrity: algs[1],
            confidentiality: algs[2],
        }),
    })
}

/// RAKP Message 1 payload. `role` is the privilege byte (with the name-only lookup bit).
pub fn rakp1(tag: u8, managed_id: u32, rm: &[u8; 16], role: u8, user: &[u8]) -> Vec<u8> {
    let mut p = vec![tag, 0, 0, 0];
    p.extend_from_slice(&managed_id.to_le_bytes());
    p.extend_from_slice(rm);
    p.push(role);
    p.extend_from_slice(&[0, 0]);
    p.push(user.len() as u8);
    p.extend_from_slice(user);
    p
}

/// RAKP Message 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp2 {
    /// Message tag echoed.
    pub tag: u8,
    /// RMCP+ status code.
    pub status: u8,
    /// The console's session ID echoed.
    pub console_id: u32,
    /// The BMC's random number.
    pub rc: [u8; 16],
    /// The BMC's GUID.
    pub guid: [u8; 16],
    /// Key exchange authentication code.
    pub auth_code: Vec<u8>,
}

/// Takes apart RAKP Message 2.
pub fn decode_rakp2(p: &[u8]) -> Result<Rakp2, DecodeError> {
    let mut c = Cursor::new(p);
    let tag = c.u8("message tag")?;
    let status = c.u8("status code")?;
    c.take(2, "reserved")?;
    let console_id = c.u32le("console session ID")?;
    if status != 0 {
        return Ok(Rakp2 {
            tag,
            status,
            console_id,
            rc: [0; 16],
            guid: [0; 16],
            auth_code: Vec::new(),
        });
    }
    let rc = c.array::<16>("managed system random number")?;
    let guid = c.array::<16>("managed system GUID")?;
    let auth_code = c.rest().to_vec();
    Ok(Rakp2 {
        tag,
        status,
        console_id,
        rc,
        guid,
        auth_code,
    })
}

/// RAKP Message 3 payload.
pub fn rakp3(tag: u8, status: u8, managed_id: u32, auth_code: &[u8]) -> Vec<u8> {
    let mut p = vec![tag, status, 0, 0];
    p.extend_from_slice(&managed_id.to_le_bytes());
    p.extend_from_slice(auth_code);
    p
}

/// RAKP Message 4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp4 {
    /// Message tag echoed.
    pub tag: u8,
    /// RMCP+ status code.
    pub status: u8,
    /// The console's session ID echoed.
    pub console_id: u32,
    /// Integrity check value.
    pub icv: Vec<u8>,
}

/// Takes apart RAKP Message 4.
pub fn decode_rakp4(p: &[u8]) -> Result<Rakp4, DecodeError> {
    let mut c = Cursor::new(p);
    let tag = c.u8("message tag")?;
    let status = c.u8("status code")?;
    c.take(2, "reserved")?;
    let console_id = c.u32le("console session ID")?;
    Ok(Rakp4 {
        tag,
        status,
        console_id,
        icv: c.rest().to_vec(),
    })
}

/// Words for an RMCP+ status code (IPMI v2.0 table 13-15).
pub fn rmcp_status_text(code: u8) -> &'static str {
    match code {
        0x00 => "no errors",
        0x01 => "insufficient resources to create a session",
        0x02 => "invalid session ID",
        0x03 => "invalid payload type",
        0x04 => "invalid authentication algorithm",
        0x05 => "invalid integrity algorithm",
        0x06 => "no matching authentication payload",
        0x07 => "no matching integrity payload",
        0x08 => "inactive session ID",
        0x09 => "invalid role",
        0x0A => "unauthorized role or privilege level requested",
        0x0B => "insufficient resources to create a session at the requested role",
        0x0C => "invalid name length",
        0x0D => "unauthorized name",
        0x0E => "unauthorized GUID",
        0x0F => "invalid integrity check value",
        0x10 => "invalid confidentiality algorithm",
        0x11 => "no cipher suite match with proposed security algorithms",
        0x12 => "illegal or unrecognized parameter",
        _ => "unknown status",
    }
}

/// Words for an IPMI completion code (IPMI v2.0 table 5-2, and the chassis boot-options codes).
pub fn completion_text(code: u8, netfn: u8, cmd: u8) -> &'static str {
    match (netfn, cmd, code) {
        (0x00, 0x08, 0x80) => "parameter not supported",
        (0x00, 0x08, 0x81) => "attempt to set 'set in progress' while not in 'set complete'",
        (0x00, 0x08, 0x82) => "attempt to write a read-only parameter",
        (0x00, 0x09, 0x80) => "parameter not supported",
        (_, _, 0x00) => "command completed normally",
        (_, _, 0xC0) => "node busy",
        (_, _, 0xC1) => "invalid command",
        (_, _, 0xC2) => "command invalid for given LUN",
        (_, _, 0xC3) => "timeout while processing command",
        (_, _, 0xC4) => "out of space",
        (_, _, 0xC5) => "reservation canceled or invalid reservation ID",
        (_, _, 0xC6) => "request data truncated",
        (_, _, 0xC7) => "request data length invalid",
        (_, _, 0xC8) => "request data field length limit exceeded",
        (_, _, 0xC9) => "parameter out of range",
        (_, _, 0xCA) => "cannot return number of requested data bytes",
        (_, _, 0xCB) => "requested sensor, data, or record not present",
        (_, _, 0xCC) => "invalid data field in request",
        (_, _, 0xCD) => "command illegal for specified sensor or record type",
        (_, _, 0xCE) => "command response could not be provided",
        (_, _, 0xCF) => "cannot execute duplicated request",
        (_, _, 0xD0) => "SDR repository in update mode",
        (_, _, 0xD1) => "device in firmware update mode",
        (_, _, 0xD2) => "BMC initialization in progress",
        (_, _, 0xD3) => "destination unavailable",
        (_, _, 0xD4) => "insufficient privilege level",
        (_, _, 0xD5) => "command not supported in present state",
        (_, _, 0xD6) => "command sub-function disabled or unavailable",
        (_, _, 0xFF) => "unspecified error",
        _ => "device-specific or unknown completion code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn request_checksums_are_twos_complement() {
        // Get Chassis Status: netfn 0, cmd 1, rqSeq 1.
        let m = encode_request(0x00, 0x01, 1, &[]);
        assert_eq!(m, vec![0x20, 0x00, 0xE0, 0x81, 0x04, 0x01, 0x7A]);
        assert_eq!(
            m[3..].iter().fold(0u8, |a, b| a.wrapping_add(*b)),
            0,
            "data checksum makes the sum zero"
        );
    }

    #[test]
    fn response_round_trip_and_bad_checksum() {
        // Response to Get Chassis Status: power on.
        let mut m = vec![0x81, 0x04];
        m.push(checksum(&m));
        m.extend_from_slice(&[0x20, 0x04, 0x01, 0x00, 0x01, 0x00, 0x00]);
        m.push(checksum(&m[3..]));
        let r = decode_response(&m).unwrap();
        assert_eq!(
            r,
            Response {
                netfn: 1,
                cmd: 1,
                rq_seq: 1,
                completion: 0,
                data: vec![1, 0, 0]
            }
        );
        let last = m.len() - 1;
        m[last] ^= 1;
        assert!(matches!(decode_response(&m), Err(DecodeError::Invalid(_))));
    }

    #[test]
    fn packet_with_trailer_round_trips() {
        let sign = |b: &[u8]| vec![b.len() as u8; 12];
        let pkt = encode_packet(0, true, 0x1234, 7, &[1, 2, 3], Some(&sign));
        assert_eq!((pkt.len() - 4 - 12) % 4, 0, "signed part is 4-aligned");
        let p = decode_packet(&pkt, 12).unwrap();
        assert!(p.encrypted && p.authenticated);
        assert_eq!(
            (p.session_id, p.seq, p.payload),
            (0x1234, 7, &[1u8, 2, 3][..])
        );
        assert_eq!(p.auth_code, sign(p.signed).as_slice());
    }

    #[test]
    fn open_session_failure_status_is_read_without_ids() {
        let p = [1u8, 0x11, 0, 0, 0xAA, 0xBB, 0xCC, 0xDD];
        let r = decode_open_session_response(&p).unwrap();
        assert_eq!((r.tag, r.status, r.console_id), (1, 0x11, 0xDDCCBBAA));
        assert!(r.algorithms.is_none());
        // Cut short after the status, as OpenIPMI's simulator sends it.
        let r = decode_open_session_response(&p[..2]).unwrap();
        assert_eq!((r.tag, r.status, r.console_id), (1, 0x11, 0));
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128), ilen in 0usize..40) {
            let _ = decode_packet(&bytes, ilen);
            let _ = decode_response(&bytes);
            let _ = decode_open_session_response(&bytes);
            let _ = decode_rakp2(&bytes);
            let _ = decode_rakp4(&bytes);
        }

        #[test]
        fn valid_header_with_mutated_tail_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..96), ptype in any::<u8>(), ilen in 0usize..40) {
            let mut b = RMCP_HEADER.to_vec();
            b.push(AUTH_RMCP_PLUS);
            b.push(ptype);
            b.extend_from_slice(&tail);
            if let Ok(p) = decode_packet(&b, ilen) {
                prop_assert!(p.payload.len() + p.auth_code.len() <= b.len());
            }
        }
    }
}
