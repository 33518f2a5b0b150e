//! Disks as LinuxKit's `--disk` describes them: `[file=]PATH[,size=N[G|M]][,format=F]`, sizes in GiB
//! unless suffixed `M`. What a size without a path or format means is each backend's rule.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A disk image format.
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
    type Err = DiskSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "raw" => Ok(DiskFormat::Raw),
            "qcow2" => Ok(DiskFormat::Qcow2),
            "vhd" | "vpc" => Ok(DiskFormat::Vhd),
            "vmdk" => Ok(DiskFormat::Vmdk),
            _ => Err(DiskSpecError::UnknownFormat(s.to_string())),
        }
    }
}

/// A disk value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiskSpecError {
    /// `format=` names a format we do not know.
    #[error("unknown disk format {0:?}: use raw, qcow2, vhd or vmdk")]
    UnknownFormat(String),
    /// `size=` is not a number with an optional G or M suffix.
    #[error("invalid disk size {0:?}: use a number of GiB, or N G / N M (e.g. size=4G, size=512M)")]
    BadSize(String),
    /// A `key=` we do not know.
    #[error("unknown disk option {key:?} in {spec:?}: use file=, size= or format=")]
    UnknownKey {
        /// The key.
        key: String,
        /// The whole disk value.
        spec: String,
    },
    /// A bare value after the first part.
    #[error("{part:?} in disk {spec:?} is not key=value: only the first part may be a bare file name; use file=, size= or format=")]
    NotKeyValue {
        /// The part.
        part: String,
        /// The whole disk value.
        spec: String,
    },
    /// The file, size or format given twice.
    #[error("disk {spec:?} gives the {key} twice; give it once")]
    Repeated {
        /// `file` (also for a bare first part), `size` or `format`.
        key: String,
        /// The whole disk value.
        spec: String,
    },
    /// Neither a path nor a size.
    #[error("disk {0:?} has neither a file nor a size")]
    Empty(String),
}

/// One disk as the user wrote it: `[file=]PATH[,size=N[G|M]][,format=F]` (LinuxKit's `--disk`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiskSpec {
    /// `file=` (or a bare first value).
    pub path: Option<PathBuf>,
    /// `size=`, in MiB.
    pub size_mib: Option<u64>,
    /// `format=`.
    pub format: Option<DiskFormat>,
}

/// Parses a LinuxKit disk size: a plain number is GiB, `NG` is GiB, `NM` is MiB. Returns MiB.
pub fn parse_size_mib(s: &str) -> Result<u64, DiskSpecError> {
    let bad = || DiskSpecError::BadSize(s.to_string());
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
    type Err = DiskSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut d = DiskSpec::default();
        for (i, part) in spec.split(',').enumerate() {
            // Only the first part may be a bare file name; a later one would silently replace it.
            let (key, value) = match part.split_once('=') {
                None if i == 0 => ("file", part),
                None => {
                    return Err(DiskSpecError::NotKeyValue {
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
                    return Err(DiskSpecError::UnknownKey {
                        key: key.to_string(),
                        spec: spec.to_string(),
                    })
                }
            };
            if already {
                return Err(DiskSpecError::Repeated {
                    key: key.to_string(),
                    spec: spec.to_string(),
                });
            }
        }
        if d.path.as_ref().is_none_or(|p| p.as_os_str().is_empty()) && d.size_mib.is_none() {
            return Err(DiskSpecError::Empty(spec.to_string()));
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size_mib("4").unwrap(), 4096);
        assert_eq!(parse_size_mib("4G").unwrap(), 4096);
        assert_eq!(parse_size_mib("512M").unwrap(), 512);
        assert!(matches!(parse_size_mib("4T"), Err(DiskSpecError::BadSize(_))));
        assert!(matches!(parse_size_mib("0"), Err(DiskSpecError::BadSize(_))));
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
            "unknown disk option \"colour\" in \"x,colour=red\": use file=, size= or format="
        );
        assert!(matches!(
            "format=qcow2".parse::<DiskSpec>(),
            Err(DiskSpecError::Empty(_))
        ));
        // Nothing is dropped silently: a second bare part or a repeated key is refused by name.
        let e = "/a,b.img,size=10M".parse::<DiskSpec>().unwrap_err().to_string();
        assert!(
            e.starts_with("\"b.img\" in disk \"/a,b.img,size=10M\" is not key=value"),
            "{e}"
        );
        let e = "size=1G,x".parse::<DiskSpec>().unwrap_err();
        assert!(
            matches!(e, DiskSpecError::NotKeyValue { ref part, .. } if part == "x"),
            "{e}"
        );
        for (spec, repeated) in [("a.img,file=b.img", "file"), ("x,format=raw,format=vhd", "format")] {
            let e = spec.parse::<DiskSpec>().unwrap_err();
            assert!(
                matches!(e, DiskSpecError::Repeated { ref key, .. } if key == repeated),
                "{e}"
            );
        }
        assert!(matches!(
            "x,format=vdi".parse::<DiskSpec>(),
            Err(DiskSpecError::UnknownFormat(_))
        ));
    }
}
