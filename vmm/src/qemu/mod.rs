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

mod backend;
mod command;
mod control;
mod disk;
mod launch;
mod network;
mod spawn;

use std::path::{Path, PathBuf};

pub use backend::{Qemu, LINUXKIT_ACCEL_ENV};
pub(crate) use command::QemuConfig;
pub(crate) use disk::resolve_disks;
pub use disk::DiskError;
pub use launch::LaunchError;
pub(crate) use network::check_publish;
pub use network::{NetworkError, Networking};

use crate::machine::{Arch, BootError};

/// Errors of the qemu backend's set-up.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// The qemu binary is not installed.
    #[error("{binary} not found in $PATH: install it (Debian package {package}) or give the qemu binary's path")]
    QemuNotFound {
        /// The binary looked for.
        binary: String,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// The qemu binary given by path is not there.
    #[error("qemu binary {0} does not exist: check its path")]
    QemuPathMissing(PathBuf),
    /// What to boot.
    #[error(transparent)]
    Image(#[from] BootError),
    /// A disk.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// Networking or publish.
    #[error(transparent)]
    Network(#[from] NetworkError),
}

/// The qemu system emulator for `arch` (`qemu-system-x86_64`).
pub fn binary_name(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "qemu-system-x86_64",
        Arch::Aarch64 => "qemu-system-aarch64",
    }
}

/// The Debian package that provides [`binary_name`].
fn package_name(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "qemu-system-x86",
        Arch::Aarch64 => "qemu-system-arm",
    }
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
                package: package_name(arch),
            })
        }
        None => search_path(binary_name(arch), path_var).ok_or(QemuError::QemuNotFound {
            binary: binary_name(arch).into(),
            package: package_name(arch),
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
            "qemu-system-x86_64 not found in $PATH: install it (Debian package qemu-system-x86) or give the qemu binary's path"
        );
        let e = find_qemu_in(Arch::Aarch64, None, Some(d.path().as_os_str()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("Debian package qemu-system-arm"), "{e}");
        let e = find_qemu_in(Arch::X86_64, Some(&d.path().join("q")), None).unwrap_err();
        assert!(matches!(e, QemuError::QemuPathMissing(_)));
    }
}
