//! Debian packages for `debs:` steps: the dependency closure as the host's apt sees it
//! ([`DebCache::resolve`], which `debs.lock` pins, see [`super::lock`]), downloaded once into the
//! deb cache and verified against the pinned digests ([`DebCache::fetch`]), unpacked into the
//! staging directory without running maintainer scripts ([`unpack`]).
//!
//! The closure follows `Depends` and `Pre-Depends` (not `Recommends`), takes the candidate version
//! of each package, the first alternative of `a | b` unless another one is already in, and the
//! first provider of a virtual package. It needs `apt-cache`, `apt-get` and `dpkg-deb` (any
//! Debian or Ubuntu host); a cache that already holds the files builds offline.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::tar::{EntryKind, TarReader};

use super::rootfs::Rootfs;

/// Errors of `debs:` steps.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    /// A host tool is missing.
    #[error("cannot run {tool}: {source} (moby pkg build needs apt and dpkg: a Debian or Ubuntu host)")]
    Tool {
        /// The tool.
        tool: &'static str,
        /// Underlying error.
        source: io::Error,
    },
    /// A package is not known to apt.
    #[error("Debian package {name:?} is not known to apt here (needed by {needed_by}): check the name, or run apt-get update")]
    Unknown {
        /// The package.
        name: String,
        /// Who asked for it.
        needed_by: String,
    },
    /// A pinned package is not in the deb cache and apt cannot supply it.
    #[error("{name} {version} ({arch}) is pinned, but the deb cache {cache} does not have it and `apt-get download {name}={version}` failed ({status}): {stderr} (the network is down, apt's lists are old (apt-get update), or the archive no longer offers this version: then pin what apt offers now, see docs/pkg.md)")]
    Unsupplied {
        /// Package.
        name: String,
        /// Version.
        version: String,
        /// Architecture.
        arch: String,
        /// Exit status.
        status: std::process::ExitStatus,
        /// Its error output.
        stderr: String,
        /// The deb cache.
        cache: PathBuf,
    },
    /// A downloaded package is not the pinned file.
    #[error("{name} {version} ({arch}) from apt has sha256 {got}, but {expected} is pinned: the archive changed the file under the same version; check where apt downloads from, or pin again (docs/pkg.md)")]
    Digest {
        /// Package.
        name: String,
        /// Version.
        version: String,
        /// Architecture.
        arch: String,
        /// The pinned digest.
        expected: String,
        /// The digest of the file apt gave.
        got: String,
    },
    /// apt's index gives no digest for a package, so it cannot be pinned.
    #[error("apt's index gives no SHA256 for {name} {version}: only archives with SHA256 sums (every Debian and Ubuntu one) can be pinned")]
    NoDigest {
        /// Package.
        name: String,
        /// Version.
        version: String,
    },
    /// Unpacking failed.
    #[error("cannot unpack {deb}: {reason}")]
    Unpack {
        /// The .deb file.
        deb: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The cache directory.
    #[error("deb cache {dir}: {source}")]
    Cache {
        /// The cache directory.
        dir: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
}

/// One package of a closure: exactly one `.deb` file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DebPackage {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Architecture (`amd64`, `all`).
    pub arch: String,
    /// sha256 of the `.deb` file (hex).
    pub sha256: String,
}

impl DebPackage {
    /// The file name `apt-get download` gives it (`:` of an epoch written `%3a`).
    pub fn file_name(&self) -> String {
        format!("{}_{}_{}.deb", self.name, self.version.replace(':', "%3a"), self.arch)
    }
}

/// What `apt-cache show` says of a package.
#[derive(Debug, Clone, Default)]
struct Stanza {
    version: String,
    arch: String,
    sha256: String,
    depends: Vec<Vec<String>>,
}

fn run_capture(tool: &'static str, args: &[&str]) -> Result<(bool, String), DebError> {
    let out = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| DebError::Tool { tool, source })?;
    Ok((out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// Splits a `Depends:` value into groups of alternatives, names only.
fn parse_depends(value: &str) -> Vec<Vec<String>> {
    value
        .split(',')
        .map(|group| {
            group
                .split('|')
                .filter_map(|alt| alt.split_whitespace().next())
                .map(|name| name.split(':').next().unwrap_or(name).to_string())
                .filter(|name| !name.is_empty())
                .collect::<Vec<_>>()
        })
        .filter(|g| !g.is_empty())
        .collect()
}

/// Parses `apt-cache show` output into stanzas by package name.
fn parse_show(text: &str) -> BTreeMap<String, Stanza> {
    let mut out = BTreeMap::new();
    for block in text.split("\n\n") {
        let mut name = None;
        let mut stanza = Stanza::default();
        let mut field = String::new();
        let mut values: BTreeMap<String, String> = BTreeMap::new();
        for line in block.lines() {
            if line.starts_with(' ') {
                if let Some(v) = values.get_mut(&field) {
                    v.push_str(line);
                }
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                field = k.to_string();
                values.insert(field.clone(), v.trim().to_string());
            }
        }
        if let Some(n) = values.get("Package") {
            name = Some(n.clone());
        }
        stanza.version = values.get("Version").cloned().unwrap_or_default();
        stanza.arch = values.get("Architecture").cloned().unwrap_or_default();
        stanza.sha256 = values.get("SHA256").cloned().unwrap_or_default();
        for key in ["Pre-Depends", "Depends"] {
            if let Some(v) = values.get(key) {
                stanza.depends.extend(parse_depends(v));
            }
        }
        if let Some(name) = name {
            out.entry(name).or_insert(stanza);
        }
    }
    out
}

/// One alternative of a dependency: a name and the packages that provide it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Alternative {
    name: String,
    virtual_only: bool,
    providers: Vec<String>,
}

/// Parses `apt-cache depends --recurse` output: each package's dependency groups, each a list of
/// alternatives (` |Depends: a` continues the group with the next line; indented lines under a
/// dependency are the packages that provide it).
fn parse_depends_graph(text: &str) -> BTreeMap<String, Vec<Vec<Alternative>>> {
    let mut graph: BTreeMap<String, Vec<Vec<Alternative>>> = BTreeMap::new();
    let mut node: Option<String> = None;
    let mut group_open = false;
    for line in text.lines() {
        if !line.starts_with(' ') {
            let name = line.trim().to_string();
            graph.entry(name.clone()).or_default();
            node = Some(name);
            group_open = false;
            continue;
        }
        let Some(current) = node.as_ref() else { continue };
        let groups = graph.entry(current.clone()).or_default();
        if let Some(provider) = line.strip_prefix("    ") {
            if let Some(alt) = groups.last_mut().and_then(|g| g.last_mut()) {
                alt.providers.push(provider.trim().to_string());
            }
            continue;
        }
        let continues = line.starts_with(" |");
        let Some((_, dep)) = line.trim_start_matches([' ', '|']).split_once(": ") else {
            continue;
        };
        let dep = dep.trim();
        let alternative = Alternative {
            name: dep.trim_start_matches('<').trim_end_matches('>').to_string(),
            virtual_only: dep.starts_with('<'),
            providers: Vec::new(),
        };
        match groups.last_mut() {
            Some(group) if group_open => group.push(alternative),
            _ => groups.push(vec![alternative]),
        }
        group_open = continues;
    }
    graph
}

/// Walks the graph from `names`: in each group the first alternative that can be installed, or
/// one already chosen; a virtual package by its first provider (or one already chosen).
fn closure(
    graph: &BTreeMap<String, Vec<Vec<Alternative>>>,
    names: &[String],
    skip: &BTreeSet<&str>,
) -> Result<BTreeSet<String>, DebError> {
    let mut chosen: BTreeSet<String> = BTreeSet::new();
    let mut todo: Vec<(String, String)> = names
        .iter()
        .rev()
        .map(|n| (n.clone(), "the build.yml".to_string()))
        .collect();
    while let Some((name, needed_by)) = todo.pop() {
        if chosen.contains(&name) || skip.contains(name.as_str()) {
            continue;
        }
        let Some(groups) = graph.get(&name) else {
            return Err(DebError::Unknown { name, needed_by });
        };
        chosen.insert(name.clone());
        for group in groups {
            let options: Vec<String> = group
                .iter()
                .flat_map(|alt| {
                    if !alt.virtual_only && graph.contains_key(&alt.name) {
                        vec![alt.name.clone()]
                    } else {
                        alt.providers.clone()
                    }
                })
                .collect();
            let already = options
                .iter()
                .find(|c| chosen.contains(*c) || skip.contains(c.as_str()));
            match already.or_else(|| options.iter().find(|c| graph.contains_key(*c))) {
                Some(pick) => todo.push((pick.clone(), name.clone())),
                None => {
                    return Err(DebError::Unknown {
                        name: group.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(" | "),
                        needed_by: name.clone(),
                    })
                }
            }
        }
    }
    Ok(chosen)
}

/// The directory `.deb` files are kept in.
#[derive(Debug, Clone)]
pub struct DebCache {
    dir: PathBuf,
}

impl DebCache {
    /// `$MOBY_DEB_CACHE`, else `~/.moby/debs`.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("MOBY_DEB_CACHE").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir);
        }
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty());
        home.map(PathBuf::from).unwrap_or_default().join(".moby").join("debs")
    }

    /// A cache in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> DebCache {
        DebCache { dir: dir.into() }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// apt options that keep apt's binary package cache in the deb cache (Debian's container
    /// images turn apt's own off, and without it every apt call takes seconds).
    fn apt_options(&self) -> Vec<String> {
        let apt = self.dir.join(".apt");
        vec![
            "-o".into(),
            format!("Dir::Cache::pkgcache={}", apt.join("pkgcache.bin").display()),
            "-o".into(),
            format!("Dir::Cache::srcpkgcache={}", apt.join("srcpkgcache.bin").display()),
        ]
    }

    fn apt_cache(&self, args: &[&str]) -> Result<String, DebError> {
        std::fs::create_dir_all(self.dir.join(".apt")).map_err(|source| DebError::Cache {
            dir: self.dir.clone(),
            source,
        })?;
        let options = self.apt_options();
        let mut all: Vec<&str> = options.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        run_capture("apt-cache", &all).map(|(_, out)| out)
    }

    /// The closure of `names` (see the module doc), without `skip` and what only they pulled
    /// in, sorted by name: what apt offers today, with the digests of apt's index.
    pub fn resolve(&self, names: &[String], skip: &[String]) -> Result<Vec<DebPackage>, DebError> {
        let skip: BTreeSet<&str> = skip.iter().map(String::as_str).collect();
        let mut args = vec![
            "depends",
            "--recurse",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
        ];
        args.extend(names.iter().map(String::as_str));
        let graph = parse_depends_graph(&self.apt_cache(&args)?);
        let chosen = closure(&graph, names, &skip)?;
        let mut args = vec!["show", "--no-all-versions"];
        args.extend(chosen.iter().map(String::as_str));
        let stanzas = parse_show(&self.apt_cache(&args)?);
        chosen
            .into_iter()
            .map(|name| match stanzas.get(&name) {
                Some(s) if s.sha256.is_empty() => Err(DebError::NoDigest {
                    name,
                    version: s.version.clone(),
                }),
                Some(s) => Ok(DebPackage {
                    name,
                    version: s.version.clone(),
                    arch: s.arch.clone(),
                    sha256: s.sha256.clone(),
                }),
                None => Err(DebError::Unknown {
                    name,
                    needed_by: "the closure (apt-cache show knows no version of it)".into(),
                }),
            })
            .collect()
    }

    /// The files of `packages`, each verified against its pinned sha256; those the cache lacks
    /// (or holds with other contents) are downloaded by exact version, each into a private
    /// directory, verified, then renamed into place, so a killed or wrong download leaves no file
    /// under a final name.
    pub fn fetch(&self, packages: &[DebPackage]) -> Result<Vec<PathBuf>, DebError> {
        let cache_err = |source| DebError::Cache {
            dir: self.dir.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(cache_err)?;
        let mut files = Vec::with_capacity(packages.len());
        for package in packages {
            let file = self.dir.join(package.file_name());
            let cached = file.is_file() && super::sha256_file(&file).map_err(cache_err)? == package.sha256;
            if !cached {
                let partial = tempfile::Builder::new()
                    .prefix(".download-")
                    .tempdir_in(&self.dir)
                    .map_err(cache_err)?;
                let downloaded = self.download(package, partial.path())?;
                let got = super::sha256_file(&downloaded).map_err(cache_err)?;
                if got != package.sha256 {
                    return Err(DebError::Digest {
                        name: package.name.clone(),
                        version: package.version.clone(),
                        arch: package.arch.clone(),
                        expected: package.sha256.clone(),
                        got,
                    });
                }
                std::fs::rename(&downloaded, &file).map_err(cache_err)?;
            }
            files.push(file);
        }
        Ok(files)
    }

    /// `apt-get download NAME=VERSION` into `dir`; the file it wrote.
    fn download(&self, package: &DebPackage, dir: &Path) -> Result<PathBuf, DebError> {
        let mut cmd = Command::new("apt-get");
        cmd.args(self.apt_options()).arg("download").arg("-q");
        if running_as_root() {
            // apt drops to user _apt, which cannot write our directory.
            cmd.args(["-o", "APT::Sandbox::User=root"]);
        }
        let out = cmd
            .arg(format!("{}={}", package.name, package.version))
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| DebError::Tool {
                tool: "apt-get",
                source,
            })?;
        let downloaded = dir.join(package.file_name());
        if !out.status.success() || !downloaded.is_file() {
            return Err(DebError::Unsupplied {
                name: package.name.clone(),
                version: package.version.clone(),
                arch: package.arch.clone(),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                cache: self.dir.clone(),
            });
        }
        Ok(downloaded)
    }
}

/// Whether we run as root (apt's sandbox user then cannot write our files).
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// Unpacks the files of `deb` into `rootfs` (`dpkg-deb --fsys-tarfile`); device nodes and FIFOs
/// are skipped, maintainer scripts are not run.
pub fn unpack(deb: &Path, rootfs: &Rootfs) -> Result<(), DebError> {
    let unpack_err = |reason: String| DebError::Unpack {
        deb: deb.to_path_buf(),
        reason,
    };
    let mut child = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| DebError::Tool {
            tool: "dpkg-deb",
            source,
        })?;
    let Some(stdout) = child.stdout.take() else {
        // Not possible: stdout was asked for as a pipe.
        let _ = child.kill();
        let _ = child.wait();
        return Err(unpack_err("dpkg-deb started without an output pipe".into()));
    };
    let result = unpack_tar(stdout, rootfs);
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let status = child.wait().map_err(|e| unpack_err(e.to_string()))?;
    result.map_err(|e| unpack_err(e.to_string()))?;
    if !status.success() {
        return Err(unpack_err(format!("dpkg-deb failed ({status}): {}", stderr.trim())));
    }
    Ok(())
}

/// Writes the entries of a tar stream into `rootfs`.
pub fn unpack_tar(data: impl Read, rootfs: &Rootfs) -> io::Result<()> {
    let mut tar = TarReader::new(data);
    while let Some(header) = tar.next_header().map_err(|e| io::Error::other(e.to_string()))? {
        let path = format!("/{}", header.name.trim_start_matches("./").trim_end_matches('/'));
        if path == "/" {
            continue;
        }
        match header.kind {
            EntryKind::Directory => rootfs.mkdir(&path, header.mode & 0o7777)?,
            EntryKind::Regular => {
                rootfs.write_from(&path, &mut (&mut tar).take(header.size), header.mode & 0o7777)?;
            }
            EntryKind::Symlink => rootfs.symlink(&path, &header.link_name)?,
            EntryKind::HardLink => {
                let target = format!("/{}", header.link_name.trim_start_matches("./"));
                rootfs.hard_link(&path, &target)?
            }
            _ => tracing::debug!("skipping {path}: device nodes and FIFOs are not unpacked"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_and_show_output_are_parsed() {
        assert_eq!(
            parse_depends("libc6 (>= 2.34), libpam0g:amd64 | libpam-foo, debconf (>= 0.5) | debconf-2.0"),
            [
                vec!["libc6"],
                vec!["libpam0g", "libpam-foo"],
                vec!["debconf", "debconf-2.0"]
            ]
        );
        let text = "Package: a\nVersion: 1:2.0-1\nArchitecture: amd64\nPre-Depends: p\nDepends: b (>= 1),\n c | d\nDescription: x\n\nPackage: b\nVersion: 3\nArchitecture: all\n";
        let show = parse_show(text);
        assert_eq!(show["a"].version, "1:2.0-1");
        assert_eq!(show["a"].depends, [vec!["p"], vec!["b"], vec!["c", "d"]]);
        assert_eq!(show["b"].arch, "all");
        let p = DebPackage {
            name: "a".into(),
            version: "1:2.0-1".into(),
            arch: "amd64".into(),
            sha256: String::new(),
        };
        assert_eq!(p.file_name(), "a_1%3a2.0-1_amd64.deb");
    }

    #[test]
    fn alternatives_virtuals_and_providers() {
        let text = "srv\n  PreDepends: init-helpers\n  Depends: lsb-base\n    sysvinit-utils\n |Depends: debconf\n  Depends: <debconf-2.0>\n    cdebconf\n    debconf\n  Depends: <mail-transport>\n    exim\n    postfix\ninit-helpers\nlsb-base\nsysvinit-utils\ndebconf\ncdebconf\nexim\npostfix\n";
        let graph = parse_depends_graph(text);
        assert_eq!(graph["srv"].len(), 4);
        assert_eq!(graph["srv"][2].len(), 2, "debconf | debconf-2.0 is one group");
        assert_eq!(graph["srv"][2][1].providers, ["cdebconf", "debconf"]);
        let picked = closure(&graph, &["srv".to_string()], &BTreeSet::new()).unwrap();
        assert_eq!(
            picked.into_iter().collect::<Vec<_>>(),
            ["debconf", "exim", "init-helpers", "lsb-base", "srv"],
            "the real package over its provider, the first alternative, the first provider"
        );
        let skip = BTreeSet::from(["debconf", "exim"]);
        let picked = closure(&graph, &["srv".to_string()], &skip).unwrap();
        assert_eq!(
            picked.into_iter().collect::<Vec<_>>(),
            ["init-helpers", "lsb-base", "srv"]
        );
        let e = closure(&graph, &["nope".to_string()], &BTreeSet::new()).unwrap_err();
        assert!(e.to_string().contains("\"nope\" is not known to apt"), "{e}");
    }

    /// The closure of a real package from this host's apt lists (no download).
    #[test]
    fn closure_of_a_real_package() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DebCache::new(dir.path());
        let closure = cache.resolve(&["dropbear-bin".to_string()], &[]).unwrap();
        let names: Vec<&str> = closure.iter().map(|p| p.name.as_str()).collect();
        for needed in ["dropbear-bin", "libc6", "libtomcrypt1", "zlib1g"] {
            assert!(names.contains(&needed), "{names:?}");
        }
        assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted");
        let without = cache
            .resolve(&["dropbear-bin".to_string()], &["libtomcrypt1".to_string()])
            .unwrap();
        assert!(!without.iter().any(|p| p.name == "libtomcrypt1"));
        let e = cache
            .resolve(&["no-such-package-here".to_string()], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"no-such-package-here\" is not known to apt"), "{e}");
    }

    #[test]
    fn tar_entries_land_in_the_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        let rootfs = Rootfs::new(dir.path().join("root"));
        let mut tar = crate::tar::TarWriter::new(Vec::new());
        use crate::tar::{EntrySink, Header};
        tar.write_header(&Header::new("./usr/bin/", EntryKind::Directory, 0o755))
            .unwrap();
        let mut file = Header::new("./usr/bin/tool", EntryKind::Regular, 0o4755);
        file.size = 3;
        tar.write_header(&file).unwrap();
        tar.write_data(b"elf").unwrap();
        let mut link = Header::new("./usr/bin/alias", EntryKind::Symlink, 0o777);
        link.link_name = "tool".into();
        tar.write_header(&link).unwrap();
        let mut hard = Header::new("./usr/bin/same", EntryKind::HardLink, 0o755);
        hard.link_name = "./usr/bin/tool".into();
        tar.write_header(&hard).unwrap();
        tar.finish().unwrap();
        unpack_tar(&tar.into_inner()[..], &rootfs).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let root = dir.path().join("root");
        assert_eq!(std::fs::read(root.join("usr/bin/same")).unwrap(), b"elf");
        assert_eq!(
            std::fs::metadata(root.join("usr/bin/tool"))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o4755
        );
        assert_eq!(
            std::fs::read_link(root.join("usr/bin/alias")).unwrap(),
            Path::new("tool")
        );
    }
}
