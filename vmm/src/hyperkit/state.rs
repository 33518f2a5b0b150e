//! A hyperkit VM's state directory (LinuxKit's `PREFIX-state`, or `--state`).
//!
//! | file             | what                                                              |
//! |------------------|-------------------------------------------------------------------|
//! | `hyperkit.pid`   | hyperkit's pid, written by hyperkit itself (`-F`)                  |
//! | `hyperkit.json`  | the configuration and pid ([`super::HyperkitJson`])                |
//! | `console-ring`   | the serial console's log ring (`log=`)                             |
//! | `tty`            | a link to the console pty when the console is not on stdio         |
//! | `vpnkit.uuid`    | the vpnkit UUID, kept so the VM keeps its IP address (LinuxKit)    |
//! | `data.iso`       | the userdata CD                                                    |
//! | `disk.raw`, ...  | disks created for `--disk size=`                                   |
//! | `connect`, `guest.PORT` | hyperkit's vsock sockets                                    |
//! | `vpnkit_eth.sock`, `vpnkit_port.sock` | the sockets of a vpnkit started for this VM   |
//! | `lock`           | flocked by the `moby run` that owns the directory                  |
//!
//! A pid that names a live hyperkit means the directory is in use; a pid whose process is gone or
//! is something else (the pid was reused) is stale and [`HyperkitState::lock`] cleans it up.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{parse_uuid, HyperkitError, HyperkitJson};
use crate::state::{process_name, ProcessStatus};

/// hyperkit's pid file name.
pub(crate) const PID_FILE: &str = "hyperkit.pid";
/// The state file name.
pub(crate) const JSON_FILE: &str = "hyperkit.json";

/// An error about a hyperkit state directory; every variant names the path.
#[derive(Debug, thiserror::Error)]
pub enum HyperkitStateError {
    /// A file or directory could not be read or written.
    #[error("state dir: cannot {doing} {path}: {source}")]
    Io {
        /// What we tried.
        doing: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// Another `moby run` holds the lock.
    #[error(
        "state dir {dir} is in use by another `moby run` (lock {lock} is held); wait for it or use another --state dir"
    )]
    Locked {
        /// The state dir.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// hyperkit still runs from this directory.
    #[error(
        "VM `{name}` is still running from {dir} (hyperkit pid {pid}); stop it (kill -TERM {pid} shuts it \
         down through ACPI) or use another --state dir"
    )]
    Running {
        /// The state dir.
        dir: PathBuf,
        /// The instance name.
        name: String,
        /// hyperkit's pid.
        pid: u32,
    },
    /// The pid file does not hold a pid.
    #[error("state dir: {path} does not hold a process id ({content:?}); remove it if no VM runs from this dir")]
    BadPidFile {
        /// The pid file.
        path: PathBuf,
        /// What it holds.
        content: String,
    },
    /// `hyperkit.json` does not parse.
    #[error("state dir: {path} is not a hyperkit state file ({source}); remove it if no VM runs from this dir")]
    BadJson {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

/// The state directory of one hyperkit VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HyperkitState {
    dir: PathBuf,
    name: String,
}

/// Whether a program name is hyperkit's (`hyperkit`, Docker Desktop's `com.docker.hyperkit`).
fn is_hyperkit(name: &str) -> bool {
    name.contains("hyperkit")
}

fn io_err<'a>(doing: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> HyperkitStateError + 'a {
    move |source| HyperkitStateError::Io {
        doing,
        path: path.to_path_buf(),
        source,
    }
}

impl HyperkitState {
    /// The state directory `dir`, for instance `name` (used in messages).
    pub fn new(dir: impl Into<PathBuf>, name: impl Into<String>) -> Self {
        HyperkitState {
            dir: dir.into(),
            name: name.into(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The instance name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `hyperkit.pid`.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join(PID_FILE)
    }

    /// `hyperkit.json`.
    pub fn json_file(&self) -> PathBuf {
        self.dir.join(JSON_FILE)
    }

    /// `console-ring`, the console log.
    pub fn console_ring(&self) -> PathBuf {
        self.dir.join("console-ring")
    }

    /// `tty`, the link to the console pty.
    pub fn tty(&self) -> PathBuf {
        self.dir.join("tty")
    }

    /// `vpnkit.uuid`.
    pub fn vpnkit_uuid_file(&self) -> PathBuf {
        self.dir.join("vpnkit.uuid")
    }

    /// `data.iso`, the userdata CD.
    pub fn userdata_iso(&self) -> PathBuf {
        self.dir.join("data.iso")
    }

    /// `hyperkit.log`: hyperkit's own output when detached.
    pub fn hyperkit_log(&self) -> PathBuf {
        self.dir.join("hyperkit.log")
    }

    /// `lock`.
    pub fn lock_file(&self) -> PathBuf {
        self.dir.join("lock")
    }

    /// `hyperkit.json`, or `None` without one.
    pub fn read_json(&self) -> Result<Option<HyperkitJson>, HyperkitStateError> {
        let path = self.json_file();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| HyperkitStateError::BadJson { path, source })
    }

    /// Writes `hyperkit.json` (a temporary file renamed into place).
    pub fn write_json(&self, state: &HyperkitJson) -> Result<(), HyperkitStateError> {
        let path = self.json_file();
        let tmp = self.dir.join("hyperkit.json.tmp");
        let text = serde_json::to_vec(state).map_err(|source| HyperkitStateError::BadJson {
            path: path.clone(),
            source,
        })?;
        File::create(&tmp)
            .and_then(|mut f| f.write_all(&text))
            .map_err(io_err("write", &tmp))?;
        fs::rename(&tmp, &path).map_err(io_err("write", &path))
    }

    /// The recorded pid: `hyperkit.pid`, else the `pid` in `hyperkit.json` (hyperkit writes its pid
    /// file itself, a moment after it starts).
    pub fn read_pid(&self) -> Result<Option<u32>, HyperkitStateError> {
        let path = self.pid_file();
        match fs::read_to_string(&path) {
            Ok(content) => match content.trim().parse::<u32>() {
                Ok(pid) if pid > 0 => Ok(Some(pid)),
                _ => Err(HyperkitStateError::BadPidFile { path, content }),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Ok(self.read_json()?.map(|j| j.pid).filter(|&pid| pid > 0))
            }
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    /// Whether hyperkit runs from here: whether the recorded pid names a live hyperkit
    /// ([`process_name`]).
    pub fn status(&self) -> Result<ProcessStatus, HyperkitStateError> {
        self.status_with(process_name)
    }

    /// [`HyperkitState::status`] with `probe` telling a pid's program name (`None`: no process).
    pub fn status_with(
        &self,
        probe: impl FnOnce(u32) -> io::Result<Option<String>>,
    ) -> Result<ProcessStatus, HyperkitStateError> {
        ProcessStatus::judge(self.read_pid()?, is_hyperkit, probe)
            .map_err(io_err("look up the process of", &self.pid_file()))
    }

    /// Creates the directory and takes it for one run: takes the lock (held elsewhere:
    /// [`HyperkitStateError::Locked`]), refuses when hyperkit runs from it ([`HyperkitStateError::Running`]), and
    /// removes what a dead hyperkit left (pid file, `hyperkit.json`, `tty`). Disks, the console
    /// ring, `vpnkit.uuid` and the userdata ISO stay.
    pub fn lock(&self) -> Result<HyperkitLock, HyperkitStateError> {
        self.lock_with(process_name)
    }

    /// [`HyperkitState::lock`] with a process probe (see [`HyperkitState::status_with`]).
    pub fn lock_with(
        &self,
        probe: impl FnOnce(u32) -> io::Result<Option<String>>,
    ) -> Result<HyperkitLock, HyperkitStateError> {
        fs::create_dir_all(&self.dir).map_err(io_err("create", &self.dir))?;
        let path = self.lock_file();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(HyperkitStateError::Locked {
                    dir: self.dir.clone(),
                    lock: path,
                })
            }
            Err(TryLockError::Error(e)) => return Err(io_err("lock", &path)(e)),
        }
        match self.status_with(probe)? {
            ProcessStatus::Running { pid } => {
                return Err(HyperkitStateError::Running {
                    dir: self.dir.clone(),
                    name: self.name.clone(),
                    pid,
                })
            }
            ProcessStatus::Stale { .. } => self.clean_stale()?,
            ProcessStatus::Stopped => {}
        }
        Ok(HyperkitLock {
            _file: file,
            state: self.clone(),
        })
    }

    /// Removes the pid file, `hyperkit.json` and the `tty` link of a hyperkit that is gone.
    pub fn clean_stale(&self) -> Result<(), HyperkitStateError> {
        for path in [self.pid_file(), self.json_file(), self.tty()] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &path)(e)),
            }
        }
        Ok(())
    }

    /// The vpnkit UUID, as LinuxKit decides it: `explicit` (`--vpnkit-uuid`) if given, else the one
    /// in `vpnkit.uuid`, else a new one written there (so vpnkit gives the VM the same address).
    pub fn vpnkit_uuid(&self, explicit: Option<&str>) -> Result<String, HyperkitError> {
        if let Some(text) = explicit {
            return parse_uuid(text).ok_or_else(|| HyperkitError::BadUuid {
                value: text.to_string(),
                source_desc: "given with --vpnkit-uuid".into(),
            });
        }
        let path = self.vpnkit_uuid_file();
        match fs::read_to_string(&path) {
            Ok(text) => {
                return parse_uuid(&text).ok_or_else(|| HyperkitError::BadUuid {
                    value: text.clone(),
                    source_desc: format!("in {} (remove the file to get a new one)", path.display()),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("read", &path)(e).into()),
        }
        let uuid = super::new_uuid().map_err(io_err("read", Path::new("/dev/urandom")))?;
        fs::create_dir_all(&self.dir).map_err(io_err("create", &self.dir))?;
        let mut options = OpenOptions::new();
        std::os::unix::fs::OpenOptionsExt::mode(options.write(true).create_new(true), 0o600);
        options
            .open(&path)
            .and_then(|mut f| f.write_all(uuid.as_bytes()))
            .map_err(io_err("write", &path))?;
        Ok(uuid)
    }
}

/// A held lock on a [`HyperkitState`]; released on drop.
#[derive(Debug)]
pub struct HyperkitLock {
    _file: File,
    state: HyperkitState,
}

impl HyperkitLock {
    /// The locked state directory.
    pub fn state(&self) -> &HyperkitState {
        &self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StaleReason;

    fn state() -> (tempfile::TempDir, HyperkitState) {
        let dir = tempfile::tempdir().unwrap();
        let state = HyperkitState::new(dir.path().join("vm-state"), "vm");
        (dir, state)
    }

    fn no_process(_: u32) -> io::Result<Option<String>> {
        Ok(None)
    }

    /// Locks `s`, waiting out other test threads' fork-then-exec windows: a child forked while a
    /// lock file is open shares its flock until it execs (the descriptor is close-on-exec).
    fn lock_soon(s: &HyperkitState) -> Result<HyperkitLock, HyperkitStateError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match s.lock_with(no_process) {
                Err(HyperkitStateError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                other => return other,
            }
        }
    }

    #[test]
    fn status_from_pid_file_and_process_name() {
        let (_d, s) = state();
        assert_eq!(s.status_with(no_process).unwrap(), ProcessStatus::Stopped);
        fs::create_dir_all(s.dir()).unwrap();
        fs::write(s.pid_file(), "4242\n").unwrap();
        assert_eq!(
            s.status_with(no_process).unwrap(),
            ProcessStatus::Stale {
                pid: 4242,
                why: StaleReason::Gone
            }
        );
        let hk = |pid: u32| -> io::Result<Option<String>> {
            assert_eq!(pid, 4242);
            Ok(Some("com.docker.hyperkit".into()))
        };
        assert_eq!(s.status_with(hk).unwrap(), ProcessStatus::Running { pid: 4242 });
        let other = |_| Ok(Some("bash".to_string()));
        assert_eq!(
            s.status_with(other).unwrap(),
            ProcessStatus::Stale {
                pid: 4242,
                why: StaleReason::OtherProgram("bash".into())
            }
        );
        fs::write(s.pid_file(), "hello").unwrap();
        let e = s.status_with(no_process).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("does not hold a process id (\"hello\"); remove it if no VM runs from this dir"),
            "{e}"
        );
    }

    #[test]
    fn real_processes_are_probed() {
        // This test process is alive and is not hyperkit: its pid recorded in a state dir is stale.
        // (`process_name` itself is tested in `crate::state`.)
        let me = std::process::id();
        let (_d, s) = state();
        fs::create_dir_all(s.dir()).unwrap();
        fs::write(s.pid_file(), me.to_string()).unwrap();
        assert!(matches!(
            s.status().unwrap(),
            ProcessStatus::Stale {
                why: StaleReason::OtherProgram(_),
                ..
            }
        ));
    }

    #[test]
    fn lock_refuses_running_and_cleans_stale() {
        let (_d, s) = state();
        fs::create_dir_all(s.dir()).unwrap();
        fs::write(s.pid_file(), "77").unwrap();
        fs::write(s.json_file(), "{}").unwrap();
        fs::write(s.tty(), "").unwrap();
        fs::write(s.console_ring(), "boot log").unwrap();
        fs::write(s.vpnkit_uuid_file(), "0123abcd-89ab-cdef-0123-456789abcdef").unwrap();
        let running = |_| Ok(Some("hyperkit".to_string()));
        let e = s.lock_with(running).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "VM `vm` is still running from {} (hyperkit pid 77); stop it (kill -TERM 77 shuts it down \
                 through ACPI) or use another --state dir",
                s.dir().display()
            )
        );
        assert!(s.pid_file().exists(), "a running VM's files are left alone");
        let lock = lock_soon(&s).unwrap();
        assert!(!s.pid_file().exists() && !s.json_file().exists() && !s.tty().exists());
        assert!(s.console_ring().exists() && s.vpnkit_uuid_file().exists());
        let e = HyperkitState::new(s.dir(), "vm").lock_with(no_process).unwrap_err();
        assert!(matches!(e, HyperkitStateError::Locked { .. }), "{e}");
        drop(lock);
        assert!(lock_soon(&s).is_ok());
    }

    #[test]
    fn json_pid_counts_without_pid_file() {
        let (_d, s) = state();
        fs::create_dir_all(s.dir()).unwrap();
        fs::write(s.json_file(), "not json").unwrap();
        assert!(matches!(s.read_pid(), Err(HyperkitStateError::BadJson { .. })));
    }

    #[test]
    fn vpnkit_uuid_is_kept() {
        let (_d, s) = state();
        let first = s.vpnkit_uuid(None).unwrap();
        assert_eq!(fs::read_to_string(s.vpnkit_uuid_file()).unwrap(), first);
        let mode = fs::metadata(s.vpnkit_uuid_file()).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
        assert_eq!(s.vpnkit_uuid(None).unwrap(), first);
        let given = "AAAAAAAA-bbbb-cccc-dddd-eeeeeeeeeeee";
        assert_eq!(s.vpnkit_uuid(Some(given)).unwrap(), given.to_ascii_lowercase());
        assert_eq!(
            fs::read_to_string(s.vpnkit_uuid_file()).unwrap(),
            first,
            "the flag does not rewrite the file"
        );
        let e = s.vpnkit_uuid(Some("nope")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid UUID \"nope\" given with --vpnkit-uuid: use the form 01234567-89ab-cdef-0123-456789abcdef"
        );
        fs::write(s.vpnkit_uuid_file(), "garbage").unwrap();
        let e = s.vpnkit_uuid(None).unwrap_err().to_string();
        assert!(e.contains("vpnkit.uuid (remove the file to get a new one)"), "{e}");
    }
}
