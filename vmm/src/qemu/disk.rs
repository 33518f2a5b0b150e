//! Disks for qemu and creating missing ones with `qemu-img create` (LinuxKit's rules: a size
//! without a format means qcow2, a size without a path means `STATE/disk.img`, `STATE/disk1.img`,
//! ...).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::machine::{DiskFormat, DiskSpec, DiskSpecError};

/// Errors of qemu's disks.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// A disk value that does not parse.
    #[error(transparent)]
    Spec(#[from] DiskSpecError),
    /// The disk does not exist and has no size to create it with.
    #[error("disk {0} does not exist: give it a size (file={0},size=1G) to create it")]
    MissingNoSize(PathBuf),
    /// qemu-img is not installed.
    #[error("cannot run {binary} to create disk {disk}: {source} (install qemu-img: Debian package qemu-utils)")]
    QemuImgMissing {
        /// The qemu-img binary tried.
        binary: PathBuf,
        /// The disk that was to be created.
        disk: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// qemu-img ran and failed.
    #[error("{binary} create failed for disk {disk} ({status}): {stderr}")]
    QemuImgFailed {
        /// The qemu-img binary.
        binary: PathBuf,
        /// The disk.
        disk: PathBuf,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its error output.
        stderr: String,
    },
    /// Could not check whether the disk exists.
    #[error("cannot check disk {path}: {source}")]
    Stat {
        /// The disk.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// A disk with its path and format decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Image file.
    pub path: PathBuf,
    /// Format; `None` lets qemu guess (only for files whose extension says nothing).
    pub format: Option<DiskFormat>,
    /// Size to create it with when missing, in MiB.
    pub size_mib: Option<u64>,
}

/// Applies LinuxKit's defaults to the `--disk` values: the `i`th disk without a path becomes
/// `STATE/disk.img` (i = 0) or `STATE/diskI.img`; a size without a format means qcow2; otherwise
/// the format comes from the extension.
pub fn resolve_disks(specs: &[DiskSpec], state_dir: &Path) -> Result<Vec<Disk>, DiskError> {
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let path = match (&s.path, s.size_mib) {
                (Some(p), _) if !p.as_os_str().is_empty() => p.clone(),
                (_, Some(_)) => {
                    let id = if i == 0 { String::new() } else { i.to_string() };
                    state_dir.join(format!("disk{id}.img"))
                }
                _ => return Err(DiskSpecError::Empty(format!("{s:?}")).into()),
            };
            let format = match (s.format, s.size_mib) {
                (Some(f), _) => Some(f),
                (None, Some(_)) => Some(DiskFormat::Qcow2),
                (None, None) => DiskFormat::from_extension(&path),
            };
            Ok(Disk {
                path,
                format,
                size_mib: s.size_mib,
            })
        })
        .collect()
}

/// The arguments of `qemu-img` that create `disk` (`create -f FORMAT PATH SIZEM`), or `None`
/// when it has no size. A disk without a format is created as qcow2.
pub fn qemu_img_create_args(disk: &Disk) -> Option<Vec<OsString>> {
    let size = disk.size_mib?;
    let format = disk.format.unwrap_or(DiskFormat::Qcow2);
    Some(vec![
        "create".into(),
        "-f".into(),
        format.qemu_name().into(),
        disk.path.clone().into(),
        format!("{size}M").into(),
    ])
}

/// Creates `disk` with `qemu_img` if its file does not exist. Returns whether it was created.
pub fn ensure_disk(qemu_img: &Path, disk: &Disk) -> Result<bool, DiskError> {
    match std::fs::symlink_metadata(&disk.path) {
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(DiskError::Stat {
                path: disk.path.clone(),
                source,
            })
        }
    }
    let args = qemu_img_create_args(disk).ok_or_else(|| DiskError::MissingNoSize(disk.path.clone()))?;
    let out = Command::new(qemu_img)
        .args(&args)
        .output()
        .map_err(|source| DiskError::QemuImgMissing {
            binary: qemu_img.to_path_buf(),
            disk: disk.path.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(DiskError::QemuImgFailed {
            binary: qemu_img.to_path_buf(),
            disk: disk.path.clone(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_like_linuxkit() {
        let specs: Vec<DiskSpec> = ["size=1G", "size=2G,format=raw", "my.vhd", "other.bin"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let d = resolve_disks(&specs, Path::new("/st")).unwrap();
        assert_eq!(
            d[0],
            Disk {
                path: "/st/disk.img".into(),
                format: Some(DiskFormat::Qcow2),
                size_mib: Some(1024)
            }
        );
        assert_eq!(
            d[1],
            Disk {
                path: "/st/disk1.img".into(),
                format: Some(DiskFormat::Raw),
                size_mib: Some(2048)
            }
        );
        assert_eq!(d[2].format, Some(DiskFormat::Vhd));
        assert_eq!(d[3].format, None);
    }

    #[test]
    fn qemu_img_command() {
        let d = Disk {
            path: "/st/disk.img".into(),
            format: Some(DiskFormat::Qcow2),
            size_mib: Some(1024),
        };
        let args = qemu_img_create_args(&d).unwrap();
        assert_eq!(
            args,
            ["create", "-f", "qcow2", "/st/disk.img", "1024M"].map(OsString::from)
        );
        assert_eq!(qemu_img_create_args(&Disk { size_mib: None, ..d }), None);
    }

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        crate::testing::write_script(&p, &format!("#!/bin/sh\n{body}\n"));
        p
    }

    #[test]
    fn ensure_runs_qemu_img_only_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        // Stand-in for qemu-img (not installed here): records its arguments and creates the file.
        let img = script(
            dir.path(),
            "qemu-img",
            "echo \"$@\" > \"$(dirname \"$0\")/args\"; : > \"$4\"",
        );
        let disk = Disk {
            path: dir.path().join("d.qcow2"),
            format: Some(DiskFormat::Qcow2),
            size_mib: Some(64),
        };
        assert!(ensure_disk(&img, &disk).unwrap());
        let args = std::fs::read_to_string(dir.path().join("args")).unwrap();
        assert_eq!(args.trim(), format!("create -f qcow2 {} 64M", disk.path.display()));
        assert!(!ensure_disk(&img, &disk).unwrap(), "an existing disk is reused");
    }

    #[test]
    fn ensure_errors_name_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk {
            path: dir.path().join("d.qcow2"),
            format: None,
            size_mib: Some(64),
        };
        let e = ensure_disk(Path::new("/nonexistent/qemu-img"), &disk)
            .unwrap_err()
            .to_string();
        assert!(e.contains("Debian package qemu-utils"), "{e}");
        let fail = script(dir.path(), "qemu-img", "echo nope >&2; exit 3");
        let e = ensure_disk(&fail, &disk).unwrap_err().to_string();
        assert!(e.ends_with(": nope"), "{e}");
        let e = ensure_disk(&fail, &Disk { size_mib: None, ..disk }).unwrap_err();
        assert!(matches!(e, DiskError::MissingNoSize(_)));
    }
}
