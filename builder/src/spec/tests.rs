//! Tests of the whole front end: the conformance corpus (valid cases load, invalid cases report what
//! LinuxKit reports, metadata files are byte-identical) and a table of error cases with positions.

use std::path::{Path, PathBuf};

use super::*;
use crate::spec::model::Moby;

/// The loader's model, with `@pkg:` directories under `/specs`.
fn load(sources: &[Source], pkgs: Option<&dyn PkgResolver>) -> Result<Moby, SpecErrors> {
    load_moby(sources, Path::new("/specs"), pkgs)
}

const CORPUS: &str = "/work/shared/conformance";

fn corpus() -> PathBuf {
    PathBuf::from(CORPUS)
}

fn source(name: &str, text: &str) -> Source {
    Source {
        name: name.to_string(),
        text: text.to_string(),
    }
}

/// The corpus index entries: (name, valid, args).
fn cases() -> Vec<(String, bool, Vec<String>)> {
    let index = std::fs::read_to_string(corpus().join("index.json")).expect("corpus index.json");
    let index: serde_json::Value = serde_json::from_str(&index).expect("index.json is JSON");
    index
        .as_array()
        .expect("index.json is a list")
        .iter()
        .map(|case| {
            let name = case["name"].as_str().expect("case name").to_string();
            let valid = case["valid"].as_bool().expect("case validity");
            let args = case["args"]
                .as_array()
                .expect("case args")
                .iter()
                .map(|a| a.as_str().expect("arg").to_string())
                .collect();
            (name, valid, args)
        })
        .collect()
}

fn case_sources(name: &str, args: &[String]) -> Vec<Source> {
    let dir = corpus().join("cases").join(name);
    args.iter()
        .map(|arg| {
            let text = std::fs::read_to_string(dir.join(arg)).expect("case file");
            source(arg, &text)
        })
        .collect()
}

fn load_case(name: &str) -> Result<Moby, SpecErrors> {
    let (_, _, args) = cases().into_iter().find(|(n, _, _)| n == name).expect("case in index");
    load(&case_sources(name, &args), None)
}

#[test]
fn every_valid_case_loads() {
    let cases = cases();
    assert!(cases.len() >= 36, "the public corpus has 36 cases");
    for (name, valid, args) in cases {
        let result = load(&case_sources(&name, &args), None);
        if valid {
            if let Err(errors) = result {
                panic!("{name} should load:\n{errors}");
            }
        } else if name != "e08-invalid-label" {
            // e08's problem is in an image label, which `load` does not see.
            assert!(result.is_err(), "{name} should be rejected");
        }
    }
}

/// Every `metadata` file in the corpus is reproduced byte for byte.
#[test]
fn metadata_files_match_the_corpus() {
    let mut compared = 0;
    for (name, valid, _) in cases() {
        if !valid {
            continue;
        }
        let moby = load_case(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
        for file in &moby.files {
            let Some(format) = MetadataFormat::from_name(&file.metadata) else {
                continue;
            };
            let expected_path: PathBuf = corpus()
                .join("expected")
                .join(&name)
                .join("files")
                .join(file.path.trim_start_matches('/'));
            let Ok(expected) = std::fs::read(&expected_path) else {
                continue;
            };
            let actual = metadata(&moby, format);
            assert_eq!(
                String::from_utf8_lossy(&actual),
                String::from_utf8_lossy(&expected),
                "{}",
                expected_path.display()
            );
            compared += 1;
        }
    }
    // 020, 021 (yaml and json), 023, 024, 026, 027.
    assert_eq!(compared, 7);
}

/// Loads `yaml` as `linuxkit.yml` and compares the displayed errors.
fn check(yaml: &str, expected: &[&str]) {
    check_files(&[("linuxkit.yml", yaml)], expected);
}

fn check_files(files: &[(&str, &str)], expected: &[&str]) {
    let sources: Vec<Source> = files.iter().map(|(n, t)| source(n, t)).collect();
    let actual: Vec<String> = match load(&sources, None) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.errors().iter().map(ToString::to_string).collect(),
    };
    assert_eq!(actual, expected, "for:\n{files:?}");
}

/// The LinuxKit report lines of a load, sorted as the corpus stores them.
fn linuxkit_lines(errors: &SpecErrors) -> Vec<String> {
    let mut lines: Vec<String> = errors.errors().iter().flat_map(|e| e.linuxkit.clone()).collect();
    lines.sort();
    lines
}

/// The `- ` lines of an invalid case's stdout.
fn expected_report(name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(corpus().join("expected").join(name).join("error.txt")).expect("error.txt");
    text.lines()
        .filter_map(|l| l.strip_prefix("- "))
        .map(str::to_string)
        .collect()
}

#[test]
fn schema_cases_report_what_linuxkit_reports() {
    for name in ["e01-unknown-fields", "e02-wrong-types", "e06-missing-image"] {
        let errors = load_case(name).expect_err(name);
        assert!(errors.all_schema(), "{name}: {errors}");
        assert_eq!(linuxkit_lines(&errors), expected_report(name), "{name}");
    }
}

#[test]
fn e01_unknown_fields() {
    let text = std::fs::read_to_string(corpus().join("cases/e01-unknown-fields/linuxkit.yml")).expect("case");
    check(
        &text,
        &[
            "linuxkit.yml:4:3: kernel.modules: unknown field",
            "linuxkit.yml:8:5: onboot[0].capabilites: unknown field (did you mean \"capabilities\"?)",
            "linuxkit.yml:9:1: kernal: unknown field (did you mean \"kernel\"?)",
        ],
    );
}

#[test]
fn e02_wrong_types() {
    let text = std::fs::read_to_string(corpus().join("cases/e02-wrong-types/linuxkit.yml")).expect("case");
    check(
        &text,
        &[
            "linuxkit.yml:3:12: kernel.cmdline: expected a string, found an integer (quote it to make it a string: \"42\")",
            "linuxkit.yml:7:15: onboot[0].readonly: expected a boolean, found a string",
            "linuxkit.yml:8:18: onboot[0].oomScoreAdj: expected an integer, found a string",
            "linuxkit.yml:10:28: onboot[0].sysctl[\"net.ipv4.ip_forward\"]: expected a string, found an integer (quote it to make it a string: \"1\")",
            "linuxkit.yml:14:11: files[0].mode: expected a string, found an integer (quote it to make it a string: \"0644\")",
        ],
    );
}

#[test]
fn build_time_cases_are_caught_at_load() {
    let cases = [
        (
            "e03-duplicate-service",
            "linuxkit.yml:4:11: services[1].name: duplicate service name \"web\" (first defined at linuxkit.yml:2): service names must be unique",
            "duplicate service name: web",
        ),
        (
            "e04-unknown-capability",
            "linuxkit.yml:8:9: onboot[1].capabilities[1]: unknown capability \"CAP_FOO\"",
            "unknown capability: CAP_FOO",
        ),
        (
            "e05-bad-rlimit",
            "linuxkit.yml:5:9: onboot[0].rlimits[0]: cannot parse rlimit \"nofile,abc,4096\": \"abc\" is neither a non-negative integer nor \"unlimited\"",
            "cannot parse abc as uint64: strconv.ParseUint: parsing \"abc\": invalid syntax",
        ),
        (
            "e07-bad-file-mode",
            "linuxkit.yml:6:11: files[1].mode: cannot parse mode \"rw-r--r--\" as an octal number, e.g. \"0644\"",
            "cannot parse file mode as octal value: strconv.ParseInt: parsing \"rw-r--r--\": invalid syntax",
        ),
    ];
    for (name, ours, theirs) in cases {
        let errors = load_case(name).expect_err(name);
        assert_eq!(errors.len(), 1, "{name}: {errors}");
        assert_eq!(errors.to_string(), ours, "{name}");
        assert_eq!(errors.errors()[0].linuxkit, [theirs], "{name}");
        let stderr =
            std::fs::read_to_string(corpus().join("expected").join(name).join("error.txt")).expect("error.txt");
        assert!(stderr.contains(theirs), "{name}: {theirs:?} not in error.txt");
    }
}

#[test]
fn e06_missing_image() {
    let text = std::fs::read_to_string(corpus().join("cases/e06-missing-image/linuxkit.yml")).expect("case");
    check(
        &text,
        &[
            "linuxkit.yml:2:5: onboot[0]: missing required field \"image\"",
            "linuxkit.yml:5:5: services[0]: missing required field \"name\"",
        ],
    );
}

#[test]
fn e08_invalid_label() {
    let label = r#"{"privileged":true,"capabilities":"CAP_NET_ADMIN"}"#;
    let errors = parse_label(label).expect_err("badlabel");
    assert_eq!(
        errors.to_string(),
        "label: privileged: unknown field\nlabel: capabilities: expected a list, found a string"
    );
    assert_eq!(linuxkit_lines(&errors), expected_report("e08-invalid-label"));
    let errors = errors.with_file("label of localhost:5000/conformance/badlabel:v1");
    assert!(errors.to_string().starts_with("label of localhost"));
}

#[test]
fn corpus_labels_parse() {
    let readme = std::fs::read_to_string(corpus().join("README.md")).expect("README");
    let labels: Vec<&str> = readme
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("{\"") && !l.starts_with("{\"privileged\""))
        .collect();
    assert_eq!(labels.len(), 4);
    for label in labels {
        parse_label(label).unwrap_or_else(|e| panic!("{label}: {e}"));
    }
    let devmgr = parse_label(
        r#"{"uidMappings":[{"hostID":100000,"containerID":0,"size":65536}],"resources":{"memory":{"limit":67108864}}}"#,
    )
    .unwrap();
    // LinuxKit drops hostID/containerID (it decodes them by Go field name); we keep them.
    let mapping = &devmgr.uid_mappings.unwrap()[0];
    assert_eq!(
        (mapping.host_id, mapping.container_id, mapping.size),
        (100000, 0, 65536)
    );
}

#[test]
fn labels_cannot_name_the_container() {
    let errors = parse_label(r#"{"name": "x", "image": "", "net": "host"}"#).expect_err("name");
    assert_eq!(errors.to_string(), "label: name: name cannot be set in an image label");
    assert_eq!(errors.errors()[0].linuxkit, ["name cannot be set in metadata label"]);
    assert!(parse_label("[1]").is_err());
    assert!(parse_label("").is_err());
    let config = parse_label("net: host\ncapabilities: [CAP_SYS_ADMIN]\n").unwrap();
    assert_eq!(config.net, "host");
}

#[test]
fn empty_and_comment_only_files_are_empty_specs() {
    for text in ["", "# nothing\n", "---\n", "~\n"] {
        assert_eq!(load(&[source("x.yml", text)], None).unwrap(), Moby::default());
    }
}

#[test]
fn yaml_problems() {
    check(
        "kernel:\n  image: a\n  image: b\n",
        &["linuxkit.yml:3:3: invalid YAML: mapping key \"image\" already defined at line 2"],
    );
    check(
        "kernel: [\n",
        &["linuxkit.yml:2:1: invalid YAML: while parsing a node, did not find expected node content"],
    );
    check(
        "- a\n",
        &["linuxkit.yml:1:1: expected a mapping of sections (kernel, init, onboot, onshutdown, services, files, volumes), found a list"],
    );
    check(
        "init: [*x]\n",
        &["linuxkit.yml:1:8: invalid YAML: while parsing node, found unknown anchor"],
    );
    check(
        "onboot:\n- name: a\n  image: b\n  sysctl: {1: x}\n",
        &["linuxkit.yml:4:12: onboot[0].sysctl: mapping keys must be strings, found an integer; quote the key"],
    );
    // LinuxKit reads only the first document and ignores the rest, even when it is not YAML; a later
    // document with content is reported where it starts.
    check("init: [a]\n---\n", &[]);
    check(
        "init: [a]\n---\n[oops\n",
        &["linuxkit.yml:2:1: invalid YAML: a spec file holds one YAML document, but another one starts here (LinuxKit would silently ignore it): merge it into the first, or give it as a spec file of its own"],
    );
}

#[test]
fn anchors_aliases_and_merge_keys() {
    let moby = load_case("023-yaml-features").unwrap();
    assert_eq!(moby.onboot[1].name, "second");
    assert_eq!(moby.onboot[1].config.capabilities, Some(vec!["CAP_CHOWN".into()]));
    assert_eq!(moby.services[0].config.env, moby.onboot[0].config.env);
    // A list of merged mappings: the mapping's own keys win, then earlier mappings.
    let text = "x: &a {name: a, image: i1, cwd: /a}\ny: &b {name: b, image: i2, net: host}\n";
    let spec = format!("{text}onboot:\n- <<: [*a, *b]\n  name: c\n");
    let errors = load(&[source("m.yml", &spec)], None).expect_err("x and y are unknown");
    assert_eq!(errors.len(), 2);
    let spec = "onboot:\n- &a {name: a, image: i1, cwd: /a}\n- &b {name: b, image: i2, net: host}\n- <<: [*a, *b]\n  name: c\n";
    let moby = load(&[source("m.yml", spec)], None).unwrap();
    let merged = &moby.onboot[2];
    assert_eq!(
        (
            merged.name.as_str(),
            merged.image.as_str(),
            merged.config.cwd.as_str(),
            merged.config.net.as_str()
        ),
        ("c", "i1", "/a", "host")
    );
    check(
        "onboot:\n- <<: 5\n",
        &["linuxkit.yml:2:7: invalid YAML: map merge requires a mapping or a list of mappings as the value"],
    );
}

#[test]
fn yaml_one_point_two_scalars() {
    // `yes` is a string to yaml.v3, `0644` an integer, `!!str` forces a string.
    let moby = load(
        &[source(
            "x.yml",
            "files:\n- path: a\n  contents: yes\n  mode: !!str 0644\n- path: b\n  contents: \"0644\"\n  uid: 0x10\n",
        )],
        None,
    )
    .unwrap();
    assert_eq!(moby.files[0].contents.as_deref(), Some("yes"));
    assert_eq!(moby.files[0].mode, "0644");
    assert_eq!(moby.files[1].uid, Some(model::IdRef::Num(16)));
}

#[test]
fn semantic_problems_are_all_reported_with_positions() {
    check(
        r#"kernel:
  image: "bad ref"
init:
  - alpine
onboot:
  - name: a/b
    image: alpine
    capabilities: [CAP_NET_ADMIN, net_admin]
    capabilities.add: [all]
    ambient: [CAP_CHWON]
    binds: [/a, "/a:/b:ro:x"]
    tmpfs: ["/a:b:c"]
    mounts:
      - {destination: /x}
      - {type: overlay}
      - {source: proc}
    devices:
      - {path: /dev/fuse, type: c, major: 10, minor: 229}
      - {path: all, type: b}
    rlimits: ["nofile,1", "nofil,1,2"]
    uid: nobody
    gid: root
    additionalGids: [a/b, sevice]
services:
  - name: service
    image: alpine
"#,
        &[
            "linuxkit.yml:2:10: kernel.image: invalid image reference \"bad ref\": a reference contains no whitespace",
            "linuxkit.yml:6:11: onboot[0].name: invalid container name \"a/b\": it names a directory in the image, so it must be non-empty and contain no '/'",
            "linuxkit.yml:8:35: onboot[0].capabilities[1]: unknown capability \"net_admin\" (did you mean \"CAP_NET_ADMIN\"?)",
            "linuxkit.yml:10:15: onboot[0].ambient[0]: unknown capability \"CAP_CHWON\" (did you mean \"CAP_CHOWN\"?)",
            "linuxkit.yml:11:13: onboot[0].binds[0]: cannot parse bind \"/a\": missing ':' (expected \"source:destination[:options]\")",
            "linuxkit.yml:11:17: onboot[0].binds[1]: cannot parse bind \"/a:/b:ro:x\": too many ':' (expected \"source:destination[:options]\")",
            "linuxkit.yml:12:13: onboot[0].tmpfs[0]: cannot parse tmpfs \"/a:b:c\": too many ':' (expected \"destination[:options]\")",
            "linuxkit.yml:14:9: onboot[0].mounts[0]: mount for destination \"/x\" needs a type (it can only be inferred from a source of proc, sysfs, devpts, mqueue or cgroup, or a destination of /dev)",
            "linuxkit.yml:15:9: onboot[0].mounts[1]: mount of type \"overlay\" needs a destination (only proc, devpts, sysfs, cgroup and mqueue have a default)",
            "linuxkit.yml:18:9: onboot[0].devices[0].mode: device \"/dev/fuse\": cannot parse mode \"\" as an octal number, e.g. \"0644\"",
            "linuxkit.yml:20:15: onboot[0].rlimits[0]: cannot parse rlimit \"nofile,1\": expected \"name,soft,hard\", e.g. \"nofile,1024,4096\"",
            "linuxkit.yml:20:27: onboot[0].rlimits[1]: unknown rlimit \"nofil\" in \"nofil,1,2\" (did you mean \"nofile\"?)",
            "linuxkit.yml:21:10: onboot[0].uid: unknown id \"nobody\": use a number, \"root\", or the name of a container in onboot, onshutdown or services",
            "linuxkit.yml:23:27: onboot[0].additionalGids[1]: unknown id \"sevice\" (did you mean \"service\"?): use a number, \"root\", or the name of a container in onboot, onshutdown or services",
        ],
    );
}

/// Every pair of bodies is refused, including those LinuxKit silently resolves (directory over
/// symlink over contents); LinuxKit's message is kept where it has one.
#[test]
fn file_entries_have_exactly_one_body() {
    let text = r#"files:
  - path: ""
    contents: x
  - path: a
  - path: b
    source: s
    metadata: yaml
  - path: c
    contents: x
    metadata: json
  - path: d
    symlink: x
    source: s
  - path: e
    directory: true
    contents: x
  - path: f
    metadata: xml
  - path: g
    directory: true
    symlink: x
  - path: h
    contents: x
    mode: "0855"
    uid: nobody
  - path: i
    symlink: x
    contents: ""
  - path: j
    directory: true
    symlink: x
    contents: x
"#;
    check(
        text,
        &[
            "linuxkit.yml:2:11: files[0].path: a file entry needs a path",
            "linuxkit.yml:4:5: files[1]: file \"a\" has no content: set one of contents, source, metadata, directory or symlink",
            "linuxkit.yml:7:15: files[2].metadata: file \"b\" sets source and metadata: set only one of contents, source, metadata, directory or symlink",
            "linuxkit.yml:10:15: files[3].metadata: file \"c\" sets contents and metadata: set only one of contents, source, metadata, directory or symlink",
            "linuxkit.yml:13:13: files[4].source: file \"d\" sets symlink and source: set only one of contents, source, metadata, directory or symlink",
            "linuxkit.yml:16:15: files[5].contents: file \"e\" sets directory and contents: set only one of contents, source, metadata, directory or symlink",
            "linuxkit.yml:18:15: files[6].metadata: metadata must be \"yaml\" or \"json\", found \"xml\"",
            "linuxkit.yml:21:14: files[7].symlink: file \"g\" sets directory and symlink: set only one of contents, source, metadata, directory or symlink",
            "linuxkit.yml:24:11: files[8].mode: cannot parse mode \"0855\" as an octal number, e.g. \"0644\"",
            "linuxkit.yml:25:10: files[8].uid: unknown id \"nobody\": use a number, \"root\", or the name of a container in onboot, onshutdown or services",
            "linuxkit.yml:28:15: files[9].contents: file \"i\" sets symlink and contents: set only one of contents, source, metadata, directory or symlink",
            "linuxkit.yml:32:15: files[10].contents: file \"j\" sets directory, symlink and contents: set only one of contents, source, metadata, directory or symlink",
        ],
    );
    let errors = load(&[source("linuxkit.yml", text)], None).expect_err("invalid");
    let linuxkit: Vec<&[String]> = errors.errors().iter().map(|e| e.linuxkit.as_slice()).collect();
    let expected: [&[&str]; 12] = [
        &["did not specify path for file"],
        &["contents of file (a) not specified"],
        &["specified Source and Metadata for file: b"],
        &["specified Contents and Metadata for file: c"],
        &["specified Contents and Source for file: d"],
        &["directory with contents not allowed"],
        &["unsupported metadata type: xml"],
        &[],
        &["cannot parse file mode as octal value: strconv.ParseInt: parsing \"0855\": invalid syntax"],
        &["cannot find id: nobody"],
        &[],
        &["directory with contents not allowed"],
    ];
    assert_eq!(linuxkit, expected);
}

/// A `files` path must name something strictly inside the image root once LinuxKit's single leading
/// '/' is dropped; what is inside is kept as written.
#[test]
fn file_paths_stay_inside_the_root() {
    check(
        r#"files:
  - {path: /etc/issue, contents: x}
  - {path: ./etc//motd, contents: x}
  - {path: "//etc/passwd", contents: x}
  - {path: ../escape, contents: x}
  - {path: etc/../../escape, contents: x}
  - {path: etc/.., directory: true}
  - {path: /, directory: true}
  - {path: ., directory: true}
  - {path: "a\0b", contents: x}
  - {path: etc/l, symlink: "/x\0"}
"#,
        &[
            "linuxkit.yml:4:12: files[2].path: path \"//etc/passwd\" stays absolute once its first '/' is dropped, so it would be written outside the image root: write \"/etc/passwd\"",
            "linuxkit.yml:5:12: files[3].path: path \"../escape\" has a '..' element, which can climb out of the image root: write the path without it",
            "linuxkit.yml:6:12: files[4].path: path \"etc/../../escape\" has a '..' element, which can climb out of the image root: write the path without it",
            "linuxkit.yml:7:12: files[5].path: path \"etc/..\" has a '..' element, which can climb out of the image root: write the path without it",
            "linuxkit.yml:8:12: files[6].path: path \"/\" names the image root itself: name a file or directory below it",
            "linuxkit.yml:9:12: files[7].path: path \".\" names the image root itself: name a file or directory below it",
            "linuxkit.yml:10:12: files[8].path: path \"a\\0b\" contains a NUL byte",
            "linuxkit.yml:11:28: files[9].symlink: symlink target \"/x\\0\" contains a NUL byte",
        ],
    );
}

/// Nothing is created below a symlink or a regular file made by an earlier entry, in any of the
/// files merged; a later directory at the same path does not undo the symlink.
#[test]
fn files_are_not_written_through_earlier_symlinks_or_files() {
    check(
        r#"files:
  - {path: etc, symlink: /etc}
  - {path: etc/passwd, contents: x}
  - {path: /etc/shadow/x, contents: x}
  - {path: motd, contents: x}
  - {path: motd/x, directory: true}
  - {path: var, directory: true}
  - {path: var/lib/app, contents: x}
  - {path: etc, directory: true}
  - {path: ./etc/group, contents: x}
"#,
        &[
            "linuxkit.yml:3:12: files[1].path: path \"etc/passwd\" lies below \"etc\", which files[0] makes a symlink: extracting the image would write wherever the link points",
            "linuxkit.yml:4:12: files[2].path: path \"/etc/shadow/x\" lies below \"etc\", which files[0] makes a symlink: extracting the image would write wherever the link points",
            "linuxkit.yml:6:12: files[4].path: path \"motd/x\" lies below \"motd\", which files[3] makes a regular file: nothing can be created below a file",
            "linuxkit.yml:10:12: files[8].path: path \"./etc/group\" lies below \"etc\", which files[0] makes a symlink: extracting the image would write wherever the link points",
        ],
    );
    check_files(
        &[
            ("base.yml", "files:\n  - {path: opt, symlink: /}\n"),
            ("extra.yml", "files:\n  - {path: a, contents: x}\n  - {path: opt/x, contents: x}\n"),
        ],
        &["extra.yml:3:12: files[1].path: path \"opt/x\" lies below \"opt\", which files[0] of base.yml makes a symlink: extracting the image would write wherever the link points"],
    );
}

/// Every uid and gid outside 32 bits is reported at load with its position, all at once (they were
/// found one per run while building, without a position); labels get the same check.
#[test]
fn ids_out_of_range_are_reported_at_load() {
    check(
        r#"onboot:
  - name: a
    image: alpine
    uid: -1
    gid: 4294967296
    additionalGids: [1, 0x100000000, root]
files:
  - path: x
    contents: x
    uid: 4294967295
    gid: -5
"#,
        &[
            "linuxkit.yml:4:10: onboot[0].uid: -1 is out of range: expected an integer from 0 to 4294967295",
            "linuxkit.yml:5:10: onboot[0].gid: 4294967296 is out of range: expected an integer from 0 to 4294967295",
            "linuxkit.yml:6:25: onboot[0].additionalGids[1]: 4294967296 is out of range: expected an integer from 0 to 4294967295",
            "linuxkit.yml:11:10: files[0].gid: -5 is out of range: expected an integer from 0 to 4294967295",
        ],
    );
    let errors = parse_label(r#"{"uid": 4294967296}"#).expect_err("out of range");
    assert_eq!(
        errors.to_string(),
        "label: uid: 4294967296 is out of range: expected an integer from 0 to 4294967295"
    );
}

#[test]
fn volumes_and_their_binds() {
    check(
        r#"volumes:
  - name: data
  - name: ro
    readonly: true
  - name: Bad
  - name: data
onboot:
  - name: a
    image: alpine
    binds: ["data:/d", "ro:/r", "ro:/r:ro", "ro:/r:ro,rbind", "dta:/x"]
    binds.add: ["ro:/r2"]
    mounts:
      - {type: bind, source: ro, destination: /m, options: [rbind, rw, ro]}
      - {type: bind, source: ro, destination: /n, options: [ro]}
      - {type: bind, source: nope, destination: /o}
"#,
        &[
            "linuxkit.yml:5:11: volumes[2].name: invalid volume name \"Bad\": use lower-case letters, digits, '_' and '-'",
            "linuxkit.yml:6:11: volumes[3].name: duplicate volume name \"data\" (first defined at linuxkit.yml:2): volume names must be unique",
            "linuxkit.yml:10:24: onboot[0].binds[1]: volume \"ro\" is read-only: bind it read-only with \":ro\", e.g. \"ro:/r:ro\"",
            "linuxkit.yml:10:45: onboot[0].binds[3]: volume \"ro\" is read-only: bind it read-only with \":ro\", e.g. \"ro:/r:ro\"",
            "linuxkit.yml:10:63: onboot[0].binds[4]: no volume named \"dta\" (did you mean \"data\"?): a source without a leading '/' names a volume from the volumes section",
            "linuxkit.yml:11:17: onboot[0].binds.add[0]: volume \"ro\" is read-only: bind it read-only with \":ro\", e.g. \"ro:/r2:ro\"",
            "linuxkit.yml:13:9: onboot[0].mounts[0]: volume \"ro\" is read-only: mount it with the option \"ro\"",
            "linuxkit.yml:15:9: onboot[0].mounts[2]: no volume named \"nope\": a source without a leading '/' names a volume from the volumes section",
        ],
    );
}

#[test]
fn several_files_merge_and_name_their_errors() {
    let base = "kernel:\n  image: k\n  cmdline: a\ninit: [i]\nservices:\n  - name: svc\n    image: s\n";
    let extra = "kernel:\n  cmdline: b\n  tar: none\nservices:\n  - name: svc\n    image: t\nonboot:\n  - name: o\n    image: o\n    uid: svc\n    capabilities: [CAP_BAD]\n";
    check_files(
        &[("base.yml", base), ("extra.yml", extra)],
        &[
            "extra.yml:5:11: services[0].name: duplicate service name \"svc\" (first defined at base.yml:6): service names must be unique",
            "extra.yml:11:20: onboot[0].capabilities[0]: unknown capability \"CAP_BAD\" (did you mean \"CAP_BPF\"?)",
        ],
    );
    let moby = load_case("027-multi-file").unwrap();
    assert_eq!(moby.kernel.image, "localhost:5000/conformance/kernel:6.6.0");
    assert_eq!(moby.kernel.cmdline, "console=tty0 quiet");
    assert_eq!(moby.kernel.tar.as_deref(), Some("none"));
    assert_eq!(moby.init.len(), 2);
    assert_eq!(moby.onboot[1].config.uid, Some(model::IdRef::Name("svc2".into())));
}

struct Pkgs;

impl PkgResolver for Pkgs {
    fn resolve(&self, dir: &Path) -> Result<String, String> {
        match dir.to_str() {
            Some("/specs/sub/pkg/init") => Ok("linuxkit/init:abc123".into()),
            _ => Err(format!("no build.yml in {}", dir.display())),
        }
    }
}

#[test]
fn package_templates_resolve_relative_to_their_file_under_the_base_directory() {
    let text = "init: [\"@pkg:./pkg/init\"]\nonboot:\n  - name: x\n    image: \"@pkg:../missing\"\n";
    let errors = load(&[source("sub/linuxkit.yml", text)], Some(&Pkgs)).expect_err("missing");
    assert_eq!(
        errors.to_string(),
        "sub/linuxkit.yml:4:12: onboot[0].image: cannot resolve \"@pkg:../missing\": no build.yml in /specs/missing"
    );
    let moby = load(&[source("/elsewhere/sub/linuxkit.yml", text)], Some(&Pkgs));
    assert!(
        moby.expect_err("outside the base")
            .to_string()
            .contains("no build.yml in /elsewhere/missing"),
        "an absolute spec path is not under the base directory"
    );
    let text = "init: [\"@pkg:./pkg/init\"]\n";
    let moby = load(&[source("sub/linuxkit.yml", text)], Some(&Pkgs)).unwrap();
    assert_eq!(moby.init, ["linuxkit/init:abc123"]);
    let errors = load(&[source("sub/linuxkit.yml", text)], None).expect_err("no resolver");
    assert!(errors.to_string().contains("need a package resolver"), "{errors}");
}

#[test]
fn metadata_expands_references_but_not_volumes() {
    let moby = load(
        &[source(
            "x.yml",
            "kernel: {image: linuxkit/kernel:6.6}\ninit: [alpine]\nvolumes: [{name: v, image: alpine}]\nonboot: [{name: a, image: 'quay.io/x/y@sha256:ab'}]\n",
        )],
        None,
    )
    .unwrap();
    let yaml = String::from_utf8(metadata(&moby, MetadataFormat::Yaml)).unwrap();
    assert!(yaml.contains("image: docker.io/linuxkit/kernel:6.6\n"), "{yaml}");
    assert!(yaml.contains("- docker.io/library/alpine\n"), "{yaml}");
    assert!(yaml.contains("image: quay.io/x/y@sha256:ab\n"), "{yaml}");
    assert!(yaml.contains("- name: v\n  image: alpine\n"), "{yaml}");
}

#[test]
fn invalid_required_values_do_not_hide_other_problems() {
    check(
        "onboot:\n  - name: 5\n    image: [x]\n    capabilities: [CAP_FOO]\n",
        &[
            "linuxkit.yml:2:11: onboot[0].name: expected a string, found an integer (quote it to make it a string: \"5\")",
            "linuxkit.yml:3:12: onboot[0].image: expected a string, found a list",
            "linuxkit.yml:4:20: onboot[0].capabilities[0]: unknown capability \"CAP_FOO\"",
        ],
    );
}

/// A spec that sets every field the schema knows, with values that stress the writers. The
/// expected metadata next to it was produced by gopkg.in/yaml.v2 and encoding/json from structs
/// with LinuxKit's tags (the oracle described at `metadata_oracle_agrees`), except for one deliberate
/// difference: the camelCase keys LinuxKit's decoder drops (`kernelTCP`, `hostID`, ...) keep their
/// values. `UPDATE_EXPECT=1` rewrites the expected files from our output.
const EVERY_FIELD: &str = include_str!("testdata/every-field.yml");

#[test]
fn every_field_metadata_matches_go() {
    let moby = load(&[source("every-field.yml", EVERY_FIELD)], None).unwrap();
    let testdata = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/spec/testdata");
    for (format, file) in [
        (MetadataFormat::Yaml, "every-field.metadata.yml"),
        (MetadataFormat::Json, "every-field.metadata.json"),
    ] {
        let ours = String::from_utf8(metadata(&moby, format)).unwrap();
        if std::env::var_os("UPDATE_EXPECT").is_some() {
            std::fs::write(testdata.join(file), &ours).unwrap();
        }
        assert_eq!(ours, std::fs::read_to_string(testdata.join(file)).unwrap(), "{file}");
    }
    // The camelCase keys that LinuxKit's decoder drops are kept.
    let every = &moby.onboot[0].config;
    let memory = every.resources.as_ref().and_then(|r| r.memory.as_ref()).unwrap();
    assert_eq!(
        (memory.limit, memory.kernel_tcp, memory.disable_oom_killer),
        (Some(67108864), Some(4), Some(true))
    );
    assert_eq!(every.uid_mappings.as_ref().unwrap()[0].host_id, 100000);
}

/// Differential test against LinuxKit's own encoders. Opt-in: set `SPEC_METADATA_ORACLE` to a
/// program that takes spec files, decodes them with yaml.v3 into structs with LinuxKit's tags,
/// merges them, expands references, and prints yaml.v2 output, a NUL, then indented JSON.
#[test]
fn metadata_oracle_agrees() {
    let Ok(oracle) = std::env::var("SPEC_METADATA_ORACLE") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let rich = dir.path().join("every.yml");
    std::fs::write(&rich, EVERY_FIELD).expect("write spec");
    let mut runs: Vec<Vec<PathBuf>> = vec![vec![rich]];
    for (name, valid, args) in cases() {
        if valid {
            runs.push(
                args.iter()
                    .map(|a| corpus().join("cases").join(&name).join(a))
                    .collect(),
            );
        }
    }
    for paths in runs {
        let sources: Vec<Source> = paths
            .iter()
            .map(|p| source(&p.display().to_string(), &std::fs::read_to_string(p).expect("spec")))
            .collect();
        let moby = load(&sources, None).unwrap_or_else(|e| panic!("{paths:?}: {e}"));
        let output = std::process::Command::new(&oracle)
            .args(&paths)
            .output()
            .expect("run the oracle");
        assert!(output.status.success(), "oracle failed on {paths:?}");
        let text = String::from_utf8(output.stdout).expect("oracle output is UTF-8");
        let (yaml, json) = text.split_once('\0').expect("two outputs");
        let ours_yaml = String::from_utf8(metadata(&moby, MetadataFormat::Yaml)).unwrap();
        let ours_json = String::from_utf8(metadata(&moby, MetadataFormat::Json)).unwrap();
        assert_eq!(ours_yaml, yaml, "yaml for {paths:?}");
        assert_eq!(ours_json, json, "json for {paths:?}");
    }
}
