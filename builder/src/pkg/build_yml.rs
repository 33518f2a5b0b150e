//! `build.yml`: a package's identity (LinuxKit's fields), its image settings and its `rootfs:`
//! steps (see `docs/pkg.md`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

use super::PkgError;

/// LinuxKit's default organisation.
const DEFAULT_ORG: &str = "linuxkit";
/// LinuxKit's default tag template.
const DEFAULT_TAG: &str = "{{.Hash}}";
/// The image `Env` when `build.yml` gives none.
pub const DEFAULT_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything `build.yml` says.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildYml {
    /// `image`.
    pub image: String,
    /// `org`.
    pub org: String,
    /// `tag` template.
    pub tag: String,
    /// `arches` (OCI names); empty means this machine's.
    pub arches: Vec<String>,
    /// `extra-sources`: (source relative to the package, destination name).
    pub extra_sources: Vec<(PathBuf, String)>,
    /// `config`: the `org.mobyproject.config` label, as JSON.
    pub config: Option<Value>,
    /// `labels`.
    pub labels: BTreeMap<String, String>,
    /// `entrypoint`.
    pub entrypoint: Vec<String>,
    /// `cmd`.
    pub cmd: Vec<String>,
    /// `env`.
    pub env: Vec<String>,
    /// `workdir`.
    pub workdir: String,
    /// `rootfs:` steps, in order.
    pub steps: Vec<Step>,
}

/// Settings every step may carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attrs {
    /// `mode`: permission bits for what the step creates.
    pub mode: Option<u32>,
    /// `owner`: `UID:GID` for what the step creates.
    pub owner: Option<(u64, u64)>,
}

/// One `rootfs:` step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `debs: [...]` (+ `skip: [...]`).
    Debs {
        /// Packages to install with their dependencies.
        names: Vec<String>,
        /// Packages of the closure to leave out.
        skip: Vec<String>,
    },
    /// `copy: SRC` + `to: /PATH`.
    Copy {
        /// Source, relative to the package (or an `extra-sources` destination name).
        src: PathBuf,
        /// Destination in the image.
        to: String,
        /// Mode/owner.
        attrs: Attrs,
    },
    /// `file: /PATH` + `content: TEXT`.
    File {
        /// Path in the image.
        path: String,
        /// Contents.
        content: String,
        /// Mode/owner.
        attrs: Attrs,
    },
    /// `dir: /PATH`.
    Dir {
        /// Path in the image.
        path: String,
        /// Mode/owner.
        attrs: Attrs,
    },
    /// `symlink: /PATH` + `target: T`.
    Symlink {
        /// Path in the image.
        path: String,
        /// Link target.
        target: String,
    },
    /// `remove: [/PATH, ...]`.
    Remove {
        /// Paths to delete.
        paths: Vec<String>,
    },
    /// `rust: CRATE_DIR` + `bin: NAME` + `to: /PATH`.
    Rust {
        /// The crate, relative to the package.
        krate: PathBuf,
        /// The binary to build.
        bin: String,
        /// Where it goes in the image.
        to: String,
        /// Mode/owner.
        attrs: Attrs,
    },
    /// `script: FILE`.
    Script {
        /// The script, relative to the package.
        file: PathBuf,
    },
}

/// The keys each step kind allows, besides `mode` and `owner`.
const STEP_KEYS: [(&str, &[&str]); 8] = [
    ("debs", &["debs", "skip"]),
    ("copy", &["copy", "to"]),
    ("file", &["file", "content"]),
    ("dir", &["dir"]),
    ("symlink", &["symlink", "target"]),
    ("remove", &["remove"]),
    ("rust", &["rust", "bin", "to"]),
    ("script", &["script"]),
];

/// The top-level keys of `build.yml` we know (LinuxKit's and ours).
const TOP_KEYS: [&str; 16] = [
    "image",
    "org",
    "tag",
    "arches",
    "extra-sources",
    "config",
    "labels",
    "entrypoint",
    "cmd",
    "env",
    "workdir",
    "rootfs",
    // LinuxKit fields that do not apply to daemonless builds, accepted and ignored.
    "network",
    "disable-cache",
    "dockerfile",
    "buildArgs",
];

/// Reports a problem in `build.yml` of `dir`, at `path` (e.g. `rootfs[2].to`).
struct Ctx<'a> {
    dir: &'a Path,
}

impl Ctx<'_> {
    fn err(&self, path: &str, problem: impl std::fmt::Display) -> PkgError {
        PkgError::Invalid {
            dir: self.dir.to_path_buf(),
            problem: format!("{path}: {problem}"),
        }
    }

    fn string(&self, v: &Yaml, path: &str) -> Result<String, PkgError> {
        match v {
            Yaml::String(s) => Ok(s.clone()),
            Yaml::Integer(i) => Ok(i.to_string()),
            Yaml::Real(r) => Ok(r.clone()),
            Yaml::Boolean(b) => Ok(b.to_string()),
            other => Err(self.err(path, format!("expected a string, found {}", kind(other)))),
        }
    }

    fn opt_string(&self, map: &Yaml, key: &str, path: &str) -> Result<Option<String>, PkgError> {
        match &map[key] {
            Yaml::BadValue | Yaml::Null => Ok(None),
            v => self.string(v, &join(path, key)).map(Some),
        }
    }

    fn req_string(&self, map: &Yaml, key: &str, path: &str) -> Result<String, PkgError> {
        self.opt_string(map, key, path)?
            .ok_or_else(|| self.err(&join(path, key), "required field is missing"))
    }

    fn strings(&self, v: &Yaml, path: &str) -> Result<Vec<String>, PkgError> {
        match v {
            Yaml::BadValue | Yaml::Null => Ok(Vec::new()),
            Yaml::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| self.string(item, &format!("{path}[{i}]")))
                .collect(),
            other => Err(self.err(path, format!("expected a list of strings, found {}", kind(other)))),
        }
    }

    /// An absolute path in the image.
    fn image_path(&self, map: &Yaml, key: &str, path: &str) -> Result<String, PkgError> {
        let p = self.req_string(map, key, path)?;
        if !p.starts_with('/') || p.split('/').any(|c| c == "..") {
            return Err(self.err(
                &join(path, key),
                format!("{p:?} must be an absolute path in the image, without `..`"),
            ));
        }
        Ok(p)
    }

    /// A path inside the package folder.
    fn package_path(&self, map: &Yaml, key: &str, path: &str) -> Result<PathBuf, PkgError> {
        let p = self.req_string(map, key, path)?;
        if p.starts_with('/') {
            return Err(self.err(
                &join(path, key),
                format!("{p:?} must be relative to the package folder"),
            ));
        }
        Ok(PathBuf::from(p))
    }

    fn attrs(&self, map: &Yaml, path: &str) -> Result<Attrs, PkgError> {
        let mode = match self.opt_string(map, "mode", path)? {
            None => None,
            Some(m) => Some(
                u32::from_str_radix(&m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| {
                        self.err(&join(path, "mode"), format!("{m:?} is not an octal mode like \"0755\""))
                    })?,
            ),
        };
        let owner = match self.opt_string(map, "owner", path)? {
            None => None,
            Some(o) => {
                let parsed = o
                    .split_once(':')
                    .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)));
                Some(parsed.ok_or_else(|| self.err(&join(path, "owner"), format!("{o:?} is not UID:GID")))?)
            }
        };
        Ok(Attrs { mode, owner })
    }

    fn step(&self, v: &Yaml, path: &str) -> Result<Step, PkgError> {
        let Yaml::Hash(map) = v else {
            return Err(self.err(path, format!("expected a step (a map), found {}", kind(v))));
        };
        let keys: Vec<String> = map.keys().filter_map(|k| k.as_str().map(String::from)).collect();
        let Some((kind_name, allowed)) = STEP_KEYS.iter().find(|(k, _)| keys.iter().any(|key| key == k)) else {
            let names: Vec<&str> = STEP_KEYS.iter().map(|(k, _)| *k).collect();
            return Err(self.err(path, format!("not a step: use one of {}", names.join(", "))));
        };
        for key in &keys {
            if !allowed.contains(&key.as_str()) && key != "mode" && key != "owner" {
                return Err(self.err(&join(path, key), format!("unknown field of a `{kind_name}` step")));
            }
        }
        Ok(match *kind_name {
            "debs" => Step::Debs {
                names: self.strings(&v["debs"], &join(path, "debs"))?,
                skip: self.strings(&v["skip"], &join(path, "skip"))?,
            },
            "copy" => Step::Copy {
                src: self.package_path(v, "copy", path)?,
                to: self.image_path(v, "to", path)?,
                attrs: self.attrs(v, path)?,
            },
            "file" => Step::File {
                path: self.image_path(v, "file", path)?,
                content: self.opt_string(v, "content", path)?.unwrap_or_default(),
                attrs: self.attrs(v, path)?,
            },
            "dir" => Step::Dir {
                path: self.image_path(v, "dir", path)?,
                attrs: self.attrs(v, path)?,
            },
            "symlink" => Step::Symlink {
                path: self.image_path(v, "symlink", path)?,
                target: self.req_string(v, "target", path)?,
            },
            "remove" => Step::Remove {
                paths: {
                    let paths = self.strings(&v["remove"], &join(path, "remove"))?;
                    if let Some(bad) = paths
                        .iter()
                        .find(|p| !p.starts_with('/') || p.split('/').any(|c| c == ".."))
                    {
                        return Err(self.err(
                            &join(path, "remove"),
                            format!("{bad:?} must be an absolute path in the image, without `..`"),
                        ));
                    }
                    paths
                },
            },
            "rust" => Step::Rust {
                krate: self.package_path(v, "rust", path)?,
                bin: self.req_string(v, "bin", path)?,
                to: self.image_path(v, "to", path)?,
                attrs: self.attrs(v, path)?,
            },
            _ => Step::Script {
                file: self.package_path(v, "script", path)?,
            },
        })
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn kind(v: &Yaml) -> &'static str {
    match v {
        Yaml::Real(_) | Yaml::Integer(_) => "a number",
        Yaml::String(_) => "a string",
        Yaml::Boolean(_) => "a boolean",
        Yaml::Array(_) => "a list",
        Yaml::Hash(_) => "a map",
        Yaml::Alias(_) => "an alias",
        Yaml::Null => "null",
        Yaml::BadValue => "nothing",
    }
}

/// YAML to JSON, as Go's yaml + encoding/json round trip gives it (map keys as strings).
fn to_json(v: &Yaml) -> Value {
    match v {
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::from(s.clone()),
        Yaml::Boolean(b) => Value::from(*b),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        Yaml::Real(r) => r.clone(),
                        _ => String::new(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Yaml::Alias(_) | Yaml::Null | Yaml::BadValue => Value::Null,
    }
}

impl BuildYml {
    /// Reads and checks `DIR/build.yml`.
    pub fn load(dir: &Path) -> Result<BuildYml, PkgError> {
        let text = super::package_file(dir, "build.yml")
            .and_then(std::fs::read_to_string)
            .map_err(|source| PkgError::Read {
                dir: dir.to_path_buf(),
                source,
            })?;
        BuildYml::parse(dir, &text)
    }

    /// Parses the text of `DIR/build.yml`.
    pub fn parse(dir: &Path, text: &str) -> Result<BuildYml, PkgError> {
        let ctx = Ctx { dir };
        let docs = YamlLoader::load_from_str(text).map_err(|e| PkgError::Invalid {
            dir: dir.to_path_buf(),
            problem: e.to_string(),
        })?;
        let doc = docs.into_iter().next().unwrap_or(Yaml::Null);
        match &doc {
            Yaml::Hash(map) => {
                for key in map.keys() {
                    let name = key.as_str().unwrap_or_default();
                    if !TOP_KEYS.contains(&name) {
                        return Err(ctx.err(name, "unknown field (see docs/pkg.md)"));
                    }
                }
            }
            Yaml::Null => {}
            other => return Err(ctx.err("build.yml", format!("expected a map, found {}", kind(other)))),
        }
        let extra_sources = ctx
            .strings(&doc["extra-sources"], "extra-sources")?
            .into_iter()
            .enumerate()
            .map(|(i, pair)| {
                let (src, dst) = pair
                    .split_once(':')
                    .filter(|(s, d)| !s.is_empty() && !d.is_empty() && !d.contains('/') && *d != "..")
                    .ok_or_else(|| ctx.err(&format!("extra-sources[{i}]"), format!("{pair:?} is not SRC:NAME")))?;
                Ok((PathBuf::from(src), dst.to_string()))
            })
            .collect::<Result<Vec<_>, PkgError>>()?;
        let labels = match &doc["labels"] {
            Yaml::BadValue | Yaml::Null => BTreeMap::new(),
            Yaml::Hash(map) => map
                .iter()
                .map(|(k, v)| {
                    let key = ctx.string(k, "labels")?;
                    let value = ctx.string(v, &format!("labels.{key}"))?;
                    Ok((key, value))
                })
                .collect::<Result<_, PkgError>>()?,
            other => return Err(ctx.err("labels", format!("expected a map, found {}", kind(other)))),
        };
        let steps = match &doc["rootfs"] {
            Yaml::BadValue | Yaml::Null => Vec::new(),
            Yaml::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| ctx.step(item, &format!("rootfs[{i}]")))
                .collect::<Result<_, _>>()?,
            other => return Err(ctx.err("rootfs", format!("expected a list of steps, found {}", kind(other)))),
        };
        let env = ctx.strings(&doc["env"], "env")?;
        Ok(BuildYml {
            image: ctx.req_string(&doc, "image", "")?,
            org: ctx.opt_string(&doc, "org", "")?.unwrap_or_else(|| DEFAULT_ORG.into()),
            tag: ctx.opt_string(&doc, "tag", "")?.unwrap_or_else(|| DEFAULT_TAG.into()),
            arches: ctx.strings(&doc["arches"], "arches")?,
            extra_sources,
            config: match &doc["config"] {
                Yaml::BadValue | Yaml::Null => None,
                v @ Yaml::Hash(_) => Some(to_json(v)),
                other => return Err(ctx.err("config", format!("expected a map, found {}", kind(other)))),
            },
            labels,
            entrypoint: ctx.strings(&doc["entrypoint"], "entrypoint")?,
            cmd: ctx.strings(&doc["cmd"], "cmd")?,
            env: if env.is_empty() { vec![DEFAULT_ENV.into()] } else { env },
            workdir: ctx.opt_string(&doc, "workdir", "")?.unwrap_or_default(),
            steps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BuildYml, String> {
        BuildYml::parse(Path::new("pkg/x"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn every_field_and_step() {
        let b = parse(
            r#"
image: getty
org: moby
arches: [amd64]
extra-sources: ["../common:common"]
config:
  binds: [/etc/resolv.conf:/etc/resolv.conf]
  capabilities: [all]
  net: host
  rootfsPropagation: shared
  readonly: true
labels: {a: b}
entrypoint: [/usr/bin/getty.sh]
env: [INSECURE=false]
rootfs:
  - debs: [busybox-static]
    skip: [debconf]
  - copy: files/getty.sh
    to: /usr/bin/getty.sh
    mode: "0755"
  - file: /etc/motd
    content: "hello\n"
  - dir: /run/config
    owner: "1000:1000"
  - symlink: /bin/sh
    target: busybox
  - remove: [/usr/share/doc]
  - rust: ../init
    bin: init
    to: /sbin/init
  - script: build.sh
"#,
        )
        .unwrap();
        assert_eq!(
            (b.org.as_str(), b.image.as_str(), b.tag.as_str()),
            ("moby", "getty", "{{.Hash}}")
        );
        assert_eq!(b.extra_sources, [(PathBuf::from("../common"), "common".to_string())]);
        assert_eq!(
            serde_json::to_string(b.config.as_ref().unwrap()).unwrap(),
            r#"{"binds":["/etc/resolv.conf:/etc/resolv.conf"],"capabilities":["all"],"net":"host","readonly":true,"rootfsPropagation":"shared"}"#
        );
        assert_eq!(b.env, ["INSECURE=false"]);
        assert_eq!(b.steps.len(), 8);
        assert_eq!(
            b.steps[1],
            Step::Copy {
                src: "files/getty.sh".into(),
                to: "/usr/bin/getty.sh".into(),
                attrs: Attrs {
                    mode: Some(0o755),
                    owner: None
                }
            }
        );
        assert_eq!(
            b.steps[3],
            Step::Dir {
                path: "/run/config".into(),
                attrs: Attrs {
                    mode: None,
                    owner: Some((1000, 1000))
                }
            }
        );
        assert_eq!(parse("image: x").unwrap().env, [DEFAULT_ENV]);
    }

    #[test]
    fn mistakes_are_named_with_their_path() {
        let cases = [
            ("org: x", "build.yml: image: required field is missing"),
            ("image: x\nimgae: y", "imgae: unknown field"),
            (
                "image: x\nrootfs: [{copy: a}]",
                "rootfs[0].to: required field is missing",
            ),
            (
                "image: x\nrootfs: [{copy: a, to: etc/a}]",
                "rootfs[0].to: \"etc/a\" must be an absolute path",
            ),
            (
                "image: x\nrootfs: [{copy: /etc/a, to: /a}]",
                "rootfs[0].copy: \"/etc/a\" must be relative",
            ),
            (
                "image: x\nrootfs: [{dir: /a, mode: \"999\"}]",
                "rootfs[0].mode: \"999\" is not an octal mode",
            ),
            (
                "image: x\nrootfs: [{dir: /a, owner: root}]",
                "rootfs[0].owner: \"root\" is not UID:GID",
            ),
            (
                "image: x\nrootfs: [{dir: /a, to: /b}]",
                "rootfs[0].to: unknown field of a `dir` step",
            ),
            (
                "image: x\nrootfs: [{make: all}]",
                "rootfs[0]: not a step: use one of debs, copy",
            ),
            (
                "image: x\nrootfs: [{remove: [/a/../b]}]",
                "rootfs[0].remove: \"/a/../b\" must be an absolute path",
            ),
            (
                "image: x\nextra-sources: [a]",
                "extra-sources[0]: \"a\" is not SRC:NAME",
            ),
            (
                "image: x\nentrypoint: /bin/sh",
                "entrypoint: expected a list of strings, found a string",
            ),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with("package pkg/x: build.yml: "), "{e}");
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
