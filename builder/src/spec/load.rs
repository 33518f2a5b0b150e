//! Reading spec files and image labels into the model: parse, resolve `@pkg:` templates, check the
//! schema, decode, check the values, and merge several files as LinuxKit's `AppendConfig` does.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use super::error::{ErrorKind, ReadError, SpecError, SpecErrors};
use super::loaded::{HostPaths, Spec};
use super::model::{ImageConfig, Moby};
use super::schema::{render_path, Checked, Positions, Problem, Seg, Walker, IMAGE, MOBY};
use super::validate::{check_files, FileSpec};
use super::yaml::{self, Mark, Node, ScalarKind, Value};

/// One spec file's text and the name to report it under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The path as given on the command line, or `<stdin>`.
    pub name: String,
    /// The file's contents.
    pub text: String,
}

/// The largest spec file read, in bytes. LinuxKit's own specs take a few kilobytes; inline
/// `contents:` make them larger, but a file of megabytes belongs in a file of its own, named with
/// `source:`.
pub const MAX_SPEC_BYTES: u64 = 8 * 1024 * 1024;

impl Source {
    /// Reads one spec file (or stdin) named `name`, at most [`MAX_SPEC_BYTES`] of it: a larger one, or
    /// an endless one (`/dev/zero`), is an error rather than a growing buffer.
    pub fn read(name: &str, reader: impl Read) -> Result<Source, crate::Error> {
        Ok(Source::read_text(name, reader)?)
    }

    fn read_text(name: &str, reader: impl Read) -> Result<Source, ReadError> {
        let mut bytes = Vec::new();
        reader
            .take(MAX_SPEC_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| ReadError::Io {
                name: name.to_string(),
                source,
            })?;
        if bytes.len() as u64 > MAX_SPEC_BYTES {
            return Err(ReadError::TooLarge {
                name: name.to_string(),
                limit: MAX_SPEC_BYTES,
            });
        }
        let text = String::from_utf8(bytes).map_err(|e| ReadError::NotUtf8 {
            name: name.to_string(),
            offset: e.utf8_error().valid_up_to(),
        })?;
        Ok(Source {
            name: name.to_string(),
            text,
        })
    }
}

/// Turns `@pkg:DIR` templates into image tags (by building or hashing the package at `DIR`).
pub trait PkgResolver {
    /// Resolves one package directory. `dir` is the template's directory joined to the directory
    /// of the spec file that names it, as LinuxKit's `path.Join(filepath.Dir(file), DIR)`, then to
    /// [`HostPaths::base_dir`]; the error is a sentence saying why the package cannot be used.
    fn resolve(&self, dir: &Path) -> Result<String, String>;
}

/// The prefix of a package template.
const PKG_TEMPLATE: &str = "@pkg:";

/// Reads, checks and merges spec files in order, into the only kind of spec a build takes. Every
/// problem of every file is reported, sorted by file and position. `@pkg:` templates are resolved
/// by `pkgs` (none: they are errors); the host paths the spec names lead where `paths` says.
pub fn load(sources: &[Source], paths: HostPaths, pkgs: Option<&dyn PkgResolver>) -> Result<Spec, crate::Error> {
    let moby = load_moby(sources, &paths.base_dir, pkgs)?;
    Ok(Spec::checked(moby, paths))
}

/// [`load`]'s model, with `@pkg:` directories under `base_dir`.
pub(crate) fn load_moby(
    sources: &[Source],
    base_dir: &Path,
    pkgs: Option<&dyn PkgResolver>,
) -> Result<Moby, SpecErrors> {
    let mut errors = Vec::new();
    let mut files = Vec::with_capacity(sources.len());
    for (index, source) in sources.iter().enumerate() {
        let (file, problems) = read_source(source, base_dir, pkgs);
        errors.extend(problems.into_iter().map(|p| (index, p)));
        files.push(file);
    }
    errors.extend(check_files(&files));
    if let Some(errors) = collect(sources, errors) {
        return Err(errors);
    }
    Ok(files
        .into_iter()
        .fold(Moby::default(), |merged, file| append(merged, file.moby)))
}

/// Reads an image's `org.mobyproject.config` label (JSON, or YAML) as LinuxKit's `NewImage` does:
/// the image-config part of the container schema, without `name` and `image`. Errors are reported
/// against the pseudo-file `label` without positions; rename them with [`SpecErrors::with_file`].
/// An empty label is an error: callers skip empty labels, as LinuxKit does.
pub fn parse_label(text: &str) -> Result<ImageConfig, SpecErrors> {
    let (config, mut problems) = read_label(text);
    sort_problems(&mut problems);
    let errors = problems
        .into_iter()
        .map(|p| SpecError {
            file: "label".to_string(),
            line: 0,
            column: 0,
            path: p.path,
            message: p.message,
            kind: p.kind,
            linuxkit: p.linuxkit,
        })
        .collect();
    match SpecErrors::from_vec(errors) {
        Some(errors) => Err(errors),
        None => Ok(config.unwrap_or_default()),
    }
}

/// The label's config, or the problems that prevent it.
fn read_label(text: &str) -> (Option<ImageConfig>, Vec<Problem>) {
    let node = match yaml::parse(text) {
        Ok(Some(node)) if matches!(node.value, Value::Map(_)) => node,
        Ok(_) => {
            let problem = Problem {
                mark: Mark::default(),
                path: String::new(),
                message: "an org.mobyproject.config label must be a JSON object".into(),
                kind: ErrorKind::Decode,
                linuxkit: vec![format!("JSON is an array not an object: {text}")],
            };
            return (None, vec![problem]);
        }
        Err(e) => {
            let problem = Problem {
                mark: e.mark,
                path: String::new(),
                message: format!("cannot parse the label: {}", e.message),
                kind: ErrorKind::Syntax,
                linuxkit: Vec::new(),
            };
            return (None, vec![problem]);
        }
    };
    let mut checked = Walker::new(&["services", "0"]).check_root(&node, &IMAGE, &["name", "image"], false);
    checked.problems.extend(forbidden_label_keys(&node));
    let config = if checked.problems.is_empty() {
        decode::<ImageConfig>(&mut checked)
    } else {
        None
    };
    (config, checked.problems)
}

/// A label may not name the container or its image (LinuxKit ignores an empty or null one).
fn forbidden_label_keys(node: &Node) -> Vec<Problem> {
    let Value::Map(pairs) = &node.value else {
        return Vec::new();
    };
    pairs
        .iter()
        .filter_map(|(key, value)| {
            let name = key.as_str()?;
            if name != "name" && name != "image" {
                return None;
            }
            let harmless =
                value.as_str() == Some("") || matches!(&value.value, Value::Scalar(s) if s.kind == ScalarKind::Null);
            (!harmless).then(|| Problem {
                mark: key.mark,
                path: name.to_string(),
                message: format!("{name} cannot be set in an image label"),
                kind: ErrorKind::Semantic,
                linuxkit: vec![format!("{name} cannot be set in metadata label")],
            })
        })
        .collect()
}

/// Parses, templates, schema-checks and decodes one file.
fn read_source(source: &Source, base_dir: &Path, pkgs: Option<&dyn PkgResolver>) -> (FileSpec, Vec<Problem>) {
    let mut file = FileSpec {
        name: source.name.clone(),
        moby: Moby::default(),
        positions: Positions::default(),
        poisoned: Vec::new(),
    };
    let mut node = match yaml::parse(&source.text) {
        Ok(Some(node)) => node,
        Ok(None) => return (file, Vec::new()),
        Err(e) => {
            let problem = Problem {
                mark: e.mark,
                path: String::new(),
                message: format!("invalid YAML: {}", e.message),
                kind: ErrorKind::Syntax,
                linuxkit: Vec::new(),
            };
            file.poisoned.push(String::new());
            return (file, vec![problem]);
        }
    };
    let mut problems = Vec::new();
    let mut templates = Templates {
        resolver: pkgs,
        base_dir,
        spec_dir: parent_dir(&source.name),
        cache: HashMap::new(),
        problems: &mut problems,
    };
    templates.walk(&mut node, &mut Vec::new());
    let mut checked = match &node.value {
        Value::Map(_) => Walker::new(&[]).check_root(&node, &MOBY, &[], true),
        Value::Scalar(s) if s.kind == ScalarKind::Null => return (file, problems),
        _ => {
            let mut walker = Walker::new(&[]);
            walker.problem(
                node.mark,
                None,
                ErrorKind::Decode,
                format!(
                    "expected a mapping of sections (kernel, init, onboot, onshutdown, services, files, volumes), found {}",
                    node.json_type().described()
                ),
                Vec::new(),
            );
            walker.finish(None)
        }
    };
    if let Some(moby) = decode::<Moby>(&mut checked) {
        file.moby = moby;
    }
    problems.extend(checked.problems);
    file.positions = checked.positions;
    file.poisoned = checked.poisoned;
    (file, problems)
}

/// Reads the model from the checked JSON value. A failure here is a bug in the schema table (it
/// accepted something the model cannot hold); it is reported rather than panicking.
fn decode<T: serde::de::DeserializeOwned>(checked: &mut Checked) -> Option<T> {
    let value = checked.value.take()?;
    match serde_json::from_value(value) {
        Ok(model) => Some(model),
        Err(e) => {
            checked.problems.push(Problem {
                mark: checked.positions.find(""),
                path: String::new(),
                message: format!("internal error: the checked document does not fit the model: {e}"),
                kind: ErrorKind::Decode,
                linuxkit: Vec::new(),
            });
            None
        }
    }
}

/// The `@pkg:` pass over a document.
struct Templates<'a, 'p> {
    resolver: Option<&'a dyn PkgResolver>,
    /// [`HostPaths::base_dir`].
    base_dir: &'a Path,
    /// The directory of the spec file, as its name gives it.
    spec_dir: String,
    cache: HashMap<String, Result<String, String>>,
    problems: &'p mut Vec<Problem>,
}

impl Templates<'_, '_> {
    /// Replaces every string value (not key) that starts with `@pkg:`.
    fn walk(&mut self, node: &mut Node, segs: &mut Vec<Seg>) {
        match &mut node.value {
            Value::Scalar(scalar) => {
                if scalar.kind != ScalarKind::Str {
                    return;
                }
                let Some(dir) = scalar.text.strip_prefix(PKG_TEMPLATE) else {
                    return;
                };
                match self.resolve(dir) {
                    Ok(tag) => scalar.text = tag,
                    Err(why) => self.problems.push(Problem {
                        mark: node.mark,
                        path: render_path(segs),
                        message: format!("cannot resolve {:?}: {why}", scalar.text),
                        kind: ErrorKind::Semantic,
                        linuxkit: Vec::new(),
                    }),
                }
            }
            Value::Seq(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    segs.push(Seg::Index(i));
                    self.walk(item, segs);
                    segs.pop();
                }
            }
            Value::Map(pairs) => {
                for (key, value) in pairs.iter_mut() {
                    segs.push(Seg::Field(key.as_str().unwrap_or("?").to_string()));
                    self.walk(value, segs);
                    segs.pop();
                }
            }
        }
    }

    fn resolve(&mut self, dir: &str) -> Result<String, String> {
        let Some(resolver) = self.resolver else {
            return Err(
                "package templates need a package resolver (they work only for spec files read from disk)".into(),
            );
        };
        let joined = if dir.starts_with('/') {
            clean_path(dir)
        } else {
            clean_path(&format!("{}/{dir}", self.spec_dir))
        };
        let base_dir = self.base_dir;
        self.cache
            .entry(joined.clone())
            .or_insert_with(|| resolver.resolve(&base_dir.join(&joined)))
            .clone()
    }
}

/// Go's `filepath.Dir` of a source name (`.` for a bare file name or `<stdin>`).
fn parent_dir(name: &str) -> String {
    if name == "<stdin>" {
        return ".".to_string();
    }
    match name.rfind('/') {
        Some(0) => "/".to_string(),
        Some(i) => clean_path(&name[..i]),
        None => ".".to_string(),
    }
}

/// Go's `path.Clean`: no empty or `.` components, `..` folded, no trailing slash, `.` for nothing.
pub(crate) fn clean_path(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// LinuxKit's `AppendConfig`: non-empty kernel fields of the later file win, lists are appended.
fn append(mut base: Moby, next: Moby) -> Moby {
    let kernel = next.kernel;
    if !kernel.image.is_empty() {
        base.kernel.image = kernel.image;
    }
    if !kernel.cmdline.is_empty() {
        base.kernel.cmdline = kernel.cmdline;
    }
    if !kernel.binary.is_empty() {
        base.kernel.binary = kernel.binary;
    }
    if kernel.tar.is_some() {
        base.kernel.tar = kernel.tar;
    }
    if kernel.ucode.is_some() {
        base.kernel.ucode = kernel.ucode;
    }
    base.init.extend(next.init);
    base.onboot.extend(next.onboot);
    base.onshutdown.extend(next.onshutdown);
    base.services.extend(next.services);
    base.files.extend(next.files);
    base.volumes.extend(next.volumes);
    // LinuxKit ignores `trust`; keep the union so that nothing written is lost from the model.
    if let Some(trust) = next.trust {
        let merged = base.trust.get_or_insert_with(Default::default);
        merged.image.extend(trust.image);
        merged.org.extend(trust.org);
    }
    base
}

fn sort_problems(problems: &mut [Problem]) {
    problems.sort_by(|a, b| (a.mark, &a.path).cmp(&(b.mark, &b.path)));
}

/// Turns per-file problems into sorted errors.
fn collect(sources: &[Source], mut problems: Vec<(usize, Problem)>) -> Option<SpecErrors> {
    problems.sort_by(|(fa, a), (fb, b)| (fa, a.mark, &a.path).cmp(&(fb, b.mark, &b.path)));
    let errors = problems
        .into_iter()
        .map(|(index, p)| SpecError {
            file: sources.get(index).map_or_else(String::new, |s| s.name.clone()),
            line: p.mark.line,
            column: p.mark.column,
            path: p.path,
            message: p.message,
            kind: p.kind,
            linuxkit: p.linuxkit,
        })
        .collect();
    SpecErrors::from_vec(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_clean_like_go() {
        assert_eq!(clean_path("./pkg/init"), "pkg/init");
        assert_eq!(clean_path("a/../../b"), "../b");
        assert_eq!(clean_path("/../x//y/"), "/x/y");
        assert_eq!(clean_path("."), ".");
        assert_eq!(parent_dir("linuxkit.yml"), ".");
        assert_eq!(parent_dir("examples/x.yml"), "examples");
        assert_eq!(parent_dir("/x.yml"), "/");
        assert_eq!(parent_dir("<stdin>"), ".");
    }

    /// An endless or oversized spec stops at the limit with an error naming it; the limit itself
    /// fits.
    #[test]
    fn spec_reads_are_bounded() {
        let endless = std::io::repeat(b'#');
        let err = Source::read_text("/dev/zero", endless).unwrap_err();
        assert!(
            matches!(
                err,
                ReadError::TooLarge {
                    limit: MAX_SPEC_BYTES,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with(&format!("/dev/zero: the spec is larger than {MAX_SPEC_BYTES} bytes")),
            "{err}"
        );
        let limit = usize::try_from(MAX_SPEC_BYTES).unwrap();
        let source = Source::read("big.yml", std::io::repeat(b'#').take(MAX_SPEC_BYTES)).unwrap();
        assert_eq!((source.name.as_str(), source.text.len()), ("big.yml", limit));
        let err = Source::read("bin.yml", &b"a: \xff"[..]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bin.yml: the spec is not UTF-8 text (invalid byte at offset 3)"
        );
    }
}
