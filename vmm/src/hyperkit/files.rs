//! hyperkit's own files in an instance's state directory ([`StateDir`], kind `Hyperkit`: LinuxKit's
//! `PREFIX-state` by default). The directory's lock, pid file and stale-state cleaning are
//! [`StateDir`]'s.
//!
//! | file             | what                                                              |
//! |------------------|-------------------------------------------------------------------|
//! | `hyperkit.pid`   | hyperkit's pid, written by hyperkit itself (`-F`)                  |
//! | `hyperkit.json`  | the configuration and pid ([`super::HyperkitJson`]); its pid counts until hyperkit has written `hyperkit.pid` |
//! | `console-ring`   | the serial console's log ring (`log=`)                             |
//! | `tty`            | a link to the console pty when the console is not on stdio         |
//! | `vpnkit.uuid`    | the vpnkit UUID, kept so the VM keeps its IP address (LinuxKit)    |
//! | `hyperkit.log`   | hyperkit's own output when it runs detached                        |
//! | `data.iso`       | the userdata CD                                                    |
//! | `disk.raw`, ...  | disks created from a size                                          |
//! | `connect`, `guest.PORT` | hyperkit's vsock sockets                                    |
//! | `vpnkit_eth.sock`, `vpnkit_port.sock` | the sockets of a vpnkit started for this VM   |

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{parse_uuid, HyperkitError, HyperkitJson, UuidOrigin};
use crate::state::StateDir;

/// hyperkit's pid file name (the name [`StateDir::pid_file`] gives for hyperkit).
pub(crate) const PID_FILE: &str = "hyperkit.pid";

fn io_err<'a>(doing: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> HyperkitError + 'a {
    move |source| HyperkitError::Io {
        doing,
        path: path.to_path_buf(),
        source,
    }
}

/// `hyperkit.json`.
pub(crate) fn json_file(state: &StateDir) -> PathBuf {
    state.dir().join("hyperkit.json")
}

/// `console-ring`, the console log.
pub(crate) fn console_ring(state: &StateDir) -> PathBuf {
    state.dir().join("console-ring")
}

/// `tty`, the link to the console pty.
pub(crate) fn tty(state: &StateDir) -> PathBuf {
    state.dir().join("tty")
}

/// `vpnkit.uuid`.
pub(crate) fn vpnkit_uuid_file(state: &StateDir) -> PathBuf {
    state.dir().join("vpnkit.uuid")
}

/// `hyperkit.log`: hyperkit's own output when detached.
pub(crate) fn hyperkit_log(state: &StateDir) -> PathBuf {
    state.dir().join("hyperkit.log")
}

/// `hyperkit.json`, or `None` without one.
pub(crate) fn read_json(state: &StateDir) -> Result<Option<HyperkitJson>, HyperkitError> {
    let path = json_file(state);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| HyperkitError::BadJson { path, source })
}

/// Writes `hyperkit.json` (a temporary file renamed into place).
pub(crate) fn write_json(state: &StateDir, json: &HyperkitJson) -> Result<(), HyperkitError> {
    let path = json_file(state);
    let tmp = state.dir().join("hyperkit.json.tmp");
    let text = serde_json::to_vec(json).map_err(|source| HyperkitError::BadJson {
        path: path.clone(),
        source,
    })?;
    File::create(&tmp)
        .and_then(|mut f| f.write_all(&text))
        .map_err(io_err("write", &tmp))?;
    fs::rename(&tmp, &path).map_err(io_err("write", &path))
}

/// The vpnkit UUID, as LinuxKit decides it: `explicit` if given, else the one in `vpnkit.uuid`,
/// else a new one written there (so vpnkit gives the VM the same address next time).
pub(crate) fn vpnkit_uuid(state: &StateDir, explicit: Option<&str>) -> Result<String, HyperkitError> {
    if let Some(text) = explicit {
        return parse_uuid(text).ok_or_else(|| HyperkitError::BadUuid {
            value: text.to_string(),
            origin: UuidOrigin::Vpnkit,
        });
    }
    let path = vpnkit_uuid_file(state);
    match fs::read_to_string(&path) {
        Ok(text) => {
            return parse_uuid(&text).ok_or_else(|| HyperkitError::BadUuid {
                value: text.clone(),
                origin: UuidOrigin::File(path.clone()),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("read", &path)(e)),
    }
    let uuid = super::new_uuid().map_err(io_err("read", Path::new("/dev/urandom")))?;
    fs::create_dir_all(state.dir()).map_err(io_err("create", state.dir()))?;
    let mut options = OpenOptions::new();
    std::os::unix::fs::OpenOptionsExt::mode(options.write(true).create_new(true), 0o600);
    options
        .open(&path)
        .and_then(|mut f| f.write_all(uuid.as_bytes()))
        .map_err(io_err("write", &path))?;
    Ok(uuid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::BackendKind;

    fn state() -> (tempfile::TempDir, StateDir) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("vm-state"), "vm", BackendKind::Hyperkit);
        (dir, state)
    }

    #[test]
    fn vpnkit_uuid_is_kept() {
        let (_d, s) = state();
        let first = vpnkit_uuid(&s, None).unwrap();
        assert_eq!(fs::read_to_string(vpnkit_uuid_file(&s)).unwrap(), first);
        let mode = fs::metadata(vpnkit_uuid_file(&s)).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
        assert_eq!(vpnkit_uuid(&s, None).unwrap(), first);
        let given = "AAAAAAAA-bbbb-cccc-dddd-eeeeeeeeeeee";
        assert_eq!(vpnkit_uuid(&s, Some(given)).unwrap(), given.to_ascii_lowercase());
        assert_eq!(
            fs::read_to_string(vpnkit_uuid_file(&s)).unwrap(),
            first,
            "a given UUID does not rewrite the file"
        );
        let e = vpnkit_uuid(&s, Some("nope")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid UUID \"nope\" given for vpnkit: use the form 01234567-89ab-cdef-0123-456789abcdef"
        );
        fs::write(vpnkit_uuid_file(&s), "garbage").unwrap();
        let e = vpnkit_uuid(&s, None).unwrap_err().to_string();
        assert!(e.contains("vpnkit.uuid (remove the file to get a new one)"), "{e}");
    }

    #[test]
    fn a_damaged_hyperkit_json_is_named() {
        let (_d, s) = state();
        assert!(read_json(&s).unwrap().is_none());
        fs::create_dir_all(s.dir()).unwrap();
        fs::write(json_file(&s), "not json").unwrap();
        let e = read_json(&s).unwrap_err();
        assert!(matches!(e, HyperkitError::BadJson { .. }), "{e}");
        assert!(e.to_string().contains("hyperkit.json"), "{e}");
    }
}
