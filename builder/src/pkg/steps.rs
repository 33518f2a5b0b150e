//! Running a package's `rootfs:` steps into its staging directory.

use std::path::{Component, Path, PathBuf};
use std::process::Command;

use super::build_yml::{Attrs, Step};
use super::debs::{self, DebCache};
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
    /// Cargo's target directory for `rust:` steps.
    pub cargo_target: &'a Path,
    /// Rust target triple for `rust:` steps.
    pub rust_target: &'a str,
}

impl StepEnv<'_> {
    /// A source path of the package: relative, without `..`; its first component may name an
    /// `extra-sources` entry.
    fn source(&self, relative: &Path) -> Result<PathBuf, String> {
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
                return Ok(self.pkg_dir.join(src).join(parts.as_path()));
            }
        }
        Ok(self.pkg_dir.join(relative))
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

/// Runs `steps` in order into `rootfs`.
pub fn run_steps(steps: &[Step], env: &StepEnv<'_>, rootfs: &mut Rootfs) -> Result<(), PkgError> {
    for (index, step) in steps.iter().enumerate() {
        run_step(step, env, rootfs).map_err(|reason| PkgError::Step {
            dir: env.pkg_dir.to_path_buf(),
            index,
            kind: step_name(step),
            reason,
        })?;
    }
    Ok(())
}

fn owned(rootfs: &mut Rootfs, path: &str, attrs: &Attrs) {
    if let Some(owner) = attrs.owner {
        rootfs.set_owner(path, owner);
    }
}

fn run_step(step: &Step, env: &StepEnv<'_>, rootfs: &mut Rootfs) -> Result<(), String> {
    let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
    match step {
        Step::Debs { names, skip } => {
            let closure = env.debs.resolve(names, skip).map_err(|e| e.to_string())?;
            tracing::info!(
                "debs: {} packages ({})",
                closure.len(),
                closure.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(" ")
            );
            for deb in env.debs.fetch(&closure).map_err(|e| e.to_string())? {
                debs::unpack(&deb, rootfs).map_err(|e| e.to_string())?;
            }
        }
        Step::Copy { src, to, attrs } => {
            let from = env.source(src)?;
            let meta = std::fs::metadata(&from).map_err(|e| io(&from.display().to_string(), e))?;
            if meta.is_dir() {
                rootfs.copy_tree(&from, to, attrs.mode).map_err(|e| io(to, e))?;
            } else {
                rootfs.copy_file(&from, to, attrs.mode).map_err(|e| io(to, e))?;
            }
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
        Step::Symlink { path, target } => rootfs.symlink(path, target).map_err(|e| io(path, e))?,
        Step::Remove { paths } => {
            for path in paths {
                rootfs.remove(path).map_err(|e| io(path, e))?;
            }
        }
        Step::Rust { krate, bin, to, attrs } => {
            let built = build_rust(&env.source(krate)?, bin, env)?;
            rootfs
                .copy_file(&built, to, Some(attrs.mode.unwrap_or(0o755)))
                .map_err(|e| io(to, e))?;
            owned(rootfs, to, attrs);
        }
        Step::Script { file } => {
            let script = env.source(file)?;
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
    use crate::pkg::build_yml::BuildYml;

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
            cargo_target: &d.path().join("cargo"),
            rust_target: "x86_64-unknown-linux-gnu",
        };
        run_steps(&build.steps, &env, &mut rootfs).unwrap();
        let root = d.path().join("root");
        assert_eq!(std::fs::read_to_string(root.join("etc/motd")).unwrap(), "shared\n");
        assert_eq!(std::fs::read_to_string(root.join("etc/made")).unwrap(), "from-script\n");
        assert!(!root.join("etc/hostname").exists());
        assert_eq!(rootfs.owners().get("home/user"), Some(&(1000, 1000)));

        let bad = BuildYml::parse(&pkg, "image: x\nrootfs: [{copy: ../../common/motd, to: /m}]").unwrap();
        let e = run_steps(&bad.steps, &env, &mut rootfs).unwrap_err().to_string();
        assert!(
            e.contains("rootfs[0] (copy): ../../common/motd must stay inside the package"),
            "{e}"
        );
        let failing = BuildYml::parse(&pkg, "image: x\nrootfs: [{script: files/hello.sh}, {script: nope.sh}]").unwrap();
        let e = run_steps(&failing.steps, &env, &mut rootfs).unwrap_err().to_string();
        assert!(e.contains("rootfs[1] (script)") && e.contains("nope.sh"), "{e}");
    }
}
