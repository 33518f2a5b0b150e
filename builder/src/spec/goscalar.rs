//! What a plain YAML scalar means to Go's YAML libraries.
//!
//! LinuxKit decodes specs with gopkg.in/yaml.v3 and writes `metadata: yaml` files with gopkg.in/yaml.v2.
//! Both resolve an untagged plain scalar the same way, except that v2 also reads `yes`/`no`/`on`/`off`/
//! `y`/`n` as booleans: integers are whatever Go's `strconv.ParseInt(s, 0, 64)` accepts once `_` is
//! removed (so `0644` is octal 420 and `0x1F` is hex), then `ParseUint`, then YAML-style floats, then
//! `0b` binary. Strings that look like timestamps resolve to timestamps. The v2 encoder quotes every
//! string that would resolve to something else, so the same rules decide quoting.

/// The meaning of a plain scalar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Resolved {
    /// `~`, `null`, empty.
    Null,
    /// `true`/`false` (and the YAML 1.1 spellings for v2).
    Bool(bool),
    /// Anything `ParseInt`/`ParseUint` accepts: fits in `i64` or `u64`.
    Int(i128),
    /// A YAML-style float, `.inf` or `.nan`.
    Float(f64),
    /// `2001-12-14`, `2001-12-14T21:59:43Z`, ...: a string to both JSON and typed string fields.
    Timestamp,
    /// Everything else.
    Str,
}

/// Which library's table of special words to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// gopkg.in/yaml.v3 (decoding): YAML 1.2 booleans only.
    V3,
    /// gopkg.in/yaml.v2 (encoding): YAML 1.1 booleans too.
    V2,
}

/// Resolves an untagged plain scalar.
pub(crate) fn resolve_plain(text: &str, dialect: Dialect) -> Resolved {
    let hint = match text.as_bytes().first() {
        None => b'N',
        Some(b'+' | b'-') => b'S',
        Some(b'0'..=b'9') => b'D',
        Some(b'y' | b'Y' | b'n' | b'N' | b't' | b'T' | b'f' | b'F' | b'o' | b'O' | b'~') => b'M',
        Some(b'.') => b'.',
        Some(_) => return Resolved::Str,
    };
    if let Some(word) = special_word(text, dialect) {
        return word;
    }
    match hint {
        b'.' => match go_parse_float(text) {
            Some(f) => Resolved::Float(f),
            None => Resolved::Str,
        },
        b'D' | b'S' => resolve_number(text),
        _ => Resolved::Str,
    }
}

/// The fixed words of the resolver tables.
fn special_word(text: &str, dialect: Dialect) -> Option<Resolved> {
    let resolved = match text {
        "true" | "True" | "TRUE" => Resolved::Bool(true),
        "false" | "False" | "FALSE" => Resolved::Bool(false),
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" if dialect == Dialect::V2 => Resolved::Bool(true),
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" if dialect == Dialect::V2 => Resolved::Bool(false),
        "" | "~" | "null" | "Null" | "NULL" => Resolved::Null,
        ".nan" | ".NaN" | ".NAN" => Resolved::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Resolved::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Resolved::Float(f64::NEG_INFINITY),
        _ => return None,
    };
    Some(resolved)
}

/// The digit/sign branch of the resolver.
fn resolve_number(text: &str) -> Resolved {
    if is_timestamp(text) {
        return Resolved::Timestamp;
    }
    let plain: String = text.chars().filter(|&c| c != '_').collect();
    if let Some(i) = go_parse_int(&plain) {
        return Resolved::Int(i128::from(i));
    }
    if let Some(u) = go_parse_uint(&plain, 0) {
        return Resolved::Int(i128::from(u));
    }
    if is_yaml_style_float(&plain) {
        if let Some(f) = go_parse_float(&plain) {
            return Resolved::Float(f);
        }
    }
    if let Some(bits) = plain.strip_prefix("0b") {
        if let Some(u) = go_parse_uint(bits, 2) {
            return Resolved::Int(i128::from(u));
        }
    } else if let Some(bits) = plain.strip_prefix("-0b") {
        if let Some(u) = go_parse_uint(bits, 2) {
            if u <= 1 << 63 {
                return Resolved::Int(-i128::from(u));
            }
        }
    }
    Resolved::Str
}

/// `strconv.ParseInt(s, 0, 64)`.
pub(crate) fn go_parse_int(s: &str) -> Option<i64> {
    let (negative, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = go_parse_uint(digits, 0)?;
    if negative {
        if magnitude <= 1 << 63 {
            Some((magnitude as i128).wrapping_neg() as i64)
        } else {
            None
        }
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// `strconv.ParseUint(s, base, 64)` for base 0 (prefix-detected) or an explicit base, without
/// underscores (the resolver removes them first).
pub(crate) fn go_parse_uint(s: &str, base: u32) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let (base, digits) = if base == 0 { detect_base(s) } else { (base, s) };
    let mut value: u64 = 0;
    for c in digits.chars() {
        let digit = c.to_digit(36).filter(|d| *d < base)?;
        value = value.checked_mul(u64::from(base))?.checked_add(u64::from(digit))?;
    }
    Some(value)
}

/// Go's base-0 prefixes: `0b`, `0o`, `0x` (any case, at least one digit after) and a bare leading `0`
/// for octal.
fn detect_base(s: &str) -> (u32, &str) {
    let bytes = s.as_bytes();
    if bytes[0] != b'0' {
        return (10, s);
    }
    if bytes.len() >= 3 {
        match bytes[1].to_ascii_lowercase() {
            b'b' => return (2, &s[2..]),
            b'o' => return (8, &s[2..]),
            b'x' => return (16, &s[2..]),
            _ => {}
        }
    }
    (8, &s[1..])
}

/// `strconv.ParseFloat(s, 64)` for the decimal forms the resolver lets through; out-of-range values
/// fail as they do in Go.
fn go_parse_float(s: &str) -> Option<f64> {
    let valid = s.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) && s.bytes().any(|b| b.is_ascii_digit());
    if !valid {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn is_yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// yaml.v2 quotes YAML 1.1 base-60 floats such as `1:20` even though it does not read them:
/// `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`.
pub(crate) fn is_base60_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    if !b.get(i).is_some_and(u8::is_ascii_digit) {
        return false;
    }
    i += 1;
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
        i += 1;
    }
    let mut groups = 0;
    while b.get(i) == Some(&b':') {
        i += 1;
        // `[0-5]?[0-9]`: one digit, or two with the first at most 5.
        match (b.get(i), b.get(i + 1)) {
            (Some(d1), Some(d2)) if (b'0'..=b'5').contains(d1) && d2.is_ascii_digit() => i += 2,
            (Some(d), _) if d.is_ascii_digit() => i += 1,
            _ => return false,
        }
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            i += 1;
        }
    }
    i == b.len()
}

/// Whether `time.Parse` accepts `s` in one of the layouts the Go YAML libraries try:
/// `2006-1-2T15:4:5.999999999Z07:00` (also with `t`), `2006-1-2 15:4:5.999999999` and `2006-1-2`.
pub(crate) fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 5 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return false;
    }
    let year: u32 = b[..4].iter().fold(0, |n, d| n * 10 + u32::from(d - b'0'));
    let mut rest = &b[5..];
    let Some(month) = take_num(&mut rest).filter(|m| (1..=12).contains(m)) else {
        return false;
    };
    if !take_byte(&mut rest, b'-') {
        return false;
    }
    let Some(day) = take_num(&mut rest) else {
        return false;
    };
    if day < 1 || day > days_in_month(month, year) {
        return false;
    }
    match rest.first() {
        None => true,
        Some(b'T' | b't') => {
            rest = &rest[1..];
            take_clock(&mut rest) && take_zone(&mut rest) && rest.is_empty()
        }
        Some(b' ') => {
            rest = &rest[1..];
            take_clock(&mut rest) && rest.is_empty()
        }
        Some(_) => false,
    }
}

/// Go's `getnum(s, false)`: one or two digits.
fn take_num(rest: &mut &[u8]) -> Option<u32> {
    let first = rest.first().filter(|d| d.is_ascii_digit())?;
    let mut value = u32::from(first - b'0');
    *rest = &rest[1..];
    if let Some(second) = rest.first().filter(|d| d.is_ascii_digit()) {
        value = value * 10 + u32::from(second - b'0');
        *rest = &rest[1..];
    }
    Some(value)
}

fn take_byte(rest: &mut &[u8], byte: u8) -> bool {
    if rest.first() == Some(&byte) {
        *rest = &rest[1..];
        true
    } else {
        false
    }
}

/// `15:4:5` with an optional `.999999999` (or `,`) fraction.
fn take_clock(rest: &mut &[u8]) -> bool {
    let in_range = |v: Option<u32>, max: u32| v.is_some_and(|v| v <= max);
    if !in_range(take_num(rest), 23) || !take_byte(rest, b':') {
        return false;
    }
    if !in_range(take_num(rest), 59) || !take_byte(rest, b':') {
        return false;
    }
    if !in_range(take_num(rest), 59) {
        return false;
    }
    if rest.len() >= 2 && matches!(rest[0], b'.' | b',') && rest[1].is_ascii_digit() {
        *rest = &rest[1..];
        while rest.first().is_some_and(u8::is_ascii_digit) {
            *rest = &rest[1..];
        }
    }
    true
}

/// `Z07:00`: `Z` or `±hh:mm`.
fn take_zone(rest: &mut &[u8]) -> bool {
    if take_byte(rest, b'Z') {
        return true;
    }
    let r = *rest;
    if r.len() < 6 || !matches!(r[0], b'+' | b'-') || r[3] != b':' {
        return false;
    }
    if ![r[1], r[2], r[4], r[5]].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let hours = u32::from(r[1] - b'0') * 10 + u32::from(r[2] - b'0');
    let minutes = u32::from(r[4] - b'0') * 10 + u32::from(r[5] - b'0');
    if hours > 24 || minutes > 60 {
        return false;
    }
    *rest = &r[6..];
    true
}

fn days_in_month(month: u32, year: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_follow_go_parse_int() {
        let int = |s| match resolve_plain(s, Dialect::V3) {
            Resolved::Int(i) => Some(i),
            _ => None,
        };
        assert_eq!(int("0644"), Some(420));
        assert_eq!(int("0x1F"), Some(31));
        assert_eq!(int("0o17"), Some(15));
        assert_eq!(int("0b101"), Some(5));
        assert_eq!(int("-0b101"), Some(-5));
        assert_eq!(int("1_000"), Some(1000));
        assert_eq!(int("+42"), Some(42));
        assert_eq!(int("-9223372036854775808"), Some(-9223372036854775808));
        assert_eq!(int("18446744073709551615"), Some(18446744073709551615));
        assert_eq!(int("0"), Some(0));
        assert_eq!(int("18446744073709551616"), None);
        assert_eq!(int("0x"), None);
    }

    #[test]
    fn floats_strings_and_words() {
        assert_eq!(resolve_plain("08", Dialect::V3), Resolved::Float(8.0));
        assert_eq!(resolve_plain("1.5", Dialect::V3), Resolved::Float(1.5));
        assert_eq!(resolve_plain(".5e1", Dialect::V3), Resolved::Float(5.0));
        assert_eq!(resolve_plain("1e400", Dialect::V3), Resolved::Str);
        assert_eq!(resolve_plain("yes", Dialect::V3), Resolved::Str);
        assert_eq!(resolve_plain("yes", Dialect::V2), Resolved::Bool(true));
        assert_eq!(resolve_plain("Off", Dialect::V2), Resolved::Bool(false));
        assert_eq!(resolve_plain("~", Dialect::V3), Resolved::Null);
        assert_eq!(resolve_plain("", Dialect::V2), Resolved::Null);
        // `<<` starts with no resolver hint, so Go resolves it as a string; only yaml.v3's parser
        // treats a plain `<<` key as a merge.
        assert_eq!(resolve_plain("<<", Dialect::V3), Resolved::Str);
        assert_eq!(resolve_plain("-", Dialect::V3), Resolved::Str);
        assert_eq!(resolve_plain("-1", Dialect::V2), Resolved::Int(-1));
        assert_eq!(resolve_plain("1.2.3", Dialect::V2), Resolved::Str);
        assert_eq!(resolve_plain("localhost:5000/x", Dialect::V2), Resolved::Str);
        assert!(matches!(
            resolve_plain("-.inf", Dialect::V3),
            Resolved::Float(f) if f == f64::NEG_INFINITY
        ));
    }

    #[test]
    fn timestamps_follow_go_time_parse() {
        for yes in [
            "2001-12-14",
            "2001-1-2",
            "2001-12-14t21:59:43.10Z",
            "2001-12-14T21:59:43+05:00",
            "2001-12-14 21:59:43.10",
            "2000-02-29",
        ] {
            assert!(is_timestamp(yes), "{yes}");
            assert_eq!(resolve_plain(yes, Dialect::V2), Resolved::Timestamp);
        }
        for no in [
            "2001-13-14",
            "2001-02-30",
            "1900-02-29",
            "2001-12-14x",
            "2001-12-14 21:59",
            "2001-12-14T21:59:43",
            "201-12-14",
            "2001-123-1",
        ] {
            assert!(!is_timestamp(no), "{no}");
        }
    }

    #[test]
    fn base60_floats_are_recognised() {
        for yes in ["1:20", "+190:20:30.15", "1_0:5"] {
            assert!(is_base60_float(yes), "{yes}");
        }
        for no in ["1:60", "localhost:5000", "1:", ":1", "5000:5000"] {
            assert!(!is_base60_float(no), "{no}");
        }
    }
}
