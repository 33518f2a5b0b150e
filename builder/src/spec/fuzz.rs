//! Property tests: no input makes the front end panic, and what the metadata writer emits reads back
//! as what it was given.

use proptest::prelude::*;
use proptest::strategy::ValueTree;

use super::goyaml::{marshal, GoValue};
use super::*;

const CORPUS_CASES: &str = "/work/shared/conformance/cases";

/// The texts of every corpus spec, as seeds for mutation.
fn seeds() -> Vec<String> {
    let mut seeds = Vec::new();
    let Ok(cases) = std::fs::read_dir(CORPUS_CASES) else {
        return seeds;
    };
    let mut dirs: Vec<_> = cases.flatten().map(|e| e.path()).collect();
    dirs.sort();
    for dir in dirs {
        let Ok(files) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut ymls: Vec<_> = files
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yml"))
            .collect();
        ymls.sort();
        seeds.extend(ymls.iter().filter_map(|p| std::fs::read_to_string(p).ok()));
    }
    seeds
}

/// Runs everything a caller may run on some text; only panics matter.
fn exercise(text: &str) {
    let sources = [Source {
        name: "fuzz.yml".into(),
        text: text.to_string(),
    }];
    if let Ok(moby) = load(&sources, None) {
        let yaml = metadata(&moby, MetadataFormat::Yaml);
        let yaml = String::from_utf8(yaml).expect("metadata YAML is UTF-8");
        assert!(
            super::yaml::parse(&yaml).is_ok(),
            "metadata YAML does not parse:\n{yaml}"
        );
        let json = metadata(&moby, MetadataFormat::Json);
        assert!(
            serde_json::from_slice::<serde_json::Value>(&json).is_ok(),
            "metadata JSON does not parse"
        );
    }
    let _ = parse_label(text);
}

/// Text that looks like YAML often enough to get past the parser.
fn yamlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("\n".to_string()),
        Just("  ".to_string()),
        Just("- ".to_string()),
        Just(": ".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just(", ".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("<<: ".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("|\n".to_string()),
        Just("!!str ".to_string()),
        Just("# c\n".to_string()),
        Just("---\n".to_string()),
        prop::sample::select(vec![
            "kernel",
            "image",
            "cmdline",
            "onboot",
            "services",
            "name",
            "files",
            "path",
            "contents",
            "mode",
            "uid",
            "volumes",
            "binds",
            "mounts",
            "capabilities",
            "resources",
            "memory",
            "sysctl",
            "runtime",
            "0644",
            "yes",
            "~",
            "1.5",
            "@pkg:x",
            "all",
        ])
        .prop_map(str::to_string),
        "[a-z0-9:/._-]{1,8}",
    ];
    prop::collection::vec(token, 0..40).prop_map(|tokens| tokens.concat())
}

/// A mutation of a seed text.
#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, String),
    DuplicateLine(usize),
    SwapLines(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0..20usize).prop_map(|(at, len)| Mutation::Delete(at, len)),
        (any::<usize>(), yamlish()).prop_map(|(at, text)| Mutation::Insert(at, text)),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
    ]
}

fn char_boundary(text: &str, at: usize) -> usize {
    if text.is_empty() {
        return 0;
    }
    let mut at = at % (text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(text: &str, mutation: &Mutation) -> String {
    match mutation {
        Mutation::Delete(at, len) => {
            let start = char_boundary(text, *at);
            let end = char_boundary(text, start.saturating_add(*len).min(text.len()));
            format!("{}{}", &text[..start], &text[end.max(start)..])
        }
        Mutation::Insert(at, insert) => {
            let at = char_boundary(text, *at);
            format!("{}{insert}{}", &text[..at], &text[at..])
        }
        Mutation::DuplicateLine(line) => {
            let mut lines: Vec<&str> = text.lines().collect();
            if !lines.is_empty() {
                let line = line % lines.len();
                lines.insert(line, lines[line]);
            }
            lines.join("\n")
        }
        Mutation::SwapLines(a, b) => {
            let mut lines: Vec<&str> = text.lines().collect();
            if !lines.is_empty() {
                let (a, b) = (a % lines.len(), b % lines.len());
                lines.swap(a, b);
            }
            lines.join("\n")
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        exercise(&text);
    }

    #[test]
    fn yamlish_text_never_panics(text in yamlish()) {
        exercise(&text);
    }

    #[test]
    fn mutated_corpus_specs_never_panic(
        seed in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let seeds = seeds();
        prop_assume!(!seeds.is_empty());
        let mut text = seed.get(&seeds).clone();
        for m in &mutations {
            text = apply(&text, m);
        }
        exercise(&text);
    }

    /// Whatever string the writer is given, our reader gets the same string back: the writer's
    /// quoting, escaping, folding and block scalars are consistent. NEL, LS and PS are left out: they
    /// are line breaks to YAML 1.1 (libyaml, whose output we copy) but not to YAML 1.2 (our reader).
    /// (`metadata` writes strings as values and as sysctl/annotation keys.)
    #[test]
    fn written_strings_read_back(
        key in "\\PC{0,20}",
        value in prop_oneof![any::<String>(), "[a-z '\"#:\\\\-]{40,240}", "( ?[a-z]{1,9}\n?){0,40}"],
    ) {
        let yaml_1_1_break = |c: char| matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}');
        prop_assume!(!key.contains(yaml_1_1_break) && !value.contains(yaml_1_1_break));
        // yaml.v2 writes a `<<` key plain (its resolver sees a string), which reads back as a merge.
        prop_assume!(key != "<<");
        let doc = GoValue::Map(vec![
            ("k".to_string(), GoValue::Str(value.clone())),
            ("m".to_string(), GoValue::Map(vec![(key.clone(), GoValue::Str(value.clone()))])),
        ]);
        let text = marshal(&doc);
        let node = super::yaml::parse(&text)
            .unwrap_or_else(|e| panic!("{e:?} in {text:?}"))
            .expect("a document");
        let super::yaml::Value::Map(pairs) = &node.value else { panic!("not a map: {text:?}") };
        prop_assert_eq!(pairs[0].1.as_str(), Some(value.as_str()), "{:?}", text);
        let super::yaml::Value::Map(inner) = &pairs[1].1.value else { panic!("not a map: {text:?}") };
        prop_assert_eq!(inner[0].0.as_str(), Some(key.as_str()), "{:?}", text);
        prop_assert_eq!(inner[0].1.as_str(), Some(value.as_str()), "{:?}", text);
    }
}

#[test]
fn hostile_documents_are_refused_not_crashed_on() {
    let deep = "[".repeat(100_000);
    assert!(super::yaml::parse(&deep).is_err());
    let deep_map = "a: ".repeat(10_000);
    let _ = super::yaml::parse(&deep_map);
    let mut laughs = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..10 {
        laughs.push_str(&format!(
            "b{i}: &b{i} [{p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}]\n",
            p = if i == 0 {
                "*a".to_string()
            } else {
                format!("*b{}", i - 1)
            }
        ));
    }
    let err = super::yaml::parse(&laughs).expect_err("billion laughs");
    assert!(err.message.contains("once its aliases are expanded"), "{err:?}");
    exercise(&laughs);
}

/// Strings that exercise the writer's decisions: special words, indicators, spaces, line breaks,
/// non-printable and non-BMP characters, long text that folds.
fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::sample::select(vec![
            "",
            "yes",
            "No",
            "on",
            "null",
            "~",
            "0644",
            "0x1F",
            "1_000",
            "+1",
            "-1",
            ".5",
            "1e3",
            "1:20",
            "2001-12-14",
            "2001-12-14 21:59:43.10",
            "-",
            "- a",
            "-a",
            "a: b",
            "a:b",
            ":a",
            "? a",
            "#x",
            "a #x",
            "a#x",
            "@x",
            "`x",
            "!x",
            "&a",
            "*a",
            "|",
            ">",
            "%x",
            "---",
            "...",
            "--- x",
            " x",
            "x ",
            "a\tb",
            "\u{feff}x",
            "x\u{feff}",
            "é",
            "😀",
            "\u{85}",
            "<<",
            "\"q\"",
            "'q'",
            "\\",
            "a\n",
            "a\nb",
            "\na",
            "a\n\n",
            " a\nb",
            "a \nb",
            "a\n b",
            "\r",
            "\u{7f}",
            "\u{a0}x",
        ])
        .prop_map(str::to_string),
        "[a-z '\"#:\\\\-]{40,240}",
        "( {0,2}[a-z]{1,12}\n?){0,30}",
        "[ -~\t\n]{0,100}",
    ]
}

fn go_value() -> impl Strategy<Value = GoValue> {
    let leaf = prop_oneof![
        Just(GoValue::Null),
        any::<bool>().prop_map(GoValue::Bool),
        any::<i64>().prop_map(GoValue::Int),
        any::<u64>().prop_map(GoValue::Uint),
        tricky_string().prop_map(GoValue::Str),
    ];
    leaf.prop_recursive(3, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(GoValue::Seq),
            prop::collection::vec((tricky_string(), inner), 0..5).prop_map(|pairs| {
                let mut seen = std::collections::HashSet::new();
                GoValue::Map(pairs.into_iter().filter(|(k, _)| seen.insert(k.clone())).collect())
            }),
        ]
    })
}

/// The tagged JSON the oracle program reads.
fn tagged(value: &GoValue) -> serde_json::Value {
    use serde_json::json;
    match value {
        GoValue::Null => json!({"t": "null"}),
        GoValue::Bool(b) => json!({"t": "bool", "b": b}),
        GoValue::Int(i) => json!({"t": "int", "i": i}),
        GoValue::Uint(u) => json!({"t": "uint", "u": u}),
        GoValue::Str(s) => json!({"t": "str", "s": s}),
        GoValue::Seq(items) => {
            json!({"t": "seq", "l": items.iter().map(tagged).collect::<Vec<_>>()})
        }
        GoValue::Map(pairs) => json!({
            "t": "map",
            "k": pairs.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            "l": pairs.iter().map(|(_, v)| tagged(v)).collect::<Vec<_>>(),
        }),
    }
}

/// Differential test against gopkg.in/yaml.v2 itself. Opt-in: set `SPEC_YAML_V2_ORACLE` to a
/// program that reads one tagged-JSON document per line (see `tagged`) and prints the base64 of
/// `yaml.Marshal` of it (with `yaml.MapSlice` for mappings) per line.
#[test]
fn yaml_v2_oracle_agrees() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let Ok(oracle) = std::env::var("SPEC_YAML_V2_ORACLE") else {
        return;
    };
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = go_value().prop_map(|v| match v {
        GoValue::Map(_) | GoValue::Seq(_) => v,
        leaf => GoValue::Map(vec![("k".into(), leaf)]),
    });
    let count: usize = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(2000);
    let docs: Vec<GoValue> = (0..count)
        .map(|_| strategy.new_tree(&mut runner).expect("generate a value").current())
        .collect();
    let mut child = Command::new(oracle)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the oracle");
    let mut input = String::new();
    for doc in &docs {
        input.push_str(&tagged(doc).to_string());
        input.push('\n');
    }
    let mut stdin = child.stdin.take().expect("oracle stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().expect("oracle output");
    writer.join().expect("writer thread").expect("write to oracle");
    let lines: Vec<&str> = std::str::from_utf8(&output.stdout)
        .expect("oracle output is text")
        .lines()
        .collect();
    assert_eq!(lines.len(), docs.len());
    let mut failures = 0;
    for (doc, line) in docs.iter().zip(lines) {
        let expected = base64_decode(line);
        let actual = marshal(doc);
        if expected != actual {
            failures += 1;
            if failures <= 5 {
                eprintln!("MISMATCH for {doc:?}\n--- go\n{expected}\n--- ours\n{actual}");
            }
        }
    }
    assert_eq!(failures, 0, "{failures} of {} documents differ", docs.len());
}

fn base64_decode(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for b in text.bytes().filter(|b| *b != b'=') {
        let value = ALPHABET.iter().position(|a| *a == b).expect("base64") as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    String::from_utf8(out).expect("yaml.v2 output is UTF-8")
}
