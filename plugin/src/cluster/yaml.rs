//! A cluster file's YAML as a tree of nodes that remember where they were written, so that every
//! problem names its line and column, and an inline spec can be handed to the builder as the text
//! the user wrote (its errors then point into the cluster file).
//!
//! Deliberately small: one document, no aliases (a cluster file has nothing to repeat that a
//! spec path does not say), a key written twice is an error. Scalars keep their text and whether
//! they were plain, which is all that deciding their JSON type needs.

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based line and column, and the character offset (0-based) in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Mark {
    pub line: usize,
    pub column: usize,
    index: usize,
}

impl Mark {
    fn from_marker(marker: &Marker) -> Mark {
        Mark {
            line: marker.line(),
            column: marker.col() + 1,
            index: marker.index(),
        }
    }
}

/// A problem with the YAML itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct YamlError {
    pub mark: Mark,
    pub message: String,
}

/// A node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Node {
    pub mark: Mark,
    pub value: Value,
    /// For a mapping: the characters it spans (start, end), from its first key (or `{`) to
    /// where the next thing begins.
    span: Option<(usize, usize)>,
}

/// The kinds of node.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    /// Its text, and whether it was written plain (unquoted, not a block scalar).
    Scalar(String, bool),
    Seq(Vec<Node>),
    /// Pairs in document order.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The text of a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(text, _) => Some(text),
            _ => None,
        }
    }

    /// Whether this is a null (`~`, `null`, or nothing at all).
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar(text, true) if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// What a user calls this kind of node, for errors.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Scalar(..) if self.is_null() => "nothing",
            Value::Scalar(..) => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The node as JSON, scalars typed by YAML 1.2's core schema: plain `null`/`~`/empty,
    /// `true`/`false`, integers and floats; everything else a string.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as Json;
        match &self.value {
            Value::Scalar(_, true) if self.is_null() => Json::Null,
            Value::Scalar(text, true) => plain_json(text),
            Value::Scalar(text, false) => Json::String(text.clone()),
            Value::Seq(items) => Json::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(pairs) => Json::Object(
                pairs
                    .iter()
                    .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// A mapping's text in `source` (the text this node was parsed from), preceded by as many
    /// line breaks and spaces as put it back at its line and column: parsed on its own, it is
    /// the same mapping, and positions in it are positions in `source`.
    pub fn mapping_text(&self, source: &str) -> Option<String> {
        let (start, end) = self.span?;
        let byte = |chars: usize| source.char_indices().nth(chars).map_or(source.len(), |(b, _)| b);
        let body = source.get(byte(start)..byte(end))?;
        Some(format!(
            "{}{}{body}\n",
            "\n".repeat(self.mark.line.saturating_sub(1)),
            " ".repeat(self.mark.column.saturating_sub(1))
        ))
    }
}

/// A plain scalar's JSON value.
fn plain_json(text: &str) -> serde_json::Value {
    use serde_json::Value as Json;
    match text {
        "true" | "True" | "TRUE" => return Json::Bool(true),
        "false" | "False" | "FALSE" => return Json::Bool(false),
        _ => {}
    }
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let integer = if let Some(hex) = digits.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()
    } else if let Some(octal) = digits.strip_prefix("0o") {
        i64::from_str_radix(octal, 8).ok()
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse::<i64>().ok()
    } else {
        None
    };
    if let Some(n) = integer {
        return Json::from(if negative { -n } else { n });
    }
    let looks_numeric = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        && text.bytes().any(|b| b.is_ascii_digit());
    match text.parse::<f64>() {
        Ok(f) if looks_numeric => serde_json::Number::from_f64(f).map_or(Json::String(text.to_string()), Json::Number),
        _ => Json::String(text.to_string()),
    }
}

/// A collection being read.
struct Open {
    mark: Mark,
    is_map: bool,
    /// Whether it is written in flow style (`{...}`, `[...]`).
    flow: bool,
    items: Vec<Node>,
}

/// The deepest nesting taken (as the builder's specs): a tree is dropped by recursion, and a
/// hostile file must not exhaust the stack (the YAML scanner limits flow nesting only).
const MAX_DEPTH: usize = 128;

/// Parses the one document of `text`; `Ok(None)` when there is none (empty or comments only).
pub(super) fn parse(text: &str) -> Result<Option<Node>, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut next = || {
        parser
            .next_token()
            .map(|(event, marker)| (event, Mark::from_marker(&marker)))
            .map_err(|e| YamlError {
                mark: Mark::from_marker(e.marker()),
                message: e.info().to_string(),
            })
    };
    loop {
        match next()? {
            (Event::StreamEnd, _) => return Ok(None),
            (Event::DocumentStart, _) => break,
            _ => {}
        }
    }
    let chars: Vec<char> = text.chars().collect();
    let mut stack: Vec<Open> = Vec::new();
    let root = loop {
        let (event, mark) = next()?;
        let finished = match event {
            Event::Scalar(text, style, _, _) => Some(Node {
                mark,
                value: Value::Scalar(text, style == TScalarStyle::Plain),
                span: None,
            }),
            Event::Alias(_) => {
                return Err(YamlError {
                    mark,
                    message: "aliases (*NAME) are not supported in a cluster file: write the value out".into(),
                })
            }
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(YamlError {
                        mark,
                        message: format!("nesting is deeper than {MAX_DEPTH} levels"),
                    });
                }
                let is_map = matches!(event, Event::MappingStart(..));
                let opener = if is_map { '{' } else { '[' };
                stack.push(Open {
                    mark,
                    is_map,
                    flow: chars.get(mark.index) == Some(&opener),
                    items: Vec::new(),
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(open) => Some(close(open, mark)?),
                None => {
                    return Err(YamlError {
                        mark,
                        message: "unbalanced end of a collection".into(),
                    })
                }
            },
            Event::DocumentEnd | Event::StreamEnd => {
                return Err(YamlError {
                    mark,
                    message: "the document ended before its content".into(),
                })
            }
            _ => None,
        };
        if let Some(node) = finished {
            match stack.last_mut() {
                Some(parent) => parent.items.push(node),
                None => break node,
            }
        }
    };
    loop {
        match next()? {
            (Event::StreamEnd, _) => return Ok(Some(root)),
            (Event::DocumentEnd, _) => {}
            (_, mark) => {
                return Err(YamlError {
                    mark,
                    message: "a cluster file is one YAML document: remove what follows `---`".into(),
                })
            }
        }
    }
}

/// The node of a finished collection; `end` is where its end was seen.
fn close(open: Open, end: Mark) -> Result<Node, YamlError> {
    if !open.is_map {
        return Ok(Node {
            mark: open.mark,
            value: Value::Seq(open.items),
            span: None,
        });
    }
    // A block mapping starts at its first key (the parser marks it after that key); a flow one
    // at its `{` and ends after its `}`.
    let mark = match (open.flow, open.items.first()) {
        (false, Some(first)) => first.mark,
        _ => open.mark,
    };
    let end = if open.flow { end.index + 1 } else { end.index };
    let mut pairs: Vec<(Node, Node)> = Vec::new();
    let mut items = open.items.into_iter();
    while let (Some(key), Some(value)) = (items.next(), items.next()) {
        let Some(name) = key.as_str() else {
            return Err(YamlError {
                mark: key.mark,
                message: format!("a key must be a scalar, not {}", key.kind()),
            });
        };
        if pairs.iter().any(|(k, _)| k.as_str() == Some(name)) {
            return Err(YamlError {
                mark: key.mark,
                message: format!("{name:?} is written twice in this mapping"),
            });
        }
        pairs.push((key, value));
    }
    Ok(Node {
        mark,
        value: Value::Map(pairs),
        span: Some((mark.index, end)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn root(text: &str) -> Node {
        parse(text).unwrap().unwrap()
    }

    fn field<'a>(node: &'a Node, name: &str) -> &'a Node {
        let Value::Map(pairs) = &node.value else {
            panic!("not a mapping")
        };
        &pairs.iter().find(|(k, _)| k.as_str() == Some(name)).unwrap().1
    }

    #[test]
    fn deep_nesting_is_refused_before_it_can_exhaust_the_stack() {
        let block = |depth: usize| format!("{}1\n", "- ".repeat(depth));
        assert!(parse(&block(MAX_DEPTH)).is_ok());
        for hostile in [block(MAX_DEPTH + 1), block(100_000)] {
            let err = parse(&hostile).unwrap_err();
            assert!(
                err.message.contains("nesting is deeper than 128 levels"),
                "{}",
                err.message
            );
        }
        let flow = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        assert!(parse(&flow(100_000)).is_err());
    }

    #[test]
    fn positions_are_one_based_and_scalars_typed_as_yaml_1_2() {
        let doc = root("a: 1\nb:\n  c: [true, '2', 0x10, -3, 1.5, ~, x, 1e3, 1.2.3]\n");
        assert_eq!((field(&doc, "b").mark.line, field(&doc, "b").mark.column), (3, 3));
        assert_eq!(
            doc.to_json(),
            json!({"a": 1, "b": {"c": [true, "2", 16, -3, 1.5, null, "x", 1000.0, "1.2.3"]}})
        );
        assert!(parse("# nothing\n").unwrap().is_none());
    }

    #[test]
    fn mapping_text_parses_back_to_the_same_mapping_at_the_same_place() {
        let text = "groups:\n  a:\n    spec:\n      kernel:\n        image: x  # why\n      init: [i]\n\n    size: 2\n  b:\n    spec: {kernel: {image: y}, init: [j]}\n    size: 1\n";
        let doc = root(text);
        for group in ["a", "b"] {
            let spec = field(field(field(&doc, "groups"), group), "spec");
            let alone = spec.mapping_text(text).unwrap();
            let reparsed = root(&alone);
            assert_eq!(reparsed.to_json(), spec.to_json(), "{alone:?}");
            assert_eq!(
                reparsed.mark,
                Mark {
                    index: reparsed.mark.index,
                    ..spec.mark
                }
            );
            assert_eq!(
                field(&reparsed, "init").mark.line,
                field(spec, "init").mark.line,
                "{alone:?}"
            );
        }
    }

    #[test]
    fn refused() {
        for (text, line, message) in [
            ("a: 1\na: 2\n", 2, "\"a\" is written twice in this mapping"),
            ("a: &x 1\nb: *x\n", 2, "aliases (*NAME) are not supported"),
            ("a: 1\n---\nb: 2\n", 2, "a cluster file is one YAML document"),
            ("a: [1\n", 2, ""),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.mark.line, line, "{text:?}: {e:?}");
            assert!(e.message.starts_with(message), "{text:?}: {e:?}");
        }
    }
}
