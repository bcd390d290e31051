//! A faster text log format for the boot server: the same lines as `tracing-subscriber`'s
//! default `Full` format without colours, written without its per-field formatting machinery.
//!
//! At tens of thousands of requests per second the access log's formatting was the largest
//! single cost of a request (about 12,000 instructions of 40,000, measured with callgrind):
//! the timestamp, the level and every field went through `fmt::Display` layers built for
//! colours. Here the timestamp's date and time are formatted once per second per thread, and
//! string and integer fields are copied directly. Anything unusual (colours, spans, messages,
//! strings that need escaping, `Debug` values) is handed to `tracing-subscriber`'s own code,
//! so the output stays identical.

use std::cell::RefCell;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::VisitOutput;
use tracing_subscriber::fmt::format::{DefaultVisitor, Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The event format: `2026-11-25T13:00:22.920415Z  INFO target: field=value …`.
#[derive(Debug, Default)]
pub struct FastText {
    fallback: Format,
}

thread_local! {
    /// The last second formatted on this thread, and its `YYYY-MM-DDTHH:MM:SS`.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// `t` as the default format's timer writes it: RFC 3339, UTC, microseconds.
fn write_timestamp(w: &mut impl fmt::Write, t: SystemTime) -> fmt::Result {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    SECOND.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.0 != secs {
            let mut text = Vec::with_capacity(19);
            crate::state::write_civil_seconds(secs, &mut text);
            cell.1 = String::from_utf8(text).unwrap_or_default();
            cell.0 = secs;
        }
        w.write_str(&cell.1)
    })?;
    let mut frac = Vec::with_capacity(8);
    frac.push(b'.');
    crate::state::push_digits(&mut frac, u64::from(d.subsec_micros()), 6);
    frac.push(b'Z');
    w.write_str(std::str::from_utf8(&frac).unwrap_or(".000000Z"))
}

fn level_str(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => " INFO",
        Level::WARN => " WARN",
        _ => "ERROR",
    }
}

impl<S, N> FormatEvent<S, N> for FastText
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let in_span = ctx
            .event_scope()
            .is_some_and(|scope| scope.into_iter().next().is_some());
        if writer.has_ansi_escapes() || in_span {
            return self.fallback.format_event(ctx, writer, event);
        }
        let meta = event.metadata();
        write_timestamp(&mut writer, SystemTime::now())?;
        writer.write_char(' ')?;
        writer.write_str(level_str(meta.level()))?;
        writer.write_char(' ')?;
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        let mut fields = Fields {
            writer: writer.by_ref(),
            is_empty: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

/// Writes plain fields itself and hands the rest to the default visitor, one field at a time.
struct Fields<'a> {
    writer: Writer<'a>,
    is_empty: bool,
    result: fmt::Result,
}

impl Fields<'_> {
    /// Whether the default visitor would write `name=` plus the value's `Debug` for this field
    /// (not the message, not a raw identifier, not `log` metadata).
    fn plain(field: &Field) -> bool {
        let name = field.name();
        name != "message" && !name.starts_with("r#") && !name.starts_with("log.")
    }

    fn begin(&mut self, field: &Field) -> fmt::Result {
        if !self.is_empty {
            self.writer.write_char(' ')?;
        }
        self.is_empty = false;
        self.writer.write_str(field.name())?;
        self.writer.write_char('=')
    }

    fn delegate(&mut self, field: &Field, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        let field_is_log_metadata = field.name().starts_with("log.");
        let mut v = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        record(&mut v);
        self.result = v.finish();
        // The default visitor writes nothing for `log.` fields; anything else it wrote.
        if !field_is_log_metadata {
            self.is_empty = false;
        }
    }

    fn number(&mut self, field: &Field, digits: &str) {
        self.result = self
            .begin(field)
            .and_then(|()| self.writer.write_str(digits));
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        // `Debug` of such a string is the string in quotes.
        let verbatim = value
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
        if Self::plain(field) && verbatim {
            self.result = self.begin(field).and_then(|()| {
                self.writer.write_char('"')?;
                self.writer.write_str(value)?;
                self.writer.write_char('"')
            });
        } else {
            self.delegate(field, |v| v.record_str(field, value));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.result.is_err() {
            return;
        }
        if Self::plain(field) {
            let mut digits = Vec::with_capacity(20);
            let width = value.checked_ilog10().map_or(1, |l| l as usize + 1);
            crate::state::push_digits(&mut digits, value, width);
            self.number(field, std::str::from_utf8(&digits).unwrap_or("0"));
        } else {
            self.delegate(field, |v| v.record_u64(field, value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.result.is_err() {
            return;
        }
        if Self::plain(field) && value >= 0 {
            self.record_u64(field, value as u64);
        } else {
            self.delegate(field, |v| v.record_i64(field, value));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.result.is_err() {
            return;
        }
        if Self::plain(field) {
            self.number(field, if value { "true" } else { "false" });
        } else {
            self.delegate(field, |v| v.record_bool(field, value));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.result.is_ok() {
            self.delegate(field, |v| v.record_error(field, value));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_ok() {
            self.delegate(field, |v| v.record_debug(field, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn events() {
        let client = Some("127.0.0.1");
        let none: Option<&str> = None;
        tracing::info!(
            target: "roundhouse_boot::access",
            method = %"GET",
            path = "/ipxe",
            status = 200u16,
            micros = 17u64,
            client,
            mac = none,
            group = "install-node-1",
            reason = "no \"profile\"\n",
        );
        tracing::warn!(
            path = "groups/x.json",
            reason = "bad",
            "skipping unusable file"
        );
        tracing::error!(n = -3i64, ok = true, r#type = "x", e = ?vec![1, 2], "odd fields: {}", 5);
        let err = std::io::Error::other("disk on fire");
        tracing::warn!(
            error = &err as &(dyn std::error::Error + 'static),
            "writing"
        );
        let span = tracing::info_span!("reload", generation = 3);
        span.in_scope(|| tracing::info!(groups = 2u64, "in a span"));
        tracing::info!(text = "tab\there é", "unicode and control characters");
    }

    /// Runs `events` under a subscriber with `format` and returns the lines without their
    /// timestamps (the two formats read the clock at different moments).
    fn lines(fast: bool) -> Vec<String> {
        let buf = Buffer::default();
        let make = {
            let buf = buf.clone();
            move || buf.clone()
        };
        let builder = tracing_subscriber::fmt()
            .with_writer(make)
            .with_ansi(false)
            .with_max_level(Level::TRACE);
        if fast {
            tracing::subscriber::with_default(
                builder.event_format(FastText::default()).finish(),
                events,
            );
        } else {
            tracing::subscriber::with_default(builder.finish(), events);
        }
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| {
                assert_eq!(l.as_bytes()[26], b'Z', "{l}");
                l[27..].to_string()
            })
            .collect()
    }

    #[test]
    fn same_lines_as_the_default_format() {
        let fast = lines(true);
        assert_eq!(fast.len(), 6);
        assert_eq!(fast, lines(false));
        assert_eq!(
            fast[0],
            "  INFO roundhouse_boot::access: method=GET path=\"/ipxe\" status=200 micros=17 client=\"127.0.0.1\" group=\"install-node-1\" reason=\"no \\\"profile\\\"\\n\""
        );
    }

    #[test]
    fn timestamps() {
        let at = |ms: u64| {
            let mut s = String::new();
            write_timestamp(&mut s, UNIX_EPOCH + std::time::Duration::from_micros(ms)).unwrap();
            s
        };
        assert_eq!(at(0), "1970-01-01T00:00:00.000000Z");
        // `date -u -d @1709210096.789012` agrees.
        assert_eq!(at(1_709_210_096_789_012), "2024-02-29T12:34:56.789012Z");
        // The per-second cache is per value, not stale.
        assert_eq!(at(1_709_210_097_000_001), "2024-02-29T12:34:57.000001Z");
        let _ = std::io::sink().flush();
    }
}
