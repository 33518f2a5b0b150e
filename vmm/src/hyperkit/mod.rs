//! The hyperkit backend (macOS): LinuxKit's `run hyperkit`, as [`Hyperkit`], a [`crate::Backend`].
//!
//! hyperkit only exists on macOS, so everything here that does not spawn it is pure and unit tested
//! (the lifecycle against a stand-in script): [`HyperkitConfig::args`] builds the argument vector
//! the way the hyperkit Go library LinuxKit vendors does, [`HyperkitJson`] is the `hyperkit.json`
//! it writes, `files.rs` names hyperkit's own files in the instance's state dir (a
//! [`crate::state::StateDir`], LinuxKit's `PREFIX-state` by default), [`Hyperkit`]'s recipe turns
//! a [`crate::Request`] into a command line, a vpnkit and published ports.
//!
//! Facts the command line relies on (from LinuxKit's `run_hyperkit.go` and `moby/hyperkit/go`):
//! - `-A -u -F STATE/hyperkit.pid -c CPUS -m MEMM -s 0:0,hostbridge -s 31,lpc`, then PCI slots
//!   from 1 in this order: the vpnkit NIC (`N:0,virtio-vpnkit,path=SOCK[,uuid=U][,preferred_ipv4=IP]`),
//!   the vmnet NIC (`N:0,virtio-net`), then `-U UUID`, then disks (`N:0,ahci-hd,PATH`; the squashfs
//!   root is `virtio-blk` so it is `/dev/vda`), the vsock device (`N,virtio-sock,guest_cid=3,path=STATE`
//!   with `guest_forwards=P1;P2`), CDs (`N,ahci-cd,PATH`), `N,virtio-rnd`, 9P shares
//!   (`N,virtio-9p,path=SOCK,tag=TAG`).
//! - The serial console: `-l com1,stdio,log=STATE/console-ring` when it goes to the terminal
//!   ([`ForegroundConsole::Stdio`]), else `-l com1,autopty=STATE/tty,log=STATE/console-ring`
//!   (hyperkit makes `STATE/tty` a link to a pty).
//! - Boot: `-f kexec,KERNEL,INITRD,earlyprintk=serial CMDLINE`, or for an ISO `-f bootrom,FIRMWARE,,`
//!   (hyperkit boots an ISO only through UEFI firmware, and no disk image:
//!   [`HyperkitConfig::new`] refuses what it cannot boot).
//! - Disks are raw files only: hyperkit's qcow2 support needs `qcow-tool`, which we do not drive.
//! - hyperkit splits option values at commas, so paths containing a comma are refused
//!   ([`HyperkitConfig::check_paths`]).

mod backend;
mod disk;
mod files;
mod launch;
mod network;
mod uuid;
mod vpnkit;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

pub use backend::{ForegroundConsole, Hyperkit};
pub(crate) use disk::{ensure_raw_disk, resolve_raw_disks, DiskAction, DiskDriver, RawDisk};
pub(crate) use network::{check_publish, plan_network, HyperkitNetworking};
pub(crate) use uuid::{new_uuid, parse_uuid};
pub use vpnkit::VpnkitError;

use crate::machine::BootMedia;

/// Where Docker Desktop keeps the UEFI firmware LinuxKit uses by default.
pub const DEFAULT_FIRMWARE: &str = "/Applications/Docker.app/Contents/Resources/uefi/UEFI.fd";

/// The guest CID of the virtio-sock device (the hyperkit library's default).
pub const VSOCK_GUEST_CID: u32 = 3;

/// The vsock port vpnkit uses to forward connections from the host into the guest.
pub const VPNKIT_VSOCK_PORT: u32 = 62373;

/// Where hyperkit is looked for when no binary is given, after `$PATH` (the hyperkit Go
/// library's list).
pub const DEFAULT_HYPERKIT_PATHS: [&str; 3] = [
    "/usr/local/bin/hyperkit",
    "/Applications/Docker.app/Contents/Resources/bin/hyperkit",
    "/Applications/Docker.app/Contents/MacOS/com.docker.hyperkit",
];

/// Names looked up in `$PATH` when no binary is given.
pub const HYPERKIT_NAMES: [&str; 2] = ["hyperkit", "com.docker.hyperkit"];

/// Where a UUID that does not parse came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UuidOrigin {
    /// The VM's DMI UUID ([`Hyperkit::uuid`]).
    Vm,
    /// The UUID vpnkit knows the VM by ([`Hyperkit::vpnkit_uuid`]).
    Vpnkit,
    /// The `vpnkit.uuid` file of the state dir.
    File(PathBuf),
}

impl fmt::Display for UuidOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UuidOrigin::Vm => f.write_str("given for the VM"),
            UuidOrigin::Vpnkit => f.write_str("given for vpnkit"),
            UuidOrigin::File(path) => write!(f, "in {} (remove the file to get a new one)", path.display()),
        }
    }
}

/// Errors of the hyperkit backend.
#[derive(Debug, thiserror::Error)]
pub enum HyperkitError {
    /// No hyperkit binary.
    #[error(
        "hyperkit not found (looked for hyperkit and com.docker.hyperkit in $PATH, {}): hyperkit runs \
         only on macOS; install it with `brew install hyperkit` or Docker Desktop, or give its path \
         (elsewhere, run the image under qemu)",
        DEFAULT_HYPERKIT_PATHS.join(", ")
    )]
    NotFound,
    /// The hyperkit binary given is not there.
    #[error("hyperkit binary {0} does not exist: check its path")]
    PathMissing(PathBuf),
    /// A disk in a format other than raw.
    #[error(
        "disk {path}: hyperkit runs raw disk images only, not {format}: convert it \
         (qemu-img convert -O raw {path} DISK.raw) or run the image under qemu"
    )]
    DiskFormat {
        /// The disk.
        path: PathBuf,
        /// Its format.
        format: String,
    },
    /// A disk with neither a file nor a size.
    #[error("a disk needs a file, a size or both")]
    DiskEmpty,
    /// A disk that does not exist and has no size.
    #[error("disk {0} does not exist: give it a size to create it")]
    DiskMissingNoSize(PathBuf),
    /// A disk could not be created or resized.
    #[error("cannot {doing} disk {path}: {source}")]
    DiskIo {
        /// What we tried.
        doing: &'static str,
        /// The disk.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Something hyperkit cannot boot.
    #[error(
        "hyperkit cannot boot {0}: it boots PREFIX-kernel with PREFIX-initrd.img or PREFIX-squashfs.img, \
         or an ISO through UEFI firmware"
    )]
    Unbootable(PathBuf),
    /// An ISO to boot without UEFI.
    #[error(
        "hyperkit boots an ISO ({0}) only through UEFI firmware: boot it with UEFI (and the firmware's \
         path unless it is Docker Desktop's)"
    )]
    IsoNeedsUefi(PathBuf),
    /// The UEFI firmware is not there.
    #[error("UEFI firmware {0} not found: install Docker Desktop (which ships it) or give the firmware's path")]
    FirmwareMissing(PathBuf),
    /// A path hyperkit cannot take because it splits its options at commas.
    #[error("{what} path {path} contains a comma, which hyperkit's option syntax cannot carry: rename or move it")]
    CommaInPath {
        /// What the path is for.
        what: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// A networking mode that is not one of hyperkit's.
    #[error(
        "invalid networking mode {0:?}: use default, docker-for-mac, vpnkit[,ETH-SOCKET[,PORT-SOCKET]], vmnet or none"
    )]
    UnknownNetworking(String),
    /// Docker Desktop's vpnkit sockets are not there.
    #[error(
        "cannot find Docker Desktop's vpnkit sockets ({0}/vpnkit.eth.sock or s50): start Docker Desktop, \
         or use vpnkit, vmnet or none networking"
    )]
    NoDockerForMac(PathBuf),
    /// Published ports with a mode that cannot publish.
    #[error("port publishing requires \"docker-for-mac\" or \"vpnkit\" networking, not {0:?}")]
    PublishNeedsVpnkit(String),
    /// Published ports with a vpnkit whose port socket we do not know.
    #[error(
        "publishing ports needs vpnkit's port socket: give vpnkit networking both its sockets \
         (vpnkit,ETH-SOCKET,PORT-SOCKET), or none to start a vpnkit for the VM"
    )]
    PublishNeedsPortSocket,
    /// The same host port published twice.
    #[error("host port {0} is published twice")]
    DuplicatePublish(String),
    /// A vsock port list that is not comma separated port numbers.
    #[error("invalid vsock port list {0:?}: use comma separated port numbers, e.g. 2374,2375")]
    BadVsockPorts(String),
    /// A UUID that does not parse.
    #[error("invalid UUID {value:?} {origin}: use the form 01234567-89ab-cdef-0123-456789abcdef")]
    BadUuid {
        /// The text.
        value: String,
        /// Where it came from.
        origin: UuidOrigin,
    },
    /// `hyperkit.json` does not parse.
    #[error("{path} is not a hyperkit state file ({source}); remove it if no VM runs from this dir")]
    BadJson {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// vpnkit failed.
    #[error(transparent)]
    Vpnkit(#[from] vpnkit::VpnkitError),
    /// Writing the userdata ISO failed.
    #[error(transparent)]
    Userdata(#[from] crate::userdata::UserdataError),
    /// A start in the background with something that ends with the process starting it.
    #[error(
        "a VM started in the background cannot publish ports or use a vpnkit started for it (both end \
         with the process that starts the VM): run it in the foreground, or use docker-for-mac, vmnet or \
         none networking, or vpnkit with its sockets, without published ports"
    )]
    DetachUnsupported,
    /// A file in the state dir could not be read or written.
    #[error("cannot {doing} {path}: {source}")]
    Io {
        /// What we tried.
        doing: &'static str,
        /// The file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Starting hyperkit (or vpnkit) failed.
    #[error("cannot start {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// hyperkit exited before it had written its pid file.
    #[error("hyperkit exited while starting ({status}); {messages}")]
    EarlyExit {
        /// Its exit status.
        status: String,
        /// Where its messages are, or their end.
        messages: String,
    },
    /// Waiting for, signalling or watching hyperkit failed.
    #[error("cannot {doing} hyperkit (pid {pid}): {source}")]
    Process {
        /// What we tried.
        doing: &'static str,
        /// Its pid.
        pid: u32,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The UEFI firmware hyperkit boots `boot` through: `firmware` for an ISO (hyperkit boots one only
/// through UEFI firmware, which must exist), none for a kernel (hyperkit loads it itself). A disk
/// image is refused: hyperkit cannot boot one.
fn boot_firmware(boot: &BootMedia, firmware: Option<&Path>) -> Result<Option<PathBuf>, HyperkitError> {
    match boot {
        BootMedia::Kernel { .. } | BootMedia::Squashfs { .. } => Ok(None),
        BootMedia::Iso(iso) => {
            let firmware = firmware.ok_or_else(|| HyperkitError::IsoNeedsUefi(iso.clone()))?;
            if !firmware.is_file() {
                return Err(HyperkitError::FirmwareMissing(firmware.to_path_buf()));
            }
            Ok(Some(firmware.to_path_buf()))
        }
        BootMedia::Disk { path, .. } | BootMedia::KernelIso { iso: path, .. } => {
            Err(HyperkitError::Unbootable(path.clone()))
        }
    }
}

/// Where the serial console (`com1`) goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Console {
    /// The terminal (`com1,stdio`); only when stdout is a terminal.
    #[default]
    Stdio,
    /// A pty linked at `STATE/tty` (`com1,autopty=STATE/tty`): LinuxKit's console file, a
    /// detached VM, or a foreground VM whose console is relayed from the pty.
    Tty,
}

impl Console {
    /// The hyperkit library's number for the mode in `hyperkit.json` (0 stdio, 1 file).
    pub fn json_code(self) -> u8 {
        match self {
            Console::Stdio => 0,
            Console::Tty => 1,
        }
    }
}

/// The vpnkit NIC (`virtio-vpnkit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpnkitNic {
    /// vpnkit's ethernet socket.
    pub socket: PathBuf,
    /// The UUID vpnkit gives a stable IP address to (kept in `STATE/vpnkit.uuid`).
    pub uuid: Option<String>,
    /// The IPv4 address to ask vpnkit for.
    pub preferred_ipv4: Option<Ipv4Addr>,
}

/// A unix socket shared with the guest over 9P (vpnkit's port control, tag `port`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Socket9p {
    /// The socket.
    pub path: PathBuf,
    /// The 9P tag the guest mounts.
    pub tag: String,
}

/// Everything the hyperkit command line is made of. Paths are used as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HyperkitConfig {
    /// The hyperkit binary (see [`find_hyperkit`]).
    pub hyperkit: PathBuf,
    /// The state directory (pid file, console ring, tty, vsock sockets).
    pub state_dir: PathBuf,
    /// vCPUs (`-c`).
    pub cpus: u32,
    /// Memory in MiB (`-m NM`).
    pub memory_mib: u64,
    /// What to boot: a kernel (with an initrd or a squashfs root) or an ISO, never a disk image
    /// ([`HyperkitConfig::new`] checks).
    boot: BootMedia,
    /// The UEFI firmware (`bootrom`) when booting an ISO, else `None`.
    firmware: Option<PathBuf>,
    /// The DMI UUID (`-U`), so `/sys/class/dmi/id/product_uuid` differs between VMs.
    pub uuid: Option<String>,
    /// The vpnkit NIC, if any.
    pub vpnkit: Option<VpnkitNic>,
    /// A vmnet NIC (`virtio-net`; needs root).
    pub vmnet: bool,
    /// Disks, after the squashfs root if any.
    pub disks: Vec<RawDisk>,
    /// CDs (the userdata ISO), after the boot ISO if any.
    pub cdroms: Vec<PathBuf>,
    /// Guest vsock ports forwarded to unix sockets `STATE/guest.PORT` (plus [`VPNKIT_VSOCK_PORT`]
    /// with vpnkit networking).
    pub vsock_ports: Vec<u32>,
    /// 9P shares.
    pub sockets_9p: Vec<Socket9p>,
    /// The serial console.
    pub console: Console,
}

fn join(parts: &[&OsStr]) -> OsString {
    let mut out = OsString::new();
    for part in parts {
        out.push(part);
    }
    out
}

impl HyperkitConfig {
    /// A config booting `boot` with LinuxKit's defaults: 1 CPU, 1024 MiB, no network, console on
    /// stdio. `firmware` is the UEFI firmware when booting through UEFI: an ISO needs it and it
    /// must exist (a kernel boot does without); a disk image is refused.
    pub fn new(
        hyperkit: PathBuf,
        state_dir: PathBuf,
        boot: BootMedia,
        firmware: Option<&Path>,
    ) -> Result<HyperkitConfig, HyperkitError> {
        let firmware = boot_firmware(&boot, firmware)?;
        Ok(HyperkitConfig {
            hyperkit,
            state_dir,
            cpus: 1,
            memory_mib: 1024,
            boot,
            firmware,
            uuid: None,
            vpnkit: None,
            vmnet: false,
            disks: Vec::new(),
            cdroms: Vec::new(),
            vsock_ports: Vec::new(),
            sockets_9p: Vec::new(),
            console: Console::Stdio,
        })
    }

    /// `STATE/hyperkit.pid`, written by hyperkit (`-F`).
    pub fn pid_file(&self) -> PathBuf {
        self.state_dir.join(files::PID_FILE)
    }

    /// All disks in slot order: the squashfs root (virtio-blk) first, then [`HyperkitConfig::disks`].
    pub fn all_disks(&self) -> Vec<RawDisk> {
        let mut disks = Vec::with_capacity(self.disks.len() + 1);
        if let BootMedia::Squashfs { squashfs, .. } = &self.boot {
            disks.push(RawDisk {
                path: squashfs.clone(),
                size_mib: None,
                driver: DiskDriver::VirtioBlk,
            });
        }
        disks.extend(self.disks.iter().cloned());
        disks
    }

    /// All CDs in slot order: the boot ISO first, then [`HyperkitConfig::cdroms`].
    pub fn all_cdroms(&self) -> Vec<PathBuf> {
        let mut cds = Vec::with_capacity(self.cdroms.len() + 1);
        if let BootMedia::Iso(iso) = &self.boot {
            cds.push(iso.clone());
        }
        cds.extend(self.cdroms.iter().cloned());
        cds
    }

    /// The kernel hyperkit loads (`kexec`) and its initrd; `None` for a firmware boot.
    fn kernel(&self) -> Option<(&Path, Option<&Path>)> {
        match &self.boot {
            BootMedia::Kernel { kernel, initrd, .. } => Some((kernel, initrd.as_deref())),
            BootMedia::Squashfs { kernel, initrd, .. } => Some((kernel, initrd.as_deref())),
            BootMedia::Iso(_) | BootMedia::Disk { .. } | BootMedia::KernelIso { .. } => None,
        }
    }

    /// The kernel command line hyperkit passes (`earlyprintk=serial` first, as the library does;
    /// `root=/dev/vda` last for a squashfs root). `None` for a firmware boot.
    pub fn kernel_cmdline(&self) -> Option<String> {
        match &self.boot {
            BootMedia::Kernel { cmdline, .. } => Some(format!("earlyprintk=serial {cmdline}")),
            BootMedia::Squashfs { cmdline, .. } => Some(format!("earlyprintk=serial {cmdline} root=/dev/vda")),
            BootMedia::Iso(_) | BootMedia::Disk { .. } | BootMedia::KernelIso { .. } => None,
        }
    }

    /// Refuses paths that hyperkit's comma-separated option syntax cannot carry.
    pub fn check_paths(&self) -> Result<(), HyperkitError> {
        let mut paths: Vec<(&'static str, PathBuf)> = vec![("state dir", self.state_dir.clone())];
        if let Some((kernel, initrd)) = self.kernel() {
            paths.push(("kernel", kernel.to_path_buf()));
            paths.extend(initrd.map(|i| ("initrd", i.to_path_buf())));
        }
        paths.extend(self.firmware.iter().map(|f| ("firmware", f.clone())));
        paths.extend(self.all_disks().into_iter().map(|d| ("disk", d.path)));
        paths.extend(self.all_cdroms().into_iter().map(|c| ("ISO", c)));
        paths.extend(self.vpnkit.iter().map(|v| ("vpnkit socket", v.socket.clone())));
        paths.extend(self.sockets_9p.iter().map(|s| ("9P socket", s.path.clone())));
        match paths
            .into_iter()
            .find(|(_, p)| p.as_os_str().as_encoded_bytes().contains(&b','))
        {
            Some((what, path)) => Err(HyperkitError::CommaInPath { what, path }),
            None => Ok(()),
        }
    }

    /// The argument vector (without the binary), deterministic for a given config.
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec!["-A".into(), "-u".into(), "-F".into(), self.pid_file().into()];
        a.extend(["-c".into(), self.cpus.to_string().into()]);
        a.extend(["-m".into(), format!("{}M", self.memory_mib).into()]);
        a.extend(["-s".into(), "0:0,hostbridge".into(), "-s".into(), "31,lpc".into()]);
        // PCI devices from slot 1, in the hyperkit library's order; `true` = `N:0,` (function 0).
        let mut devices: Vec<(bool, OsString)> = Vec::new();
        if let Some(nic) = &self.vpnkit {
            let mut v = join(&["virtio-vpnkit,path=".as_ref(), nic.socket.as_os_str()]);
            if let Some(uuid) = &nic.uuid {
                v.push(format!(",uuid={uuid}"));
            }
            if let Some(ip) = nic.preferred_ipv4 {
                v.push(format!(",preferred_ipv4={ip}"));
            }
            devices.push((true, v));
        }
        if self.vmnet {
            devices.push((true, "virtio-net".into()));
        }
        // `-U` sits between the NICs and the disks in the library's argument order.
        let uuid_at = devices.len();
        for disk in self.all_disks() {
            let driver = format!("{},", disk.driver.hyperkit_name());
            devices.push((true, join(&[driver.as_ref(), disk.path.as_os_str()])));
        }
        let mut vsock = join(&[
            format!("virtio-sock,guest_cid={VSOCK_GUEST_CID},path=").as_ref(),
            self.state_dir.as_os_str(),
        ]);
        if !self.vsock_ports.is_empty() {
            let ports: Vec<String> = self.vsock_ports.iter().map(u32::to_string).collect();
            vsock.push(format!(",guest_forwards={}", ports.join(";")));
        }
        devices.push((false, vsock));
        for cd in self.all_cdroms() {
            devices.push((false, join(&["ahci-cd,".as_ref(), cd.as_os_str()])));
        }
        devices.push((false, "virtio-rnd".into()));
        for share in &self.sockets_9p {
            let tag = format!(",tag={}", share.tag);
            devices.push((
                false,
                join(&["virtio-9p,path=".as_ref(), share.path.as_os_str(), tag.as_ref()]),
            ));
        }
        for (i, (function0, device)) in devices.into_iter().enumerate() {
            if i == uuid_at {
                if let Some(uuid) = &self.uuid {
                    a.extend(["-U".into(), uuid.into()]);
                }
            }
            let slot = i + 1;
            let prefix = if function0 {
                format!("{slot}:0,")
            } else {
                format!("{slot},")
            };
            a.extend(["-s".into(), join(&[prefix.as_ref(), device.as_os_str()])]);
        }
        let state = self.state_dir.as_os_str();
        let com1 = match self.console {
            Console::Stdio => join(&["com1,stdio,log=".as_ref(), state, "/console-ring".as_ref()]),
            Console::Tty => join(&[
                "com1,autopty=".as_ref(),
                state,
                "/tty,log=".as_ref(),
                state,
                "/console-ring".as_ref(),
            ]),
        };
        a.extend(["-l".into(), com1]);
        let boot = match self.kernel() {
            Some((kernel, initrd)) => join(&[
                "kexec,".as_ref(),
                kernel.as_os_str(),
                ",".as_ref(),
                initrd.map_or("".as_ref(), Path::as_os_str),
                ",".as_ref(),
                self.kernel_cmdline().unwrap_or_default().as_ref(),
            ]),
            None => join(&[
                "bootrom,".as_ref(),
                self.firmware.as_deref().map_or("".as_ref(), Path::as_os_str),
                ",,".as_ref(),
            ]),
        };
        a.extend(["-f".into(), boot]);
        a
    }

    /// The `hyperkit.json` content for this config, with hyperkit's `pid`.
    pub fn state_json(&self, pid: u32) -> HyperkitJson {
        let args = self.args();
        let arguments: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let (kernel, initrd) = self.kernel().unzip();
        HyperkitJson {
            hyperkit: path(&self.hyperkit),
            argv0: String::new(),
            state_dir: path(&self.state_dir),
            vpnkit_sock: self.vpnkit.as_ref().map(|v| path(&v.socket)).unwrap_or_default(),
            vpnkit_uuid: self.vpnkit.as_ref().and_then(|v| v.uuid.clone()).unwrap_or_default(),
            vpnkit_preferred_ipv4: self
                .vpnkit
                .as_ref()
                .and_then(|v| v.preferred_ipv4)
                .map(|ip| ip.to_string())
                .unwrap_or_default(),
            uuid: self.uuid.clone().unwrap_or_default(),
            disks: self
                .all_disks()
                .iter()
                .map(|d| JsonDisk {
                    path: path(&d.path),
                    size: d.size_mib.unwrap_or(0),
                    format: String::new(),
                    trim: d.driver == DiskDriver::AhciHd,
                })
                .collect(),
            iso: self.all_cdroms().iter().map(|c| path(c)).collect(),
            vsock: true,
            vsock_dir: path(&self.state_dir),
            vsock_ports: self.vsock_ports.clone(),
            vsock_guest_cid: VSOCK_GUEST_CID,
            vmnet: self.vmnet,
            sockets_9p: self.sockets_9p.clone(),
            kernel: kernel.map(path).unwrap_or_default(),
            initrd: initrd.flatten().map(path).unwrap_or_default(),
            bootrom: self.firmware.as_deref().map(path).unwrap_or_default(),
            cpus: self.cpus,
            memory: self.memory_mib,
            console: self.console.json_code(),
            pid,
            cmdline: format!("{} {}", path(&self.hyperkit), arguments.join(" ")),
            arguments,
        }
    }
}

/// One disk in `hyperkit.json` (the library's `RawDisk`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JsonDisk {
    /// The image.
    pub path: String,
    /// Size in MiB (0: not set).
    pub size: u64,
    /// Passed through to hyperkit (always empty here).
    pub format: String,
    /// `ahci-hd` (TRIM) rather than `virtio-blk`.
    pub trim: bool,
}

/// `STATE/hyperkit.json`: the hyperkit Go library's state file, same field names and order, so
/// tools that read LinuxKit's state dirs read ours.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HyperkitJson {
    /// The hyperkit binary.
    pub hyperkit: String,
    /// argv\[0\] override (always empty).
    pub argv0: String,
    /// The state dir.
    pub state_dir: String,
    /// vpnkit's ethernet socket, or empty.
    pub vpnkit_sock: String,
    /// The vpnkit UUID, or empty.
    pub vpnkit_uuid: String,
    /// The requested IPv4 address, or empty.
    pub vpnkit_preferred_ipv4: String,
    /// The DMI UUID, or empty.
    pub uuid: String,
    /// Disks.
    pub disks: Vec<JsonDisk>,
    /// CDs.
    pub iso: Vec<String>,
    /// Whether the vsock device is on (always).
    pub vsock: bool,
    /// Where the vsock sockets are (the state dir).
    pub vsock_dir: String,
    /// Forwarded guest vsock ports.
    pub vsock_ports: Vec<u32>,
    /// The guest CID.
    pub vsock_guest_cid: u32,
    /// A vmnet NIC.
    pub vmnet: bool,
    /// 9P shares.
    #[serde(rename = "9p_sockets")]
    pub sockets_9p: Vec<Socket9p>,
    /// The kernel, or empty.
    pub kernel: String,
    /// The initrd, or empty.
    pub initrd: String,
    /// The firmware, or empty.
    pub bootrom: String,
    /// vCPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory: u64,
    /// Console mode (0 stdio, 1 file).
    pub console: u8,
    /// hyperkit's pid.
    pub pid: u32,
    /// The arguments hyperkit ran with.
    pub arguments: Vec<String>,
    /// The binary and the arguments as one string.
    pub cmdline: String,
}

/// Looks `name` up in `path_var` (a `$PATH`-style list).
fn search_path(name: &OsStr, path_var: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path_var?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The hyperkit binary: `explicit` if given (a bare name is looked up in `$PATH`),
/// else `hyperkit` or `com.docker.hyperkit` from `$PATH`, else [`DEFAULT_HYPERKIT_PATHS`].
pub fn find_hyperkit(explicit: Option<&Path>) -> Result<PathBuf, HyperkitError> {
    find_hyperkit_in(explicit, std::env::var_os("PATH").as_deref(), &DEFAULT_HYPERKIT_PATHS)
}

/// [`find_hyperkit`] with an explicit `$PATH` value and list of fixed locations.
pub fn find_hyperkit_in(
    explicit: Option<&Path>,
    path_var: Option<&OsStr>,
    fixed: &[&str],
) -> Result<PathBuf, HyperkitError> {
    match explicit {
        Some(p) if p.components().count() > 1 => match p.is_file() {
            true => Ok(p.to_path_buf()),
            false => Err(HyperkitError::PathMissing(p.to_path_buf())),
        },
        Some(p) => search_path(p.as_os_str(), path_var).ok_or_else(|| HyperkitError::PathMissing(p.to_path_buf())),
        None => HYPERKIT_NAMES
            .iter()
            .find_map(|n| search_path(n.as_ref(), path_var))
            .or_else(|| fixed.iter().map(PathBuf::from).find(|p| p.is_file()))
            .ok_or(HyperkitError::NotFound),
    }
}

/// Parses a comma separated list of vsock ports (`2374,2375`; empty means none).
pub fn parse_vsock_ports(text: &str) -> Result<Vec<u32>, HyperkitError> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|p| {
            p.trim()
                .parse::<u32>()
                .map_err(|_| HyperkitError::BadVsockPorts(text.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests;
