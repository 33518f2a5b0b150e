//! How a container's process is executed once libcontainer has set the container up: as runc
//! does it. `args[0]` with a `/` is run as it is; a bare name is looked up in the PATH of the
//! container's own env.
//!
//! libcontainer's default executor refuses every process whose env has no `PATH`, even
//! `/bin/sh`. In LinuxKit a YAML `env:` replaces the image's env (`env: [INSECURE=true]` on
//! getty), and runc starts such a process: so must we.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};

#[derive(Clone)]
pub struct RuncLikeExecutor;

impl Executor for RuncLikeExecutor {
    /// Runs in the container (its namespaces, after pivot_root) before it is started: a process
    /// that cannot be found fails `create` with a message naming it.
    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        let (args, env) = process(spec).map_err(ExecutorValidationError::ArgValidationError)?;
        resolve(&args[0], path_var(env), is_executable)
            .map(drop)
            .map_err(ExecutorValidationError::ArgValidationError)
    }

    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let (args, env) = process(spec).map_err(ExecutorError::Other)?;
        let program = resolve(&args[0], path_var(env), is_executable).map_err(ExecutorError::Other)?;
        let cstring = |s: &str| CString::new(s).map_err(|_| ExecutorError::Other(format!("{s:?} contains a NUL byte")));
        let program = cstring(&program.to_string_lossy())?;
        let argv = args.iter().map(|a| cstring(a)).collect::<Result<Vec<_>, _>>()?;
        // The environment is already the container's (libcontainer's `setup_envs`).
        let err = nix::unistd::execv(&program, &argv).unwrap_err();
        Err(ExecutorError::Other(format!("execute {}: {err}", args[0])))
    }
}

/// The process's args (at least one) and env.
fn process(spec: &Spec) -> Result<(&[String], &[String]), String> {
    let process = spec.process().as_ref().ok_or("config.json has no process")?;
    let args = process.args().as_deref().unwrap_or_default();
    if args.is_empty() {
        return Err("config.json's process has no args: nothing to run (set command: in the YAML)".into());
    }
    Ok((args, process.env().as_deref().unwrap_or_default()))
}

/// The value of the first `PATH=` entry.
fn path_var(env: &[String]) -> Option<&str> {
    env.iter().find_map(|e| e.strip_prefix("PATH="))
}

/// Where `name` is: itself when it has a `/`, else the first executable `DIR/name` of `path`
/// (an empty entry is the working directory, as in runc's lookup).
fn resolve(name: &str, path: Option<&str>, executable: impl Fn(&Path) -> bool) -> Result<PathBuf, String> {
    if name.contains('/') {
        return if executable(Path::new(name)) {
            Ok(name.into())
        } else {
            Err(format!("{name}: no such executable file in the container"))
        };
    }
    let Some(path) = path else {
        return Err(format!(
            "{name}: the process's env has no PATH to look it up in (a YAML `env:` replaces the \
             image's): give the command an absolute path or add PATH=... to env"
        ));
    };
    path.split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(name))
        .find(|candidate| executable(candidate))
        .ok_or_else(|| format!("{name}: executable file not found in PATH={path}"))
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(files: &'static [&'static str]) -> impl Fn(&Path) -> bool {
        move |p| files.iter().any(|f| Path::new(f) == p)
    }

    #[test]
    fn absolute_commands_need_no_path() {
        assert_eq!(resolve("/bin/sh", None, only(&["/bin/sh"])), Ok("/bin/sh".into()));
        let err = resolve("/bin/nope", Some("/bin"), only(&["/bin/sh"])).unwrap_err();
        assert!(err.contains("/bin/nope: no such executable"), "{err}");
    }

    #[test]
    fn bare_names_are_looked_up_in_the_containers_path() {
        let found = resolve("sh", Some("/usr/bin:/bin"), only(&["/bin/sh", "/usr/bin/env"]));
        assert_eq!(found, Ok("/bin/sh".into()));
        assert_eq!(
            resolve("run", Some(":/bin"), only(&["./run", "/bin/run"])),
            Ok("./run".into())
        );
        let err = resolve("sh", Some("/usr/bin"), only(&["/bin/sh"])).unwrap_err();
        assert!(err.contains("not found in PATH=/usr/bin"), "{err}");
        let err = resolve("sh", None, only(&["/bin/sh"])).unwrap_err();
        assert!(err.contains("has no PATH"), "{err}");
    }

    #[test]
    fn the_first_path_entry_wins() {
        let env = ["HOME=/".to_string(), "PATH=/a".to_string(), "PATH=/b".to_string()];
        assert_eq!(path_var(&env), Some("/a"));
        assert_eq!(path_var(&env[..1]), None);
    }
}
