//! A YAML document as a tree of nodes that remember where they were written.
//!
//! Built from yaml-rust2's marked events, with the decoding rules of gopkg.in/yaml.v3 (what LinuxKit
//! uses): only the first document counts, scalars resolve as in [`super::goscalar`] (YAML 1.2 booleans,
//! Go integer syntax so `0644` is 420), aliases are expanded, merge keys `<<` take a mapping or a list of
//! mappings whose keys never override the mapping's own, and a key written twice is an error.
//!
//! LinuxKit never reads past the first document, so whatever follows it is silently ignored, even
//! text that is not YAML. Here a later document must be empty (`---` alone, `~`): one with content
//! or with a syntax error is reported at its position.
//!
//! The tree is bounded in depth, in nodes and in scalar bytes, counted with the copies that anchors and
//! aliases make, so that a small document cannot expand into gigabytes ("billion laughs", one long
//! string aliased many times, or anchors nested around one long string).

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::goscalar::{resolve_plain, Dialect, Resolved};

/// Nesting deeper than this is refused rather than risking the stack of later recursive passes.
const MAX_DEPTH: usize = 128;
/// At most this many nodes per document, copies for anchors and aliases included. LinuxKit's largest
/// examples have a few hundred.
pub(crate) const MAX_NODES: usize = 200_000;
/// At most this many bytes of scalar text per document, copies for anchors and aliases included.
/// Without them a document's scalars are never longer than its text, so a spec within
/// `MAX_SPEC_BYTES` reaches this only through anchors and aliases.
pub(crate) const MAX_SCALAR_BYTES: usize = 4 * super::MAX_SPEC_BYTES as usize;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub(crate) struct Mark {
    pub line: usize,
    pub column: usize,
}

impl Mark {
    fn from_marker(marker: &Marker) -> Mark {
        Mark {
            line: marker.line(),
            column: marker.col() + 1,
        }
    }
}

/// A problem found while reading the YAML itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct YamlError {
    pub mark: Mark,
    pub message: String,
}

/// A node with its position.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub mark: Mark,
    pub value: Value,
}

/// The three kinds of YAML node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Pairs in document order, merge keys already applied.
    Map(Vec<(Node, Node)>),
}

/// A scalar: its text and what it means.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scalar {
    pub text: String,
    pub kind: ScalarKind,
}

/// What a scalar decodes to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ScalarKind {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    /// A string: quoted, block, tagged `!!str`, or plain text that is nothing else.
    Str,
    /// A plain (or `!!merge`) `<<`: the merge key when it is a key, the string `<<` as a value.
    Merge,
}

impl Node {
    /// The text of a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(Scalar {
                text,
                kind: ScalarKind::Str | ScalarKind::Merge,
            }) => Some(text),
            _ => None,
        }
    }

    /// The JSON-schema type name of this node, as gojsonschema names it.
    pub fn json_type(&self) -> JsonType {
        match &self.value {
            Value::Seq(_) => JsonType::Array,
            Value::Map(_) => JsonType::Object,
            Value::Scalar(s) => match s.kind {
                ScalarKind::Null => JsonType::Null,
                ScalarKind::Bool(_) => JsonType::Boolean,
                ScalarKind::Int(_) => JsonType::Integer,
                // Go marshals an integral float without a fraction, so the schema sees an integer.
                ScalarKind::Float(f) if f.is_finite() && f.fract() == 0.0 => JsonType::Integer,
                ScalarKind::Float(_) => JsonType::Number,
                ScalarKind::Str | ScalarKind::Merge => JsonType::String,
            },
        }
    }

    /// The integer value of an integer (or integral float) scalar.
    pub fn as_int(&self) -> Option<i128> {
        match &self.value {
            Value::Scalar(s) => match s.kind {
                ScalarKind::Int(i) => Some(i),
                ScalarKind::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e38 => Some(f as i128),
                _ => None,
            },
            _ => None,
        }
    }
}

/// JSON value types, for schema checks and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonType {
    Null,
    Boolean,
    Integer,
    Number,
    String,
    Array,
    Object,
}

impl JsonType {
    /// gojsonschema's name.
    pub fn schema_name(self) -> &'static str {
        match self {
            JsonType::Null => "null",
            JsonType::Boolean => "boolean",
            JsonType::Integer => "integer",
            JsonType::Number => "number",
            JsonType::String => "string",
            JsonType::Array => "array",
            JsonType::Object => "object",
        }
    }

    /// A name for our messages, with its article.
    pub fn described(self) -> &'static str {
        match self {
            JsonType::Null => "null",
            JsonType::Boolean => "a boolean",
            JsonType::Integer => "an integer",
            JsonType::Number => "a number",
            JsonType::String => "a string",
            JsonType::Array => "a list",
            JsonType::Object => "a mapping",
        }
    }
}

/// Parses the first document of `text`; `Ok(None)` when there is none (empty or comments only).
/// Later documents must be empty.
pub(crate) fn parse(text: &str) -> Result<Option<Node>, YamlError> {
    let mut builder = Builder {
        parser: Parser::new_from_str(text),
        stack: Vec::new(),
        anchors: HashMap::new(),
        budget: Budget::default(),
    };
    let first = builder.document()?;
    if first.is_some() {
        builder.no_more_documents()?;
    }
    Ok(first)
}

/// How much a node holds: itself and its descendants, and their scalars' bytes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Size {
    pub nodes: usize,
    pub bytes: usize,
}

impl Size {
    pub fn of(node: &Node) -> Size {
        match &node.value {
            Value::Scalar(s) => Size {
                nodes: 1,
                bytes: s.text.len(),
            },
            Value::Seq(items) => items.iter().fold(Size::scalar_free(), |acc, n| acc.plus(Size::of(n))),
            Value::Map(pairs) => pairs.iter().fold(Size::scalar_free(), |acc, (k, v)| {
                acc.plus(Size::of(k)).plus(Size::of(v))
            }),
        }
    }

    /// A collection node by itself.
    fn scalar_free() -> Size {
        Size { nodes: 1, bytes: 0 }
    }

    fn plus(self, other: Size) -> Size {
        Size {
            nodes: self.nodes.saturating_add(other.nodes),
            bytes: self.bytes.saturating_add(other.bytes),
        }
    }
}

/// What the document has used of its limits so far.
#[derive(Debug, Default)]
struct Budget {
    /// Everything built so far, copies included.
    total: Size,
    /// The part of `total` that are copies made for anchors and aliases.
    copied: Size,
}

impl Budget {
    /// Adds `added`; fails once a limit is passed, saying whether copies are to blame.
    fn spend(&mut self, added: Size, copy: bool, mark: Mark) -> Result<(), YamlError> {
        self.total = self.total.plus(added);
        if copy {
            self.copied = self.copied.plus(added);
        }
        let too_many = if self.total.nodes > MAX_NODES {
            format!("{MAX_NODES} nodes (keys, values, lists and mappings)")
        } else if self.total.bytes > MAX_SCALAR_BYTES {
            format!("{MAX_SCALAR_BYTES} bytes of text in its keys and values")
        } else {
            return Ok(());
        };
        let message = if self.copied.nodes > 0 {
            format!(
                "the document grows to more than {too_many} with the copies its anchors and aliases \
                 make ({} nodes and {} bytes are copies): anchor smaller values, or alias them fewer times",
                self.copied.nodes, self.copied.bytes
            )
        } else {
            format!("the document has more than {too_many}: split it into several spec files")
        };
        Err(YamlError { mark, message })
    }
}

/// An unfinished sequence or mapping.
struct Open {
    mark: Mark,
    anchor: usize,
    is_map: bool,
    items: Vec<Node>,
}

struct Builder<'a> {
    parser: Parser<std::str::Chars<'a>>,
    stack: Vec<Open>,
    /// Finished anchored nodes by anchor id, with their size.
    anchors: HashMap<usize, (Node, Size)>,
    budget: Budget,
}

impl Builder<'_> {
    fn next(&mut self) -> Result<(Event, Mark), YamlError> {
        self.parser
            .next_token()
            .map(|(event, marker)| (event, Mark::from_marker(&marker)))
            .map_err(|e| YamlError {
                mark: Mark::from_marker(e.marker()),
                message: e.info().to_string(),
            })
    }

    fn document(&mut self) -> Result<Option<Node>, YamlError> {
        loop {
            match self.next()? {
                (Event::StreamEnd, _) => return Ok(None),
                (Event::DocumentStart, _) => break,
                _ => {}
            }
        }
        loop {
            let (event, mark) = self.next()?;
            let finished = match event {
                Event::DocumentEnd | Event::StreamEnd => {
                    return Err(YamlError {
                        mark,
                        message: "document ended before its content".into(),
                    })
                }
                Event::Scalar(text, style, anchor, tag) => {
                    let size = Size {
                        nodes: 1,
                        bytes: text.len(),
                    };
                    self.budget.spend(size, false, mark)?;
                    let node = Node {
                        mark,
                        value: Value::Scalar(scalar(text, style, tag.as_ref(), mark)?),
                    };
                    self.remember(anchor, &node, mark)?;
                    Some(node)
                }
                Event::Alias(id) => {
                    let node = self.alias(id, mark)?;
                    Some(node)
                }
                Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                    if self.stack.len() >= MAX_DEPTH {
                        return Err(YamlError {
                            mark,
                            message: format!("nesting is deeper than {MAX_DEPTH} levels"),
                        });
                    }
                    self.stack.push(Open {
                        mark,
                        anchor,
                        is_map: matches!(event, Event::MappingStart(..)),
                        items: Vec::new(),
                    });
                    None
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let Some(open) = self.stack.pop() else {
                        return Err(YamlError {
                            mark,
                            message: "unbalanced collection end".into(),
                        });
                    };
                    let anchor = open.anchor;
                    let node = close(open)?;
                    self.budget.spend(Size::scalar_free(), false, mark)?;
                    self.remember(anchor, &node, mark)?;
                    Some(node)
                }
                _ => None,
            };
            if let Some(node) = finished {
                match self.stack.last_mut() {
                    Some(parent) => parent.items.push(node),
                    None => return Ok(Some(node)),
                }
            }
        }
    }

    /// Records a copy of a finished anchored node for later aliases. The copy counts: nested
    /// anchors copy the same text once per level.
    fn remember(&mut self, anchor: usize, node: &Node, mark: Mark) -> Result<(), YamlError> {
        if anchor != 0 {
            let size = Size::of(node);
            self.budget.spend(size, true, mark)?;
            self.anchors.insert(anchor, (node.clone(), size));
        }
        Ok(())
    }

    /// A copy of the anchored node, counted before it is made.
    fn alias(&mut self, id: usize, mark: Mark) -> Result<Node, YamlError> {
        let Some((node, size)) = self.anchors.get(&id) else {
            return Err(YamlError {
                mark,
                message: "alias refers to an anchor whose value contains the alias itself".into(),
            });
        };
        self.budget.spend(*size, true, mark)?;
        Ok(node.clone())
    }

    /// After the first document: only empty documents may follow (LinuxKit would ignore anything
    /// there, so it is a mistake either way).
    fn no_more_documents(&mut self) -> Result<(), YamlError> {
        let mut start = Mark::default();
        loop {
            let (event, mark) = self.next()?;
            match event {
                Event::StreamEnd => return Ok(()),
                Event::DocumentStart => start = mark,
                Event::DocumentEnd => {}
                Event::Scalar(text, TScalarStyle::Plain, 0, None)
                    if resolve_plain(&text, Dialect::V3) == Resolved::Null => {}
                _ => {
                    return Err(YamlError {
                        mark: start,
                        message: "a spec file holds one YAML document, but another one starts here \
                                  (LinuxKit would silently ignore it): merge it into the first, or \
                                  give it as a spec file of its own"
                            .into(),
                    })
                }
            }
        }
    }
}

fn close(open: Open) -> Result<Node, YamlError> {
    // yaml-rust2 marks a block mapping one character into its first key; the key's own mark is where
    // the mapping visibly starts.
    let mark = match (open.is_map, open.items.first()) {
        (true, Some(first_key)) => first_key.mark.min(open.mark),
        _ => open.mark,
    };
    let value = if open.is_map {
        Value::Map(build_map(open.items)?)
    } else {
        Value::Seq(open.items)
    };
    Ok(Node { mark, value })
}

/// Turns alternating keys and values into pairs: rejects repeated keys, applies the merge key.
fn build_map(items: Vec<Node>) -> Result<Vec<(Node, Node)>, YamlError> {
    let mut pairs: Vec<(Node, Node)> = Vec::with_capacity(items.len() / 2);
    let mut merge: Option<Node> = None;
    let mut seen: HashMap<KeyId, Mark> = HashMap::new();
    let mut items = items.into_iter();
    while let (Some(key), Some(value)) = (items.next(), items.next()) {
        let id = KeyId::of(&key);
        if let Some(first) = seen.get(&id) {
            return Err(YamlError {
                mark: key.mark,
                message: format!(
                    "mapping key {} already defined at line {}",
                    describe_key(&key),
                    first.line
                ),
            });
        }
        seen.insert(id, key.mark);
        if is_merge_key(&key) {
            merge = Some(value);
        } else {
            pairs.push((key, value));
        }
    }
    if let Some(merge) = merge {
        apply_merge(&mut pairs, merge)?;
    }
    Ok(pairs)
}

/// Adds the pairs of the merged mapping(s) whose keys are not already present; earlier mappings of a
/// merge list win over later ones, as in yaml.v3.
fn apply_merge(pairs: &mut Vec<(Node, Node)>, merge: Node) -> Result<(), YamlError> {
    let not_a_map = |mark| YamlError {
        mark,
        message: "map merge requires a mapping or a list of mappings as the value".into(),
    };
    let sources: Vec<Node> = match merge.value {
        Value::Map(_) => vec![merge],
        Value::Seq(items) => items,
        Value::Scalar(_) => return Err(not_a_map(merge.mark)),
    };
    let mut present: std::collections::HashSet<KeyId> = pairs.iter().map(|(k, _)| KeyId::of(k)).collect();
    for source in sources {
        let Value::Map(source_pairs) = source.value else {
            return Err(not_a_map(source.mark));
        };
        for (key, value) in source_pairs {
            if present.insert(KeyId::of(&key)) {
                pairs.push((key, value));
            }
        }
    }
    Ok(())
}

fn is_merge_key(node: &Node) -> bool {
    matches!(&node.value, Value::Scalar(s) if s.kind == ScalarKind::Merge)
}

fn describe_key(node: &Node) -> String {
    match &node.value {
        Value::Scalar(s) => format!("{:?}", s.text),
        Value::Seq(_) => "(a list)".into(),
        Value::Map(_) => "(a mapping)".into(),
    }
}

/// Identity of a mapping key: yaml.v3 compares keys by kind and text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum KeyId {
    Scalar(String),
    Other(String),
}

impl KeyId {
    fn of(node: &Node) -> KeyId {
        match &node.value {
            Value::Scalar(s) => KeyId::Scalar(s.text.clone()),
            other => KeyId::Other(format!("{other:?}")),
        }
    }
}

/// Resolves one scalar event as yaml.v3 does.
fn scalar(text: String, style: TScalarStyle, tag: Option<&Tag>, mark: Mark) -> Result<Scalar, YamlError> {
    let plain = matches!(style, TScalarStyle::Plain);
    let kind = match tag.map(short_tag).as_deref() {
        None if !plain => ScalarKind::Str,
        None if text == "<<" => ScalarKind::Merge,
        None => kind_of(resolve_plain(&text, Dialect::V3)),
        Some("!!str") | Some("!") => ScalarKind::Str,
        Some("!!merge") if text == "<<" => ScalarKind::Merge,
        Some(explicit @ ("!!int" | "!!bool" | "!!float" | "!!null" | "!!timestamp")) => tagged(&text, explicit, mark)?,
        Some("!!binary") => {
            return Err(YamlError {
                mark,
                message: "!!binary values are not supported in a spec".into(),
            })
        }
        // Unknown tags leave the text as a string, as yaml.v3 does for an interface{} target.
        Some(_) => ScalarKind::Str,
    };
    Ok(Scalar { text, kind })
}

fn kind_of(resolved: Resolved) -> ScalarKind {
    match resolved {
        Resolved::Null => ScalarKind::Null,
        Resolved::Bool(b) => ScalarKind::Bool(b),
        Resolved::Int(i) => ScalarKind::Int(i),
        Resolved::Float(f) => ScalarKind::Float(f),
        Resolved::Timestamp | Resolved::Str => ScalarKind::Str,
    }
}

/// An explicitly tagged scalar must resolve to its tag (`!!float` also takes integers).
fn tagged(text: &str, tag: &str, mark: Mark) -> Result<ScalarKind, YamlError> {
    let resolved = resolve_plain(text, Dialect::V3);
    let kind = match (tag, resolved) {
        ("!!int", Resolved::Int(i)) => ScalarKind::Int(i),
        ("!!bool", Resolved::Bool(b)) => ScalarKind::Bool(b),
        ("!!float", Resolved::Float(f)) => ScalarKind::Float(f),
        ("!!float", Resolved::Int(i)) => ScalarKind::Float(i as f64),
        ("!!null", Resolved::Null) => ScalarKind::Null,
        ("!!timestamp", Resolved::Timestamp) => ScalarKind::Str,
        _ => {
            return Err(YamlError {
                mark,
                message: format!("cannot decode {text:?} as {tag}"),
            })
        }
    };
    Ok(kind)
}

/// `!!str` for the YAML core tags, the written form otherwise.
fn short_tag(tag: &Tag) -> String {
    if tag.handle == "tag:yaml.org,2002:" {
        format!("!!{}", tag.suffix)
    } else if tag.handle.is_empty() && tag.suffix == "!" {
        "!".to_string()
    } else {
        format!("{}{}", tag.handle, tag.suffix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(node: &Node) -> Vec<(String, &Node)> {
        match &node.value {
            Value::Map(pairs) => pairs
                .iter()
                .map(|(k, v)| (k.as_str().unwrap_or("?").to_string(), v))
                .collect(),
            other => panic!("not a map: {other:?}"),
        }
    }

    fn kind(node: &Node) -> ScalarKind {
        match &node.value {
            Value::Scalar(s) => s.kind,
            other => panic!("not a scalar: {other:?}"),
        }
    }

    #[test]
    fn positions_are_one_based() {
        let doc = parse("a: 1\nb:\n  - x\n").unwrap().unwrap();
        let pairs = map(&doc);
        assert_eq!(doc.mark, Mark { line: 1, column: 1 });
        assert_eq!(pairs[0].1.mark, Mark { line: 1, column: 4 });
        assert_eq!(pairs[1].1.mark, Mark { line: 3, column: 3 });
    }

    #[test]
    fn scalars_resolve_like_yaml_v3() {
        let doc = parse("a: 0644\nb: '0644'\nc: yes\nd: ~\ne: !!str 12\nf: !!float 1\ng: <<\nh: 1.0\n")
            .unwrap()
            .unwrap();
        let kinds: Vec<ScalarKind> = map(&doc).iter().map(|(_, v)| kind(v)).collect();
        assert_eq!(
            kinds,
            [
                ScalarKind::Int(420),
                ScalarKind::Str,
                ScalarKind::Str,
                ScalarKind::Null,
                ScalarKind::Str,
                ScalarKind::Float(1.0),
                ScalarKind::Merge,
                ScalarKind::Float(1.0),
            ]
        );
        assert_eq!(map(&doc)[6].1.as_str(), Some("<<"));
        assert_eq!(map(&doc)[7].1.json_type(), JsonType::Integer);
        let err = parse("a: !!int x\n").unwrap_err();
        assert_eq!(err.message, "cannot decode \"x\" as !!int");
    }

    #[test]
    fn merge_keys_never_override() {
        let doc =
            parse("base: &b {x: 1, y: 2}\nother: &o {y: 3, z: 4}\nm:\n  x: 0\n  <<: [*b, *o]\nquoted: {\"<<\": *b}\n")
                .unwrap()
                .unwrap();
        let pairs = map(&doc);
        let merged: Vec<(String, i128)> = map(pairs[2].1)
            .into_iter()
            .map(|(k, v)| (k, v.as_int().unwrap()))
            .collect();
        assert_eq!(merged, [("x".into(), 0), ("y".into(), 2), ("z".into(), 4)]);
        // A quoted "<<" is an ordinary key.
        assert_eq!(map(pairs[3].1)[0].0, "<<");
    }

    #[test]
    fn duplicate_keys_and_bad_aliases_are_errors() {
        let err = parse("a: 1\n\"a\": 2\n").unwrap_err();
        assert_eq!(err.mark, Mark { line: 2, column: 1 });
        assert_eq!(err.message, "mapping key \"a\" already defined at line 1");
        let err = parse("a: &x [*x]\n").unwrap_err();
        assert!(err.message.contains("contains the alias itself"), "{err:?}");
        let doc = parse("a: &x [1, 2]\nb: *x\n").unwrap().unwrap();
        let pairs = map(&doc);
        assert_eq!(pairs[0].1.value, pairs[1].1.value);
    }

    #[test]
    fn later_documents_must_be_empty() {
        assert!(parse("# nothing\n").unwrap().is_none());
        assert!(parse("").unwrap().is_none());
        for empty_after in [
            "a: 1\n---\n",
            "a: 1\n...\n",
            "a: 1\n---\n~\n---\n# c\n",
            "a: 1\n--- null\n",
        ] {
            let doc = parse(empty_after).unwrap().unwrap();
            assert_eq!(map(&doc).len(), 1, "{empty_after:?}");
        }
        for (text, mark) in [
            ("a: 1\n---\nb: [\n", Mark { line: 2, column: 1 }),
            ("a: 1\n---\nb: 2\n", Mark { line: 2, column: 1 }),
            ("a: 1\n---\n- x\n", Mark { line: 2, column: 1 }),
            ("---\n---\ninit: [a]\n", Mark { line: 2, column: 1 }),
            ("a: 1\n--- x\n", Mark { line: 2, column: 1 }),
            ("a: 1\n...\nb: 2\n", Mark { line: 3, column: 2 }),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.mark, mark, "{text:?}: {err:?}");
        }
        let err = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(err.message.contains("another one starts here"), "{err:?}");
        let err = parse("a: 1\n---\n\"unclosed\n").unwrap_err();
        assert!(err.message.contains("quoted scalar"), "{err:?}");
        let nested = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&nested).is_ok());
        let too_deep = format!("{}1{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(parse(&too_deep).unwrap_err().message.contains("nesting"));
    }

    /// One long string aliased many times is refused after a few copies, by its bytes; the
    /// message names the limit and the aliases.
    #[test]
    fn aliases_are_bounded_in_bytes() {
        let long = "x".repeat(1 << 20);
        let aliases = vec!["*s"; 3000].join(", ");
        let text = format!("s: &s {long}\nl: [{aliases}]\n");
        let err = parse(&text).unwrap_err();
        assert!(
            err.message.contains(&format!("more than {MAX_SCALAR_BYTES} bytes"))
                && err.message.contains("with the copies its anchors and aliases make"),
            "{err:?}"
        );
        // Just under the limit is fine (the text, the anchor's copy and the aliases).
        let fits = MAX_SCALAR_BYTES / (1 << 20) - 3;
        let aliases = vec!["*s"; fits].join(", ");
        assert!(parse(&format!("s: &s {long}\nl: [{aliases}]\n")).is_ok());
    }

    /// Anchors nested around one long string copy it once per level: the copies count, so the
    /// nesting cannot multiply memory without an alias.
    #[test]
    fn nested_anchors_are_counted() {
        let mut nested = "x".repeat(4 << 20);
        for level in 0..20 {
            nested = format!("&a{level} [{nested}]");
        }
        let err = parse(&format!("k: {nested}\n")).unwrap_err();
        assert!(
            err.message.contains("with the copies its anchors and aliases make"),
            "{err:?}"
        );
    }

    /// A large document without aliases is told so, not that it aliases too much.
    #[test]
    fn large_documents_without_aliases_are_named_for_their_size() {
        let text = format!("[{}]", vec!["1"; MAX_NODES].join(","));
        let err = parse(&text).unwrap_err();
        assert_eq!(
            err.message,
            format!("the document has more than {MAX_NODES} nodes (keys, values, lists and mappings): split it into several spec files")
        );
        let text = format!("[{}]", vec!["1"; MAX_NODES - 1].join(","));
        assert!(parse(&text).is_ok());
    }
}
