//! Atomic file writes: a temporary file next to the target, given its mode, then renamed over it,
//! so a reader of `/run/config` never sees half a file.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Writes `contents` to `path` with exactly `mode` (permission bits; the umask does not apply),
/// replacing any file there.
pub fn write_file_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let temporary = temporary_path(path)?;
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(contents)?;
        file.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
        drop(file);
        fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result
}

/// Writes root's keys to `CONFIG/ssh/authorized_keys` (0600), creating `ssh` (0755) unless it
/// exists (LinuxKit's `os.Mkdir` fails on an existing one and loses the keys).
pub fn write_authorized_keys(config: &Path, keys: &[u8]) -> Result<(), String> {
    let ssh = config.join("ssh");
    if !ssh.is_dir() {
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&ssh)
            .map_err(|e| format!("cannot create {}: {e}", ssh.display()))?;
    }
    let path = ssh.join("authorized_keys");
    write_file_atomic(&path, keys, 0o600).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// `.NAME.tmp.PID.N` in the same directory as `path`.
fn temporary_path(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} does not name a file", path.display()),
        )
    })?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut temporary = std::ffi::OsString::from(".");
    temporary.push(name);
    temporary.push(format!(".tmp.{}.{n}", std::process::id()));
    Ok(path.with_file_name(temporary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_contents_and_exact_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_file_atomic(&path, b"one", 0o666).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o7777, 0o666);
        write_file_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o7777, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("f")],
            "no temporary file is left behind"
        );
    }

    #[test]
    fn failure_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d");
        fs::create_dir(&path).unwrap();
        assert!(
            write_file_atomic(&path, b"x", 0o644).is_err(),
            "a directory is not replaced by a file"
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("d")]);
    }
}
