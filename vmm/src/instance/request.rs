//! What to start: one request type for every backend.

use std::path::PathBuf;

use super::record::Tags;
use crate::machine::{Arch, BootKind, DiskSpec, PublishedPort};
use crate::network::Attachment;

/// An instance to start. Backends refuse (with a typed error) what they cannot run, e.g. hyperkit
/// a qcow2 disk or VMware a kernel+initrd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The instance name, unique on this host (letters, digits, `.`, `-`, `_`).
    pub name: String,
    /// What to boot: a build's path prefix (`P-kernel`, `P-initrd.img`, ...), an ISO or a disk image.
    pub image: PathBuf,
    /// How to read [`Request::image`]; [`BootKind::Detect`] looks at the files.
    pub boot: BootKind,
    /// The guest's architecture; `None` is the host's.
    pub arch: Option<Arch>,
    /// vCPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Disks, LinuxKit's way (a size without a path is created in the state directory).
    pub disks: Vec<DiskSpec>,
    /// Keep the disks created for the instance when it is destroyed.
    pub keep_disks: bool,
    /// Userdata for the guest, on a `cidata` CD.
    pub userdata: Option<Vec<u8>>,
    /// Guest ports to publish on the host.
    pub publish: Vec<PublishedPort>,
    /// The backend's networking mode (e.g. qemu's `user`, `tap,IF`; hyperkit's `vpnkit`);
    /// `None` is the backend's default.
    pub networking: Option<String>,
    /// A private network the instance joins with a second NIC (after the one of
    /// [`Request::networking`]).
    pub network: Option<Attachment>,
    /// The accelerator, where the backend has a choice (`kvm`, `tcg`, ...); `None` decides by
    /// probing.
    pub accel: Option<String>,
    /// Boot through UEFI firmware.
    pub uefi: bool,
    /// The image is shared with other instances (the plugin's builds): a disk image is booted
    /// copy-on-write, never written (the instance's writes to it last until it stops).
    pub shared_image: bool,
    /// The UEFI firmware; `None` looks in the usual places.
    pub firmware: Option<PathBuf>,
    /// The state directory; `None` is the backend's default (under the state root, or next to
    /// the image as LinuxKit does). Either way the instance is found by name under the root.
    pub state_dir: Option<PathBuf>,
    /// Labels.
    pub tags: Tags,
    /// A stable identity given by the caller (InfraKit's LogicalID).
    pub logical_id: Option<String>,
    /// The content digest of the spec the image was built from.
    pub spec_digest: Option<String>,
}

impl Request {
    /// A request to boot `image` as `name` with LinuxKit's defaults: 1 vCPU, 1024 MiB, detected
    /// boot media, the backend's default networking, nothing else.
    pub fn new(name: impl Into<String>, image: impl Into<PathBuf>) -> Request {
        Request {
            name: name.into(),
            image: image.into(),
            boot: BootKind::Detect,
            arch: None,
            cpus: 1,
            memory_mib: 1024,
            disks: Vec::new(),
            keep_disks: false,
            userdata: None,
            publish: Vec::new(),
            networking: None,
            network: None,
            accel: None,
            uefi: false,
            shared_image: false,
            firmware: None,
            state_dir: None,
            tags: Tags::new(),
            logical_id: None,
            spec_digest: None,
        }
    }
}
