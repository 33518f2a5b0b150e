//! The qemu backend's pure parts: what to boot ([`detect`]), `--disk`/`--publish`/`--networking`
//! parsing, locating the qemu binary, and [`QemuConfig::args`], the deterministic argument vector.
//!
//! Facts the command line relies on:
//! - machine `q35` on x86_64, `virt` on aarch64; the accelerator is given in `-machine`.
//! - Debian's cloud kernel has no AHCI driver, so CDs (the userdata ISO, ISO boots) go on
//!   virtio-scsi (`scsi-cd`) and disks on virtio-blk, never on q35's default SATA controller.
//!   Hence a squashfs root is `root=/dev/vda` (LinuxKit says `/dev/sda`).
//! - user networking forwards each `--publish` with `hostfwd=`; the NIC is virtio-net.
//! - LinuxKit does not pass `-no-reboot`; [`QemuConfig::no_reboot`] makes it a choice.

mod command;
pub mod control;
mod disk;
mod image;
pub mod launch;
mod network;
pub mod spawn;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use command::{Console, QemuConfig};
pub use disk::{
    ensure_disk, parse_size_mib, qemu_img_create_args, resolve_disks, Disk, DiskError, DiskFormat, DiskSpec,
};
pub use image::{detect, BootKind, BootMedia, Detected, ImageError};
pub use network::{check_publish, NetworkError, Networking, Protocol, PublishedPort};

/// Guest architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// x86_64 (`qemu-system-x86_64`, machine q35).
    X86_64,
    /// aarch64 (`qemu-system-aarch64`, machine virt).
    Aarch64,
}

impl Arch {
    /// The architecture of this host, if qemu supports it here.
    pub fn host() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::X86_64),
            "aarch64" => Some(Arch::Aarch64),
            _ => None,
        }
    }

    /// The qemu system emulator's name (`qemu-system-x86_64`).
    pub fn qemu_binary(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Aarch64 => "qemu-system-aarch64",
        }
    }

    /// The Debian package that provides [`Arch::qemu_binary`].
    pub fn qemu_package(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86",
            Arch::Aarch64 => "qemu-system-arm",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        })
    }
}

impl FromStr for Arch {
    type Err = QemuError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "x86_64" | "amd64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            _ => Err(QemuError::UnknownArch(s.to_string())),
        }
    }
}

/// Errors of the qemu backend's set-up.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// `--arch` names an architecture we do not run.
    #[error("unsupported architecture {0:?}: use x86_64 or aarch64")]
    UnknownArch(String),
    /// The qemu binary is not installed.
    #[error("{binary} not found in $PATH: install it (apt-get install {package}) or give its path with --qemu")]
    QemuNotFound {
        /// The binary looked for.
        binary: String,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// `--qemu` names a file that is not there.
    #[error("qemu binary {0} does not exist: check the --qemu path")]
    QemuPathMissing(PathBuf),
    /// What to boot.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A disk.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// Networking or publish.
    #[error(transparent)]
    Network(#[from] NetworkError),
}

/// Looks `name` up in `path_var` (a `$PATH`-style list).
fn search_path(name: &str, path_var: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path_var?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The qemu binary for `arch`: `explicit` (`--qemu`) if given (a bare name is looked up in
/// `$PATH`), else `qemu-system-ARCH` from `$PATH`. The error names the apt package.
pub fn find_qemu(arch: Arch, explicit: Option<&Path>) -> Result<PathBuf, QemuError> {
    find_qemu_in(arch, explicit, std::env::var_os("PATH").as_deref())
}

/// [`find_qemu`] with an explicit `$PATH` value.
pub fn find_qemu_in(
    arch: Arch,
    explicit: Option<&Path>,
    path_var: Option<&std::ffi::OsStr>,
) -> Result<PathBuf, QemuError> {
    match explicit {
        Some(p) if p.components().count() > 1 => {
            if p.is_file() {
                Ok(p.to_path_buf())
            } else {
                Err(QemuError::QemuPathMissing(p.to_path_buf()))
            }
        }
        Some(p) => {
            let name = p.to_string_lossy();
            search_path(&name, path_var).ok_or(QemuError::QemuNotFound {
                binary: name.into_owned(),
                package: arch.qemu_package(),
            })
        }
        None => search_path(arch.qemu_binary(), path_var).ok_or(QemuError::QemuNotFound {
            binary: arch.qemu_binary().into(),
            package: arch.qemu_package(),
        }),
    }
}

/// `qemu-img` from `$PATH`, if installed (Debian package `qemu-utils`).
pub fn find_qemu_img() -> Option<PathBuf> {
    search_path("qemu-img", std::env::var_os("PATH").as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_names() {
        assert_eq!("amd64".parse::<Arch>().unwrap(), Arch::X86_64);
        assert_eq!("aarch64".parse::<Arch>().unwrap(), Arch::Aarch64);
        assert!(matches!("s390x".parse::<Arch>(), Err(QemuError::UnknownArch(_))));
    }

    #[test]
    fn finds_installed_qemu() {
        let q = find_qemu(Arch::X86_64, None).unwrap();
        assert!(q.ends_with("qemu-system-x86_64"), "{}", q.display());
    }

    #[test]
    fn missing_qemu_names_the_package() {
        let d = tempfile::tempdir().unwrap();
        let e = find_qemu_in(Arch::X86_64, None, Some(d.path().as_os_str()))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "qemu-system-x86_64 not found in $PATH: install it (apt-get install qemu-system-x86) or give its path with --qemu"
        );
        let e = find_qemu_in(Arch::Aarch64, None, Some(d.path().as_os_str()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("apt-get install qemu-system-arm"), "{e}");
        let e = find_qemu_in(Arch::X86_64, Some(&d.path().join("q")), None).unwrap_err();
        assert!(matches!(e, QemuError::QemuPathMissing(_)));
    }
}
