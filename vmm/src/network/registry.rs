//! A network's directory under the state root, and what it records: its subnet and its members
//! (name, MAC, address), each in a file of its own so that the switch process reads them without
//! locking; changes are made under the network's lock.
//!
//! ```text
//! <root>/networks/<name>/
//!   lock            flocked while members join or leave, and by the switch as it goes away
//!   network.json    {"name", "subnet"}
//!   members/NAME    one JSON file per member instance: {"name", "mac", "ip", "static"}
//!   leases/NAME     written by the switch when it acknowledged NAME's DHCP lease
//!   switch.sock     the switch's socket, one connection per NIC
//!   switch.pid      the switch process
//!   switch.log      its messages
//! ```

use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{NetworkError, Subnet};
use crate::state::MacAddr;

/// `network.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NetworkFile {
    pub name: String,
    pub subnet: Subnet,
}

/// `members/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MemberFile {
    pub name: String,
    pub mac: String,
    pub ip: Ipv4Addr,
    /// Given by the caller (not picked for the name).
    #[serde(rename = "static")]
    pub fixed: bool,
}

impl MemberFile {
    /// Its MAC, parsed.
    pub fn mac(&self) -> Option<MacAddr> {
        MacAddr::parse(&self.mac)
    }
}

/// One network's directory.
#[derive(Debug, Clone)]
pub(crate) struct NetworkDir {
    dir: PathBuf,
}

/// The network's lock, held until dropped.
#[derive(Debug)]
pub(crate) struct NetworkLock {
    _file: File,
}

impl NetworkDir {
    /// The directory of network `name` among `networks`.
    pub fn new(networks: &Path, name: &str) -> NetworkDir {
        NetworkDir {
            dir: networks.join(name),
        }
    }

    /// A network directory given by path (the switch is told its directory).
    pub fn at(dir: PathBuf) -> NetworkDir {
        NetworkDir { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("switch.sock")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("switch.pid")
    }

    pub fn log_file(&self) -> PathBuf {
        self.dir.join("switch.log")
    }

    fn network_file(&self) -> PathBuf {
        self.dir.join("network.json")
    }

    pub fn members_dir(&self) -> PathBuf {
        self.dir.join("members")
    }

    fn leases_dir(&self) -> PathBuf {
        self.dir.join("leases")
    }

    fn lock_file(&self) -> PathBuf {
        self.dir.join("lock")
    }

    /// Takes the network's lock (waiting for it), creating the directory if needed. The switch
    /// removes the directory of a network it ends while holding the lock: a lock taken on a file
    /// that was removed meanwhile is taken again on the new one.
    pub fn lock(&self) -> Result<NetworkLock, NetworkError> {
        let path = self.lock_file();
        loop {
            fs::create_dir_all(&self.dir).map_err(NetworkError::io("create", &self.dir))?;
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(NetworkError::io("open", &path))?;
            file.lock().map_err(NetworkError::io("lock", &path))?;
            let held = file.metadata().map_err(NetworkError::io("stat", &path))?;
            match fs::metadata(&path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                    return Ok(NetworkLock { _file: file })
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(NetworkError::io("stat", &path)(e)),
            }
        }
    }

    /// `network.json`, if the network exists.
    pub fn read_network(&self) -> Result<Option<NetworkFile>, NetworkError> {
        read_json(&self.network_file())
    }

    pub fn write_network(&self, network: &NetworkFile) -> Result<(), NetworkError> {
        write_json(&self.network_file(), network)
    }

    /// Every member, sorted by name; unreadable files are skipped with a warning (a member file is
    /// written atomically, so one only is when someone else wrote it).
    pub fn members(&self) -> Result<Vec<MemberFile>, NetworkError> {
        let dir = self.members_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(NetworkError::io("read", &dir)(e)),
        };
        let mut members = Vec::new();
        for entry in entries {
            let path = entry.map_err(NetworkError::io("read", &dir))?.path();
            if path.extension().is_some() {
                continue; // a temporary file of an atomic write
            }
            match read_json::<MemberFile>(&path) {
                Ok(Some(member)) => members.push(member),
                Ok(None) => {}
                Err(e) => tracing::warn!("{e}; ignoring it"),
            }
        }
        members.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(members)
    }

    pub fn member(&self, name: &str) -> Result<Option<MemberFile>, NetworkError> {
        read_json(&self.members_dir().join(name))
    }

    pub fn write_member(&self, member: &MemberFile) -> Result<(), NetworkError> {
        let dir = self.members_dir();
        fs::create_dir_all(&dir).map_err(NetworkError::io("create", &dir))?;
        write_json(&dir.join(&member.name), member)
    }

    pub fn remove_member(&self, name: &str) -> Result<(), NetworkError> {
        remove_if_exists(&self.members_dir().join(name))?;
        self.clear_lease(name)
    }

    /// Whether the network is in use: members are recorded, or its switch listens.
    pub fn in_use(&self) -> Result<bool, NetworkError> {
        Ok(!self.members()?.is_empty() || std::os::unix::net::UnixStream::connect(self.socket()).is_ok())
    }

    /// Whether member `name` took its lease since it last joined.
    pub fn leased(&self, name: &str) -> bool {
        self.leases_dir().join(name).exists()
    }

    /// Records that `name` took its lease of `ip` (the switch does).
    pub fn record_lease(&self, name: &str, ip: Ipv4Addr) -> Result<(), NetworkError> {
        let dir = self.leases_dir();
        fs::create_dir_all(&dir).map_err(NetworkError::io("create", &dir))?;
        let path = dir.join(name);
        fs::write(&path, format!("{ip}\n")).map_err(NetworkError::io("write", &path))
    }

    pub fn clear_lease(&self, name: &str) -> Result<(), NetworkError> {
        remove_if_exists(&self.leases_dir().join(name))
    }
}

fn remove_if_exists(path: &Path) -> Result<(), NetworkError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetworkError::io("remove", path)(e)),
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, NetworkError> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(NetworkError::io("read", path)(e)),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| NetworkError::Corrupt {
            path: path.to_path_buf(),
            why: e.to_string(),
        })
}

/// Writes `value` to `path` atomically (a temporary file renamed over it).
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), NetworkError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut text = serde_json::to_vec_pretty(value).map_err(|e| NetworkError::Corrupt {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    text.push(b'\n');
    let tmp = tempfile::Builder::new()
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(NetworkError::io("create a file in", dir))?;
    fs::write(tmp.path(), &text).map_err(NetworkError::io("write", tmp.path()))?;
    tmp.persist(path)
        .map_err(|e| NetworkError::io("write", path)(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_round_trip_and_skip_temporaries() {
        let tmp = tempfile::tempdir().unwrap();
        let net = NetworkDir::new(tmp.path(), "lab");
        let _lock = net.lock().unwrap();
        assert!(net.read_network().unwrap().is_none());
        let file = NetworkFile {
            name: "lab".into(),
            subnet: "10.1.0.0/24".parse().unwrap(),
        };
        net.write_network(&file).unwrap();
        assert_eq!(net.read_network().unwrap(), Some(file));
        let m = |name: &str, ip: [u8; 4]| MemberFile {
            name: name.into(),
            mac: "06:00:00:00:00:01".into(),
            ip: ip.into(),
            fixed: false,
        };
        net.write_member(&m("b", [10, 1, 0, 3])).unwrap();
        net.write_member(&m("a", [10, 1, 0, 2])).unwrap();
        fs::write(net.members_dir().join("c.tmp"), "{").unwrap();
        let names: Vec<_> = net.members().unwrap().into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["a", "b"]);
        net.record_lease("a", [10, 1, 0, 2].into()).unwrap();
        assert!(net.leased("a"));
        net.remove_member("a").unwrap();
        assert!(!net.leased("a"));
        assert_eq!(net.member("a").unwrap(), None);
        net.remove_member("a").unwrap();
    }

    #[test]
    fn a_lock_on_a_removed_directory_is_taken_again() {
        let tmp = tempfile::tempdir().unwrap();
        let net = NetworkDir::new(tmp.path(), "lab");
        let first = net.lock().unwrap();
        let net2 = net.clone();
        let waiter = std::thread::spawn(move || {
            let _second = net2.lock().unwrap();
            net2.dir().join("lock").exists()
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        fs::remove_dir_all(net.dir()).unwrap();
        drop(first);
        assert!(waiter.join().unwrap(), "the second lock is on a file that exists");
    }
}
