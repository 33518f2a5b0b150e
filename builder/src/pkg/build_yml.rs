//! `build.yml`: a package's identity (LinuxKit's fields), its image settings and its `rootfs:`
//! steps (see `docs/pkg.md`). Read with the spec's YAML reader, so that every problem names
//! `build.yml:LINE:COLUMN` and the field, a key written twice is an error, and aliases are bounded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::PkgError;
use crate::spec::yaml::{self, Mark, Node, ScalarKind, Value as Yaml};

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
    /// The file, and where each top-level key and each step (`rootfs[2]`) was written.
    file: PathBuf,
    marks: BTreeMap<String, Mark>,
}

/// Settings a step may carry (which steps take which is in [`STEP_KEYS`]).
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
        /// Owner (a link has no mode).
        attrs: Attrs,
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

/// The keys each step kind takes: only what the step acts on, so that nothing is silently
/// ignored (`mode` on a link, `owner` on a `debs:` step, ...).
const STEP_KEYS: [(&str, &[&str]); 8] = [
    ("debs", &["debs", "skip"]),
    ("copy", &["copy", "to", "mode", "owner"]),
    ("file", &["file", "content", "mode", "owner"]),
    ("dir", &["dir", "mode", "owner"]),
    ("symlink", &["symlink", "target", "owner"]),
    ("remove", &["remove"]),
    ("rust", &["rust", "bin", "to", "mode", "owner"]),
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
    "network",
    "disable-cache",
    "dockerfile",
    "buildArgs",
];

/// LinuxKit's keys for its Dockerfile builds, which we do not do: an error where ignoring them
/// could change the image, a warning where it cannot (see docs/pkg.md).
const DOCKERFILE_KEYS: [(&str, Option<&str>); 4] = [
    ("dockerfile", None),
    ("buildArgs", None),
    (
        "network",
        Some("rootfs: steps run on the host, with its network; only a Dockerfile build could be cut off"),
    ),
    (
        "disable-cache",
        Some("moby pkg build caches no steps: every build runs them all"),
    ),
];

/// Reads one `build.yml`, recording positions and reporting problems at them.
struct Ctx<'a> {
    file: &'a Path,
    marks: BTreeMap<String, Mark>,
}

/// A problem at `mark` in `file`.
fn invalid(file: &Path, mark: Mark, field: &str, problem: impl std::fmt::Display) -> PkgError {
    PkgError::Invalid {
        file: file.to_path_buf(),
        line: mark.line,
        column: mark.column,
        field: field.to_string(),
        problem: problem.to_string(),
    }
}

impl Ctx<'_> {
    fn err(&self, node: &Node, path: &str, problem: impl std::fmt::Display) -> PkgError {
        invalid(self.file, node.mark, path, problem)
    }

    /// The value of `key` in the map `map`, if given (null counts as not given).
    fn get<'n>(&self, map: &'n Node, key: &str) -> Option<&'n Node> {
        let Yaml::Map(pairs) = &map.value else { return None };
        pairs
            .iter()
            .find(|(k, _)| scalar_text(k) == Some(key))
            .map(|(_, v)| v)
            .filter(|v| scalar_kind(v) != Some(ScalarKind::Null))
    }

    fn string(&self, v: &Node, path: &str) -> Result<String, PkgError> {
        match scalar_text(v) {
            Some(text) if scalar_kind(v) != Some(ScalarKind::Null) => Ok(text.to_string()),
            _ => Err(self.err(
                v,
                path,
                format!("expected a string, found {}", v.json_type().described()),
            )),
        }
    }

    fn opt_string(&self, map: &Node, key: &str, path: &str) -> Result<Option<String>, PkgError> {
        self.get(map, key).map(|v| self.string(v, &join(path, key))).transpose()
    }

    fn req_string(&self, map: &Node, key: &str, path: &str) -> Result<String, PkgError> {
        self.opt_string(map, key, path)?
            .ok_or_else(|| self.err(map, &join(path, key), "required field is missing"))
    }

    fn strings(&self, map: &Node, key: &str, path: &str) -> Result<Vec<String>, PkgError> {
        let path = join(path, key);
        match self.get(map, key) {
            None => Ok(Vec::new()),
            Some(Node {
                value: Yaml::Seq(items),
                ..
            }) => items
                .iter()
                .enumerate()
                .map(|(i, item)| self.string(item, &format!("{path}[{i}]")))
                .collect(),
            Some(other) => Err(self.err(
                other,
                &path,
                format!("expected a list of strings, found {}", other.json_type().described()),
            )),
        }
    }

    /// An absolute path in the image.
    fn image_path(&self, map: &Node, key: &str, path: &str) -> Result<String, PkgError> {
        let p = self.req_string(map, key, path)?;
        if !p.starts_with('/') || p.split('/').any(|c| c == "..") {
            return Err(self.err(
                self.get(map, key).unwrap_or(map),
                &join(path, key),
                format!("{p:?} must be an absolute path in the image, without `..`"),
            ));
        }
        Ok(p)
    }

    /// A path inside the package folder.
    fn package_path(&self, map: &Node, key: &str, path: &str) -> Result<PathBuf, PkgError> {
        let p = self.req_string(map, key, path)?;
        if p.starts_with('/') {
            return Err(self.err(
                self.get(map, key).unwrap_or(map),
                &join(path, key),
                format!("{p:?} must be relative to the package folder"),
            ));
        }
        Ok(PathBuf::from(p))
    }

    fn attrs(&self, map: &Node, path: &str) -> Result<Attrs, PkgError> {
        let mode = match self.opt_string(map, "mode", path)? {
            None => None,
            Some(m) => Some(
                u32::from_str_radix(&m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| {
                        self.err(
                            self.get(map, "mode").unwrap_or(map),
                            &join(path, "mode"),
                            format!("{m:?} is not an octal mode like \"0755\""),
                        )
                    })?,
            ),
        };
        let owner = match self.opt_string(map, "owner", path)? {
            None => None,
            Some(o) => {
                let parsed = o
                    .split_once(':')
                    .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)));
                Some(parsed.ok_or_else(|| {
                    self.err(
                        self.get(map, "owner").unwrap_or(map),
                        &join(path, "owner"),
                        format!("{o:?} is not UID:GID"),
                    )
                })?)
            }
        };
        Ok(Attrs { mode, owner })
    }

    fn step(&mut self, v: &Node, path: &str) -> Result<Step, PkgError> {
        let Yaml::Map(pairs) = &v.value else {
            return Err(self.err(
                v,
                path,
                format!("expected a step (a map), found {}", v.json_type().described()),
            ));
        };
        self.marks.insert(path.to_string(), v.mark);
        let keys: Vec<(&str, &Node)> = pairs
            .iter()
            .map(|(k, _)| (scalar_text(k).unwrap_or_default(), k))
            .collect();
        let Some((kind_name, allowed)) = STEP_KEYS.iter().find(|(k, _)| keys.iter().any(|(key, _)| key == k)) else {
            let names: Vec<&str> = STEP_KEYS.iter().map(|(k, _)| *k).collect();
            return Err(self.err(v, path, format!("not a step: use one of {}", names.join(", "))));
        };
        for (key, node) in &keys {
            if !allowed.contains(key) {
                return Err(self.err(
                    node,
                    &join(path, key),
                    format!("not a field of a `{kind_name}` step (it takes {})", allowed.join(", ")),
                ));
            }
        }
        Ok(match *kind_name {
            "debs" => Step::Debs {
                names: self.strings(v, "debs", path)?,
                skip: self.strings(v, "skip", path)?,
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
                attrs: self.attrs(v, path)?,
            },
            "remove" => Step::Remove {
                paths: {
                    let paths = self.strings(v, "remove", path)?;
                    if let Some(bad) = paths
                        .iter()
                        .find(|p| !p.starts_with('/') || p.split('/').any(|c| c == ".."))
                    {
                        return Err(self.err(
                            self.get(v, "remove").unwrap_or(v),
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

fn scalar_text(v: &Node) -> Option<&str> {
    match &v.value {
        Yaml::Scalar(s) => Some(&s.text),
        _ => None,
    }
}

fn scalar_kind(v: &Node) -> Option<ScalarKind> {
    match &v.value {
        Yaml::Scalar(s) => Some(s.kind),
        _ => None,
    }
}

/// YAML to JSON, as Go's yaml + encoding/json round trip gives it (map keys as strings).
fn to_json(v: &Node) -> Value {
    match &v.value {
        Yaml::Scalar(s) => match s.kind {
            ScalarKind::Null => Value::Null,
            ScalarKind::Bool(b) => Value::from(b),
            ScalarKind::Int(i) => i64::try_from(i)
                .map(Value::from)
                .or_else(|_| u64::try_from(i).map(Value::from))
                .unwrap_or_else(|_| Value::from(i as f64)),
            ScalarKind::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
            ScalarKind::Str | ScalarKind::Merge => Value::from(s.text.clone()),
        },
        Yaml::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Map(pairs) => Value::Object(
            pairs
                .iter()
                .map(|(k, v)| (scalar_text(k).unwrap_or_default().to_string(), to_json(v)))
                .collect(),
        ),
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
        let file = dir.join("build.yml");
        let doc = match yaml::parse(text) {
            Ok(doc) => doc,
            Err(e) => return Err(invalid(&file, e.mark, "", format!("invalid YAML: {}", e.message))),
        };
        let empty = Node {
            mark: Mark { line: 1, column: 1 },
            value: Yaml::Map(Vec::new()),
        };
        let doc = match doc {
            None => empty,
            Some(node) if scalar_kind(&node) == Some(ScalarKind::Null) => empty,
            Some(
                node @ Node {
                    value: Yaml::Map(_), ..
                },
            ) => node,
            Some(other) => {
                return Err(invalid(
                    &file,
                    other.mark,
                    "",
                    format!("expected a map of fields, found {}", other.json_type().described()),
                ))
            }
        };
        let mut ctx = Ctx {
            file: &file,
            marks: BTreeMap::new(),
        };
        if let Yaml::Map(pairs) = &doc.value {
            for (key, _) in pairs {
                let name = scalar_text(key).unwrap_or_default();
                if !TOP_KEYS.contains(&name) {
                    return Err(ctx.err(key, name, "unknown field (see docs/pkg.md)"));
                }
                ctx.marks.insert(name.to_string(), key.mark);
            }
        }
        let extra_sources = ctx
            .strings(&doc, "extra-sources", "")?
            .into_iter()
            .enumerate()
            .map(|(i, pair)| {
                let (src, dst) = pair
                    .split_once(':')
                    .filter(|(s, d)| !s.is_empty() && !d.is_empty() && !d.contains('/') && *d != "..")
                    .ok_or_else(|| {
                        ctx.err(
                            ctx.get(&doc, "extra-sources").unwrap_or(&doc),
                            &format!("extra-sources[{i}]"),
                            format!("{pair:?} is not SRC:NAME"),
                        )
                    })?;
                Ok((PathBuf::from(src), dst.to_string()))
            })
            .collect::<Result<Vec<_>, PkgError>>()?;
        let labels = match ctx.get(&doc, "labels") {
            None => BTreeMap::new(),
            Some(Node {
                value: Yaml::Map(pairs),
                ..
            }) => pairs
                .iter()
                .map(|(k, v)| {
                    let key = ctx.string(k, "labels")?;
                    let value = ctx.string(v, &format!("labels.{key}"))?;
                    Ok((key, value))
                })
                .collect::<Result<_, PkgError>>()?,
            Some(other) => {
                return Err(ctx.err(
                    other,
                    "labels",
                    format!("expected a map, found {}", other.json_type().described()),
                ))
            }
        };
        let config = match ctx.get(&doc, "config") {
            None => None,
            Some(
                v @ Node {
                    value: Yaml::Map(_), ..
                },
            ) => Some(ctx.config(v)?),
            Some(other) => {
                return Err(ctx.err(
                    other,
                    "config",
                    format!("expected a map, found {}", other.json_type().described()),
                ))
            }
        };
        let steps = match ctx.get(&doc, "rootfs") {
            None => Vec::new(),
            Some(Node {
                value: Yaml::Seq(items),
                ..
            }) => items
                .iter()
                .enumerate()
                .map(|(i, item)| ctx.step(item, &format!("rootfs[{i}]")))
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(ctx.err(
                    other,
                    "rootfs",
                    format!("expected a list of steps, found {}", other.json_type().described()),
                ))
            }
        };
        let env = ctx.strings(&doc, "env", "")?;
        Ok(BuildYml {
            image: ctx.req_string(&doc, "image", "")?,
            org: ctx.opt_string(&doc, "org", "")?.unwrap_or_else(|| DEFAULT_ORG.into()),
            tag: ctx.opt_string(&doc, "tag", "")?.unwrap_or_else(|| DEFAULT_TAG.into()),
            arches: ctx.strings(&doc, "arches", "")?,
            extra_sources,
            config,
            labels,
            entrypoint: ctx.strings(&doc, "entrypoint", "")?,
            cmd: ctx.strings(&doc, "cmd", "")?,
            env: if env.is_empty() { vec![DEFAULT_ENV.into()] } else { env },
            workdir: ctx.opt_string(&doc, "workdir", "")?.unwrap_or_default(),
            steps,
            file: file.clone(),
            marks: ctx.marks,
        })
    }

    /// A problem with `field` (`arches`, `rootfs[2]`, ...), at the place it was written.
    pub fn error(&self, field: &str, problem: impl std::fmt::Display) -> PkgError {
        invalid(&self.file, self.mark(field), field, problem)
    }

    /// A failure of step `index` (of kind `kind`), at the place the step was written.
    pub fn step_error(&self, index: usize, kind: &'static str, reason: String) -> PkgError {
        let at = self.mark(&format!("rootfs[{index}]"));
        PkgError::Step {
            file: self.file.clone(),
            line: at.line,
            column: at.column,
            index,
            kind,
            reason,
        }
    }

    /// Where `field` was written (the document's start if it was not).
    pub(crate) fn mark(&self, field: &str) -> Mark {
        self.marks.get(field).copied().unwrap_or(Mark { line: 1, column: 1 })
    }

    /// Refuses what `moby pkg build` cannot build as written: a LinuxKit Dockerfile package, a
    /// `build.yml` without `rootfs:`, and Dockerfile-build keys that would change the image;
    /// warns of those that cannot.
    pub fn check_buildable(&self, dir: &Path) -> Result<(), PkgError> {
        let dockerfile = std::fs::symlink_metadata(dir.join("Dockerfile")).is_ok();
        let given: Vec<&str> = DOCKERFILE_KEYS
            .iter()
            .map(|(key, _)| *key)
            .filter(|key| self.marks.contains_key(*key))
            .collect();
        if !self.marks.contains_key("rootfs") {
            if dockerfile || !given.is_empty() {
                let what = if dockerfile {
                    "Dockerfile".to_string()
                } else {
                    given.join(", ")
                };
                return Err(self.error(
                    given.first().copied().unwrap_or(""),
                    format!(
                        "a LinuxKit Dockerfile package ({what}): moby pkg build does not run Dockerfiles; \
                         describe the image with rootfs: steps (docs/pkg.md)"
                    ),
                ));
            }
            return Err(self.error(
                "",
                "no rootfs: steps, so the image would be empty: add rootfs: steps (docs/pkg.md), or \
                 `rootfs: []` for an image that only carries its config",
            ));
        }
        for (key, harmless) in DOCKERFILE_KEYS {
            if !self.marks.contains_key(key) {
                continue;
            }
            match harmless {
                None => {
                    return Err(self.error(
                        key,
                        "belongs to LinuxKit's Dockerfile builds, which moby pkg build does not run: \
                         remove it (the image comes from the rootfs: steps)",
                    ))
                }
                Some(why) => {
                    let at = self.mark(key);
                    tracing::warn!(
                        "{}:{}:{}: {key}: ignored: {why}",
                        self.file.display(),
                        at.line,
                        at.column
                    )
                }
            }
        }
        if dockerfile {
            tracing::warn!(
                "{}: ignored: the image is built from the rootfs: steps of build.yml",
                dir.join("Dockerfile").display()
            );
        }
        Ok(())
    }
}

impl Ctx<'_> {
    /// The `config` map as the label's JSON, checked as `moby build` will check the label.
    fn config(&self, node: &Node) -> Result<Value, PkgError> {
        let json = to_json(node);
        match crate::spec::parse_label(&json.to_string()) {
            Ok(_) => Ok(json),
            Err(errors) => {
                let first = errors.into_iter().next();
                let (path, message) = first.map(|e| (e.path, e.message)).unwrap_or_default();
                Err(self.err(node, &join("config", &path), message))
            }
        }
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
    owner: "0:0"
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
    fn mistakes_are_named_with_their_place_and_path() {
        let cases = [
            ("org: x", "build.yml:1:1: image: required field is missing"),
            ("image: x\nimgae: y", "build.yml:2:1: imgae: unknown field"),
            ("image: x\nimage: y", "build.yml:2:1: invalid YAML: "),
            (
                "image: x\nrootfs:\n  - copy: a\n",
                "build.yml:3:5: rootfs[0].to: required field is missing",
            ),
            (
                "image: x\nrootfs:\n  - copy: a\n    to: etc/a",
                "build.yml:4:9: rootfs[0].to: \"etc/a\" must be an absolute path",
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
                "rootfs[0].to: not a field of a `dir` step (it takes dir, mode, owner)",
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
                "build.yml:2:13: entrypoint: expected a list of strings, found a string",
            ),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with("pkg/x/build.yml:"), "{e}");
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    /// Every key a step accepts is acted on: `mode` of a link, `owner` of a `debs:` step, ... are
    /// refused, not ignored.
    #[test]
    fn step_keys_that_would_be_ignored_are_refused() {
        for (step, key, kind) in [
            ("{symlink: /a, target: b, mode: \"0755\"}", "mode", "symlink"),
            ("{debs: [a], owner: \"1:1\"}", "owner", "debs"),
            ("{debs: [a], mode: \"0644\"}", "mode", "debs"),
            ("{remove: [/a], owner: \"1:1\"}", "owner", "remove"),
            ("{script: a.sh, mode: \"0755\"}", "mode", "script"),
        ] {
            let e = parse(&format!("image: x\nrootfs:\n  - {step}\n")).unwrap_err();
            assert!(
                e.contains(&format!("rootfs[0].{key}: not a field of a `{kind}` step")),
                "{step}: {e}"
            );
        }
        let b = parse("image: x\nrootfs: [{symlink: /a, target: b, owner: \"1:2\"}]").unwrap();
        assert_eq!(
            b.steps[0],
            Step::Symlink {
                path: "/a".into(),
                target: "b".into(),
                attrs: Attrs {
                    mode: None,
                    owner: Some((1, 2))
                }
            }
        );
    }

    #[test]
    fn config_is_checked_as_the_label_will_be() {
        let e = parse("image: x\nconfig:\n  capabilites: [all]\n").unwrap_err();
        assert!(e.starts_with("pkg/x/build.yml:3:3: config"), "{e}");
        assert!(e.contains("capabilites"), "{e}");
        assert!(parse("image: x\nconfig:\n  capabilities: [all]\n  binds: [/a:/a]\n").is_ok());
    }

    /// A LinuxKit package (a Dockerfile, its keys) is refused by the build, not turned into an
    /// empty image; keys that cannot change the image only warn.
    #[test]
    fn dockerfile_packages_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let check = |text: &str| {
            BuildYml::parse(d.path(), text)
                .unwrap()
                .check_buildable(d.path())
                .map_err(|e| e.to_string())
        };
        let e = check("image: x\nnetwork: true\nbuildArgs: [A=1]\n").unwrap_err();
        assert!(
            e.contains("build.yml:3:1: buildArgs: a LinuxKit Dockerfile package (buildArgs, network)"),
            "{e}"
        );
        let e = check("image: x\n").unwrap_err();
        assert!(
            e.contains("build.yml:1:1: no rootfs: steps, so the image would be empty"),
            "{e}"
        );
        assert!(check("image: x\nrootfs: []\n").is_ok(), "an explicitly empty image");
        let e = check("image: x\nrootfs: []\ndockerfile: Dockerfile.moby\n").unwrap_err();
        assert!(
            e.contains("build.yml:3:1: dockerfile: belongs to LinuxKit's Dockerfile builds"),
            "{e}"
        );
        let e = check("image: x\nrootfs: []\nbuildArgs: [A=1]\n").unwrap_err();
        assert!(
            e.contains("build.yml:3:1: buildArgs: belongs to LinuxKit's Dockerfile builds"),
            "{e}"
        );
        assert!(check("image: x\nrootfs: []\nnetwork: true\ndisable-cache: true\n").is_ok());
        std::fs::write(d.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        let e = check("image: x\norg: y\n").unwrap_err();
        assert!(e.contains("a LinuxKit Dockerfile package (Dockerfile)"), "{e}");
        assert!(
            check("image: x\nrootfs: []\n").is_ok(),
            "a Dockerfile beside rootfs: steps is ignored"
        );
    }
}
