//! `--disk [file=]PATH[,size=N[G|M]][,format=F]`, disk formats, and creating missing disks with
//! `qemu-img create` (LinuxKit's rules: a size without a format means qcow2, a size without a
//! path means `STATE/disk.img`, `STATE/disk1.img`, ...; sizes are GiB unless suffixed `M`).

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

/// A disk image format qemu understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskFormat {
    /// Raw image (`.raw`, `.img`).
    Raw,
    /// qcow2 (`.qcow2`).
    Qcow2,
    /// Microsoft VHD (`.vhd`; qemu calls it `vpc`).
    Vhd,
    /// VMware VMDK (`.vmdk`).
    Vmdk,
}

impl DiskFormat {
    /// The name qemu and qemu-img use (`format=`, `-f`).
    pub fn qemu_name(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vhd => "vpc",
            DiskFormat::Vmdk => "vmdk",
        }
    }

    /// The format a file name's extension implies, if any.
    pub fn from_extension(path: &Path) -> Option<DiskFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "raw" | "img" => Some(DiskFormat::Raw),
            "qcow2" => Some(DiskFormat::Qcow2),
            "vhd" => Some(DiskFormat::Vhd),
            "vmdk" => Some(DiskFormat::Vmdk),
            _ => None,
        }
    }
}

impl fmt::Display for DiskFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.qemu_name())
    }
}

impl FromStr for DiskFormat {
    type Err = DiskError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "raw" => Ok(DiskFormat::Raw),
            "qcow2" => Ok(DiskFormat::Qcow2),
            "vhd" | "vpc" => Ok(DiskFormat::Vhd),
            "vmdk" => Ok(DiskFormat::Vmdk),
            _ => Err(DiskError::UnknownFormat(s.to_string())),
        }
    }
}

/// Errors from `--disk` values and disk creation.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// `format=` names a format we do not know.
    #[error("unknown disk format {0:?}: use raw, qcow2, vhd or vmdk")]
    UnknownFormat(String),
    /// `size=` is not a number with an optional G or M suffix.
    #[error("invalid disk size {0:?}: use a number of GiB, or N G / N M (e.g. size=4G, size=512M)")]
    BadSize(String),
    /// A `key=` we do not know.
    #[error("unknown disk option {key:?} in --disk {spec:?}: use file=, size= or format=")]
    UnknownKey {
        /// The key.
        key: String,
        /// The whole `--disk` value.
        spec: String,
    },
    /// A bare value after the first part.
    #[error("{part:?} in --disk {spec:?} is not key=value: only the first part may be a bare file name; use file=, size= or format=")]
    NotKeyValue {
        /// The part.
        part: String,
        /// The whole `--disk` value.
        spec: String,
    },
    /// The file, size or format given twice.
    #[error("--disk {spec:?} gives the {key} twice; give it once")]
    Repeated {
        /// `file` (also for a bare first part), `size` or `format`.
        key: String,
        /// The whole `--disk` value.
        spec: String,
    },
    /// Neither a path nor a size.
    #[error("--disk {0:?} has neither a file nor a size")]
    Empty(String),
    /// The disk does not exist and has no size to create it with.
    #[error("disk {0} does not exist: give it a size (--disk file={0},size=1G) to create it")]
    MissingNoSize(PathBuf),
    /// qemu-img is not installed.
    #[error("cannot run {binary} to create disk {disk}: {source} (install the qemu-utils package: apt-get install qemu-utils)")]
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

/// One `--disk` value as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiskSpec {
    /// `file=` (or a bare value).
    pub path: Option<PathBuf>,
    /// `size=`, in MiB.
    pub size_mib: Option<u64>,
    /// `format=`.
    pub format: Option<DiskFormat>,
}

/// Parses a LinuxKit disk size: a plain number is GiB, `NG` is GiB, `NM` is MiB. Returns MiB.
pub fn parse_size_mib(s: &str) -> Result<u64, DiskError> {
    let bad = || DiskError::BadSize(s.to_string());
    let (num, mult) = if let Some(n) = s.strip_suffix('M') {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('G') {
        (n, 1024)
    } else {
        (s, 1024)
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(bad());
    }
    n.checked_mul(mult).ok_or_else(bad)
}

impl FromStr for DiskSpec {
    type Err = DiskError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut d = DiskSpec::default();
        for (i, part) in spec.split(',').enumerate() {
            // Only the first part may be a bare file name; a later one would silently replace it.
            let (key, value) = match part.split_once('=') {
                None if i == 0 => ("file", part),
                None => {
                    return Err(DiskError::NotKeyValue {
                        part: part.to_string(),
                        spec: spec.to_string(),
                    })
                }
                Some(pair) => pair,
            };
            let already = match key {
                "file" => d.path.replace(PathBuf::from(value)).is_some(),
                "size" => d.size_mib.replace(parse_size_mib(value)?).is_some(),
                "format" => d.format.replace(value.parse()?).is_some(),
                _ => {
                    return Err(DiskError::UnknownKey {
                        key: key.to_string(),
                        spec: spec.to_string(),
                    })
                }
            };
            if already {
                return Err(DiskError::Repeated {
                    key: key.to_string(),
                    spec: spec.to_string(),
                });
            }
        }
        if d.path.as_ref().is_none_or(|p| p.as_os_str().is_empty()) && d.size_mib.is_none() {
            return Err(DiskError::Empty(spec.to_string()));
        }
        Ok(d)
    }
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
                _ => return Err(DiskError::Empty(format!("{s:?}"))),
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
    fn sizes() {
        assert_eq!(parse_size_mib("4").unwrap(), 4096);
        assert_eq!(parse_size_mib("4G").unwrap(), 4096);
        assert_eq!(parse_size_mib("512M").unwrap(), 512);
        assert!(matches!(parse_size_mib("4T"), Err(DiskError::BadSize(_))));
        assert!(matches!(parse_size_mib("0"), Err(DiskError::BadSize(_))));
    }

    #[test]
    fn specs() {
        let d: DiskSpec = "data.qcow2".parse().unwrap();
        assert_eq!(
            d,
            DiskSpec {
                path: Some("data.qcow2".into()),
                size_mib: None,
                format: None
            }
        );
        let d: DiskSpec = "file=x.img,size=1G,format=raw".parse().unwrap();
        assert_eq!(
            d,
            DiskSpec {
                path: Some("x.img".into()),
                size_mib: Some(1024),
                format: Some(DiskFormat::Raw)
            }
        );
        let d: DiskSpec = "size=100M".parse().unwrap();
        assert_eq!(d.path, None);
        let e = "x,colour=red".parse::<DiskSpec>().unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown disk option \"colour\" in --disk \"x,colour=red\": use file=, size= or format="
        );
        assert!(matches!("format=qcow2".parse::<DiskSpec>(), Err(DiskError::Empty(_))));
        // Nothing is dropped silently: a second bare part or a repeated key is refused by name.
        let e = "/a,b.img,size=10M".parse::<DiskSpec>().unwrap_err().to_string();
        assert!(
            e.starts_with("\"b.img\" in --disk \"/a,b.img,size=10M\" is not key=value"),
            "{e}"
        );
        let e = "size=1G,x".parse::<DiskSpec>().unwrap_err();
        assert!(
            matches!(e, DiskError::NotKeyValue { ref part, .. } if part == "x"),
            "{e}"
        );
        for (spec, repeated) in [("a.img,file=b.img", "file"), ("x,format=raw,format=vhd", "format")] {
            let e = spec.parse::<DiskSpec>().unwrap_err();
            assert!(
                matches!(e, DiskError::Repeated { ref key, .. } if key == repeated),
                "{e}"
            );
        }
        assert!(matches!(
            "x,format=vdi".parse::<DiskSpec>(),
            Err(DiskError::UnknownFormat(_))
        ));
    }

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
        assert!(e.contains("apt-get install qemu-utils"), "{e}");
        let fail = script(dir.path(), "qemu-img", "echo nope >&2; exit 3");
        let e = ensure_disk(&fail, &disk).unwrap_err().to_string();
        assert!(e.ends_with(": nope"), "{e}");
        let e = ensure_disk(&fail, &Disk { size_mib: None, ..disk }).unwrap_err();
        assert!(matches!(e, DiskError::MissingNoSize(_)));
    }
}
