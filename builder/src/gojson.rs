//! JSON exactly as Go's encoding/json writes it: [`to_go_json`] for serialisable values
//! (`json.MarshalIndent(v, "", "    ")`), [`quote`] for hand-written documents.
//!
//! serde_json's pretty printer already matches Go's layout (`": "` after keys, `[]`/`{}` for empty
//! containers, no trailing newline); what differs is string escaping: Go's encoder also escapes
//! `<`, `>` and `&` (as `\u003c`, `\u003e`, `\u0026`, to be safe inside HTML) and the line and
//! paragraph separators U+2028 and U+2029. Both escape other control characters the same way
//! (`\b`, `\f`, `\n`, `\r`, `\t`, else `\u00xx` in lower-case hex).

use std::io;

use serde::Serialize;
use serde_json::ser::{Formatter, PrettyFormatter};

/// Serialises `value` as Go's `json.MarshalIndent` with a four-space indent would. serde_json fails
/// only on maps whose keys are not strings (the runtime-spec structs have none) and on I/O errors
/// (writing into memory has none).
pub(crate) fn to_go_json<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, GoFormatter::new());
    value.serialize(&mut serializer)?;
    Ok(out)
}

/// Appends `s` as a JSON string literal escaped as Go's encoder escapes it: HTML-safe (`<`, `>`,
/// `&`, U+2028 and U+2029 as `\uXXXX`), `\b`/`\f`/`\n`/`\r`/`\t`, other control characters as
/// `\u00xx`.
pub(crate) fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{0}'..='\u{1f}' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            _ => out.push(c),
        }
    }
    out.push('"');
}

/// serde_json's pretty formatter with Go's extra string escapes.
struct GoFormatter {
    pretty: PrettyFormatter<'static>,
}

impl GoFormatter {
    fn new() -> Self {
        GoFormatter {
            pretty: PrettyFormatter::with_indent(b"    "),
        }
    }
}

/// The escape Go's encoder writes for a character that serde_json leaves alone, if any.
fn go_extra_escape(c: char) -> Option<&'static str> {
    match c {
        '<' => Some("\\u003c"),
        '>' => Some("\\u003e"),
        '&' => Some("\\u0026"),
        '\u{2028}' => Some("\\u2028"),
        '\u{2029}' => Some("\\u2029"),
        _ => None,
    }
}

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        let mut start = 0;
        for (at, c) in fragment.char_indices() {
            if let Some(escape) = go_extra_escape(c) {
                writer.write_all(&fragment.as_bytes()[start..at])?;
                writer.write_all(escape.as_bytes())?;
                start = at + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.begin_array(writer)
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_array(writer)
    }

    fn begin_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        self.pretty.begin_array_value(writer, first)
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_array_value(writer)
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.begin_object(writer)
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_object(writer)
    }

    fn begin_object_key<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        self.pretty.begin_object_key(writer, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.begin_object_value(writer)
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_object_value(writer)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn escapes_like_go() {
        let value = vec!["a<b>&c", "line\u{2028}para\u{2029}", "\u{1}\u{8}\u{c}\n\r\t\"\\", "é€"];
        let out = String::from_utf8(to_go_json(&value).unwrap()).unwrap();
        assert_eq!(
            out,
            "[\n    \"a\\u003cb\\u003e\\u0026c\",\n    \"line\\u2028para\\u2029\",\n    \
             \"\\u0001\\b\\f\\n\\r\\t\\\"\\\\\",\n    \"é€\"\n]"
        );
    }

    #[test]
    fn quote_escapes_like_go() {
        let mut out = String::new();
        quote("a<b>&\"\\\n\u{1}\u{8}\u{2028}é", &mut out);
        assert_eq!(out, r#""a\u003cb\u003e\u0026\"\\\n\u0001\b\u2028é""#);
        let mut out = String::new();
        quote("a<b>&\"\\\n\u{1}", &mut out);
        assert_eq!(out, "\"a\\u003cb\\u003e\\u0026\\\"\\\\\\n\\u0001\"");
    }

    #[test]
    fn quote_agrees_with_the_serialiser() {
        let text = "x<\u{7}\u{c}\u{2029}\"";
        let mut quoted = String::new();
        quote(text, &mut quoted);
        assert_eq!(quoted.into_bytes(), to_go_json(&text).unwrap());
    }

    #[test]
    fn layout_matches_marshal_indent() {
        let mut map = BTreeMap::new();
        map.insert("k<", vec![0u64; 0]);
        map.insert("b", vec![u64::MAX]);
        let empty: BTreeMap<String, String> = BTreeMap::new();
        let out = String::from_utf8(to_go_json(&(map, empty)).unwrap()).unwrap();
        assert_eq!(
            out,
            "[\n    {\n        \"b\": [\n            18446744073709551615\n        ],\n        \
             \"k\\u003c\": []\n    },\n    {}\n]"
        );
    }
}
