//! The part of the D-Bus wire format the stand-in needs: reading a message's header fields and
//! a body of strings, and writing method returns, errors and signals (little-endian).
//!
//! Offsets are aligned relative to the start of the message, as the specification requires;
//! the header-field array is the only place where that matters for reading.

use std::io::Read;

use thiserror::Error;

/// Largest message accepted. systemd's limit is 128 MiB; Ignition's calls are a few hundred
/// bytes, so anything near this is garbage on the socket.
const MAX_MESSAGE: u32 = 1 << 20;

/// A malformed or unsupported message.
#[derive(Debug, Error)]
pub enum WireError {
    /// The peer closed the connection or reading failed.
    #[error("reading from the socket: {0}")]
    Io(#[from] std::io::Error),
    /// The first byte is neither `l` nor `B`.
    #[error("unknown endianness marker {0:#04x}")]
    Endianness(u8),
    /// Header or body length beyond [`MAX_MESSAGE`].
    #[error("message of {0} bytes is too large")]
    TooLarge(u64),
    /// A field or value runs past the end of the message.
    #[error("truncated message")]
    Truncated,
    /// A header field carries a type this reader does not know how to skip.
    #[error("unsupported header field signature `{0}`")]
    Signature(String),
    /// A string is not UTF-8.
    #[error("string is not UTF-8")]
    Utf8,
}

/// D-Bus message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `METHOD_CALL` (1).
    Call,
    /// `METHOD_RETURN` (2).
    Return,
    /// `ERROR` (3).
    Error,
    /// `SIGNAL` (4).
    Signal,
    /// Anything else; the specification says to ignore it.
    Other(u8),
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Call => 1,
            Kind::Return => 2,
            Kind::Error => 3,
            Kind::Signal => 4,
            Kind::Other(c) => c,
        }
    }

    fn from_code(c: u8) -> Kind {
        match c {
            1 => Kind::Call,
            2 => Kind::Return,
            3 => Kind::Error,
            4 => Kind::Signal,
            c => Kind::Other(c),
        }
    }
}

/// A message as read from the socket: the header fields the stand-in routes on, and the body
/// decoded as far as it consists of strings (`s`, `o`, `g`) and `u32`s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Message type.
    pub kind: Option<Kind>,
    /// Flags byte (bit 0: no reply expected).
    pub flags: u8,
    /// The sender's serial.
    pub serial: u32,
    /// Header field 1.
    pub path: Option<String>,
    /// Header field 2.
    pub interface: Option<String>,
    /// Header field 3.
    pub member: Option<String>,
    /// Header field 4.
    pub error_name: Option<String>,
    /// Header field 5.
    pub reply_serial: Option<u32>,
    /// Header field 8 (empty when absent).
    pub signature: String,
    /// The body's leading basic values, in order.
    pub body: Vec<Value>,
}

/// A basic value of a message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `s`, `o` or `g`.
    Str(String),
    /// `u`.
    U32(u32),
}

impl Message {
    /// Whether the sender asked for no reply (`NO_REPLY_EXPECTED`).
    pub fn no_reply(&self) -> bool {
        self.flags & 1 != 0
    }

    /// The `n`th body value if it is a string.
    pub fn str_arg(&self, n: usize) -> Option<&str> {
        match self.body.get(n) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }
}

/// Reads one whole message.
pub fn read_message(r: &mut impl Read) -> Result<Message, WireError> {
    let mut fixed = [0u8; 16];
    r.read_exact(&mut fixed)?;
    let little = match fixed[0] {
        b'l' => true,
        b'B' => false,
        other => return Err(WireError::Endianness(other)),
    };
    let u32_at = |b: &[u8], at: usize| {
        let bytes = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if little {
            u32::from_le_bytes(bytes)
        } else {
            u32::from_be_bytes(bytes)
        }
    };
    let body_len = u32_at(&fixed, 4);
    let fields_len = u32_at(&fixed, 12);
    if body_len > MAX_MESSAGE || fields_len > MAX_MESSAGE {
        return Err(WireError::TooLarge(
            u64::from(body_len) + u64::from(fields_len),
        ));
    }
    let header_end = align(16 + fields_len as usize, 8);
    let mut rest = vec![0u8; header_end - 16 + body_len as usize];
    r.read_exact(&mut rest)?;
    let mut all = fixed.to_vec();
    all.extend_from_slice(&rest);

    let mut msg = Message {
        kind: Some(Kind::from_code(fixed[1])),
        flags: fixed[2],
        serial: u32_at(&fixed, 8),
        ..Message::default()
    };
    let mut cur = Cursor {
        buf: &all,
        pos: 16,
        little,
    };
    let fields_end = 16 + fields_len as usize;
    while cur.pos < fields_end {
        cur.align(8)?;
        if cur.pos >= fields_end {
            break;
        }
        let code = cur.byte()?;
        let sig = cur.signature()?;
        match (code, sig.as_str()) {
            (1, "o") => msg.path = Some(cur.string()?),
            (2, "s") => msg.interface = Some(cur.string()?),
            (3, "s") => msg.member = Some(cur.string()?),
            (4, "s") => msg.error_name = Some(cur.string()?),
            (5, "u") => msg.reply_serial = Some(cur.u32()?),
            (8, "g") => msg.signature = cur.signature()?,
            (_, "s" | "o") => {
                cur.string()?;
            }
            (_, "g") => {
                cur.signature()?;
            }
            (_, "u") => {
                cur.u32()?;
            }
            (_, other) => return Err(WireError::Signature(other.to_string())),
        }
    }
    cur.pos = header_end;
    for t in msg.signature.clone().chars() {
        let v = match t {
            's' | 'o' => Value::Str(cur.string()?),
            'g' => Value::Str(cur.signature()?),
            'u' => Value::U32(cur.u32()?),
            // The stand-in only needs leading basic arguments; stop at anything else.
            _ => break,
        };
        msg.body.push(v);
    }
    Ok(msg)
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    little: bool,
}

impl Cursor<'_> {
    fn align(&mut self, n: usize) -> Result<(), WireError> {
        self.pos = align(self.pos, n);
        if self.pos > self.buf.len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&[u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(WireError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        self.align(4)?;
        let b = self.take(4)?;
        let bytes = [b[0], b[1], b[2], b[3]];
        Ok(if self.little {
            u32::from_le_bytes(bytes)
        } else {
            u32::from_be_bytes(bytes)
        })
    }

    fn text(&mut self, len: usize) -> Result<String, WireError> {
        let s = std::str::from_utf8(self.take(len)?)
            .map_err(|_| WireError::Utf8)?
            .to_string();
        self.take(1)?; // the terminating NUL
        Ok(s)
    }

    fn string(&mut self) -> Result<String, WireError> {
        let len = self.u32()? as usize;
        self.text(len)
    }

    fn signature(&mut self) -> Result<String, WireError> {
        let len = self.byte()? as usize;
        self.text(len)
    }
}

fn align(pos: usize, n: usize) -> usize {
    pos.div_ceil(n) * n
}

/// Builds one outgoing message.
pub struct Builder {
    kind: Kind,
    serial: u32,
    fields: Vec<(u8, Value, char)>,
    signature: String,
    body: Vec<Value>,
}

impl Builder {
    /// A reply to `call` (a return, or an error when `error` names one).
    pub fn reply(call: &Message, serial: u32, error: Option<&str>) -> Builder {
        let mut b = Builder::new(
            if error.is_some() {
                Kind::Error
            } else {
                Kind::Return
            },
            serial,
        );
        if let Some(name) = error {
            b.fields.push((4, Value::Str(name.to_string()), 's'));
        }
        b.fields.push((5, Value::U32(call.serial), 'u'));
        b
    }

    /// A signal from `path`, `interface.member`.
    pub fn signal(serial: u32, path: &str, interface: &str, member: &str) -> Builder {
        let mut b = Builder::new(Kind::Signal, serial);
        b.fields.push((1, Value::Str(path.to_string()), 'o'));
        b.fields.push((2, Value::Str(interface.to_string()), 's'));
        b.fields.push((3, Value::Str(member.to_string()), 's'));
        b
    }

    fn new(kind: Kind, serial: u32) -> Builder {
        Builder {
            kind,
            serial,
            fields: Vec::new(),
            signature: String::new(),
            body: Vec::new(),
        }
    }

    /// Appends a body argument of type `t` (`s`, `o`, `g` or `u`).
    pub fn arg(mut self, t: char, v: Value) -> Builder {
        self.signature.push(t);
        self.body.push(v);
        self
    }

    /// The message's bytes.
    pub fn finish(mut self) -> Vec<u8> {
        if !self.signature.is_empty() {
            self.fields
                .push((8, Value::Str(self.signature.clone()), 'g'));
        }
        let mut body = Out::default();
        for (v, t) in self.body.iter().zip(self.signature.chars()) {
            body.value(t, v);
        }
        let mut out = Out::default();
        out.buf.extend_from_slice(&[b'l', self.kind.code(), 0, 1]);
        out.u32(body.buf.len() as u32);
        out.u32(self.serial);
        out.u32(0); // header-field array length, patched below
        let start = out.buf.len();
        for (code, v, t) in &self.fields {
            out.pad(8);
            out.buf.push(*code);
            out.sig(&t.to_string());
            out.value(*t, v);
        }
        let len = (out.buf.len() - start) as u32;
        out.buf[12..16].copy_from_slice(&len.to_le_bytes());
        out.pad(8);
        // The body starts 8-aligned, so its own alignment computed from zero stays valid.
        out.buf.extend_from_slice(&body.buf);
        out.buf
    }
}

#[derive(Default)]
struct Out {
    buf: Vec<u8>,
}

impl Out {
    fn pad(&mut self, n: usize) {
        let to = align(self.buf.len(), n);
        self.buf.resize(to, 0);
    }

    fn u32(&mut self, v: u32) {
        self.pad(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn sig(&mut self, s: &str) {
        self.buf.push(s.len() as u8);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    fn value(&mut self, t: char, v: &Value) {
        match (t, v) {
            ('g', Value::Str(s)) => self.sig(s),
            (_, Value::Str(s)) => {
                self.u32(s.len() as u32);
                self.buf.extend_from_slice(s.as_bytes());
                self.buf.push(0);
            }
            (_, Value::U32(n)) => self.u32(*n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_reads_back_with_its_fields_and_body() {
        let bytes = Builder::signal(
            7,
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
            "JobRemoved",
        )
        .arg('u', Value::U32(3))
        .arg('o', Value::Str("/org/freedesktop/systemd1/job/3".into()))
        .arg('s', Value::Str("dev-vda9.device".into()))
        .arg('s', Value::Str("done".into()))
        .finish();
        let msg = read_message(&mut bytes.as_slice()).unwrap();
        assert_eq!(msg.kind, Some(Kind::Signal));
        assert_eq!(msg.serial, 7);
        assert_eq!(msg.path.as_deref(), Some("/org/freedesktop/systemd1"));
        assert_eq!(msg.member.as_deref(), Some("JobRemoved"));
        assert_eq!(msg.signature, "uoss");
        assert_eq!(
            msg.body,
            vec![
                Value::U32(3),
                Value::Str("/org/freedesktop/systemd1/job/3".into()),
                Value::Str("dev-vda9.device".into()),
                Value::Str("done".into()),
            ]
        );
    }

    #[test]
    fn an_error_reply_names_the_call_it_answers() {
        let call = Message {
            serial: 42,
            ..Message::default()
        };
        let bytes = Builder::reply(&call, 9, Some("org.freedesktop.DBus.Error.UnknownMethod"))
            .arg('s', Value::Str("no".into()))
            .finish();
        let msg = read_message(&mut bytes.as_slice()).unwrap();
        assert_eq!(msg.kind, Some(Kind::Error));
        assert_eq!(msg.reply_serial, Some(42));
        assert_eq!(
            msg.error_name.as_deref(),
            Some("org.freedesktop.DBus.Error.UnknownMethod")
        );
        assert_eq!(msg.str_arg(0), Some("no"));
    }

    /// A method call as godbus writes it (built by hand here, big-endian to cover that path):
    /// `StartUnit("dev-disk-by\x2dlabel-ROOT.device", "replace")`.
    #[test]
    fn a_big_endian_call_is_read() {
        let mut fields = Vec::new();
        let push_str_field = |f: &mut Vec<u8>, code: u8, t: u8, s: &str| {
            while !f.len().is_multiple_of(8) {
                f.push(0);
            }
            f.extend_from_slice(&[code, 1, t, 0]);
            f.extend_from_slice(&(s.len() as u32).to_be_bytes());
            f.extend_from_slice(s.as_bytes());
            f.push(0);
        };
        push_str_field(&mut fields, 1, b'o', "/org/freedesktop/systemd1");
        push_str_field(&mut fields, 2, b's', "org.freedesktop.systemd1.Manager");
        push_str_field(&mut fields, 3, b's', "StartUnit");
        while !fields.len().is_multiple_of(8) {
            fields.push(0);
        }
        fields.extend_from_slice(&[8, 1, b'g', 0, 2, b's', b's', 0]);
        let mut body = Vec::new();
        for s in ["dev-disk-by\\x2dlabel-ROOT.device", "replace"] {
            while !body.len().is_multiple_of(4) {
                body.push(0);
            }
            body.extend_from_slice(&(s.len() as u32).to_be_bytes());
            body.extend_from_slice(s.as_bytes());
            body.push(0);
        }
        let mut msg = vec![b'B', 1, 0, 1];
        msg.extend_from_slice(&(body.len() as u32).to_be_bytes());
        msg.extend_from_slice(&5u32.to_be_bytes());
        msg.extend_from_slice(&(fields.len() as u32).to_be_bytes());
        msg.extend_from_slice(&fields);
        while !msg.len().is_multiple_of(8) {
            msg.push(0);
        }
        msg.extend_from_slice(&body);

        let read = read_message(&mut msg.as_slice()).unwrap();
        assert_eq!(read.kind, Some(Kind::Call));
        assert_eq!(read.serial, 5);
        assert_eq!(read.member.as_deref(), Some("StartUnit"));
        assert_eq!(read.str_arg(0), Some("dev-disk-by\\x2dlabel-ROOT.device"));
        assert_eq!(read.str_arg(1), Some("replace"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(
            read_message(&mut &b"xxxxxxxxxxxxxxxx"[..]),
            Err(WireError::Endianness(b'x'))
        ));
        let mut huge = vec![b'l', 1, 0, 1];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0; 8]);
        assert!(matches!(
            read_message(&mut huge.as_slice()),
            Err(WireError::TooLarge(_))
        ));
        // A header field whose string length points past the end.
        let mut bad = vec![b'l', 1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0];
        bad.extend_from_slice(&[1, 1, b'o', 0, 0xff, 0, 0, 0]);
        assert!(matches!(
            read_message(&mut bad.as_slice()),
            Err(WireError::Truncated)
        ));
    }
}
