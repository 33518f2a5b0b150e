//! Instance state directories, one type for every local backend.
//!
//! # Layout
//!
//! Every instance is found by name under a root, `~/.moby/run/NAME/` by default
//! ([`StateRoot::default_base`]; `MOBY_STATE_HOME` overrides it). An instance whose state lives
//! elsewhere (an explicit state dir, or LinuxKit's `PREFIX-state` next to the image for hyperkit
//! and VMware) has a link there under its name ([`StateRoot::prepare`]). File names follow
//! LinuxKit where it has them:
//!
//! | file         | what                                                                 |
//! |--------------|----------------------------------------------------------------------|
//! | `instance.json` | the record: backend, state, tags, what it boots ([`crate::instance`]) |
//! | `record.lock` | flocked while the record is read, changed and written back           |
//! | `lock`       | held (flock) by the process starting (or running in its foreground) the VM |
//! | `qemu.pid`, `hyperkit.pid` | the VM process's pid, written by the program itself      |
//! | `qmp.sock`   | qemu's QMP socket for other processes ([`crate::qmp`])                  |
//! | `qmp-run.sock` | qemu's QMP socket of the process that started it                    |
//! | `console.sock` | qemu's serial console (qemu listens; consoles attach)               |
//! | `console.log`| everything qemu's serial console printed in the last run              |
//! | `mac-addr`   | the NIC's MAC address, generated once and kept across runs (LinuxKit) |
//! | `disk.img`, `disk1.img`, ... | qemu's disks created from a size (LinuxKit's names)   |
//! | `data.iso`   | the userdata (cidata) CD (LinuxKit's name)                            |
//!
//! hyperkit's and VMware's own files are listed in their modules.
//!
//! # Invariants
//!
//! A directory whose pid file names a live VM process is never reused: [`StateDir::lock`] refuses.
//! A pid file whose process is gone, or is another program (the pid was reused), is stale: `lock`
//! removes it and the old sockets. The MAC address, disks and userdata ISO survive runs.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::instance::{BackendKind, InstanceRecord};
use crate::process::{has_proc, process_name, ProcessStatus};

/// An error about a state directory; every variant names the path.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file or directory could not be read or written.
    #[error("state dir: cannot {doing} {path}: {source}")]
    Io {
        /// What we tried, e.g. "create", "read".
        doing: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Another process is starting or running the instance from this directory.
    #[error(
        "state dir {dir} of instance `{name}` is in use by another process (lock {lock} is held): wait \
         for it, stop the instance, or use another state dir"
    )]
    Locked {
        /// The state directory.
        dir: PathBuf,
        /// The instance name.
        name: String,
        /// The lock file.
        lock: PathBuf,
    },
    /// A VM still runs from this directory.
    #[error("instance `{name}` is still running from {dir}{}: stop it or use another state dir", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Running {
        /// The state directory.
        dir: PathBuf,
        /// The instance name.
        name: String,
        /// The VM process's pid, where the backend has one.
        pid: Option<u32>,
    },
    /// The pid file does not hold a pid.
    #[error("state dir: {path} does not hold a process id ({content:?}); remove it if no VM runs from {dir}")]
    BadPidFile {
        /// The pid file.
        path: PathBuf,
        /// The state directory.
        dir: PathBuf,
        /// What it holds.
        content: String,
    },
    /// The MAC address file does not hold a MAC address.
    #[error("state dir: {path} does not hold a MAC address ({content:?}); remove it to generate a new one")]
    BadMac {
        /// The MAC file.
        path: PathBuf,
        /// What it holds.
        content: String,
    },
    /// An instance name that cannot be a directory name.
    #[error("instance name {0:?} is not usable as a directory name: use letters, digits, `.`, `-` and `_`")]
    BadName(String),
    /// The name of a directory of the root that is not an instance's.
    #[error(
        "instance name {0:?} is reserved (the state root keeps its networks and clusters there): use another name"
    )]
    ReservedName(String),
    /// No home directory to put the default base in.
    #[error("cannot find the state base dir: HOME is not set; set MOBY_STATE_HOME")]
    NoHome,
    /// An `instance.json` that does not hold a record.
    #[error("state dir: {path} is not an instance record ({why}); remove the directory if the instance is gone")]
    BadRecord {
        /// The record file.
        path: PathBuf,
        /// Why it does not parse.
        why: String,
    },
    /// No instance of that name.
    #[error("no instance named `{name}` (no record in {dir})")]
    Unknown {
        /// The name.
        name: String,
        /// The directory looked for.
        dir: PathBuf,
    },
    /// A state directory without a record where one is needed.
    #[error("{dir} holds no instance record: it is not an instance's state dir (or its start never got that far)")]
    NoRecord {
        /// The state directory.
        dir: PathBuf,
    },
    /// The name is used by another instance's real directory.
    #[error("instance name `{name}` is taken by {dir}: use another name, or the default state dir")]
    NameTaken {
        /// The name.
        name: String,
        /// The directory holding it.
        dir: PathBuf,
    },
}

impl StateError {
    /// [`StateError::Io`] for doing `doing` to `path`, to map an [`io::Error`] with.
    pub(crate) fn io(doing: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> StateError {
        let path = path.into();
        move |source| StateError::Io { doing, path, source }
    }
}

/// Whether a program name is `kind`'s VM program: qemu's (`qemu-system-x86_64`, `qemu-kvm`, ...),
/// hyperkit's (`hyperkit`, Docker Desktop's `com.docker.hyperkit`).
fn is_program(kind: BackendKind, name: &str) -> bool {
    match kind {
        BackendKind::Qemu => name.starts_with("qemu"),
        BackendKind::Hyperkit => name.contains("hyperkit"),
        BackendKind::Vmware | BackendKind::Gcp => false,
    }
}

/// A locally administered unicast MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Makes `bytes` a locally administered (bit 1 set) unicast (bit 0 clear) address, as LinuxKit
    /// does for its random MACs.
    pub fn local_unicast(mut bytes: [u8; 6]) -> Self {
        bytes[0] = (bytes[0] & !0x01) | 0x02;
        MacAddr(bytes)
    }

    /// Parses `aa:bb:cc:dd:ee:ff` (also `-` separated, any case).
    pub fn parse(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 6];
        let mut parts = text.trim().split([':', '-']);
        for byte in &mut bytes {
            let part = parts.next()?;
            if part.len() != 2 {
                return None;
            }
            *byte = u8::from_str_radix(part, 16).ok()?;
        }
        parts.next().is_none().then_some(MacAddr(bytes))
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// The base directory holding one state directory per instance name.
#[derive(Debug, Clone)]
pub struct StateRoot {
    base: PathBuf,
}

impl StateRoot {
    /// A root at `base`.
    pub fn new(base: impl Into<PathBuf>) -> Self {
        StateRoot { base: base.into() }
    }

    /// `$MOBY_STATE_HOME` if set, else `$HOME/.moby/run`.
    pub fn default_base() -> Result<PathBuf, StateError> {
        if let Some(base) = std::env::var_os("MOBY_STATE_HOME").filter(|v| !v.is_empty()) {
            return Ok(PathBuf::from(base));
        }
        let home = std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .ok_or(StateError::NoHome)?;
        Ok(Path::new(&home).join(".moby").join("run"))
    }

    /// The base directory.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The state directory of instance `name` under the root (not created).
    pub fn instance(&self, name: &str, kind: BackendKind) -> Result<StateDir, StateError> {
        check_name(name)?;
        Ok(StateDir::new(self.base.join(name), name, kind))
    }

    /// The state directory for a new run of `name`: `ROOT/NAME`, or `explicit` (created,
    /// canonical) linked from `ROOT/NAME` so that the instance is found by name. A link left by an
    /// earlier run is pointed at `explicit`; a real directory of that name is
    /// [`StateError::NameTaken`].
    pub fn prepare(&self, name: &str, kind: BackendKind, explicit: Option<&Path>) -> Result<StateDir, StateError> {
        let default = self.instance(name, kind)?;
        let Some(dir) = explicit else {
            return Ok(default);
        };
        let io = StateError::io;
        fs::create_dir_all(dir).map_err(io("create", dir))?;
        let dir = fs::canonicalize(dir).map_err(io("resolve", dir))?;
        let link = default.dir();
        match fs::read_link(link) {
            Ok(target) if target == dir => {}
            Ok(target) => {
                self.check_not_running(name, &target)?;
                fs::remove_file(link).map_err(io("replace", link))?;
                std::os::unix::fs::symlink(&dir, link).map_err(io("link", link))?;
            }
            Err(_) if fs::symlink_metadata(link).is_ok() => {
                return Err(StateError::NameTaken {
                    name: name.to_string(),
                    dir: link.to_path_buf(),
                })
            }
            Err(_) => {
                fs::create_dir_all(&self.base).map_err(io("create", &self.base))?;
                std::os::unix::fs::symlink(&dir, link).map_err(io("link", link))?;
            }
        }
        Ok(StateDir::new(dir, name, kind))
    }

    /// Refuses to move the name `name` away from the state dir `target` while an instance runs
    /// from there (its record is active and its process runs, or another process holds its lock;
    /// VMware's liveness is not known here, so an active VMware record counts as running).
    fn check_not_running(&self, name: &str, target: &Path) -> Result<(), StateError> {
        let Ok((state, record)) = self.open(name) else {
            return Ok(());
        };
        if !record.state.is_active() {
            return Ok(());
        }
        let pid = state.running_pid()?;
        if pid.is_some() || state.is_owned()? || record.backend == BackendKind::Vmware {
            return Err(StateError::Running {
                dir: target.to_path_buf(),
                name: name.to_string(),
                pid: pid.or(record.pid).filter(|&p| p > 0),
            });
        }
        Ok(())
    }

    /// The instance `name` and its record; [`StateError::Unknown`] without a record (no
    /// directory, or one that only keeps the disks of a destroyed instance for the next of that
    /// name).
    pub fn open(&self, name: &str) -> Result<(StateDir, InstanceRecord), StateError> {
        check_name(name)?;
        let dir = self.base.join(name);
        let unknown = || StateError::Unknown {
            name: name.to_string(),
            dir: dir.clone(),
        };
        if !dir.is_dir() {
            return Err(unknown());
        }
        let record = InstanceRecord::read_from(&dir.join(RECORD_FILE))?.ok_or_else(unknown)?;
        let state = self.instance(name, record.backend)?;
        Ok((state, record))
    }

    /// Every instance under the root that has a record, sorted by name. A missing root lists
    /// nothing; a directory without a readable record is skipped with a warning.
    pub fn list(&self) -> Result<Vec<(StateDir, InstanceRecord)>, StateError> {
        let io = |source| StateError::io("list", &self.base)(source);
        let entries = match fs::read_dir(&self.base) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            if let Ok(name) = entry.map_err(io)?.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        let mut out = Vec::new();
        for name in names {
            match self.open(&name) {
                Ok(found) => out.push(found),
                Err(StateError::Unknown { .. } | StateError::BadName(_) | StateError::ReservedName(_)) => {}
                Err(e) => tracing::warn!("skipping {}: {e}", self.base.join(&name).display()),
            }
        }
        Ok(out)
    }
}

/// Whether `name` can be an instance name (a directory name under the root).
fn check_name(name: &str) -> Result<(), StateError> {
    let usable = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !usable {
        return Err(StateError::BadName(name.to_string()));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(StateError::ReservedName(name.to_string()));
    }
    Ok(())
}

/// The directory of the root holding the private networks (`crate::network`).
pub(crate) const NETWORKS_DIR: &str = "networks";

/// Directories of the root that are not instances': the networks, and the clusters that the
/// plugin crate keeps beside the instances they run.
const RESERVED_NAMES: [&str; 2] = [NETWORKS_DIR, "clusters"];

/// The record's file name in a state directory.
const RECORD_FILE: &str = "instance.json";

/// How long [`StateDir::lock`] waits for a lock held elsewhere before refusing.
const LOCK_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// hyperkit's state file (see [`crate::hyperkit`]), which holds its pid too.
const HYPERKIT_JSON: &str = "hyperkit.json";

/// The state directory of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    dir: PathBuf,
    name: String,
    kind: BackendKind,
}

impl StateDir {
    /// The state directory `dir` of instance `name` on backend `kind`.
    pub fn new(dir: impl Into<PathBuf>, name: impl Into<String>, kind: BackendKind) -> Self {
        StateDir {
            dir: dir.into(),
            name: name.into(),
            kind,
        }
    }

    /// The backend whose files these are.
    pub fn kind(&self) -> BackendKind {
        self.kind
    }

    /// `instance.json`, the instance's record.
    pub fn record_file(&self) -> PathBuf {
        self.dir.join(RECORD_FILE)
    }

    /// The instance's record, `None` before its first start.
    pub fn read_record(&self) -> Result<Option<InstanceRecord>, StateError> {
        InstanceRecord::read_from(&self.record_file())
    }

    /// Reads the record, lets `change` modify it and writes it back, all under `record.lock` so
    /// that concurrent updates (a transition and a label) are never lost.
    pub fn update_record<T>(
        &self,
        change: impl FnOnce(&mut InstanceRecord) -> Result<T, StateError>,
    ) -> Result<(InstanceRecord, T), StateError> {
        let _guard = self.record_lock()?;
        let mut record = self
            .read_record()?
            .ok_or_else(|| StateError::NoRecord { dir: self.dir.clone() })?;
        let out = change(&mut record)?;
        record.write_to(&self.record_file())?;
        Ok((record, out))
    }

    /// Writes `record` as the instance's record (under `record.lock`).
    pub fn write_record(&self, record: &InstanceRecord) -> Result<(), StateError> {
        let _guard = self.record_lock()?;
        record.write_to(&self.record_file())
    }

    fn record_lock(&self) -> Result<File, StateError> {
        let path = self.dir.join("record.lock");
        let file = open_lock_file(&path)?;
        file.lock().map_err(StateError::io("lock", path))?;
        Ok(file)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The instance name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The VM process's pid file, written by the VM program itself: `qemu.pid` (`-pidfile`),
    /// `hyperkit.pid` (`-F`). VMware has none (`vmrun list` tells whether a VM runs).
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join(match self.kind {
            BackendKind::Qemu => "qemu.pid",
            BackendKind::Hyperkit => "hyperkit.pid",
            BackendKind::Vmware => "vmware.pid",
            // Never recorded here: GCE instances live in the cloud.
            BackendKind::Gcp => "gcp.pid",
        })
    }

    /// `qmp.sock`, the QMP socket.
    pub fn qmp_socket(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }

    /// `qmp-run.sock`, the QMP socket of the `moby run` that owns the VM (qemu serves one client
    /// per socket).
    pub fn owner_qmp_socket(&self) -> PathBuf {
        self.dir.join("qmp-run.sock")
    }

    /// `console.sock`, the serial console socket.
    pub fn console_socket(&self) -> PathBuf {
        self.dir.join("console.sock")
    }

    /// `console.log`, everything the serial console printed in the last run.
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    /// `mac-addr`, the kept MAC address.
    pub fn mac_file(&self) -> PathBuf {
        self.dir.join("mac-addr")
    }

    /// `data.iso`, the userdata CD.
    pub fn userdata_iso(&self) -> PathBuf {
        self.dir.join("data.iso")
    }

    /// The `index`th disk created for `--disk size=`: `disk.img`, `disk1.img`, ... (LinuxKit's names).
    pub fn disk(&self, index: usize) -> PathBuf {
        match index {
            0 => self.dir.join("disk.img"),
            n => self.dir.join(format!("disk{n}.img")),
        }
    }

    /// `lock`, flocked by the `moby run` owning the directory.
    pub fn lock_file(&self) -> PathBuf {
        self.dir.join("lock")
    }

    /// Whether a VM runs from here: whether the recorded pid ([`StateDir::read_pid`]) names a
    /// live process of the backend's program ([`process_name`]).
    ///
    /// Where there is no `/proc` (macOS), a qemu pid file is taken to mean a running VM: refusing
    /// is safer than reusing a live VM's disks. hyperkit, which runs only there, is judged by
    /// `ps` as everywhere else.
    pub fn status(&self) -> Result<ProcessStatus, StateError> {
        if !has_proc() && self.kind != BackendKind::Hyperkit {
            return Ok(self
                .read_pid()?
                .map_or(ProcessStatus::Stopped, |pid| ProcessStatus::Running { pid }));
        }
        self.status_with(process_name)
    }

    /// The pid of the VM process running from here ([`StateDir::status`]), `None` when none does.
    pub fn running_pid(&self) -> Result<Option<u32>, StateError> {
        Ok(match self.status()? {
            ProcessStatus::Running { pid } => Some(pid),
            ProcessStatus::Stale { .. } | ProcessStatus::Stopped => None,
        })
    }

    /// [`StateDir::status`] with `probe` telling a pid's program name (`None`: no process).
    fn status_with(&self, probe: impl FnOnce(u32) -> io::Result<Option<String>>) -> Result<ProcessStatus, StateError> {
        ProcessStatus::judge(self.read_pid()?, |name| is_program(self.kind, name), probe)
            .map_err(StateError::io("look up the process of", self.pid_file()))
    }

    /// The pid in the pid file ([`StateDir::pid_file`]), or `None` without one. hyperkit writes
    /// its pid file a moment after it starts, so for hyperkit the `pid` of `hyperkit.json`
    /// (written by whoever started it) counts when there is no pid file yet.
    pub fn read_pid(&self) -> Result<Option<u32>, StateError> {
        let path = self.pid_file();
        let content = match fs::read_to_string(&path) {
            Ok(content) => content,
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.kind == BackendKind::Hyperkit => {
                return self.hyperkit_json_pid()
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StateError::io("read", path)(e)),
        };
        match content.trim().parse::<u32>() {
            Ok(pid) if pid > 0 => Ok(Some(pid)),
            _ => Err(StateError::BadPidFile {
                path,
                dir: self.dir.clone(),
                content,
            }),
        }
    }

    /// The `pid` field of hyperkit's `hyperkit.json` (the hyperkit Go library's state file), or
    /// `None` without the file or a pid in it.
    fn hyperkit_json_pid(&self) -> Result<Option<u32>, StateError> {
        #[derive(serde::Deserialize)]
        struct Pid {
            #[serde(default)]
            pid: u32,
        }
        let path = self.dir.join(HYPERKIT_JSON);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StateError::io("read", path)(e)),
        };
        match serde_json::from_str::<Pid>(&text) {
            Ok(Pid { pid }) => Ok(Some(pid).filter(|&pid| pid > 0)),
            Err(_) => Err(StateError::BadPidFile {
                path,
                dir: self.dir.clone(),
                content: text.chars().take(80).collect(),
            }),
        }
    }

    /// Whether another process holds the directory's lock: it is starting the VM or running it in
    /// its foreground (so the record is that process's to keep up to date).
    pub fn is_owned(&self) -> Result<bool, StateError> {
        let path = self.lock_file();
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(StateError::io("open", path)(e)),
        };
        Ok(!try_flock(&file, Flock::Shared, &path)?)
    }

    /// Creates the directory if needed and takes it for one run: takes the lock (another `moby run`
    /// holding it is [`StateError::Locked`]), refuses if a VM runs from it ([`StateError::Running`]),
    /// and removes a stale pid file and QMP socket. Hold the returned lock until qemu has written
    /// its pid file (or for the whole run in the foreground); dropping it releases the lock.
    pub fn lock(&self) -> Result<StateLock, StateError> {
        remove_dangling_link(&self.dir)?;
        fs::create_dir_all(&self.dir).map_err(StateError::io("create", &self.dir))?;
        let path = self.lock_file();
        let file = open_lock_file(&path)?;
        // A child forked by another thread of this process while it had the lock file open holds
        // the lock until it execs (a moment): give such a holder that moment before refusing.
        let deadline = std::time::Instant::now() + LOCK_GRACE;
        while !try_flock(&file, Flock::Exclusive, &path)? {
            if std::time::Instant::now() >= deadline {
                return Err(StateError::Locked {
                    dir: self.dir.clone(),
                    name: self.name.clone(),
                    lock: path,
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        match self.status()? {
            ProcessStatus::Running { pid } => {
                return Err(StateError::Running {
                    dir: self.dir.clone(),
                    name: self.name.clone(),
                    pid: Some(pid),
                })
            }
            ProcessStatus::Stale { .. } => self.clean_runtime()?,
            ProcessStatus::Stopped => {}
        }
        Ok(StateLock {
            _file: file,
            state: self.clone(),
        })
    }

    /// Removes what a dead VM process leaves behind (qemu: pid file, sockets; hyperkit: pid file,
    /// `hyperkit.json`, `tty`); keeps the MAC, disks, the userdata ISO, the console log and the
    /// record. Call it only when the process has exited.
    pub fn clean_runtime(&self) -> Result<(), StateError> {
        let runtime = match self.kind {
            BackendKind::Qemu => vec![
                self.pid_file(),
                self.qmp_socket(),
                self.owner_qmp_socket(),
                self.console_socket(),
            ],
            BackendKind::Hyperkit => vec![self.pid_file(), self.dir.join(HYPERKIT_JSON), self.dir.join("tty")],
            BackendKind::Vmware | BackendKind::Gcp => Vec::new(),
        };
        for path in runtime {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StateError::io("remove", path)(e)),
            }
        }
        Ok(())
    }

    /// The instance's MAC address: read from `mac-addr`, or generated from random bytes
    /// (`/dev/urandom`), made locally administered unicast, and written there on first use.
    pub fn mac(&self) -> Result<MacAddr, StateError> {
        let path = self.mac_file();
        match fs::read_to_string(&path) {
            Ok(content) => return MacAddr::parse(&content).ok_or(StateError::BadMac { path, content }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StateError::io("read", path)(e)),
        }
        let bytes = crate::random::bytes().map_err(StateError::io("read", "/dev/urandom"))?;
        let mac = MacAddr::local_unicast(bytes);
        fs::create_dir_all(&self.dir).map_err(StateError::io("create", &self.dir))?;
        // Write to a temp name and rename, so a crash never leaves a half-written MAC.
        let tmp = self.dir.join("mac-addr.tmp");
        File::create(&tmp)
            .and_then(|mut f| f.write_all(mac.to_string().as_bytes()))
            .map_err(StateError::io("write", &tmp))?;
        fs::rename(&tmp, &path).map_err(StateError::io("write", path))?;
        Ok(mac)
    }
}

/// A held lock on a [`StateDir`]; released on drop.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    state: StateDir,
}

impl StateLock {
    /// The locked state directory.
    pub fn state(&self) -> &StateDir {
        &self.state
    }
}

/// Removes `dir` if it is a symbolic link to nothing: the directory an earlier run was given with
/// `--state` (and linked here under its name) is gone, and the link would make every later run of
/// that name fail.
fn remove_dangling_link(dir: &Path) -> Result<(), StateError> {
    let is_link = fs::symlink_metadata(dir).is_ok_and(|meta| meta.file_type().is_symlink());
    if !is_link || dir.exists() {
        return Ok(());
    }
    tracing::warn!(
        "{} linked to a state dir that no longer exists; the link is removed and a new state dir made in its place",
        dir.display()
    );
    fs::remove_file(dir).map_err(StateError::io("remove the dangling link", dir))
}

/// Opens (creating it if needed) a lock file, to flock.
fn open_lock_file(path: &Path) -> Result<File, StateError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(StateError::io("open", path))
}

/// How [`try_flock`] locks.
#[derive(Debug, Clone, Copy)]
enum Flock {
    /// Alone (the process taking a state dir).
    Exclusive,
    /// Alongside other shared holders (a look whether anyone holds it exclusively).
    Shared,
}

/// Tries to flock `file` (the lock file `path`) without waiting: whether it got the lock.
fn try_flock(file: &File, how: Flock, path: &Path) -> Result<bool, StateError> {
    let taken = match how {
        Flock::Exclusive => file.try_lock(),
        Flock::Shared => file.try_lock_shared(),
    };
    match taken {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(StateError::io("lock", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::StaleReason;
    use crate::testing::dead_pid;

    fn state(name: &str) -> (tempfile::TempDir, StateDir) {
        let base = tempfile::tempdir().expect("temp dir");
        let state = StateRoot::new(base.path())
            .instance(name, BackendKind::Qemu)
            .expect("name");
        (base, state)
    }

    #[test]
    fn layout_uses_linuxkit_names() {
        let (base, s) = state("vm1");
        assert_eq!(s.dir(), base.path().join("vm1"));
        assert_eq!(s.pid_file(), base.path().join("vm1/qemu.pid"));
        assert_eq!(s.qmp_socket(), base.path().join("vm1/qmp.sock"));
        assert_eq!(s.mac_file(), base.path().join("vm1/mac-addr"));
        assert_eq!(s.userdata_iso(), base.path().join("vm1/data.iso"));
        assert_eq!(s.disk(0), base.path().join("vm1/disk.img"));
        assert_eq!(s.disk(2), base.path().join("vm1/disk2.img"));
    }

    #[test]
    fn bad_names_are_refused() {
        let root = StateRoot::new("/nonexistent");
        for name in ["", ".", "..", "a/b", "a b", "../x"] {
            assert!(
                matches!(root.instance(name, BackendKind::Qemu), Err(StateError::BadName(_))),
                "{name:?}"
            );
        }
        assert!(root.instance("linuxkit-1.2_x", BackendKind::Qemu).is_ok());
    }

    #[test]
    fn fresh_dir_is_stopped_and_lockable() {
        let (_base, s) = state("vm");
        assert_eq!(s.status().expect("status"), ProcessStatus::Stopped);
        let lock = s.lock().expect("lock");
        assert!(s.dir().is_dir());
        assert_eq!(lock.state(), &s);
    }

    #[test]
    fn second_lock_is_refused_until_the_first_is_dropped() {
        let (_base, s) = state("vm");
        let lock = s.lock().expect("first lock");
        let err = s.lock().expect_err("second lock");
        assert!(matches!(err, StateError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("in use by another process"), "{err}");
        drop(lock);
        s.lock().expect("lock after release");
    }

    #[test]
    fn stale_pid_of_a_gone_process_is_cleaned() {
        let (_base, s) = state("vm");
        fs::create_dir_all(s.dir()).expect("mkdir");
        let pid = dead_pid();
        fs::write(s.pid_file(), format!("{pid}\n")).expect("pid");
        fs::write(s.qmp_socket(), "").expect("sock");
        fs::write(s.console_log(), "old console").expect("log");
        assert_eq!(
            s.status().expect("status"),
            ProcessStatus::Stale {
                pid,
                why: StaleReason::Gone
            }
        );
        let _lock = s.lock().expect("lock cleans stale state");
        assert!(!s.pid_file().exists());
        assert!(!s.qmp_socket().exists());
        assert!(s.console_log().exists(), "the console log is kept");
        assert_eq!(s.status().expect("status"), ProcessStatus::Stopped);
    }

    #[test]
    fn live_pid_that_is_not_qemu_is_stale() {
        let (_base, s) = state("vm");
        fs::create_dir_all(s.dir()).expect("mkdir");
        let pid = std::process::id();
        fs::write(s.pid_file(), format!("{pid}\n")).expect("pid");
        match s.status().expect("status") {
            ProcessStatus::Stale {
                pid: p,
                why: StaleReason::OtherProgram(cmd),
            } => {
                assert_eq!(p, pid);
                assert!(!cmd.starts_with("qemu"), "{cmd}");
            }
            other => panic!("expected stale, got {other:?}"),
        }
        let _lock = s.lock().expect("lock cleans a reused pid");
        assert!(!s.pid_file().exists());
    }

    #[test]
    fn status_judges_the_program_name() {
        let (_base, s) = state("vm");
        let gone = |_| Ok(None);
        assert_eq!(s.status_with(gone).expect("status"), ProcessStatus::Stopped);
        fs::create_dir_all(s.dir()).expect("mkdir");
        fs::write(s.pid_file(), "4242\n").expect("pid");
        assert_eq!(
            s.status_with(gone).expect("status"),
            ProcessStatus::Stale {
                pid: 4242,
                why: StaleReason::Gone
            }
        );
        for name in ["qemu-system-x86_64", "qemu-system-aarch64", "qemu-kvm"] {
            let probe = |pid: u32| {
                assert_eq!(pid, 4242);
                Ok(Some(name.to_string()))
            };
            assert_eq!(
                s.status_with(probe).expect("status"),
                ProcessStatus::Running { pid: 4242 },
                "{name}"
            );
        }
        assert_eq!(
            s.status_with(|_| Ok(Some("kvm-qemu".into()))).expect("status"),
            ProcessStatus::Stale {
                pid: 4242,
                why: StaleReason::OtherProgram("kvm-qemu".into())
            }
        );
        let err = s
            .status_with(|_| Err(io::Error::from(io::ErrorKind::PermissionDenied)))
            .expect_err("probe fails");
        assert!(matches!(err, StateError::Io { .. }), "{err}");
        assert!(err.to_string().contains("cannot look up the process of"), "{err}");
        assert!(err.to_string().contains("qemu.pid"), "{err}");
    }

    /// A `sleep` that calls itself `program` (its argv\[0\], through `exec -a`), recorded in the
    /// pid file of `s` and seen running there; killed when dropped.
    struct VmStandIn(std::process::Child);

    impl VmStandIn {
        fn start(program: &str, s: &StateDir) -> VmStandIn {
            let child = std::process::Command::new("bash")
                .args(["-c", &format!("exec -a {program} sleep 600")])
                .spawn()
                .expect("spawn sleep");
            let pid = child.id();
            let stand_in = VmStandIn(child);
            fs::create_dir_all(s.dir()).expect("mkdir");
            fs::write(s.pid_file(), format!("{pid}\n")).expect("pid");
            // bash may not have exec'd yet; wait until the cmdline shows the new name.
            let mut status = s.status().expect("status");
            for _ in 0..500 {
                if status == (ProcessStatus::Running { pid }) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
                status = s.status().expect("status");
            }
            assert_eq!(status, ProcessStatus::Running { pid });
            stand_in
        }
    }

    impl Drop for VmStandIn {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn running_qemu_is_never_reused() {
        let (_base, s) = state("web");
        let _qemu = VmStandIn::start("qemu-system-x86_64", &s);
        let err = s.lock().expect_err("a running VM");
        assert!(matches!(err, StateError::Running { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("instance `web` is still running") && !text.contains("--"),
            "{text}"
        );
        assert!(s.pid_file().exists(), "a live VM's pid file is kept");
    }

    #[test]
    fn hyperkit_is_judged_by_its_name_and_its_json_pid_counts() {
        let base = tempfile::tempdir().expect("temp dir");
        let s = StateDir::new(base.path().join("vm-state"), "vm", BackendKind::Hyperkit);
        let gone = |_| Ok(None);
        assert_eq!(s.status_with(gone).expect("status"), ProcessStatus::Stopped);
        fs::create_dir_all(s.dir()).expect("mkdir");
        // Until hyperkit writes hyperkit.pid, the pid in hyperkit.json is the one.
        fs::write(s.dir().join("hyperkit.json"), r#"{"hyperkit":"/h","pid":4242}"#).expect("json");
        assert_eq!(s.read_pid().expect("pid"), Some(4242));
        let docker = |pid: u32| {
            assert_eq!(pid, 4242);
            Ok(Some("com.docker.hyperkit".to_string()))
        };
        assert_eq!(
            s.status_with(docker).expect("status"),
            ProcessStatus::Running { pid: 4242 }
        );
        fs::write(s.pid_file(), "77\n").expect("pid");
        assert_eq!(s.read_pid().expect("pid"), Some(77), "the pid file wins");
        assert_eq!(
            s.status_with(|_| Ok(Some("bash".into()))).expect("status"),
            ProcessStatus::Stale {
                pid: 77,
                why: StaleReason::OtherProgram("bash".into())
            }
        );
        fs::remove_file(s.pid_file()).expect("rm");
        fs::write(s.dir().join("hyperkit.json"), "not json").expect("json");
        let e = s.read_pid().expect_err("damaged").to_string();
        assert!(e.contains("hyperkit.json does not hold a process id"), "{e}");
    }

    #[test]
    fn a_running_hyperkit_is_never_reused_and_a_dead_ones_files_are_cleaned() {
        let base = tempfile::tempdir().expect("temp dir");
        let s = StateDir::new(base.path().join("vm-state"), "vm", BackendKind::Hyperkit);
        let hyperkit = VmStandIn::start("hyperkit", &s);
        let refused = s.lock().map(drop);
        drop(hyperkit);
        let e = refused.expect_err("a running hyperkit");
        assert!(matches!(e, StateError::Running { .. }), "{e}");
        // It is gone now: its runtime files go, the rest stays.
        for file in ["hyperkit.json", "tty", "console-ring", "vpnkit.uuid"] {
            fs::write(s.dir().join(file), "x").expect("file");
        }
        let _lock = s.lock().expect("lock cleans a dead hyperkit's files");
        for file in ["hyperkit.pid", "hyperkit.json", "tty"] {
            assert!(!s.dir().join(file).exists(), "{file}");
        }
        for file in ["console-ring", "vpnkit.uuid"] {
            assert!(s.dir().join(file).exists(), "{file}");
        }
    }

    #[test]
    fn garbage_pid_file_is_an_error_naming_it() {
        let (_base, s) = state("vm");
        fs::create_dir_all(s.dir()).expect("mkdir");
        fs::write(s.pid_file(), "not a pid").expect("pid");
        let err = s.status().expect_err("garbage");
        assert!(err.to_string().contains("qemu.pid"), "{err}");
    }

    #[test]
    fn mac_is_generated_once_and_kept() {
        let (_base, s) = state("vm");
        let mac = s.mac().expect("mac");
        assert_eq!(mac.0[0] & 0x01, 0, "unicast");
        assert_eq!(mac.0[0] & 0x02, 0x02, "locally administered");
        let text = fs::read_to_string(s.mac_file()).expect("mac file");
        assert_eq!(MacAddr::parse(&text), Some(mac));
        assert_eq!(s.mac().expect("mac again"), mac);
        assert_eq!(
            StateDir::new(s.dir(), "vm", BackendKind::Qemu)
                .mac()
                .expect("mac from another handle"),
            mac
        );
    }

    #[test]
    fn mac_file_from_linuxkit_is_read() {
        let (_base, s) = state("vm");
        fs::create_dir_all(s.dir()).expect("mkdir");
        fs::write(s.mac_file(), "02:AB:cd:00:11:ff").expect("mac");
        assert_eq!(s.mac().expect("mac"), MacAddr([0x02, 0xab, 0xcd, 0x00, 0x11, 0xff]));
        assert_eq!(s.mac().expect("mac").to_string(), "02:ab:cd:00:11:ff");
        fs::write(s.mac_file(), "02:ab:cd").expect("mac");
        assert!(matches!(s.mac(), Err(StateError::BadMac { .. })));
    }

    #[test]
    fn local_unicast_sets_and_clears_bits() {
        assert_eq!(MacAddr::local_unicast([0xff; 6]).0[0], 0xfe);
        assert_eq!(MacAddr::local_unicast([0x00; 6]).0[0], 0x02);
    }

    #[test]
    fn list_shows_instances_with_records_only() {
        let base = tempfile::tempdir().expect("temp dir");
        let root = StateRoot::new(base.path());
        assert!(root.list().expect("empty").is_empty());
        for name in ["b", "a"] {
            let state = root.instance(name, BackendKind::Qemu).expect("name");
            fs::create_dir_all(state.dir()).expect("mkdir");
            state.write_record(&crate::instance::sample(name)).expect("record");
        }
        fs::create_dir_all(base.path().join("no-record")).expect("mkdir");
        fs::write(base.path().join("not-a-dir"), "").expect("file");
        let damaged = base.path().join("damaged");
        fs::create_dir_all(&damaged).expect("mkdir");
        fs::write(damaged.join("instance.json"), "{").expect("record");
        let list = root.list().expect("list");
        let names: Vec<_> = list.iter().map(|(_, r)| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(list[0].0.dir(), base.path().join("a"));
        let e = root.open("damaged").expect_err("damaged").to_string();
        assert!(e.contains("is not an instance record"), "{e}");
        let e = root.open("no-record").expect_err("no record");
        assert!(matches!(e, StateError::Unknown { .. }), "{e}");
        let e = root.open("nope").expect_err("unknown").to_string();
        assert!(e.starts_with("no instance named `nope`"), "{e}");
    }

    #[test]
    fn labels_and_transitions_are_never_lost_to_each_other() {
        let base = tempfile::tempdir().expect("temp dir");
        let state = StateRoot::new(base.path())
            .instance("vm", BackendKind::Qemu)
            .expect("name");
        fs::create_dir_all(state.dir()).expect("mkdir");
        state.write_record(&crate::instance::sample("vm")).expect("record");
        std::thread::scope(|scope| {
            for i in 0..8 {
                let state = &state;
                scope.spawn(move || {
                    state
                        .update_record(|r| {
                            r.tags.insert(format!("t{i}"), i.to_string());
                            Ok(())
                        })
                        .expect("update");
                });
            }
        });
        let record = state.read_record().expect("read").expect("record");
        assert_eq!(record.tags.len(), 8, "{:?}", record.tags);
    }

    #[test]
    fn an_explicit_state_dir_is_linked_under_the_instance_name() {
        let tmp = tempfile::tempdir().unwrap();
        let root = StateRoot::new(tmp.path().join("root"));
        let dir = tmp.path().join("elsewhere/web-state");
        let state = root.prepare("web", BackendKind::Qemu, Some(&dir)).unwrap();
        assert_eq!(state.dir(), fs::canonicalize(&dir).unwrap());
        let link = tmp.path().join("root/web");
        assert_eq!(fs::read_link(&link).unwrap(), fs::canonicalize(&dir).unwrap());
        // Again with the same dir, then with another one: the link follows.
        root.prepare("web", BackendKind::Qemu, Some(&dir)).unwrap();
        let other = tmp.path().join("other");
        root.prepare("web", BackendKind::Qemu, Some(&other)).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), fs::canonicalize(&other).unwrap());
        // Without one: the directory under the root.
        let db = root.prepare("db", BackendKind::Qemu, None).unwrap();
        assert_eq!(db.dir(), tmp.path().join("root/db"));
        // A real directory of that name is not taken over.
        fs::create_dir_all(db.dir()).unwrap();
        let e = root.prepare("db", BackendKind::Qemu, Some(&dir)).unwrap_err();
        assert!(matches!(e, StateError::NameTaken { .. }), "{e}");
    }

    #[test]
    fn the_name_of_a_running_instance_is_not_moved_to_another_state_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let root = StateRoot::new(tmp.path().join("root"));
        let first = root
            .prepare("lk", BackendKind::Hyperkit, Some(&tmp.path().join("a/lk-state")))
            .unwrap();
        let mut record = crate::instance::sample("lk");
        record.backend = BackendKind::Hyperkit;
        record.state = crate::instance::InstanceState::Running;
        first.write_record(&record).unwrap();
        let other = tmp.path().join("b/lk-state");
        let running = VmStandIn::start("hyperkit", &first);
        let e = root.prepare("lk", BackendKind::Hyperkit, Some(&other)).unwrap_err();
        assert!(matches!(e, StateError::Running { .. }), "{e}");
        assert!(e.to_string().contains("a/lk-state"), "{e}");
        assert_eq!(fs::read_link(root.base().join("lk")).unwrap(), first.dir());
        // Once its process is gone, the name may move (the record is left from a crash).
        drop(running);
        root.prepare("lk", BackendKind::Hyperkit, Some(&other)).unwrap();
        assert_eq!(
            fs::read_link(root.base().join("lk")).unwrap(),
            fs::canonicalize(&other).unwrap()
        );
    }

    #[test]
    fn the_lock_holder_owns_the_directory() {
        let (_base, s) = state("vm");
        assert!(!s.is_owned().expect("no lock file"));
        let lock = s.lock().expect("lock");
        assert!(s.is_owned().expect("held"));
        drop(lock);
        assert!(!s.is_owned().expect("released"));
    }

    #[test]
    fn missing_base_lists_nothing() {
        let root = StateRoot::new("/nonexistent/moby-state-base");
        assert!(root.list().expect("list").is_empty());
    }

    #[test]
    fn a_link_to_a_state_dir_that_is_gone_is_replaced_by_a_directory() {
        let base = tempfile::tempdir().unwrap();
        let root = StateRoot::new(base.path().join("run"));
        let gone = base.path().join("explicit-state");
        fs::create_dir_all(root.base()).unwrap();
        fs::create_dir_all(&gone).unwrap();
        std::os::unix::fs::symlink(&gone, root.base().join("web")).unwrap();
        fs::remove_dir(&gone).unwrap();
        let state = root.instance("web", BackendKind::Qemu).unwrap();
        let lock = state.lock().unwrap();
        let meta = fs::symlink_metadata(state.dir()).unwrap();
        assert!(meta.is_dir() && !meta.file_type().is_symlink());
        drop(lock);
        // A link to a state dir that exists is kept and used.
        fs::create_dir_all(&gone).unwrap();
        std::os::unix::fs::symlink(&gone, root.base().join("db")).unwrap();
        let db = root.instance("db", BackendKind::Qemu).unwrap();
        drop(db.lock().unwrap());
        assert!(fs::symlink_metadata(db.dir()).unwrap().file_type().is_symlink());
        assert!(gone.join(db.lock_file().file_name().unwrap()).exists());
    }
}
