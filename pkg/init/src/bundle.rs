//! The bundles of an image (`/containers/{onboot,services,onshutdown}/NAME/`) and how one is
//! started: LinuxKit's `runtime.json` (mounts, mkdir, cgroups before the container is created;
//! interfaces and bindNS between create and start), then youki's libcontainer.

use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use nix::mount::MsFlags;
use serde::Deserialize;

use crate::exec::RuncLikeExecutor;

/// Where libcontainer keeps its container state.
pub const STATE_ROOT: &str = "/run/moby-init/containers";
/// The OCI annotation naming a service's restart policy.
pub const RESTART_ANNOTATION: &str = "org.mobyproject.restart";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Onboot,
    Service,
    Onshutdown,
}

impl Phase {
    pub fn dir(self) -> &'static str {
        match self {
            Phase::Onboot => "/containers/onboot",
            Phase::Service => "/containers/services",
            Phase::Onshutdown => "/containers/onshutdown",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Phase::Onboot => "onboot",
            Phase::Service => "service",
            Phase::Onshutdown => "onshutdown",
        }
    }

    /// Log file of a container of this phase (LinuxKit's places).
    pub fn log_path(self, name: &str) -> PathBuf {
        match self {
            Phase::Onboot => PathBuf::from(format!("/run/log/onboot.{name}.log")),
            Phase::Service => PathBuf::from(format!("/var/log/{name}.log")),
            Phase::Onshutdown => PathBuf::from(format!("/run/log/onshutdown.{name}.log")),
        }
    }
}

/// When a service that exited is started again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    No,
    OnFailure,
    Always,
}

impl RestartPolicy {
    pub fn parse(value: &str) -> Result<RestartPolicy> {
        Ok(match value {
            "" | "no" | "never" => RestartPolicy::No,
            "on-failure" => RestartPolicy::OnFailure,
            "always" => RestartPolicy::Always,
            other => bail!("unknown restart policy {other:?} (use no, on-failure or always)"),
        })
    }
}

#[derive(Clone, Debug)]
pub struct Bundle {
    /// Name shown in logs and used as the container id: the directory name, without the
    /// `NNN-` ordering prefix for onboot/onshutdown.
    pub name: String,
    pub dir: PathBuf,
    pub phase: Phase,
    pub runtime: Runtime,
    pub restart: RestartPolicy,
    /// Set when config.json binds the host's `/dev` onto the container's: the device nodes and
    /// links libcontainer creates in every container's /dev then already exist (see
    /// [`Bundle::clear_host_dev`]).
    pub host_dev: Option<Vec<String>>,
}

/// What libcontainer 0.7 creates in a container's /dev, failing when it is there already:
/// its default device nodes and links (plus the config's own devices).
const LIBCONTAINER_DEV_ENTRIES: [&str; 12] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/kcore",
    "/dev/fd",
    "/dev/stdin",
    "/dev/stdout",
    "/dev/stderr",
];

/// Puts back what [`Bundle::clear_host_dev`] removed from the host's /dev when libcontainer did
/// not (it failed before getting there).
fn restore_host_dev() {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    for (path, major, minor) in [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ] {
        if fs::symlink_metadata(path).is_err()
            && mknod(
                path,
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                makedev(major, minor),
            )
            .is_ok()
        {
            // mknod's mode went through the umask.
            let _ = fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o666));
        }
    }
    for (path, target) in [
        ("/dev/ptmx", "pts/ptmx"),
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        if fs::symlink_metadata(path).is_err() {
            let _ = std::os::unix::fs::symlink(target, path);
        }
    }
}

/// The device paths of config.json when one of its mounts binds the host's `/dev` on `/dev`.
fn host_dev_binding(config: &serde_json::Value) -> Option<Vec<String>> {
    let binds_dev = config["mounts"].as_array()?.iter().any(|m| {
        m["destination"].as_str() == Some("/dev")
            && m["source"].as_str() == Some("/dev")
            && m["options"]
                .as_array()
                .is_some_and(|o| o.iter().any(|o| matches!(o.as_str(), Some("bind" | "rbind"))))
    });
    binds_dev.then(|| {
        config["linux"]["devices"]
            .as_array()
            .map(|d| d.iter().filter_map(|d| d["path"].as_str().map(String::from)).collect())
            .unwrap_or_default()
    })
}

/// The bundles of a phase, in directory-name order. A bundle that cannot be read is reported and
/// skipped.
pub fn discover(phase: Phase) -> Vec<Bundle> {
    let Ok(entries) = fs::read_dir(phase.dir()) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    let mut bundles = Vec::new();
    for dir in dirs {
        match Bundle::load(phase, &dir) {
            Ok(bundle) => bundles.push(bundle),
            Err(err) => eprintln!("init: skipping {}: {err:#}", dir.display()),
        }
    }
    bundles
}

impl Bundle {
    pub fn load(phase: Phase, dir: &Path) -> Result<Bundle> {
        let base = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = match phase {
            Phase::Service => base.clone(),
            _ => match base.split_once('-') {
                Some((num, rest)) if !rest.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) => rest.to_string(),
                _ => base.clone(),
            },
        };
        let config_path = dir.join("config.json");
        let config: serde_json::Value =
            serde_json::from_slice(&fs::read(&config_path).with_context(|| format!("read {}", config_path.display()))?)
                .with_context(|| format!("parse {}", config_path.display()))?;
        let restart = config["annotations"][RESTART_ANNOTATION].as_str().unwrap_or("");
        let restart = RestartPolicy::parse(restart)
            .with_context(|| format!("annotation {RESTART_ANNOTATION} in {}", config_path.display()))?;
        let runtime_path = dir.join("runtime.json");
        let runtime = match fs::read(&runtime_path) {
            Ok(data) => serde_json::from_slice(&data).with_context(|| format!("parse {}", runtime_path.display()))?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Runtime::default(),
            Err(err) => return Err(err).with_context(|| format!("read {}", runtime_path.display())),
        };
        Ok(Bundle {
            name,
            dir: dir.to_path_buf(),
            phase,
            runtime,
            restart,
            host_dev: host_dev_binding(&config),
        })
    }

    /// Container id: unique across phases so an onshutdown can share a service's name.
    pub fn id(&self) -> String {
        format!("{}.{}", self.phase.label(), self.name)
    }

    /// runtime.json mounts, mkdir and cgroups (LinuxKit's prepareFilesystem). Done once per boot.
    pub fn prepare_filesystem(&self) -> Result<()> {
        let rootfs = self.dir.join("rootfs");
        let absolute = |p: &str| {
            if p.starts_with('/') {
                PathBuf::from(p)
            } else {
                rootfs.join(p)
            }
        };
        for m in &self.runtime.mounts {
            let dir = absolute(&m.destination);
            fs::create_dir_all(&dir).with_context(|| format!("create the mount point {}", dir.display()))?;
            for option in &m.options {
                if let Some((key, value)) = option.split_once('=') {
                    if key == "upperdir" || key == "workdir" {
                        fs::create_dir_all(value).with_context(|| format!("create the overlay {key} {value}"))?;
                    }
                }
            }
            let (flags, data) = mount_options(&m.options);
            let data = (!data.is_empty()).then_some(data.as_str());
            let kind = (!m.kind.is_empty()).then_some(m.kind.as_str());
            nix::mount::mount(Some(m.source.as_str()), &dir, kind, flags, data).with_context(|| {
                format!(
                    "mount {} ({}) on {} from {}/runtime.json",
                    m.source,
                    m.kind,
                    dir.display(),
                    self.dir.display()
                )
            })?;
        }
        for dir in &self.runtime.mkdir {
            let dir = absolute(dir);
            fs::create_dir_all(&dir).with_context(|| format!("mkdir {} from runtime.json", dir.display()))?;
        }
        for cgroup in &self.runtime.cgroups {
            let dir = Path::new("/sys/fs/cgroup").join(cgroup.trim_start_matches('/'));
            if let Err(err) = fs::create_dir_all(&dir) {
                eprintln!("init: {}: creating cgroup {}: {err}", self.name, dir.display());
            }
        }
        Ok(())
    }

    /// runtime.json interfaces and bindNS for the created (not yet started) process `pid`.
    pub fn prepare_process(&self, pid: i32) -> Result<()> {
        for iface in &self.runtime.interfaces {
            crate::netlink::setup_interface(iface, pid)
                .with_context(|| format!("interface {:?} from {}/runtime.json", iface.name, self.dir.display()))?;
        }
        let ns = &self.runtime.bind_ns;
        for (kind, path) in [
            ("cgroup", &ns.cgroup),
            ("ipc", &ns.ipc),
            ("mnt", &ns.mnt),
            ("net", &ns.net),
            ("pid", &ns.pid),
            ("user", &ns.user),
            ("uts", &ns.uts),
        ] {
            if path.is_empty() {
                continue;
            }
            let target = Path::new(path);
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).with_context(|| format!("create {} for bindNS", parent.display()))?;
            }
            fs::File::create(target).with_context(|| format!("create the bindNS mount point {path}"))?;
            let source = format!("/proc/{pid}/ns/{kind}");
            nix::mount::mount(
                Some(source.as_str()),
                target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .with_context(|| format!("bind the {kind} namespace at {path}"))?;
        }
        Ok(())
    }

    /// For a container that binds the host's /dev: libcontainer 0.7 makes its default device
    /// nodes and links (and the config's devices) in the container's /dev without tolerating
    /// existing ones, and here that /dev is the host's. Remove them from the host's /dev first;
    /// libcontainer puts the same nodes and links back (runc tolerates them instead).
    fn clear_host_dev(&self) {
        let Some(devices) = &self.host_dev else { return };
        for path in LIBCONTAINER_DEV_ENTRIES
            .iter()
            .copied()
            .chain(devices.iter().map(String::as_str))
        {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => eprintln!("init: {}: cannot make room for {path}: {err}", self.name),
            }
        }
    }

    /// Creates the container (its process waits at exec), applies [`Bundle::prepare_process`],
    /// starts it. Output goes to `output` (stdout and stderr), stdin is /dev/null.
    pub fn create_and_start(&self, output: OwnedFd) -> Result<(Container, i32)> {
        remove_stale_state(&self.id());
        let stderr = output.try_clone().context("duplicate the output pipe")?;
        let stdin: OwnedFd = fs::File::open("/dev/null").context("open /dev/null")?.into();
        self.clear_host_dev();
        let built = ContainerBuilder::new(self.id(), SyscallType::default())
            .with_root_path(STATE_ROOT)
            .context("libcontainer state root")?
            .with_stdin(stdin)
            .with_stdout(output)
            .with_stderr(stderr)
            .with_executor(RuncLikeExecutor)
            .as_init(&self.dir)
            .with_systemd(false)
            .with_detach(true)
            .build();
        if self.host_dev.is_some() {
            restore_host_dev();
        }
        let mut container =
            built.with_context(|| format!("create the container from {}/config.json", self.dir.display()))?;
        let pid = container
            .pid()
            .map(|p| p.as_raw())
            .context("libcontainer reported no pid")?;
        if let Err(err) = self.prepare_process(pid) {
            let _ = container.delete(true);
            return Err(err);
        }
        if let Err(err) = container.start() {
            let _ = container.delete(true);
            return Err(err).context("start the container");
        }
        Ok((container, pid))
    }
}

/// Deletes a leftover libcontainer state directory of `id` (e.g. of an earlier run of a service).
pub fn remove_stale_state(id: &str) {
    let dir = Path::new(STATE_ROOT).join(id);
    if dir.exists() {
        if let Ok(mut container) = Container::load(dir.clone()) {
            let _ = container.delete(true);
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

/// LinuxKit's mount option table: flags and the rest as data.
fn mount_options(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for option in options {
        let (clear, flag) = match option.as_str() {
            "async" => (true, MsFlags::MS_SYNCHRONOUS),
            "atime" => (true, MsFlags::MS_NOATIME),
            "bind" => (false, MsFlags::MS_BIND),
            "defaults" => (false, MsFlags::empty()),
            "dev" => (true, MsFlags::MS_NODEV),
            "diratime" => (true, MsFlags::MS_NODIRATIME),
            "dirsync" => (false, MsFlags::MS_DIRSYNC),
            "exec" => (true, MsFlags::MS_NOEXEC),
            "mand" => (false, MsFlags::MS_MANDLOCK),
            "noatime" => (false, MsFlags::MS_NOATIME),
            "nodev" => (false, MsFlags::MS_NODEV),
            "nodiratime" => (false, MsFlags::MS_NODIRATIME),
            "noexec" => (false, MsFlags::MS_NOEXEC),
            "nomand" => (true, MsFlags::MS_MANDLOCK),
            "norelatime" => (true, MsFlags::MS_RELATIME),
            "nostrictatime" => (true, MsFlags::MS_STRICTATIME),
            "nosuid" => (false, MsFlags::MS_NOSUID),
            "private" => (false, MsFlags::MS_PRIVATE),
            "rbind" => (false, MsFlags::MS_BIND | MsFlags::MS_REC),
            "relatime" => (false, MsFlags::MS_RELATIME),
            "remount" => (false, MsFlags::MS_REMOUNT),
            "ro" => (false, MsFlags::MS_RDONLY),
            "rw" => (true, MsFlags::MS_RDONLY),
            "shared" => (false, MsFlags::MS_SHARED),
            "slave" => (false, MsFlags::MS_SLAVE),
            "strictatime" => (false, MsFlags::MS_STRICTATIME),
            "suid" => (true, MsFlags::MS_NOSUID),
            "sync" => (false, MsFlags::MS_SYNCHRONOUS),
            "unbindable" => (false, MsFlags::MS_UNBINDABLE),
            _ => {
                data.push(option.as_str());
                continue;
            }
        };
        if clear {
            flags.remove(flag);
        } else {
            flags.insert(flag);
        }
    }
    (flags, data.join(","))
}

/// `runtime.json`, as LinuxKit's builder writes it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Runtime {
    pub cgroups: Vec<String>,
    pub mounts: Vec<RuntimeMount>,
    pub mkdir: Vec<String>,
    pub interfaces: Vec<Interface>,
    #[serde(rename = "bindNS")]
    pub bind_ns: BindNs,
    pub namespace: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RuntimeMount {
    pub destination: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Interface {
    pub name: String,
    pub add: String,
    pub peer: String,
    #[serde(rename = "createInRoot")]
    pub create_in_root: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct BindNs {
    pub cgroup: String,
    pub ipc: String,
    pub mnt: String,
    pub net: String,
    pub pid: String,
    pub user: String,
    pub uts: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_json_as_the_builder_writes_it() {
        let json = r#"{"cgroups":["a"],"mounts":[{"destination":"/x/rootfs","type":"overlay","source":"overlay",
            "options":["lowerdir=/l","upperdir=/u","workdir=/w"]}],"mkdir":["/var/lib/x"],
            "interfaces":[{"name":"eth1","add":"veth","peer":"veth1","createInRoot":false}],
            "bindNS":{"net":"/run/netns/x"}}"#;
        let runtime: Runtime = serde_json::from_str(json).unwrap();
        assert_eq!(runtime.mounts[0].kind, "overlay");
        assert_eq!(runtime.interfaces[0].peer, "veth1");
        assert_eq!(runtime.bind_ns.net, "/run/netns/x");
        let (flags, data) = mount_options(&runtime.mounts[0].options);
        assert!(flags.is_empty());
        assert_eq!(data, "lowerdir=/l,upperdir=/u,workdir=/w");
        let (flags, data) = mount_options(&["rbind".into(), "ro".into(), "rw".into()]);
        assert_eq!(flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert_eq!(data, "");
    }

    #[test]
    fn host_dev_binds_are_recognised() {
        let binds: serde_json::Value = serde_json::json!({
            "mounts": [{"destination": "/dev", "source": "/dev", "type": "bind", "options": ["rw", "rbind", "rshared"]}],
            "linux": {"devices": [{"path": "/dev/ttyS0", "type": "c", "major": 4, "minor": 64}]}
        });
        assert_eq!(host_dev_binding(&binds), Some(vec!["/dev/ttyS0".to_string()]));
        let tmpfs: serde_json::Value = serde_json::json!({
            "mounts": [{"destination": "/dev", "source": "tmpfs", "type": "tmpfs", "options": ["nosuid"]}]
        });
        assert_eq!(host_dev_binding(&tmpfs), None);
    }

    #[test]
    fn restart_policies() {
        assert_eq!(RestartPolicy::parse("").unwrap(), RestartPolicy::No);
        assert_eq!(RestartPolicy::parse("on-failure").unwrap(), RestartPolicy::OnFailure);
        assert_eq!(RestartPolicy::parse("always").unwrap(), RestartPolicy::Always);
        assert!(RestartPolicy::parse("sometimes").is_err());
    }
}
