//! Every `config.json` and `runtime.json` of the conformance corpus, regenerated and compared byte
//! for byte with what LinuxKit v1.7.1 wrote, except where we deliberately differ: there the
//! expected bytes are first edited by the patches in [`DEVIATIONS`], which say exactly what differs.
//!
//! The corpus is found at `$MOBY_CONFORMANCE`, else at `shared/conformance` beside the checkout,
//! else at `/work/shared/conformance`. The YAML is read with a small test-only loader (yaml-rust2
//! into serde_json values, resolving `<<` merge keys); the real parser lives in `spec`.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

use super::*;
use crate::spec::model::{ImageConfig, Moby};

/// The valid cases that have containers.
const CASES: [&str; 23] = [
    "005-onboot-image-config",
    "006-command-env-cwd",
    "007-capabilities",
    "008-binds",
    "009-mounts-tmpfs",
    "010-namespaces",
    "011-readonly",
    "012-uid-gid",
    "013-rlimits-sysctl",
    "014-devices",
    "015-resources",
    "016-process-misc",
    "017-runtime",
    "018-sections-dedup",
    "019-files-basic",
    "020-files-source",
    "021-metadata",
    "022-volumes",
    "023-yaml-features",
    "024-example-linuxkit",
    "025-example-sshd",
    "026-example-tarheaders",
    "027-multi-file",
];

/// A deliberate difference: in `case`'s `file`, our output has `ours` where LinuxKit wrote
/// `linuxkit` (exact text, which must occur in the expected file; every occurrence is replaced).
struct Deviation {
    case: &'static str,
    file: &'static str,
    /// Which of the numbered deviations of the module documentation this is.
    number: u8,
    linuxkit: &'static str,
    ours: &'static str,
}

const DEVIATIONS: &[Deviation] = &[
    Deviation {
        case: "007-capabilities",
        file: "containers/onboot/003-add-caps/config.json",
        number: 1,
        linuxkit: r#""CAP_SYS_ADMIN",
                "CAP_NET_ADMIN",
                "CAP_SYS_TIME""#,
        ours: r#""CAP_SYS_ADMIN",
                "CAP_SYS_TIME""#,
    },
    Deviation {
        case: "022-volumes",
        file: "containers/onboot/002-mounts/config.json",
        number: 2,
        linuxkit: r#""source": "data","#,
        ours: r#""source": "/containers/volumes/data/merged","#,
    },
    Deviation {
        case: "009-mounts-tmpfs",
        file: "containers/onboot/002-label-mounts-replaced/config.json",
        number: 3,
        linuxkit: r#""destination": "/scratch",
            "type": "tmpfs",
            "source": "tmpfs"
"#,
        ours: r#""destination": "/scratch",
            "type": "tmpfs",
            "source": "tmpfs",
            "uidMappings": [
                {
                    "containerID": 0,
                    "hostID": 1000,
                    "size": 1
                }
            ],
            "gidMappings": [
                {
                    "containerID": 0,
                    "hostID": 1000,
                    "size": 1
                }
            ]
"#,
    },
    Deviation {
        case: "014-devices",
        file: "containers/onboot/001-label-devices/config.json",
        number: 3,
        linuxkit: r#""hostID": 0,"#,
        ours: r#""hostID": 100000,"#,
    },
    Deviation {
        case: "015-resources",
        file: "containers/onboot/001-label-resources/config.json",
        number: 3,
        linuxkit: r#""hostID": 0,"#,
        ours: r#""hostID": 100000,"#,
    },
    Deviation {
        case: "016-process-misc",
        file: "containers/onboot/000-misc/config.json",
        number: 3,
        linuxkit: r#""hostID": 0,"#,
        ours: r#""hostID": 100000,"#,
    },
    Deviation {
        case: "024-example-linuxkit",
        file: "containers/services/rngd/config.json",
        number: 3,
        linuxkit: r#""hostID": 0,"#,
        ours: r#""hostID": 100000,"#,
    },
    Deviation {
        case: "025-example-sshd",
        file: "containers/onboot/001-rngd1/config.json",
        number: 3,
        linuxkit: r#""hostID": 0,"#,
        ours: r#""hostID": 100000,"#,
    },
    Deviation {
        case: "025-example-sshd",
        file: "containers/services/rngd/config.json",
        number: 3,
        linuxkit: r#""hostID": 0,"#,
        ours: r#""hostID": 100000,"#,
    },
    Deviation {
        case: "017-runtime",
        file: "containers/onboot/000-runtime/runtime.json",
        number: 3,
        linuxkit: r#""hostID": 0,"#,
        ours: r#""hostID": 1000,"#,
    },
    Deviation {
        case: "015-resources",
        file: "containers/onboot/000-resources/config.json",
        number: 3,
        linuxkit: r#""kernel": 0,
                "swappiness": 10
"#,
        ours: r#""kernel": 0,
                "kernelTCP": 1000,
                "swappiness": 10,
                "disableOOMKiller": true
"#,
    },
    Deviation {
        case: "015-resources",
        file: "containers/onboot/000-resources/config.json",
        number: 3,
        linuxkit: r#""period": 100000,
"#,
        ours: r#""period": 100000,
                "realtimeRuntime": 950000,
                "realtimePeriod": 1000000,
"#,
    },
    Deviation {
        case: "015-resources",
        file: "containers/onboot/000-resources/config.json",
        number: 3,
        linuxkit: r#""blockIO": {
                "weight": 500
            },
            "network": {
"#,
        ours: r#""blockIO": {
                "weight": 500,
                "leafWeight": 300,
                "weightDevice": [
                    {
                        "major": 8,
                        "minor": 0,
                        "weight": 100,
                        "leafWeight": 50
                    }
                ],
                "throttleReadBpsDevice": [
                    {
                        "major": 8,
                        "minor": 0,
                        "rate": 1048576
                    }
                ],
                "throttleWriteBpsDevice": [
                    {
                        "major": 8,
                        "minor": 0,
                        "rate": 1048576
                    }
                ],
                "throttleReadIOPSDevice": [
                    {
                        "major": 8,
                        "minor": 0,
                        "rate": 100
                    }
                ],
                "throttleWriteIOPSDevice": [
                    {
                        "major": 8,
                        "minor": 0,
                        "rate": 100
                    }
                ]
            },
            "hugepageLimits": [
                {
                    "pageSize": "2MB",
                    "limit": 1024
                }
            ],
            "network": {
                "classID": 1048577,
"#,
    },
];

fn corpus_dir() -> PathBuf {
    let candidates = [
        std::env::var_os("MOBY_CONFORMANCE").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance")),
        Some(PathBuf::from("/work/shared/conformance")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("cases").is_dir())
        .expect("conformance corpus not found: set MOBY_CONFORMANCE to its directory")
}

/// YAML to JSON values, as LinuxKit's decoder sees the document (merge keys applied).
fn yaml_to_json(yaml: &Yaml) -> Value {
    match yaml {
        Yaml::Real(text) => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Yaml::Integer(n) => Value::from(*n),
        Yaml::String(s) => Value::from(s.as_str()),
        Yaml::Boolean(b) => Value::from(*b),
        Yaml::Array(list) => Value::Array(list.iter().map(yaml_to_json).collect()),
        Yaml::Hash(hash) => {
            let mut object = serde_json::Map::new();
            let mut merged = Vec::new();
            for (key, value) in hash {
                let key = match key {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(n) => n.to_string(),
                    other => panic!("unsupported YAML key {other:?}"),
                };
                if key == "<<" {
                    match value {
                        Yaml::Array(list) => merged.extend(list.iter().map(yaml_to_json)),
                        one => merged.push(yaml_to_json(one)),
                    }
                } else {
                    object.insert(key, yaml_to_json(value));
                }
            }
            // Explicit keys win over merged ones, and earlier merged maps over later ones.
            for source in merged {
                if let Value::Object(source) = source {
                    for (key, value) in source {
                        object.entry(key).or_insert(value);
                    }
                }
            }
            Value::Object(object)
        }
        Yaml::Null => Value::Null,
        other => panic!("unsupported YAML node {other:?}"),
    }
}

/// The spec of a case: its yml files (the `args` of the corpus index) parsed and appended in
/// order, which is all that matters here of LinuxKit's merge of several files.
fn load_moby(corpus: &Path, case: &str) -> Moby {
    let index: Value = serde_json::from_slice(&fs::read(corpus.join("index.json")).unwrap()).unwrap();
    let entry = index
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == case)
        .unwrap_or_else(|| panic!("{case} not in the corpus index"));
    let mut moby = Moby::default();
    for arg in entry["args"].as_array().unwrap() {
        let path = corpus.join("cases").join(case).join(arg.as_str().unwrap());
        let text = fs::read_to_string(path).unwrap();
        let docs = YamlLoader::load_from_str(&text).unwrap();
        let value = docs.first().map_or(Value::Null, yaml_to_json);
        let part: Moby = serde_json::from_value(value).unwrap();
        moby.onboot.extend(part.onboot);
        moby.onshutdown.extend(part.onshutdown);
        moby.services.extend(part.services);
        moby.volumes.extend(part.volumes);
    }
    moby
}

/// What a container image provides: its config's defaults and its label.
struct ImageInfo {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: String,
    label: Option<ImageConfig>,
}

impl ImageInfo {
    fn defaults(&self) -> ImageDefaults<'_> {
        ImageDefaults {
            entrypoint: self.entrypoint.as_deref(),
            cmd: self.cmd.as_deref(),
            env: self.env.as_deref(),
            working_dir: &self.working_dir,
        }
    }
}

fn read_blob(cache: &Path, digest: &str) -> Value {
    let hex = digest.strip_prefix("sha256:").unwrap();
    let bytes = fs::read(cache.join("blobs/sha256").join(hex)).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn image_info(cache: &Path, reference: &str) -> ImageInfo {
    let index: Value = serde_json::from_slice(&fs::read(cache.join("index.json")).unwrap()).unwrap();
    let descriptor = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == reference)
        .unwrap_or_else(|| panic!("{reference} not in the cache"));
    let mut manifest = read_blob(cache, descriptor["digest"].as_str().unwrap());
    if manifest["manifests"].is_array() {
        let amd64 = manifest["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["platform"]["architecture"] == "amd64")
            .unwrap()
            .clone();
        manifest = read_blob(cache, amd64["digest"].as_str().unwrap());
    }
    let config = read_blob(cache, manifest["config"]["digest"].as_str().unwrap());
    let config = &config["config"];
    let strings = |v: &Value| -> Option<Vec<String>> { serde_json::from_value(v.clone()).ok() };
    ImageInfo {
        entrypoint: strings(&config["Entrypoint"]),
        cmd: strings(&config["Cmd"]),
        env: strings(&config["Env"]),
        working_dir: config["WorkingDir"].as_str().unwrap_or_default().to_string(),
        label: config["Labels"]["org.mobyproject.config"]
            .as_str()
            .map(|text| serde_json::from_str(text).unwrap()),
    }
}

/// Generates every bundle of a case: (path under `files/`, bytes).
fn generate_case(corpus: &Path, case: &str) -> Vec<(String, Vec<u8>)> {
    let cache = corpus.join("cache");
    let moby = load_moby(corpus, case);
    let ids = IdMap::from_moby(&moby);
    let volumes = Volumes::from_moby(&moby);
    // Where each image reference was first unpacked, as LinuxKit's dupMap.
    let mut unpacked: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    let sections = [
        ("onboot", &moby.onboot, true),
        ("onshutdown", &moby.onshutdown, true),
        ("services", &moby.services, false),
    ];
    for (section, entries, numbered) in sections {
        for (i, entry) in entries.iter().enumerate() {
            let info = image_info(&cache, &entry.image);
            let bundle = generate(entry, info.label.as_ref(), &info.defaults(), &ids, &volumes)
                .unwrap_or_else(|e| panic!("{case} {section}[{i}]: {e}"));
            let dir = if numbered {
                format!("containers/{section}/{i:03}-{}", entry.name)
            } else {
                format!("containers/{section}/{}", entry.name)
            };
            let tree = if bundle.readonly { "rootfs" } else { "lower" };
            let lower = unpacked
                .entry(entry.image.clone())
                .or_insert_with(|| format!("{dir}/{tree}"))
                .clone();
            let runtime = runtime_json(&bundle.runtime, rootfs_mounts(&dir, &lower, bundle.readonly)).unwrap();
            out.push((format!("{dir}/config.json"), bundle.config_json));
            out.push((format!("{dir}/runtime.json"), runtime));
        }
    }
    out
}

/// The expected bytes of a file, with our deliberate deviations applied.
fn expected_bytes(corpus: &Path, case: &str, file: &str) -> (Vec<u8>, Vec<u8>) {
    let linuxkit = fs::read(corpus.join("expected").join(case).join("files").join(file))
        .unwrap_or_else(|e| panic!("{case}/{file}: {e}"));
    let mut ours = String::from_utf8(linuxkit.clone()).unwrap();
    for d in DEVIATIONS.iter().filter(|d| d.case == case && d.file == file) {
        assert!(
            ours.contains(d.linuxkit),
            "deviation {} of {case}/{file} no longer applies: {:?} not found",
            d.number,
            d.linuxkit
        );
        ours = ours.replace(d.linuxkit, d.ours);
    }
    (linuxkit, ours.into_bytes())
}

#[test]
fn corpus_config_and_runtime_files_match() {
    let corpus = corpus_dir();
    let mut failures = Vec::new();
    let (mut total, mut identical, mut deviating) = (0, 0, 0);
    for case in CASES {
        let generated = generate_case(&corpus, case);
        // Every expected bundle file is generated, and nothing more.
        let containers = corpus.join("expected").join(case).join("files/containers");
        let mut expected_files = Vec::new();
        for section in ["onboot", "onshutdown", "services"] {
            let Ok(dirs) = fs::read_dir(containers.join(section)) else {
                continue;
            };
            for dir in dirs {
                let name = dir.unwrap().file_name().into_string().unwrap();
                for file in ["config.json", "runtime.json"] {
                    expected_files.push(format!("containers/{section}/{name}/{file}"));
                }
            }
        }
        expected_files.sort();
        let mut generated_files: Vec<String> = generated.iter().map(|(p, _)| p.clone()).collect();
        generated_files.sort();
        assert_eq!(generated_files, expected_files, "{case}: bundle files");

        for (file, bytes) in generated {
            total += 1;
            let (linuxkit, ours) = expected_bytes(&corpus, case, &file);
            if bytes == linuxkit {
                identical += 1;
            } else if bytes == ours {
                deviating += 1;
            } else {
                failures.push(format!(
                    "{case}/{file}:\n--- expected\n{}\n--- generated\n{}",
                    String::from_utf8_lossy(&ours),
                    String::from_utf8_lossy(&bytes)
                ));
            }
        }
    }
    println!("{total} files: {identical} identical to LinuxKit, {deviating} with deliberate deviations");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(total >= 150, "only {total} files compared");
}

#[test]
fn every_deviation_is_used() {
    let corpus = corpus_dir();
    for d in DEVIATIONS {
        let (linuxkit, ours) = expected_bytes(&corpus, d.case, d.file);
        assert_ne!(linuxkit, ours, "{}/{}", d.case, d.file);
    }
}
