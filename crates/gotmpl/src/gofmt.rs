//! The parts of Go's `fmt` and `strconv` that templates reach: `%v` printing of JSON-shaped
//! values, `Sprint`/`Sprintln`/`Sprintf`, float formatting and string quoting.

use std::fmt::Write as _;

use unicode_general_category::{GeneralCategory, get_general_category};

use crate::val::Val;
use crate::value::Value;

/// Go's `unicode.IsLetter`.
pub(crate) fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    use GeneralCategory::*;
    matches!(
        get_general_category(c),
        UppercaseLetter | LowercaseLetter | TitlecaseLetter | ModifierLetter | OtherLetter
    )
}

/// Go's `unicode.IsDigit`.
pub(crate) fn is_digit(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    get_general_category(c) == GeneralCategory::DecimalNumber
}

/// Go's `unicode.IsPrint`: letters, marks, numbers, punctuation, symbols and ASCII space.
pub(crate) fn is_print(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    use GeneralCategory::*;
    !matches!(
        get_general_category(c),
        Control
            | Format
            | Surrogate
            | PrivateUse
            | Unassigned
            | SpaceSeparator
            | LineSeparator
            | ParagraphSeparator
    )
}

/// Go's `strconv.Quote` (and `QuoteToASCII` / `QuoteRune` through the arguments).
pub(crate) fn quote_with(s: &str, quote: char, ascii_only: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        if c == quote || c == '\\' {
            out.push('\\');
            out.push(c);
            continue;
        }
        if ascii_only {
            if c.is_ascii() && is_print(c) {
                out.push(c);
                continue;
            }
        } else if is_print(c) {
            out.push(c);
            continue;
        }
        match c {
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push(quote);
    out
}

/// Go's `strconv.Quote`.
pub(crate) fn quote(s: &str) -> String {
    quote_with(s, '"', false)
}

/// More significant digits than any double's exact decimal expansion has.
const EXACT_SIG_DIGITS: usize = 800;
/// More fractional digits than any double's exact decimal expansion has (1074).
const EXACT_FRAC_DIGITS: usize = 1100;

/// Decimal digits and decimal-point position of a float, like strconv's `decimalSlice`:
/// the value is `0.DIGITS × 10^dp`. `sig` is the number of significant digits to round to,
/// or `None` for the shortest representation that round-trips.
fn float_digits(v: f64, sig: Option<usize>) -> (String, i32) {
    let s = match sig {
        None => format!("{:e}", v.abs()),
        // A double's exact expansion has at most 767 significant digits, so rounding to
        // more changes nothing; Rust's formatter also rejects precisions above 65535.
        Some(n) => format!("{:.*e}", n.clamp(1, EXACT_SIG_DIGITS) - 1, v.abs()),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits: String = mant.chars().filter(|c| *c != '.').collect();
    // strconv trims trailing zeros of the rounded digits; %e pads them back.
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    if digits == "0" {
        return (String::new(), 0);
    }
    if sig.is_none() {
        digits = nearest_shortest(v.abs(), digits, exp);
    }
    (digits, exp + 1)
}

/// When two shortest digit strings both round-trip, Go's strconv takes the one nearest the
/// exact value and breaks an exact tie towards an even last digit; Rust's shortest
/// formatting may take the other. `digits` × 10^(exp-len+1) is Rust's choice for `v > 0`.
fn nearest_shortest(v: f64, digits: String, exp: i32) -> String {
    let n = digits.len();
    let Ok(d) = digits.parse::<u64>() else {
        return digits;
    };
    let scale = exp - (n as i32 - 1);
    let round_trips = |c: u64| format!("{c}e{scale}").parse::<f64>() == Ok(v);
    let same_len = |c: u64| c.to_string().len() == n;
    let other = [d.wrapping_sub(1), d + 1]
        .into_iter()
        .find(|&c| c != u64::MAX && same_len(c) && round_trips(c));
    let Some(other) = other else {
        return digits;
    };
    // The exact decimal expansion of a double has at most 767 significant digits.
    let exact = format!("{:.*e}", EXACT_SIG_DIGITS, v);
    let Some((mant, e)) = exact.split_once('e') else {
        return digits;
    };
    if e.parse::<i32>() != Ok(exp) {
        return digits;
    }
    let exact_digits: String = mant.chars().filter(|c| *c != '.').collect();
    let (lo, hi) = (d.min(other), d.max(other));
    let (head, rest) = exact_digits.split_at(n.min(exact_digits.len()));
    if head.parse::<u64>() != Ok(lo) {
        return digits;
    }
    // Compare the remaining digits with one half of a unit in the last place.
    let rest = rest.trim_end_matches('0');
    let pick = match rest.cmp("5") {
        std::cmp::Ordering::Greater => hi,
        std::cmp::Ordering::Less => lo,
        std::cmp::Ordering::Equal if lo % 2 == 0 => lo,
        std::cmp::Ordering::Equal => hi,
    };
    let mut out = pick.to_string();
    while out.len() > 1 && out.ends_with('0') {
        out.pop();
    }
    out
}

fn fmt_e(out: &mut String, digits: &str, dp: i32, prec: usize, upper: bool) {
    let d = digits.as_bytes();
    out.push(if d.is_empty() { '0' } else { d[0] as char });
    if prec > 0 {
        out.push('.');
        let mut i = 1;
        let m = d.len().min(prec + 1);
        if i < m {
            out.push_str(&digits[i..m]);
            i = m;
        }
        while i <= prec {
            out.push('0');
            i += 1;
        }
    }
    out.push(if upper { 'E' } else { 'e' });
    let exp = if d.is_empty() { 0 } else { dp - 1 };
    out.push(if exp < 0 { '-' } else { '+' });
    let e = exp.unsigned_abs();
    if e < 10 {
        out.push('0');
    }
    let _ = write!(out, "{e}");
}

fn fmt_f(out: &mut String, digits: &str, dp: i32, prec: usize) {
    let d = digits.as_bytes();
    if dp > 0 {
        let dp = dp as usize;
        let m = dp.min(d.len());
        out.push_str(&digits[..m]);
        for _ in m..dp {
            out.push('0');
        }
    } else {
        out.push('0');
    }
    if prec > 0 {
        out.push('.');
        for i in 0..prec {
            let j = dp as i64 + i as i64;
            let c = if j < 0 || j as usize >= d.len() {
                '0'
            } else {
                d[j as usize] as char
            };
            out.push(c);
        }
    }
}

/// Go's `strconv.FormatFloat(v, verb, prec, 64)` for verbs e, E, f, F, g, G; `prec` of
/// `None` means the shortest representation.
pub(crate) fn format_float(v: f64, verb: char, prec: Option<usize>) -> String {
    let mut out = String::new();
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v.is_sign_negative() {
        out.push('-');
    }
    match verb {
        'e' | 'E' => {
            let (digits, dp) = float_digits(v, prec.map(|p| p + 1));
            let p = prec.unwrap_or(digits.len().saturating_sub(1));
            fmt_e(&mut out, &digits, dp, p, verb == 'E');
        }
        'f' | 'F' => match prec {
            Some(p) => {
                let _ = write!(out, "{:.*}", p.min(EXACT_FRAC_DIGITS), v.abs());
                // Digits past the exact expansion are zeros.
                out.extend(std::iter::repeat_n(
                    '0',
                    p.saturating_sub(EXACT_FRAC_DIGITS),
                ));
            }
            None => {
                let (digits, dp) = float_digits(v, None);
                let p = (digits.len() as i32 - dp).max(0) as usize;
                fmt_f(&mut out, &digits, dp, p);
            }
        },
        _ => {
            // 'g' / 'G'
            let shortest = prec.is_none();
            let mut p = prec.unwrap_or(0);
            if p == 0 && !shortest {
                p = 1;
            }
            let (digits, dp) = float_digits(v, if shortest { None } else { Some(p) });
            let nd = digits.len() as i32;
            if shortest {
                p = digits.len();
            }
            let mut eprec = p as i32;
            if eprec > nd && nd >= dp {
                eprec = nd;
            }
            if shortest {
                eprec = 6;
            }
            let exp = dp - 1;
            if exp < -4 || exp >= eprec {
                let mut q = p as i32;
                if q > nd {
                    q = nd;
                }
                fmt_e(&mut out, &digits, dp, (q - 1).max(0) as usize, verb == 'G');
            } else {
                let mut q = p as i32;
                if q > dp {
                    q = nd;
                }
                fmt_f(&mut out, &digits, dp, (q - dp).max(0) as usize);
            }
        }
    }
    out
}

/// Go's `strconv.FormatFloat(v, 'b', -1, 64)`: decimal mantissa and binary exponent.
pub(crate) fn format_float_binary(v: f64) -> String {
    if !v.is_finite() {
        return format_float(v, 'g', None);
    }
    let bits = v.to_bits();
    let neg = bits >> 63 != 0;
    let mut exp = ((bits >> 52) & 0x7ff) as i64;
    let mut mant = bits & ((1 << 52) - 1);
    if exp == 0 {
        exp += 1; // subnormal
    } else {
        mant |= 1 << 52;
    }
    exp -= 1023 + 52;
    format!(
        "{}{mant}p{}{exp}",
        if neg { "-" } else { "" },
        if exp >= 0 { "+" } else { "" }
    )
}

/// Go's `strconv.FormatFloat(v, 'x', prec, 64)`: `-0x1.yyyp±dd`, hexadecimal mantissa
/// rounded to `prec` hex digits (shortest exact form when `None`).
pub(crate) fn format_float_hex(v: f64, prec: Option<usize>, upper: bool) -> String {
    if !v.is_finite() {
        return format_float(v, 'g', None);
    }
    let bits = v.to_bits();
    let neg = bits >> 63 != 0;
    let mut exp = ((bits >> 52) & 0x7ff) as i64;
    let mut mant = bits & ((1 << 52) - 1);
    if exp == 0 {
        exp += 1;
    } else {
        mant |= 1 << 52;
    }
    exp -= 1023;
    if mant == 0 {
        exp = 0;
    }
    // Normalise so that the leading 1 sits at bit 60.
    mant <<= 60 - 52;
    while mant != 0 && mant & (1 << 60) == 0 {
        mant <<= 1;
        exp -= 1;
    }
    if let Some(p) = prec.filter(|p| *p < 15) {
        let shift = (p * 4) as u32;
        let extra = (mant << shift) & ((1 << 60) - 1);
        mant >>= 60 - shift;
        // Round half to even.
        if extra | (mant & 1) > 1 << 59 {
            mant += 1;
        }
        mant <<= 60 - shift;
        if mant & (1 << 61) != 0 {
            mant >>= 1;
            exp += 1;
        }
    }
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    out.push('0');
    out.push(if upper { 'X' } else { 'x' });
    out.push((b'0' + ((mant >> 60) & 1) as u8) as char);
    mant <<= 4;
    match prec {
        None if mant != 0 => {
            out.push('.');
            while mant != 0 {
                out.push(digits[((mant >> 60) & 15) as usize] as char);
                mant <<= 4;
            }
        }
        Some(p) if p > 0 => {
            out.push('.');
            for _ in 0..p {
                out.push(digits[((mant >> 60) & 15) as usize] as char);
                mant <<= 4;
            }
        }
        _ => {}
    }
    out.push(if upper { 'P' } else { 'p' });
    out.push(if exp < 0 { '-' } else { '+' });
    let e = exp.unsigned_abs();
    if e < 10 {
        out.push('0');
    }
    let _ = write!(out, "{e}");
    out
}

/// Formatting state for one verb, as Go's `fmt.fmt` flags.
#[derive(Default, Clone, Copy)]
struct Flags {
    plus: bool,
    minus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    wid: Option<usize>,
    prec: Option<usize>,
}

/// Something that cannot be formatted without knowing more of Go's fmt than this crate
/// implements. Reported as an execution error rather than guessed.
#[derive(Debug)]
pub(crate) struct Unsupported(pub(crate) String);

struct Printer {
    buf: String,
    f: Flags,
}

impl Printer {
    fn new() -> Self {
        Printer {
            buf: String::new(),
            f: Flags::default(),
        }
    }

    fn write_padding(&mut self, n: usize) {
        let c = if self.f.zero && !self.f.minus {
            '0'
        } else {
            ' '
        };
        self.buf.extend(std::iter::repeat_n(c, n));
    }

    fn pad(&mut self, s: &str) {
        let Some(wid) = self.f.wid else {
            self.buf.push_str(s);
            return;
        };
        let n = s.chars().count();
        let width = wid.saturating_sub(n);
        if !self.f.minus {
            self.write_padding(width);
            self.buf.push_str(s);
        } else {
            self.buf.push_str(s);
            self.write_padding(width);
        }
    }

    fn truncate<'s>(&self, s: &'s str) -> &'s str {
        if let Some((i, _)) = self.f.prec.and_then(|p| s.char_indices().nth(p)) {
            return &s[..i];
        }
        s
    }

    fn bad_verb(&mut self, verb: char, v: &Val) {
        self.buf.push_str("%!");
        self.buf.push(verb);
        self.buf.push('(');
        match v {
            Val::Invalid | Val::Nil => self.buf.push_str("<nil>"),
            v => {
                self.buf.push_str(v.type_name());
                self.buf.push('=');
                // Go prints the operand with %v and the flags of the bad verb, so
                // `%05.1f` of "x" shows `%!f(string=0000x)`.
                let _ = self.print_value(v, 'v', 0);
            }
        }
        self.buf.push(')');
    }

    fn fmt_integer(&mut self, v: i128, base: u32, verb: char, upper: bool) {
        let negative = v < 0;
        let u = v.unsigned_abs();
        let mut prec = 0usize;
        if let Some(p) = self.f.prec {
            prec = p;
            if p == 0 && u == 0 {
                let old = self.f.zero;
                self.f.zero = false;
                self.write_padding(self.f.wid.unwrap_or(0));
                self.f.zero = old;
                return;
            }
        } else if self.f.zero && !self.f.minus && self.f.wid.is_some() {
            prec = self.f.wid.unwrap_or(0);
            if negative || self.f.plus || self.f.space {
                prec = prec.saturating_sub(1);
            }
        }
        let mut digits = match base {
            2 => format!("{u:b}"),
            8 => format!("{u:o}"),
            16 if upper => format!("{u:X}"),
            16 => format!("{u:x}"),
            _ => format!("{u}"),
        };
        if digits.len() < prec {
            digits = "0".repeat(prec - digits.len()) + &digits;
        }
        let mut s = String::new();
        if negative {
            s.push('-');
        } else if self.f.plus {
            s.push('+');
        } else if self.f.space {
            s.push(' ');
        }
        if verb == 'O' {
            s.push_str("0o");
        }
        s.push_str(&digits);
        let old = self.f.zero;
        self.f.zero = false;
        self.pad(&s);
        self.f.zero = old;
    }

    fn fmt_float(&mut self, v: f64, verb: char, default_prec: Option<usize>) {
        let prec = self.f.prec.or(default_prec);
        self.fmt_float_text(format_float(v, verb, prec));
    }

    /// Sign and padding handling of Go's `fmt.fmtFloat` for an already formatted number.
    fn fmt_float_text(&mut self, num: String) {
        let (mut sign, body) = match num.strip_prefix('-') {
            Some(rest) => ('-', rest.to_string()),
            None => match num.strip_prefix('+') {
                Some(rest) => ('+', rest.to_string()),
                None => ('+', num.clone()),
            },
        };
        if self.f.space && sign == '+' && !self.f.plus {
            sign = ' ';
        }
        if body.starts_with('I') || body.starts_with('N') {
            let old = self.f.zero;
            self.f.zero = false;
            if body.starts_with('N') && !self.f.space && !self.f.plus {
                self.pad(&body);
            } else {
                self.pad(&format!("{sign}{body}"));
            }
            self.f.zero = old;
            return;
        }
        if self.f.plus || sign != '+' {
            let len = body.chars().count() + 1;
            if self.f.zero && !self.f.minus && self.f.wid.is_some_and(|w| w > len) {
                self.buf.push(sign);
                self.write_padding(self.f.wid.unwrap_or(0) - len);
                self.buf.push_str(&body);
                return;
            }
            self.pad(&format!("{sign}{body}"));
            return;
        }
        self.pad(&body);
    }

    fn fmt_string(&mut self, s: &str, verb: char) -> Result<(), Unsupported> {
        match verb {
            'v' | 's' => {
                let t = self.truncate(s).to_string();
                self.pad(&t);
            }
            'q' => {
                if self.f.sharp {
                    return Err(Unsupported("the # flag with %q".into()));
                }
                let t = quote_with(self.truncate(s), '"', self.f.plus);
                self.pad(&t);
            }
            'x' | 'X' => {
                let mut bytes = s.as_bytes();
                if let Some(p) = self.f.prec {
                    bytes = &bytes[..p.min(bytes.len())];
                }
                if self.f.sharp {
                    return Err(Unsupported("the # flag with %x".into()));
                }
                let mut t = String::new();
                for (i, b) in bytes.iter().enumerate() {
                    if self.f.space && i > 0 {
                        t.push(' ');
                    }
                    if verb == 'x' {
                        let _ = write!(t, "{b:02x}");
                    } else {
                        let _ = write!(t, "{b:02X}");
                    }
                }
                self.pad(&t);
            }
            _ => self.bad_verb(verb, &Val::Str(crate::val::Str::Borrowed(s))),
        }
        Ok(())
    }

    fn fmt_int(&mut self, v: &Val, i: i128, verb: char) -> Result<(), Unsupported> {
        match verb {
            'v' | 'd' => self.fmt_integer(i, 10, verb, false),
            'b' => self.fmt_integer(i, 2, verb, false),
            'o' | 'O' => self.fmt_integer(i, 8, verb, false),
            'x' => self.fmt_integer(i, 16, verb, false),
            'X' => self.fmt_integer(i, 16, verb, true),
            'c' => {
                let c = u32::try_from(i)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{fffd}');
                self.pad(&c.to_string());
            }
            'q' => {
                let c = u32::try_from(i)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{fffd}');
                let t = quote_with(&c.to_string(), '\'', self.f.plus);
                self.pad(&t);
            }
            'U' => {
                // Go formats the operand as a uint64, so negative values wrap.
                let t = format!("U+{:04X}", i as i64 as u64);
                self.pad(&t);
            }
            'e' | 'E' | 'f' | 'F' | 'g' | 'G' | 's' | 't' => self.bad_verb(verb, v),
            _ => self.bad_verb(verb, v),
        }
        Ok(())
    }

    fn print_elem(&mut self, e: &Value, verb: char, depth: usize) -> Result<(), Unsupported> {
        match e {
            // A nil interface element prints as <nil> whatever the verb, unpadded.
            Value::Nil => {
                self.buf.push_str("<nil>");
                Ok(())
            }
            e => self.print_value(&Val::from_value(e), verb, depth + 1),
        }
    }

    fn print_value(&mut self, v: &Val, verb: char, depth: usize) -> Result<(), Unsupported> {
        if verb == 'T' {
            let t = v.type_name().to_string();
            self.pad(&t);
            return Ok(());
        }
        if self.f.sharp && verb == 'v' {
            return Err(Unsupported("the %#v verb".into()));
        }
        match v {
            Val::Invalid | Val::Nil => {
                if verb == 'v' {
                    self.pad("<nil>");
                } else {
                    self.bad_verb(verb, v);
                }
            }
            Val::Bool(b) => match verb {
                'v' | 't' => self.pad(if *b { "true" } else { "false" }),
                _ => self.bad_verb(verb, v),
            },
            Val::Int(i) => self.fmt_int(v, *i as i128, verb)?,
            Val::Uint8(u) => self.fmt_int(v, *u as i128, verb)?,
            Val::Float(x) => match verb {
                'v' => self.fmt_float(*x, 'g', None),
                'g' | 'G' => self.fmt_float(*x, verb, None),
                'e' | 'E' | 'f' | 'F' => self.fmt_float(*x, verb, Some(6)),
                'b' => {
                    let s = format_float_binary(*x);
                    self.fmt_float_text(s);
                }
                'x' | 'X' => {
                    let s = format_float_hex(*x, self.f.prec, verb == 'X');
                    self.fmt_float_text(s);
                }
                _ => self.bad_verb(verb, v),
            },
            Val::Str(s) => self.fmt_string(s.as_str(), verb)?,
            Val::List(l) => {
                self.buf.push('[');
                for (i, e) in l.iter().enumerate() {
                    if i > 0 {
                        self.buf.push(' ');
                    }
                    self.print_elem(e, verb, depth)?;
                }
                self.buf.push(']');
            }
            Val::Map(m) => {
                self.buf.push_str("map[");
                for (i, (k, e)) in m.iter().enumerate() {
                    if i > 0 {
                        self.buf.push(' ');
                    }
                    self.fmt_string(k, verb)?;
                    self.buf.push(':');
                    self.print_elem(e, verb, depth)?;
                }
                self.buf.push(']');
            }
            Val::StrMap(m) => {
                self.buf.push_str("map[");
                for (i, (k, e)) in m.iter().enumerate() {
                    if i > 0 {
                        self.buf.push(' ');
                    }
                    self.fmt_string(k, verb)?;
                    self.buf.push(':');
                    self.fmt_string(e, verb)?;
                }
                self.buf.push(']');
            }
        }
        Ok(())
    }
}

/// `%v` of a value, as `fmt.Sprint` prints a single operand.
pub(crate) fn sprint_value(v: &Val) -> String {
    let mut p = Printer::new();
    // %v has no unsupported cases without flags.
    let _ = p.print_value(v, 'v', 0);
    p.buf
}

/// A value formatted with an explicit verb and no flags (used by error messages).
pub(crate) fn sprint_verb(v: &Val, verb: char) -> String {
    let mut p = Printer::new();
    let _ = p.print_value(v, verb, 0);
    p.buf
}

fn is_string(v: &Val) -> bool {
    matches!(v, Val::Str(_))
}

/// Go's `fmt.Sprint`: operands separated by a space when neither side is a string.
pub(crate) fn sprint(args: &[Val]) -> String {
    let mut out = String::new();
    let mut prev_string = false;
    for (i, a) in args.iter().enumerate() {
        let s = is_string(a);
        if i > 0 && !s && !prev_string {
            out.push(' ');
        }
        out.push_str(&sprint_value(a));
        prev_string = s;
    }
    out
}

/// Go's `fmt.Sprintln`: operands always separated by spaces, newline appended.
pub(crate) fn sprintln(args: &[Val]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&sprint_value(a));
    }
    out.push('\n');
    out
}

/// Go's `fmt.Sprintf` for flags `+- #0`, numeric width and precision and the common verbs.
/// Explicit argument indexes and `*` widths are reported as unsupported.
pub(crate) fn sprintf(format: &str, args: &[Val]) -> Result<String, Unsupported> {
    const TOO_LARGE: usize = 1_000_000;
    let mut p = Printer::new();
    let mut argn = 0;
    let mut chars = format.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c != '%' {
            p.buf.push(c);
            continue;
        }
        p.f = Flags::default();
        // Flags.
        while let Some(&(_, c)) = chars.peek() {
            match c {
                '#' => p.f.sharp = true,
                '0' => p.f.zero = !p.f.minus,
                '+' => p.f.plus = true,
                '-' => {
                    p.f.minus = true;
                    p.f.zero = false;
                }
                ' ' => p.f.space = true,
                _ => break,
            }
            chars.next();
        }
        let mut bad_width = false;
        let mut bad_prec = false;
        // Width.
        let mut num = String::new();
        while let Some(&(_, c)) = chars.peek() {
            if c.is_ascii_digit() {
                num.push(c);
                chars.next();
            } else {
                break;
            }
        }
        if !num.is_empty() {
            match num.parse::<usize>() {
                Ok(n) if n <= TOO_LARGE => p.f.wid = Some(n),
                _ => bad_width = true,
            }
        }
        if matches!(chars.peek(), Some((_, '*' | '['))) {
            return Err(Unsupported("printf argument indexes and * widths".into()));
        }
        // Precision.
        if matches!(chars.peek(), Some((_, '.'))) {
            chars.next();
            if matches!(chars.peek(), Some((_, '*' | '['))) {
                return Err(Unsupported(
                    "printf argument indexes and * precisions".into(),
                ));
            }
            let mut num = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c.is_ascii_digit() {
                    num.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            match num.parse::<usize>() {
                Ok(n) if n <= TOO_LARGE => p.f.prec = Some(n),
                Err(_) if num.is_empty() => p.f.prec = Some(0),
                _ => bad_prec = true,
            }
        }
        if bad_width {
            p.buf.push_str("%!(BADWIDTH)");
        }
        if bad_prec {
            p.buf.push_str("%!(BADPREC)");
        }
        let Some((_, verb)) = chars.next() else {
            p.buf.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            p.buf.push('%');
            continue;
        }
        if argn >= args.len() {
            p.buf.push_str("%!");
            p.buf.push(verb);
            p.buf.push_str("(MISSING)");
            continue;
        }
        let arg = &args[argn];
        argn += 1;
        if p.f.sharp && !matches!(verb, 'v' | 'q' | 'x' | 'X') {
            return Err(Unsupported(format!("the # flag with %{verb}")));
        }
        p.print_value(arg, verb, 0)?;
    }
    if argn < args.len() {
        p.f = Flags::default();
        p.buf.push_str("%!(EXTRA ");
        for (i, a) in args[argn..].iter().enumerate() {
            if i > 0 {
                p.buf.push_str(", ");
            }
            match a {
                Val::Invalid | Val::Nil => p.buf.push_str("<nil>"),
                a => {
                    p.buf.push_str(a.type_name());
                    p.buf.push('=');
                    p.print_value(a, 'v', 0)?;
                }
            }
        }
        p.buf.push(')');
    }
    Ok(p.buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::val::Str;

    fn s(x: &str) -> Val<'_> {
        Val::Str(Str::Borrowed(x))
    }

    #[test]
    fn float_v_matches_go() {
        // Expected strings are Go's fmt.Sprint(float64(x)).
        let cases = [
            (3.0, "3"),
            (1e6, "1e+06"),
            (100000.0, "100000"),
            (0.5, "0.5"),
            (1e21, "1e+21"),
            (123456789.0, "1.23456789e+08"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (0.0, "0"),
            (-0.0, "-0"),
            (8080.0, "8080"),
            (1.0 / 3.0, "0.3333333333333333"),
            (1e100, "1e+100"),
            (2.5e-300, "2.5e-300"),
        ];
        for (x, want) in cases {
            assert_eq!(sprint_value(&Val::Float(x)), want, "{x}");
        }
    }

    #[test]
    fn huge_precisions_are_exact_and_do_not_panic() {
        // Go accepts precisions up to 1e6; Rust's formatter stops at 65535.
        let f = format_float(2.5, 'f', Some(1_000_000));
        assert_eq!(f.len(), 2 + 1_000_000);
        assert!(f.starts_with("2.5000") && f.ends_with("000"));
        let e = format_float(2.5, 'e', Some(100_000));
        assert!(
            e.starts_with("2.5000") && e.ends_with("0e+00"),
            "{}",
            &e[e.len() - 10..]
        );
        assert_eq!(
            format_float(0.1, 'g', Some(100_000)),
            "0.1000000000000000055511151231257827021181583404541015625"
        );
        assert_eq!(
            format_float(5e-324, 'f', Some(1100))
                .trim_end_matches('0')
                .len(),
            1076
        );
    }

    #[test]
    fn shortest_ties_round_to_even() {
        // -777337863668639.25 lies exactly between two 16-digit strings that both round-trip;
        // Go prints ...392 (even), as strconv.FormatFloat(x, 'g', -1, 64) does.
        let x = -(777_337_863_668_639.0 + 0.25);
        assert_eq!(sprint_value(&Val::Float(x)), "-7.773378636686392e+14");
    }

    #[test]
    fn format_float_verbs() {
        // Go: strconv.FormatFloat(x, verb, prec, 64)
        assert_eq!(format_float(1.23456, 'f', Some(2)), "1.23");
        assert_eq!(format_float(2.5, 'f', Some(0)), "2");
        assert_eq!(format_float(1234.5678, 'e', Some(3)), "1.235e+03");
        assert_eq!(format_float(1234.5678, 'g', Some(3)), "1.23e+03");
        assert_eq!(format_float(1.0, 'g', Some(3)), "1");
        assert_eq!(format_float(0.000012345, 'g', Some(2)), "1.2e-05");
        assert_eq!(format_float(100.0, 'g', Some(3)), "100");
        assert_eq!(format_float(1000.0, 'g', Some(3)), "1e+03");
        assert_eq!(format_float(0.0, 'e', None), "0e+00");
        assert_eq!(format_float(1e6, 'f', None), "1000000");
    }

    #[test]
    fn sprintf_common_verbs() {
        let cases: Vec<(&str, Vec<Val>, &str)> = vec![
            ("%s-%d", vec![s("a"), Val::Int(3)], "a-3"),
            ("%5s|%-5s|", vec![s("ab"), s("cd")], "   ab|cd   |"),
            ("%05d", vec![Val::Int(-42)], "-0042"),
            ("%.2f", vec![Val::Float(1.23456)], "1.23"),
            ("%8.3f", vec![Val::Float(-1.23456)], "  -1.235"),
            ("%x %X", vec![Val::Int(255), s("hi")], "ff 6869"),
            ("%q", vec![s("a\"b\n")], "\"a\\\"b\\n\""),
            ("%t", vec![Val::Bool(true)], "true"),
            ("%v", vec![Val::Float(1e6)], "1e+06"),
            ("%d", vec![Val::Float(8080.0)], "%!d(float64=8080)"),
            ("%s", vec![Val::Float(1.5)], "%!s(float64=1.5)"),
            ("%d", vec![], "%!d(MISSING)"),
            ("x", vec![Val::Int(1)], "x%!(EXTRA int=1)"),
            ("100%%", vec![], "100%"),
            ("%", vec![], "%!(NOVERB)"),
            ("%.2s", vec![s("héllo")], "hé"),
            ("%+d % d", vec![Val::Int(5), Val::Int(5)], "+5  5"),
            ("%c", vec![Val::Int(0x263A)], "☺"),
            ("%T %T", vec![Val::Float(1.0), Val::Nil], "float64 <nil>"),
            ("%v %s", vec![Val::Nil, Val::Nil], "<nil> %!s(<nil>)"),
            ("%e", vec![Val::Float(1e6)], "1.000000e+06"),
            ("%g", vec![Val::Float(1e6)], "1e+06"),
            ("%6.2f%%", vec![Val::Float(99.5)], " 99.50%"),
        ];
        for (f, args, want) in cases {
            assert_eq!(sprintf(f, &args).unwrap(), want, "format {f:?}");
        }
    }

    #[test]
    fn binary_and_hex_floats() {
        // Go: strconv.FormatFloat(x, 'b'/'x', -1, 64), fmt "%X".
        assert_eq!(format_float_binary(1.0), "4503599627370496p-52");
        assert_eq!(format_float_binary(1e6), "8589934592000000p-33");
        assert_eq!(format_float_binary(0.0), "0p-1074");
        assert_eq!(format_float_hex(1.0, None, false), "0x1p+00");
        assert_eq!(
            format_float_hex(2.5e-7, None, true),
            "0X1.0C6F7A0B5ED8DP-22"
        );
        assert_eq!(format_float_hex(0.0, None, false), "0x0p+00");
        assert_eq!(format_float_hex(1.5, Some(0), false), "0x1p+01");
        assert_eq!(format_float_hex(-3.0, Some(2), false), "-0x1.80p+01");
    }

    #[test]
    fn sprint_spacing_follows_go() {
        // fmt.Sprint adds spaces between operands when neither is a string.
        assert_eq!(sprint(&[Val::Int(1), Val::Int(2)]), "1 2");
        assert_eq!(sprint(&[s("a"), Val::Int(1), s("b")]), "a1b");
        assert_eq!(sprint(&[Val::Int(1), s("a")]), "1a");
        assert_eq!(sprintln(&[s("a"), s("b")]), "a b\n");
    }

    #[test]
    fn composite_values_print_like_go() {
        let v: Value = serde_json::json!({"b": [1, null, "x"], "a": {"k": true}}).into();
        assert_eq!(
            sprint_value(&Val::from_value(&v)),
            "map[a:map[k:true] b:[1 <nil> x]]"
        );
        let l: Value = serde_json::json!([1, 2]).into();
        assert_eq!(
            sprintf("%3v|%d", &[Val::from_value(&l), Val::from_value(&l)]).unwrap(),
            "[  1   2]|[%!d(float64=1) %!d(float64=2)]"
        );
    }

    #[test]
    fn quote_escapes_like_strconv() {
        assert_eq!(quote("héllo\t\u{7f}\u{200b}"), "\"héllo\\t\\x7f\\u200b\"");
        assert_eq!(quote_with("é", '"', true), "\"\\u00e9\"");
    }

    #[test]
    fn unsupported_features_are_errors() {
        assert!(sprintf("%*d", &[Val::Int(1), Val::Int(2)]).is_err());
        assert!(sprintf("%[1]d", &[Val::Int(1)]).is_err());
        assert!(sprintf("%#d", &[Val::Int(1)]).is_err());
    }
}
