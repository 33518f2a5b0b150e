//! A YAML writer that produces exactly what gopkg.in/yaml.v2's `Marshal` produces for the values a
//! metadata file holds (mappings, sequences, strings, integers, booleans and null).
//!
//! yaml.v2 is a port of libyaml's emitter, and its output depends on that emitter's state: block
//! sequences inside mappings are not indented, empty collections are written in flow style (`[]`,
//! `{}`), a string is plain unless it would read back as something else or contains characters that
//! plain style cannot hold (then single- or double-quoted), strings with a newline are literal blocks,
//! and long plain or quoted strings are folded at spaces past column 80. This module keeps the same
//! state (indent stack, column, whitespace/indention flags, flow level) and makes the same decisions.

use super::goscalar::{is_base60_float, resolve_plain, Dialect, Resolved};

/// A Go value as the encoders see it after reflection: structs are already mappings with their keys
/// in field order, Go maps are mappings with sorted keys.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum GoValue {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Str(String),
    Seq(Vec<GoValue>),
    Map(Vec<(String, GoValue)>),
}

/// libyaml's default indentation step.
const BEST_INDENT: i64 = 2;
/// libyaml's preferred line width: text is folded at a space once past this column.
const BEST_WIDTH: usize = 80;

/// Serialises one document as yaml.v2's `Marshal` does.
pub(crate) fn marshal(value: &GoValue) -> String {
    let mut emitter = Emitter {
        out: String::new(),
        column: 0,
        indent: -1,
        indents: Vec::new(),
        whitespace: true,
        indention: true,
        flow_level: 0,
        mapping_context: false,
        simple_key_context: false,
    };
    emitter.node(value, false, false);
    emitter.write_indent();
    emitter.out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
}

struct Emitter {
    out: String,
    /// Characters (not bytes) written on the current line.
    column: usize,
    indent: i64,
    indents: Vec<i64>,
    /// The last character written is whitespace (or nothing was written on this line yet).
    whitespace: bool,
    /// Only indentation has been written on the current line.
    indention: bool,
    flow_level: usize,
    mapping_context: bool,
    simple_key_context: bool,
}

impl Emitter {
    fn node(&mut self, value: &GoValue, mapping: bool, simple_key: bool) {
        self.mapping_context = mapping;
        self.simple_key_context = simple_key;
        match value {
            GoValue::Null => self.scalar("null", Style::Plain),
            GoValue::Bool(b) => self.scalar(if *b { "true" } else { "false" }, Style::Plain),
            GoValue::Int(i) => self.scalar(&i.to_string(), Style::Plain),
            GoValue::Uint(u) => self.scalar(&u.to_string(), Style::Plain),
            GoValue::Str(s) => self.scalar(s, string_style(s)),
            GoValue::Seq(items) if self.flow_level > 0 || items.is_empty() => self.flow_seq(items),
            GoValue::Seq(items) => self.block_seq(items),
            GoValue::Map(pairs) if self.flow_level > 0 || pairs.is_empty() => self.flow_map(pairs),
            GoValue::Map(pairs) => self.block_map(pairs),
        }
    }

    fn increase_indent(&mut self, flow: bool, indentless: bool) {
        self.indents.push(self.indent);
        if self.indent < 0 {
            self.indent = if flow { BEST_INDENT } else { 0 };
        } else if !indentless {
            self.indent += BEST_INDENT;
        }
    }

    fn restore_indent(&mut self) {
        self.indent = self.indents.pop().unwrap_or(-1);
    }

    fn block_seq(&mut self, items: &[GoValue]) {
        // A sequence that is a mapping value starts at the key's indentation.
        self.increase_indent(false, self.mapping_context && !self.indention);
        for item in items {
            self.write_indent();
            self.write_indicator("-", true, false, true);
            self.node(item, false, false);
        }
        self.restore_indent();
    }

    fn flow_seq(&mut self, items: &[GoValue]) {
        self.write_indicator("[", true, true, false);
        self.increase_indent(true, false);
        self.flow_level += 1;
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.write_indicator(",", false, false, false);
            }
            if self.column > BEST_WIDTH {
                self.write_indent();
            }
            self.node(item, false, false);
        }
        self.flow_level -= 1;
        self.restore_indent();
        self.write_indicator("]", false, false, false);
    }

    fn block_map(&mut self, pairs: &[(String, GoValue)]) {
        self.increase_indent(false, false);
        for (key, value) in pairs {
            self.write_indent();
            if is_simple_key(key) {
                self.node(&GoValue::Str(key.clone()), true, true);
                self.write_indicator(":", false, false, false);
            } else {
                self.write_indicator("?", true, false, true);
                self.node(&GoValue::Str(key.clone()), true, false);
                self.write_indent();
                self.write_indicator(":", true, false, true);
            }
            self.node(value, true, false);
        }
        self.restore_indent();
    }

    fn flow_map(&mut self, pairs: &[(String, GoValue)]) {
        self.write_indicator("{", true, true, false);
        self.increase_indent(true, false);
        self.flow_level += 1;
        for (i, (key, value)) in pairs.iter().enumerate() {
            if i > 0 {
                self.write_indicator(",", false, false, false);
            }
            if self.column > BEST_WIDTH {
                self.write_indent();
            }
            if is_simple_key(key) {
                self.node(&GoValue::Str(key.clone()), true, true);
                self.write_indicator(":", false, false, false);
            } else {
                self.write_indicator("?", true, false, false);
                self.node(&GoValue::Str(key.clone()), true, false);
                if self.column > BEST_WIDTH {
                    self.write_indent();
                }
                self.write_indicator(":", true, false, false);
            }
            self.node(value, true, false);
        }
        self.flow_level -= 1;
        self.restore_indent();
        self.write_indicator("}", false, false, false);
    }

    fn scalar(&mut self, value: &str, requested: Style) {
        let analysis = Analysis::of(value);
        let style = self.select_style(value, requested, &analysis);
        self.increase_indent(true, false);
        let allow_breaks = !self.simple_key_context;
        match style {
            Style::Plain => self.write_plain(value, allow_breaks),
            Style::SingleQuoted => self.write_single_quoted(value, allow_breaks),
            Style::DoubleQuoted => self.write_double_quoted(value, allow_breaks),
            Style::Literal => self.write_literal(value),
        }
        self.restore_indent();
    }

    fn select_style(&self, value: &str, requested: Style, a: &Analysis) -> Style {
        let mut style = requested;
        if self.simple_key_context && a.multiline {
            style = Style::DoubleQuoted;
        }
        if style == Style::Plain {
            let plain_allowed = if self.flow_level > 0 {
                a.flow_plain_allowed
            } else {
                a.block_plain_allowed
            };
            if !plain_allowed || (value.is_empty() && (self.flow_level > 0 || self.simple_key_context)) {
                style = Style::SingleQuoted;
            }
        }
        if style == Style::SingleQuoted && !a.single_quoted_allowed {
            style = Style::DoubleQuoted;
        }
        if style == Style::Literal && (!a.block_allowed || self.flow_level > 0 || self.simple_key_context) {
            style = Style::DoubleQuoted;
        }
        style
    }

    fn put(&mut self, c: char) {
        self.out.push(c);
        self.column += 1;
    }

    fn put_break(&mut self) {
        self.out.push('\n');
        self.column = 0;
    }

    fn write_break(&mut self, c: char) {
        if c == '\n' {
            self.put_break();
        } else {
            self.out.push(c);
            self.column = 0;
        }
    }

    fn write_indent(&mut self) {
        let indent = self.indent.max(0) as usize;
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.put_break();
        }
        while self.column < indent {
            self.put(' ');
        }
        self.whitespace = true;
        self.indention = true;
    }

    fn write_indicator(&mut self, indicator: &str, need_whitespace: bool, is_whitespace: bool, is_indention: bool) {
        if need_whitespace && !self.whitespace {
            self.put(' ');
        }
        for c in indicator.chars() {
            self.put(c);
        }
        self.whitespace = is_whitespace;
        self.indention = self.indention && is_indention;
    }

    fn write_plain(&mut self, value: &str, allow_breaks: bool) {
        if !self.whitespace {
            self.put(' ');
        }
        let bytes = value.as_bytes();
        let mut spaces = false;
        let mut breaks = false;
        for (i, c) in value.char_indices() {
            if c == ' ' {
                if allow_breaks && !spaces && self.column > BEST_WIDTH && bytes.get(i + 1) != Some(&b' ') {
                    self.write_indent();
                } else {
                    self.put(c);
                }
                spaces = true;
            } else if is_break(c) {
                if !breaks && c == '\n' {
                    self.put_break();
                }
                self.write_break(c);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                self.put(c);
                self.indention = false;
                spaces = false;
                breaks = false;
            }
        }
        self.whitespace = false;
        self.indention = false;
    }

    fn write_single_quoted(&mut self, value: &str, allow_breaks: bool) {
        self.write_indicator("'", true, false, false);
        let bytes = value.as_bytes();
        let mut spaces = false;
        let mut breaks = false;
        for (i, c) in value.char_indices() {
            if c == ' ' {
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && i > 0
                    && i + 1 < bytes.len()
                    && bytes.get(i + 1) != Some(&b' ')
                {
                    self.write_indent();
                } else {
                    self.put(c);
                }
                spaces = true;
            } else if is_break(c) {
                if !breaks && c == '\n' {
                    self.put_break();
                }
                self.write_break(c);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                if c == '\'' {
                    self.put('\'');
                }
                self.put(c);
                self.indention = false;
                spaces = false;
                breaks = false;
            }
        }
        self.write_indicator("'", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_double_quoted(&mut self, value: &str, allow_breaks: bool) {
        self.write_indicator("\"", true, false, false);
        // libyaml tests the start of the whole value for a byte-order mark at every position.
        let starts_with_bom = value.starts_with('\u{FEFF}');
        let bytes = value.as_bytes();
        let mut spaces = false;
        for (i, c) in value.char_indices() {
            if !is_printable(c) || starts_with_bom || is_break(c) || c == '"' || c == '\\' {
                self.put('\\');
                self.write_escape(c);
                spaces = false;
            } else if c == ' ' {
                if allow_breaks && !spaces && self.column > BEST_WIDTH && i > 0 && i + 1 < bytes.len() {
                    self.write_indent();
                    if bytes.get(i + 1) == Some(&b' ') {
                        self.put('\\');
                    }
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                self.put(c);
                spaces = false;
            }
        }
        self.write_indicator("\"", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_escape(&mut self, c: char) {
        let short = match c {
            '\0' => Some('0'),
            '\u{7}' => Some('a'),
            '\u{8}' => Some('b'),
            '\t' => Some('t'),
            '\n' => Some('n'),
            '\u{b}' => Some('v'),
            '\u{c}' => Some('f'),
            '\r' => Some('r'),
            '\u{1b}' => Some('e'),
            '"' => Some('"'),
            '\\' => Some('\\'),
            '\u{85}' => Some('N'),
            '\u{a0}' => Some('_'),
            '\u{2028}' => Some('L'),
            '\u{2029}' => Some('P'),
            _ => None,
        };
        if let Some(short) = short {
            self.put(short);
            return;
        }
        let code = u32::from(c);
        let (prefix, digits) = match code {
            0..=0xFF => ('x', 2),
            0x100..=0xFFFF => ('u', 4),
            _ => ('U', 8),
        };
        self.put(prefix);
        for k in (0..digits).rev() {
            let digit = (code >> (4 * k)) & 0xF;
            self.put(char::from_digit(digit, 16).map_or('0', |d| d.to_ascii_uppercase()));
        }
    }

    fn write_literal(&mut self, value: &str) {
        self.write_indicator("|", true, false, false);
        self.write_block_hints(value);
        self.put_break();
        self.indention = true;
        self.whitespace = true;
        let mut breaks = true;
        for c in value.chars() {
            if is_break(c) {
                self.write_break(c);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                self.put(c);
                self.indention = false;
                breaks = false;
            }
        }
    }

    /// The indentation hint (when the text starts with a space or line break) and the chomping
    /// indicator: `-` without a final line break, `+` with more than one.
    fn write_block_hints(&mut self, value: &str) {
        if value.starts_with(|c: char| c == ' ' || is_break(c)) {
            self.write_indicator("2", false, false, false);
        }
        let mut tail = value.chars().rev();
        let chomp = match (tail.next(), tail.next()) {
            (None, _) => Some("-"),
            (Some(last), _) if !is_break(last) => Some("-"),
            (Some(_), None) => Some("+"),
            (Some(_), Some(before)) if is_break(before) => Some("+"),
            _ => None,
        };
        if let Some(chomp) = chomp {
            self.write_indicator(chomp, false, false, false);
        }
    }
}

/// yaml.v2's choice for a string: literal when it has a newline, plain when it reads back as the
/// same string, double-quoted otherwise (the emitter may still fall back from plain).
fn string_style(s: &str) -> Style {
    if s.contains('\n') {
        Style::Literal
    } else if resolve_plain(s, Dialect::V2) == Resolved::Str && !is_base60_float(s) {
        Style::Plain
    } else {
        Style::DoubleQuoted
    }
}

fn is_simple_key(key: &str) -> bool {
    !Analysis::of(key).multiline && key.len() <= 128
}

fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// libyaml's printable set (for UTF-8 output): no C0/C1 controls except newline, no surrogates, no
/// BOM, nothing outside the Basic Multilingual Plane.
fn is_printable(c: char) -> bool {
    matches!(c, '\n' | ' '..='~' | '\u{A0}'..='\u{D7FF}') || (('\u{E000}'..='\u{FFFD}').contains(&c) && c != '\u{FEFF}')
}

/// Which styles can hold a scalar.
struct Analysis {
    multiline: bool,
    flow_plain_allowed: bool,
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
    block_allowed: bool,
}

impl Analysis {
    fn of(value: &str) -> Analysis {
        if value.is_empty() {
            return Analysis {
                multiline: false,
                flow_plain_allowed: false,
                block_plain_allowed: true,
                single_quoted_allowed: true,
                block_allowed: false,
            };
        }
        let mut flow_indicators = false;
        let mut block_indicators = false;
        if value.starts_with("---") || value.starts_with("...") {
            flow_indicators = true;
            block_indicators = true;
        }
        let mut line_breaks = false;
        let mut special_characters = false;
        let mut leading_space = false;
        let mut leading_break = false;
        let mut trailing_space = false;
        let mut trailing_break = false;
        let mut break_space = false;
        let mut space_break = false;
        let mut preceded_by_whitespace = true;
        let mut previous_space = false;
        let mut previous_break = false;

        let chars: Vec<char> = value.chars().collect();
        for (k, &c) in chars.iter().enumerate() {
            let first = k == 0;
            let last = k + 1 == chars.len();
            let followed_by_whitespace = chars.get(k + 1).is_none_or(|&n| is_blank(n));
            if first {
                match c {
                    '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"' | '%' | '@' | '`' => {
                        flow_indicators = true;
                        block_indicators = true;
                    }
                    '?' | ':' => {
                        flow_indicators = true;
                        block_indicators |= followed_by_whitespace;
                    }
                    '-' if followed_by_whitespace => {
                        flow_indicators = true;
                        block_indicators = true;
                    }
                    _ => {}
                }
            } else {
                match c {
                    ',' | '?' | '[' | ']' | '{' | '}' => flow_indicators = true,
                    ':' => {
                        flow_indicators = true;
                        block_indicators |= followed_by_whitespace;
                    }
                    '#' if preceded_by_whitespace => {
                        flow_indicators = true;
                        block_indicators = true;
                    }
                    _ => {}
                }
            }
            if !is_printable(c) {
                special_characters = true;
            }
            if c == ' ' {
                leading_space |= first;
                trailing_space |= last;
                break_space |= previous_break;
                previous_space = true;
                previous_break = false;
            } else if is_break(c) {
                line_breaks = true;
                leading_break |= first;
                trailing_break |= last;
                space_break |= previous_space;
                previous_space = false;
                previous_break = true;
            } else {
                previous_space = false;
                previous_break = false;
            }
            preceded_by_whitespace = is_blank(c) || is_break(c) || c == '\0';
        }

        let mut a = Analysis {
            multiline: line_breaks,
            flow_plain_allowed: true,
            block_plain_allowed: true,
            single_quoted_allowed: true,
            block_allowed: true,
        };
        if leading_space || leading_break || trailing_space || trailing_break {
            a.flow_plain_allowed = false;
            a.block_plain_allowed = false;
        }
        if trailing_space {
            a.block_allowed = false;
        }
        if break_space {
            a.flow_plain_allowed = false;
            a.block_plain_allowed = false;
            a.single_quoted_allowed = false;
        }
        if space_break || special_characters {
            a.flow_plain_allowed = false;
            a.block_plain_allowed = false;
            a.single_quoted_allowed = false;
            a.block_allowed = false;
        }
        if line_breaks {
            a.flow_plain_allowed = false;
            a.block_plain_allowed = false;
        }
        if flow_indicators {
            a.flow_plain_allowed = false;
        }
        if block_indicators {
            a.block_plain_allowed = false;
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> GoValue {
        GoValue::Str(text.to_string())
    }

    fn map(pairs: &[(&str, GoValue)]) -> GoValue {
        GoValue::Map(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    fn value_of(v: GoValue) -> String {
        marshal(&map(&[("k", v)]))
    }

    #[test]
    fn nesting_matches_yaml_v2() {
        let doc = map(&[
            ("kernel", map(&[("image", s(""))])),
            ("init", GoValue::Seq(vec![])),
            (
                "onboot",
                GoValue::Seq(vec![map(&[
                    ("name", s("a")),
                    ("command", GoValue::Seq(vec![s("-1"), s("x")])),
                    ("rdma", map(&[])),
                    ("memory", map(&[("limit", GoValue::Int(5)), ("swap", GoValue::Null)])),
                ])]),
            ),
            ("nested", GoValue::Seq(vec![GoValue::Seq(vec![s("a"), s("b")])])),
        ]);
        assert_eq!(
            marshal(&doc),
            "kernel:\n  image: \"\"\ninit: []\nonboot:\n- name: a\n  command:\n  - \"-1\"\n  - x\n  rdma: {}\n  memory:\n    limit: 5\n    swap: null\nnested:\n- - a\n  - b\n"
        );
    }

    #[test]
    fn strings_are_quoted_only_when_needed() {
        assert_eq!(value_of(s("yes")), "k: \"yes\"\n");
        assert_eq!(value_of(s("0644")), "k: \"0644\"\n");
        assert_eq!(value_of(s("1:20")), "k: \"1:20\"\n");
        assert_eq!(value_of(s("2001-12-14")), "k: \"2001-12-14\"\n");
        assert_eq!(value_of(s("a: b")), "k: 'a: b'\n");
        assert_eq!(value_of(s("it's: x")), "k: 'it''s: x'\n");
        assert_eq!(value_of(s("#x")), "k: '#x'\n");
        assert_eq!(value_of(s("a #x")), "k: 'a #x'\n");
        assert_eq!(value_of(s("a#x")), "k: a#x\n");
        assert_eq!(value_of(s(" lead")), "k: ' lead'\n");
        assert_eq!(value_of(s("tab\there")), "k: \"tab\\there\"\n");
        assert_eq!(value_of(s("emoji 😀")), "k: \"emoji \\U0001F600\"\n");
        assert_eq!(value_of(s("é")), "k: é\n");
        assert_eq!(value_of(s("-")), "k: '-'\n");
        assert_eq!(value_of(s("console=ttyS0")), "k: console=ttyS0\n");
        assert_eq!(value_of(s("<<")), "k: <<\n");
    }

    #[test]
    fn multiline_strings_are_literal_blocks() {
        assert_eq!(value_of(s("a\nb\n")), "k: |\n  a\n  b\n");
        assert_eq!(value_of(s("a\nb")), "k: |-\n  a\n  b\n");
        assert_eq!(value_of(s("a\n\n")), "k: |+\n  a\n\n");
        assert_eq!(value_of(s(" a\n")), "k: |2\n   a\n");
        assert_eq!(value_of(s("a \nb")), "k: \"a \\nb\"\n");
        assert_eq!(marshal(&GoValue::Seq(vec![s("x\ny\n")])), "- |\n  x\n  y\n");
    }

    #[test]
    fn long_strings_fold_past_column_80() {
        let words = vec!["word"; 30].join(" ");
        let out = value_of(s(&words));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].len() > 80 && lines[0].len() <= 86, "{out}");
        assert!(lines[1].starts_with("  word"), "{out}");
        let quoted = format!("'{words}");
        let out = value_of(s(&quoted));
        assert!(out.starts_with("k: '''word"), "{out}");
        assert_eq!(out.lines().count(), 2, "{out}");
    }

    #[test]
    fn awkward_keys() {
        assert_eq!(
            marshal(&map(&[("a\nb", s("v")), ("", s("w")), ("yes", s("x"))])),
            "? |-\n  a\n  b\n: v\n\"\": w\n\"yes\": x\n"
        );
    }
}
