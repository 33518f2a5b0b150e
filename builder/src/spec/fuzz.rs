//! Property tests: no input makes the front end panic, and what the metadata writer emits reads back
//! as what it was given.

use proptest::prelude::*;

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
    #[test]
    fn written_strings_read_back(
        key in "\\PC{0,20}",
        value in prop_oneof![any::<String>(), "[a-z '\"#:\\\\-]{40,240}", "( ?[a-z]{1,9}\n?){0,40}"],
    ) {
        let yaml_1_1_break = |c: char| matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}');
        prop_assume!(!key.contains(yaml_1_1_break) && !value.contains(yaml_1_1_break));
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
    assert!(err.message.contains("excessive aliasing"), "{err:?}");
    exercise(&laughs);
}
