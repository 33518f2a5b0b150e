//! Running a package's `rootfs:` steps into its staging directory.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use super::build_yml::{Attrs, BuildYml, Step};
use super::debs::{self, DebCache, DebPackage};
use super::rootfs::Rootfs;
use super::PkgError;

/// What the steps need besides the package.
#[derive(Debug, Clone)]
pub struct StepEnv<'a> {
    /// The package folder.
    pub pkg_dir: &'a Path,
    /// `extra-sources` (source relative to the package, name).
    pub extra_sources: &'a [(PathBuf, String)],
    /// Where `.deb` files are kept.
    pub debs: &'a DebCache,
    /// The packages `debs.lock` pins for each `debs:` step, by step index.
    pub pinned: &'a BTreeMap<usize, Vec<DebPackage>>,
    /// Cargo's target directory for `rust:` steps.
    pub cargo_target: &'a Path,
    /// Rust target triple for `rust:` steps.
    pub rust_target: &'a str,
}

impl StepEnv<'_> {
    /// A source of the package: `relative` (no `..`; its first component may name an
    /// `extra-sources` entry) as the root it lies in and the rest of the path below that root.
    fn source(&self, relative: &Path) -> Result<(PathBuf, PathBuf), String> {
        if relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(format!(
                "{} must stay inside the package (list outside sources in extra-sources)",
                relative.display()
            ));
        }
        let mut parts = relative.components();
        if let Some(Component::Normal(first)) = parts.next() {
            if let Some((src, _)) = self.extra_sources.iter().find(|(_, name)| first == name.as_str()) {
                return Ok((self.pkg_dir.join(src), parts.as_path().to_path_buf()));
            }
        }
        Ok((self.pkg_dir.to_path_buf(), relative.to_path_buf()))
    }

    /// The real paths of the package and of its `extra-sources`: the only places sources may be.
    fn roots(&self) -> Result<Vec<PathBuf>, String> {
        std::iter::once(self.pkg_dir.to_path_buf())
            .chain(self.extra_sources.iter().map(|(src, _)| self.pkg_dir.join(src)))
            .map(|root| std::fs::canonicalize(&root).map_err(|e| format!("{}: {e}", root.display())))
            .collect()
    }

    /// The host path of the source `relative`, with every symbolic link on the way resolved and
    /// required to stay inside the package or its `extra-sources` (else a link in the package
    /// could hand any host file to the image). The last component is resolved only when
    /// `follow_last` is set: a `copy:` of a link copies the link itself, as the tag hashes it.
    fn confined(&self, relative: &Path, follow_last: bool) -> Result<PathBuf, String> {
        let (root, rest) = self.source(relative)?;
        let (dir, last) = match rest.file_name() {
            Some(last) if !follow_last => (root.join(rest.parent().unwrap_or(Path::new(""))), Some(last)),
            _ => (root.join(&rest), None),
        };
        let dir = std::fs::canonicalize(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // The root itself (`copy: .`, an extra source by its name) is declared, so followed.
        if rest.file_name().is_some() && !self.roots()?.iter().any(|root| dir.starts_with(root)) {
            return Err(format!(
                "{} is in {}, outside the package and its extra-sources (a symbolic link on the \
                 way points out): copy the file into the package or list its folder in extra-sources",
                relative.display(),
                dir.display()
            ));
        }
        Ok(match last {
            Some(last) => dir.join(last),
            None => dir,
        })
    }
}

fn step_name(step: &Step) -> &'static str {
    match step {
        Step::Debs { .. } => "debs",
        Step::Copy { .. } => "copy",
        Step::File { .. } => "file",
        Step::Dir { .. } => "dir",
        Step::Symlink { .. } => "symlink",
        Step::Remove { .. } => "remove",
        Step::Rust { .. } => "rust",
        Step::Script { .. } => "script",
    }
}

/// Runs the `rootfs:` steps of `build` in order into `rootfs`.
pub fn run_steps(build: &BuildYml, env: &StepEnv<'_>, rootfs: &mut Rootfs) -> Result<(), PkgError> {
    for (index, step) in build.steps.iter().enumerate() {
        run_step(index, step, env, rootfs).map_err(|reason| build.step_error(index, step_name(step), reason))?;
    }
    Ok(())
}

fn owned(rootfs: &mut Rootfs, path: &str, attrs: &Attrs) {
    if let Some(owner) = attrs.owner {
        rootfs.set_owner(path, owner);
    }
}

fn run_step(index: usize, step: &Step, env: &StepEnv<'_>, rootfs: &mut Rootfs) -> Result<(), String> {
    let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
    match step {
        Step::Debs { .. } => {
            let pinned = env.pinned.get(&index).ok_or("debs.lock pins nothing for this step")?;
            tracing::info!(
                "debs: {} packages ({})",
                pinned.len(),
                pinned.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(" ")
            );
            for deb in env.debs.fetch(pinned).map_err(|e| e.to_string())? {
                debs::unpack(&deb, rootfs).map_err(|e| e.to_string())?;
            }
        }
        Step::Copy { src, to, attrs } => {
            let from = env.confined(src, false)?;
            rootfs.copy(&from, to, attrs.mode).map_err(|e| io(to, e))?;
            owned(rootfs, to, attrs);
        }
        Step::File { path, content, attrs } => {
            rootfs
                .write_file(path, content.as_bytes(), attrs.mode.unwrap_or(0o644))
                .map_err(|e| io(path, e))?;
            owned(rootfs, path, attrs);
        }
        Step::Dir { path, attrs } => {
            rootfs
                .mkdir(path, attrs.mode.unwrap_or(0o755))
                .map_err(|e| io(path, e))?;
            owned(rootfs, path, attrs);
        }
        Step::Symlink { path, target, attrs } => {
            rootfs.symlink(path, target).map_err(|e| io(path, e))?;
            owned(rootfs, path, attrs);
        }
        Step::Remove { paths } => {
            for path in paths {
                rootfs.remove(path).map_err(|e| io(path, e))?;
            }
        }
        Step::Rust { krate, bin, to, attrs } => {
            let built = build_rust(&env.confined(krate, true)?, bin, env)?;
            rootfs
                .copy_file(&built, to, Some(attrs.mode.unwrap_or(0o755)))
                .map_err(|e| io(to, e))?;
            owned(rootfs, to, attrs);
        }
        Step::Script { file } => {
            let script = env.confined(file, true)?;
            let abs = |p: &Path| std::fs::canonicalize(p).map_err(|e| io(&p.display().to_string(), e));
            let status = Command::new("sh")
                .arg(abs(&script)?)
                .current_dir(env.pkg_dir)
                .env("ROOTFS", abs(rootfs.root())?)
                .env("PKG", abs(env.pkg_dir)?)
                .env("DEBS", env.debs.dir())
                .status()
                .map_err(|e| io("sh", e))?;
            if !status.success() {
                return Err(format!("{} failed ({status})", file.display()));
            }
        }
    }
    Ok(())
}

/// `RUSTFLAGS` of a `rust:` step for the crate in (canonical) `krate`: static, and source paths
/// remapped so that the binary does not depend on where the repository or cargo's home is.
pub fn static_rustflags(krate: &Path, bin: &str) -> String {
    let mut flags = format!(
        "-C target-feature=+crt-static --remap-path-prefix={}=/src/{bin}",
        krate.display()
    );
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    if let Some(home) = cargo_home {
        flags.push_str(&format!(" --remap-path-prefix={}=/cargo", home.display()));
    }
    flags
}

/// Builds `bin` of the crate in `krate` statically for the target; returns the binary's path.
fn build_rust(krate: &Path, bin: &str, env: &StepEnv<'_>) -> Result<PathBuf, String> {
    let krate = std::fs::canonicalize(krate).map_err(|e| format!("{}: {e}", krate.display()))?;
    let manifest = krate.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(format!("{} has no Cargo.toml", krate.display()));
    }
    let rustflags = static_rustflags(&krate, bin);
    tracing::info!("rust: building {bin} from {} for {}", krate.display(), env.rust_target);
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "build",
            "--release",
            "--locked",
            "--bin",
            bin,
            "--target",
            env.rust_target,
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .env("RUSTFLAGS", rustflags)
        .env("CARGO_TARGET_DIR", env.cargo_target)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .map_err(|e| format!("cannot run cargo: {e} (install a Rust toolchain: https://rustup.rs)"))?;
    if !status.success() {
        return Err(format!("cargo build of {bin} in {} failed ({status})", krate.display()));
    }
    let built = env.cargo_target.join(env.rust_target).join("release").join(bin);
    if !built.is_file() {
        return Err(format!("cargo did not produce {}", built.display()));
    }
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_steps_sources_and_scripts() {
        let d = tempfile::tempdir().unwrap();
        let pkg = d.path().join("pkg/hello");
        std::fs::create_dir_all(pkg.join("files")).unwrap();
        std::fs::create_dir_all(d.path().join("common")).unwrap();
        std::fs::write(pkg.join("files/hello.sh"), "#!/bin/sh\necho hello\n").unwrap();
        std::fs::write(d.path().join("common/motd"), "shared\n").unwrap();
        std::fs::write(pkg.join("build.sh"), "echo from-script > \"$ROOTFS/etc/made\"\n").unwrap();
        let build = BuildYml::parse(
            &pkg,
            r#"
image: hello
extra-sources: ["../../common:common"]
rootfs:
  - copy: files/hello.sh
    to: /usr/bin/hello
    mode: "0755"
  - copy: common/motd
    to: /etc/motd
  - dir: /home/user
    owner: "1000:1000"
  - symlink: /bin/hi
    target: /usr/bin/hello
  - file: /etc/hostname
    content: "box\n"
  - script: build.sh
  - remove: [/etc/hostname]
"#,
        )
        .unwrap();
        std::fs::create_dir(d.path().join("root")).unwrap();
        let mut rootfs = Rootfs::new(d.path().join("root"));
        let debs = DebCache::new(d.path().join("debs"));
        let env = StepEnv {
            pkg_dir: &pkg,
            extra_sources: &build.extra_sources,
            debs: &debs,
            pinned: &BTreeMap::new(),
            cargo_target: &d.path().join("cargo"),
            rust_target: "x86_64-unknown-linux-gnu",
        };
        run_steps(&build, &env, &mut rootfs).unwrap();
        let root = d.path().join("root");
        assert_eq!(std::fs::read_to_string(root.join("etc/motd")).unwrap(), "shared\n");
        assert_eq!(std::fs::read_to_string(root.join("etc/made")).unwrap(), "from-script\n");
        assert!(!root.join("etc/hostname").exists());
        assert_eq!(rootfs.owners().get("home/user"), Some(&(1000, 1000)));

        let bad = BuildYml::parse(&pkg, "image: x\nrootfs: [{copy: ../../common/motd, to: /m}]").unwrap();
        let e = run_steps(&bad, &env, &mut rootfs).unwrap_err().to_string();
        assert!(
            e.contains("rootfs[0] (copy): ../../common/motd must stay inside the package"),
            "{e}"
        );
        let failing = BuildYml::parse(&pkg, "image: x\nrootfs: [{script: files/hello.sh}, {script: nope.sh}]").unwrap();
        let e = run_steps(&failing, &env, &mut rootfs).unwrap_err().to_string();
        assert!(e.contains("rootfs[1] (script)") && e.contains("nope.sh"), "{e}");
    }

    /// A package whose links point at a host secret (a temp file standing in for /etc/shadow) and
    /// a host folder (standing in for /etc), at the top and deeper in a copied tree.
    fn hostile_package(d: &Path) -> PathBuf {
        use std::os::unix::fs::symlink;
        let host = d.join("host");
        std::fs::create_dir_all(host.join("etc")).unwrap();
        std::fs::write(host.join("shadow"), "root:SECRET\n").unwrap();
        std::fs::write(host.join("etc/passwd"), "root:SECRET\n").unwrap();
        std::fs::write(host.join("evil.sh"), "touch \"$ROOTFS/evil\"\n").unwrap();
        let pkg = d.join("pkg");
        std::fs::create_dir_all(pkg.join("files/deep/er")).unwrap();
        std::fs::create_dir_all(d.join("common")).unwrap();
        std::fs::write(pkg.join("files/hello"), "hello\n").unwrap();
        symlink(host.join("shadow"), pkg.join("shadow")).unwrap();
        symlink(host.join("etc"), pkg.join("etc")).unwrap();
        symlink(host.join("shadow"), pkg.join("files/deep/er/shadow")).unwrap();
        symlink(host.join("etc"), pkg.join("files/deep/etc")).unwrap();
        symlink("hello", pkg.join("files/current")).unwrap();
        symlink("files", pkg.join("alias")).unwrap();
        symlink(host.join("evil.sh"), pkg.join("build.sh")).unwrap();
        symlink(&host, d.join("common/host")).unwrap();
        pkg
    }

    fn run(pkg: &Path, d: &Path, steps: &str) -> Result<Rootfs, String> {
        let build = BuildYml::parse(
            pkg,
            &format!("image: x\nextra-sources: [\"../common:common\"]\nrootfs:\n{steps}"),
        )
        .map_err(|e| e.to_string())?;
        let root = tempfile::tempdir_in(d).unwrap().keep();
        let mut rootfs = Rootfs::new(root);
        let debs = DebCache::new(d.join("debs"));
        let env = StepEnv {
            pkg_dir: pkg,
            extra_sources: &build.extra_sources,
            debs: &debs,
            pinned: &BTreeMap::new(),
            cargo_target: &d.join("cargo"),
            rust_target: "x86_64-unknown-linux-gnu",
        };
        run_steps(&build, &env, &mut rootfs).map_err(|e| e.to_string())?;
        Ok(rootfs)
    }

    /// Every regular file's contents under `dir`, links not followed.
    fn contents(dir: &Path) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                all += &contents(&entry.path());
            } else if kind.is_file() {
                all += &std::fs::read_to_string(entry.path()).unwrap();
            }
        }
        all
    }

    #[test]
    fn links_in_copy_sources_are_copied_as_links_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let pkg = hostile_package(d.path());
        let host = d.path().join("host");
        let rootfs = run(
            &pkg,
            d.path(),
            "  - {copy: shadow, to: /etc/shadow}\n  - {copy: etc, to: /hostetc}\n  - {copy: files, to: /files}\n  - {copy: files/current, to: /current}\n  - {copy: alias/hello, to: /hello}\n",
        )
        .unwrap();
        let root = rootfs.root();
        let link = |p: &str| std::fs::read_link(root.join(p)).unwrap();
        assert_eq!(
            link("etc/shadow"),
            host.join("shadow"),
            "a link to a host file stays a link"
        );
        assert_eq!(
            link("hostetc"),
            host.join("etc"),
            "a link to a host folder stays a link"
        );
        assert_eq!(link("files/deep/er/shadow"), host.join("shadow"), "deep in a tree too");
        assert_eq!(link("files/deep/etc"), host.join("etc"));
        assert_eq!(
            link("current"),
            Path::new("hello"),
            "a relative link inside the package"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("hello")).unwrap(),
            "hello\n",
            "a link inside the package on the way"
        );
        assert!(!contents(root).contains("SECRET"), "no host file in the image");
    }

    #[test]
    fn links_on_the_way_to_a_source_may_not_lead_out() {
        let d = tempfile::tempdir().unwrap();
        let pkg = hostile_package(d.path());
        for (step, source) in [
            ("{copy: etc/passwd, to: /p}", "etc/passwd"),
            ("{copy: files/deep/etc/passwd, to: /p}", "files/deep/etc/passwd"),
            ("{copy: common/host/shadow, to: /s}", "common/host/shadow"),
            ("{script: build.sh}", "build.sh"),
            ("{rust: etc, bin: x, to: /x}", "etc"),
        ] {
            let e = run(&pkg, d.path(), &format!("  - {step}\n"))
                .err()
                .unwrap_or_else(|| panic!("{step} passed"));
            assert!(
                e.contains(&format!("{source} is in ")) && e.contains("outside the package and its extra-sources"),
                "{step}: {e}"
            );
        }
        assert!(!d.path().join("evil").exists());
    }

    #[test]
    fn fifos_in_sources_are_refused_not_read() {
        let d = tempfile::tempdir().unwrap();
        let pkg = d.path().join("pkg");
        std::fs::create_dir_all(pkg.join("files")).unwrap();
        std::fs::create_dir_all(d.path().join("common")).unwrap();
        let made = Command::new("mkfifo").arg(pkg.join("files/pipe")).status().unwrap();
        assert!(made.success());
        for step in ["{copy: files/pipe, to: /p}", "{copy: files, to: /f}"] {
            let e = run(&pkg, d.path(), &format!("  - {step}\n"))
                .err()
                .unwrap_or_else(|| panic!("{step} passed"));
            assert!(e.contains("files/pipe is not a file, folder or symbolic link"), "{e}");
        }
    }
}
