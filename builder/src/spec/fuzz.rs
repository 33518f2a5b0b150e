//! Property tests (fuzz targets): no input makes the front end panic or allocate without bound, the
//! `files` path rules accept exactly what an independent model of them accepts, and what the metadata
//! writer emits reads back as what it was given.
//!
//! The targets that take hostile input are `#[ignore]`d and run by `crate::fuzzing` in a child
//! process whose address space is capped, so an input that makes the loader allocate without bound
//! fails the test rather than the machine. `PROPTEST_CASES=N` runs N cases per target
//! instead of the defaults below (bounded time either way; see `config`).

use proptest::prelude::*;
use proptest::strategy::ValueTree;

use super::goyaml::{marshal, GoValue};
use super::yaml::{Size, MAX_NODES, MAX_SCALAR_BYTES};
use super::*;
use crate::tar::gopath;

/// The loader's model, with `@pkg:` directories under `/specs`.
fn load(sources: &[Source], pkgs: Option<&dyn PkgResolver>) -> Result<model::Moby, SpecErrors> {
    load_moby(sources, std::path::Path::new("/specs"), pkgs)
}

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
            "symlink",
            "directory",
            "source",
            "metadata",
            "..",
            "/",
            "additionalGids",
            "-1",
            "4294967296",
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

/// `default_cases` cases, or `PROPTEST_CASES` for a longer (or shorter) run.
fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig::with_cases(cases)
}

/// One element of a generated `files` path, with the awkward ones over-represented.
fn path_element() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        3 => prop::sample::select(vec!["a", "b", "etc", "a.b", "..."]),
        1 => prop::sample::select(vec!["..", ".", ""]),
    ]
}

/// A generated `files` path: elements joined with `/`, maybe with one or two leading slashes.
fn file_path() -> impl Strategy<Value = String> {
    (
        prop_oneof![4 => Just(""), 4 => Just("/"), 1 => Just("//")],
        prop::collection::vec(path_element(), 0..4),
        any::<bool>(),
    )
        .prop_map(|(lead, elements, trailing)| {
            let mut path = format!("{lead}{}", elements.join("/"));
            if trailing {
                path.push('/');
            }
            path
        })
}

/// A generated `files` entry: a path and any subset of the bodies.
#[derive(Debug, Clone)]
struct Entry {
    path: String,
    bodies: Vec<&'static str>,
}

fn entry() -> impl Strategy<Value = Entry> {
    let all = vec![
        "directory: true",
        "symlink: /target",
        "contents: x",
        "source: /nonexistent",
        "metadata: yaml",
    ];
    let bodies = prop_oneof![
        4 => prop::sample::subsequence(all.clone(), 1),
        1 => prop::sample::subsequence(all, 0..3),
    ];
    (file_path(), bodies).prop_map(|(path, bodies)| Entry { path, bodies })
}

fn files_yaml(entries: &[Entry]) -> String {
    let mut text = String::from("files:\n");
    for e in entries {
        let path = serde_json::to_string(&e.path).expect("a string");
        text.push_str(&format!("  - {{path: {path}"));
        for body in &e.bodies {
            text.push_str(&format!(", {body}"));
        }
        text.push_str("}\n");
    }
    text
}

/// The rules for `files`, written independently of the validator: one body, a name strictly inside
/// the root once one leading `/` is dropped and with no `..`, and no earlier symlink or file above it.
fn files_model_accepts(entries: &[Entry]) -> bool {
    let mut non_dirs: Vec<String> = Vec::new();
    for e in entries {
        let name = e.path.strip_prefix('/').unwrap_or(&e.path);
        let cleaned = gopath::clean(name);
        let inside = !e.path.is_empty()
            && !name.starts_with('/')
            && !name.split('/').any(|element| element == "..")
            && cleaned != ".";
        if e.bodies.len() != 1 || !inside {
            return false;
        }
        if non_dirs.iter().any(|n| cleaned.starts_with(&format!("{n}/"))) {
            return false;
        }
        if e.bodies[0] != "directory: true" {
            non_dirs.push(cleaned);
        }
    }
    true
}

/// A document that anchors a long string and aliases it through `levels` nested lists of `fan`
/// aliases each: at most `len * fan^levels` bytes once expanded.
fn alias_bomb() -> impl Strategy<Value = String> {
    (0usize..(1 << 20), 1usize..64, 1usize..6).prop_map(|(len, fan, levels)| {
        let mut text = format!("a0: &a0 {}\n", "x".repeat(len.max(1)));
        for level in 1..=levels {
            let aliases = vec![format!("*a{}", level - 1); fan].join(", ");
            text.push_str(&format!("a{level}: &a{level} [{aliases}]\n"));
        }
        text
    })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    #[ignore = "runs under a memory cap: fuzzing::fuzz_targets_under_a_memory_cap"]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        exercise(&text);
    }

    #[test]
    #[ignore = "runs under a memory cap: fuzzing::fuzz_targets_under_a_memory_cap"]
    fn yamlish_text_never_panics(text in yamlish()) {
        exercise(&text);
    }

    #[test]
    #[ignore = "runs under a memory cap: fuzzing::fuzz_targets_under_a_memory_cap"]
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

    /// The validator accepts a `files` section exactly when the model does, and what it accepts
    /// is also what the metadata writer and label reader survive.
    #[test]
    #[ignore = "runs under a memory cap: fuzzing::fuzz_targets_under_a_memory_cap"]
    fn files_rules_match_the_model(entries in prop::collection::vec(entry(), 1..6)) {
        let text = files_yaml(&entries);

        let loaded = load(&[Source { name: "fuzz.yml".into(), text: text.clone() }], None);
        prop_assert_eq!(loaded.is_ok(), files_model_accepts(&entries), "{}\n{:?}", text, loaded.err());
        exercise(&text);
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// However the aliases multiply, a parsed document stays within the node and byte limits, and
    /// the refusal comes before the copies are made (the memory cap would stop the run otherwise).
    #[test]
    #[ignore = "runs under a memory cap: fuzzing::fuzz_targets_under_a_memory_cap"]
    fn alias_expansion_is_bounded(text in alias_bomb()) {
        match super::yaml::parse(&text) {
            Ok(Some(node)) => {
                let size = Size::of(&node);
                prop_assert!(size.nodes <= MAX_NODES && size.bytes <= MAX_SCALAR_BYTES, "{:?}", size);
            }
            Ok(None) => prop_assert!(false, "a document was expected"),
            Err(e) => prop_assert!(e.message.contains("with the copies its anchors and aliases make"), "{:?}", e),
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

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
    assert!(
        err.message.contains("with the copies its anchors and aliases make"),
        "{err:?}"
    );
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
