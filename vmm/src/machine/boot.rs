//! What to boot, detected from the path the user gave as LinuxKit's `run qemu` does.
//!
//! `P` (a path prefix) boots `P-kernel` with `P-initrd.img` and `P-cmdline`, or `P-kernel` with
//! `P-squashfs.img` as its root disk when that exists, or `P-kernel` with `P.iso` as its root CD
//! when `P-boot-initrd.img` and no `P-initrd.img` exist (moby's `kernel+iso`); a path ending in
//! `.iso` boots that ISO; any other existing file is a disk image. As a convenience, a prefix with no `P-kernel` also tries
//! `P.iso` and `P.qcow2`/`P.raw`/`P.img`/`P.vhd`/`P.vmdk`.

use std::path::{Path, PathBuf};

use super::DiskFormat;

/// Forces one kind of boot (`--kernel`, `--squashfs`, `--iso`) instead of detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BootKind {
    /// Detect (the default).
    #[default]
    Detect,
    /// `P-kernel` + `P-initrd.img` + `P-cmdline`.
    Kernel,
    /// `P-kernel` + `P-squashfs.img` + `P-cmdline`.
    Squashfs,
    /// The path is an ISO.
    Iso,
}

/// The media a VM boots from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootMedia {
    /// Direct kernel boot.
    Kernel {
        /// `P-kernel`.
        kernel: PathBuf,
        /// `P-initrd.img`, if present.
        initrd: Option<PathBuf>,
        /// Contents of `P-cmdline` (trimmed; empty if absent).
        cmdline: String,
    },
    /// Kernel with a squashfs root disk (attached as the first virtio disk, `root=/dev/vda`).
    Squashfs {
        /// `P-kernel`.
        kernel: PathBuf,
        /// `P-boot-initrd.img`, moby's first-stage initrd that mounts the root, if present.
        initrd: Option<PathBuf>,
        /// `P-squashfs.img`.
        squashfs: PathBuf,
        /// Contents of `P-cmdline` (trimmed).
        cmdline: String,
    },
    /// Kernel with an ISO root (moby's `kernel+iso`: the CD attached with virtio-scsi,
    /// `root=/dev/sr0`, and the first-stage initrd that mounts it).
    KernelIso {
        /// `P-kernel`.
        kernel: PathBuf,
        /// `P-boot-initrd.img`.
        initrd: PathBuf,
        /// `P.iso`.
        iso: PathBuf,
        /// Contents of `P-cmdline` (trimmed).
        cmdline: String,
    },
    /// A bootable ISO, attached as a CD the kernel sees (virtio-scsi).
    Iso(PathBuf),
    /// A bootable disk image.
    Disk {
        /// The image file.
        path: PathBuf,
        /// Its format, from `format=` or the extension; `None` lets qemu guess.
        format: Option<DiskFormat>,
    },
}

/// The result of detection: the media and the prefix that names the VM's state dir (`P-state`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    /// What to boot.
    pub media: BootMedia,
    /// The path prefix (the path without `.iso`, or the prefix of `-kernel`).
    pub prefix: PathBuf,
}

impl Detected {
    /// LinuxKit's default state directory, `PREFIX-state`.
    pub fn default_state_dir(&self) -> PathBuf {
        with_suffix(&self.prefix, "-state")
    }

    /// Whether the media boot only with UEFI firmware, by LinuxKit's names of its EFI outputs:
    /// `NAME-efi.iso`, `NAME-efi-initrd.iso`, `NAME-efi.img`, `NAME-efi.qcow2`.
    pub fn needs_uefi(&self) -> bool {
        let path = match &self.media {
            BootMedia::Iso(path) | BootMedia::Disk { path, .. } => path,
            BootMedia::Kernel { .. } | BootMedia::Squashfs { .. } | BootMedia::KernelIso { .. } => return false,
        };
        let Some(stem) = path.file_stem().and_then(|stem| stem.to_str()) else {
            return false;
        };
        stem.ends_with("-efi") || stem.ends_with("-efi-initrd")
    }
}

/// Errors from detecting boot media.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// Nothing bootable for this name.
    #[error("no {name}-kernel, {name}.iso or disk image found for {name}: build it first or give the path of an ISO or disk image")]
    NotFound {
        /// The name or path given.
        name: String,
    },
    /// A file that the chosen boot kind needs is missing.
    #[error("{path} not found (needed to boot {what})")]
    Missing {
        /// The missing file.
        path: PathBuf,
        /// What kind of boot needed it.
        what: &'static str,
    },
    /// A file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn read_cmdline(prefix: &Path) -> Result<String, BootError> {
    let path = with_suffix(prefix, "-cmdline");
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(s.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(BootError::Read { path, source }),
    }
}

fn require(path: PathBuf, what: &'static str) -> Result<PathBuf, BootError> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(BootError::Missing { path, what })
    }
}

fn kernel_boot(prefix: &Path) -> Result<BootMedia, BootError> {
    let kernel = require(with_suffix(prefix, "-kernel"), "a kernel+initrd")?;
    let initrd = Some(with_suffix(prefix, "-initrd.img")).filter(|p| p.is_file());
    Ok(BootMedia::Kernel {
        kernel,
        initrd,
        cmdline: read_cmdline(prefix)?,
    })
}

fn squashfs_boot(prefix: &Path) -> Result<BootMedia, BootError> {
    let kernel = require(with_suffix(prefix, "-kernel"), "a kernel+squashfs")?;
    let squashfs = require(with_suffix(prefix, "-squashfs.img"), "a kernel+squashfs")?;
    Ok(BootMedia::Squashfs {
        kernel,
        initrd: Some(with_suffix(prefix, BOOT_INITRD)).filter(|p| p.is_file()),
        squashfs,
        cmdline: read_cmdline(prefix)?,
    })
}

/// moby's first-stage initrd of `kernel+squashfs` and `kernel+iso`.
const BOOT_INITRD: &str = "-boot-initrd.img";

/// Detects what `path` boots (see the module doc). `kind` forces a kind; `format` is the disk
/// format when the path is a disk image (else its extension decides).
pub fn detect(path: &Path, kind: BootKind, format: Option<DiskFormat>) -> Result<Detected, BootError> {
    let iso_prefix = |p: &Path| match p.to_str().and_then(|s| s.strip_suffix(".iso")) {
        Some(s) => PathBuf::from(s),
        None => p.to_path_buf(),
    };
    match kind {
        BootKind::Kernel => {
            return Ok(Detected {
                media: kernel_boot(path)?,
                prefix: path.into(),
            })
        }
        BootKind::Squashfs => {
            return Ok(Detected {
                media: squashfs_boot(path)?,
                prefix: path.into(),
            })
        }
        BootKind::Iso => {
            let iso = require(path.to_path_buf(), "an ISO")?;
            return Ok(Detected {
                prefix: iso_prefix(path),
                media: BootMedia::Iso(iso),
            });
        }
        BootKind::Detect => {}
    }
    if path.is_file() {
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("iso")) {
            return Ok(Detected {
                prefix: iso_prefix(path),
                media: BootMedia::Iso(path.into()),
            });
        }
        let format = format.or_else(|| DiskFormat::from_extension(path));
        let prefix = path.with_extension("");
        return Ok(Detected {
            media: BootMedia::Disk {
                path: path.into(),
                format,
            },
            prefix,
        });
    }
    if with_suffix(path, "-kernel").is_file() {
        let iso = with_suffix(path, ".iso");
        let boot_initrd = with_suffix(path, BOOT_INITRD);
        let media = if with_suffix(path, "-squashfs.img").is_file() {
            squashfs_boot(path)?
        } else if iso.is_file() && boot_initrd.is_file() && !with_suffix(path, "-initrd.img").is_file() {
            BootMedia::KernelIso {
                kernel: with_suffix(path, "-kernel"),
                initrd: boot_initrd,
                iso,
                cmdline: read_cmdline(path)?,
            }
        } else {
            kernel_boot(path)?
        };
        return Ok(Detected {
            media,
            prefix: path.into(),
        });
    }
    let iso = with_suffix(path, ".iso");
    if iso.is_file() {
        return Ok(Detected {
            media: BootMedia::Iso(iso),
            prefix: path.into(),
        });
    }
    for ext in ["qcow2", "raw", "img", "vhd", "vmdk"] {
        let disk = with_suffix(path, &format!(".{ext}"));
        if disk.is_file() {
            let format = format.or_else(|| DiskFormat::from_extension(&disk));
            return Ok(Detected {
                media: BootMedia::Disk { path: disk, format },
                prefix: path.into(),
            });
        }
    }
    Err(BootError::NotFound {
        name: path.display().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str, content: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    #[test]
    fn kernel_with_a_root_disk_and_its_first_stage_initrd() {
        let d = tempfile::tempdir().unwrap();
        let k = touch(d.path(), "lk-kernel", "k");
        let iso = touch(d.path(), "lk.iso", "iso");
        touch(d.path(), "lk-cmdline", "console=ttyS0");
        // An ISO beside a kernel is not its root without the first-stage initrd.
        assert!(matches!(
            detect(&d.path().join("lk"), BootKind::Detect, None).unwrap().media,
            BootMedia::Kernel { initrd: None, .. }
        ));
        let boot = touch(d.path(), "lk-boot-initrd.img", "b");
        let got = detect(&d.path().join("lk"), BootKind::Detect, None).unwrap();
        assert_eq!(
            got.media,
            BootMedia::KernelIso {
                kernel: k.clone(),
                initrd: boot.clone(),
                iso,
                cmdline: "console=ttyS0".into()
            }
        );
        let squashfs = touch(d.path(), "lk-squashfs.img", "s");
        let got = detect(&d.path().join("lk"), BootKind::Detect, None).unwrap();
        assert_eq!(
            got.media,
            BootMedia::Squashfs {
                kernel: k,
                initrd: Some(boot),
                squashfs,
                cmdline: "console=ttyS0".into()
            }
        );
    }

    #[test]
    fn efi_outputs_are_known_by_name() {
        let d = tempfile::tempdir().unwrap();
        for (name, uefi) in [
            ("lk-efi.iso", true),
            ("lk-efi-initrd.iso", true),
            ("lk-efi.img", true),
            ("lk-efi.qcow2", true),
            ("lk.iso", false),
            ("lk-bios.img", false),
            ("lk.qcow2", false),
            ("lk.vhd", false),
            ("refined.img", false),
        ] {
            let path = touch(d.path(), name, "x");
            assert_eq!(
                detect(&path, BootKind::Detect, None).unwrap().needs_uefi(),
                uefi,
                "{name}"
            );
        }
        touch(d.path(), "k-kernel", "k");
        assert!(!detect(&d.path().join("k"), BootKind::Detect, None)
            .unwrap()
            .needs_uefi());
    }

    #[test]
    fn kernel_initrd_cmdline() {
        let d = tempfile::tempdir().unwrap();
        let k = touch(d.path(), "lk-kernel", "k");
        let i = touch(d.path(), "lk-initrd.img", "i");
        touch(d.path(), "lk-cmdline", "console=ttyS0 quiet\n");
        let got = detect(&d.path().join("lk"), BootKind::Detect, None).unwrap();
        assert_eq!(
            got.media,
            BootMedia::Kernel {
                kernel: k,
                initrd: Some(i),
                cmdline: "console=ttyS0 quiet".into()
            }
        );
        assert_eq!(got.default_state_dir(), d.path().join("lk-state"));
    }

    #[test]
    fn squashfs_wins_when_present() {
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "lk-kernel", "k");
        touch(d.path(), "lk-initrd.img", "i");
        let s = touch(d.path(), "lk-squashfs.img", "s");
        let got = detect(&d.path().join("lk"), BootKind::Detect, None).unwrap();
        assert!(
            matches!(got.media, BootMedia::Squashfs { squashfs, cmdline, .. } if squashfs == s && cmdline.is_empty())
        );
        // --kernel forces the initrd boot anyway.
        let got = detect(&d.path().join("lk"), BootKind::Kernel, None).unwrap();
        assert!(matches!(got.media, BootMedia::Kernel { .. }));
    }

    #[test]
    fn iso_and_disks() {
        let d = tempfile::tempdir().unwrap();
        let iso = touch(d.path(), "lk.iso", "");
        let got = detect(&iso, BootKind::Detect, None).unwrap();
        assert_eq!(got.media, BootMedia::Iso(iso.clone()));
        assert_eq!(got.prefix, d.path().join("lk"));
        // The bare name finds NAME.iso too.
        assert_eq!(
            detect(&d.path().join("lk"), BootKind::Detect, None).unwrap().media,
            BootMedia::Iso(iso)
        );
        let q = touch(d.path(), "vm.qcow2", "");
        let got = detect(&q, BootKind::Detect, None).unwrap();
        assert_eq!(
            got.media,
            BootMedia::Disk {
                path: q,
                format: Some(DiskFormat::Qcow2)
            }
        );
        assert_eq!(got.default_state_dir(), d.path().join("vm-state"));
        let b = touch(d.path(), "vm.bin", "");
        let got = detect(&b, BootKind::Detect, Some(DiskFormat::Raw)).unwrap();
        assert_eq!(
            got.media,
            BootMedia::Disk {
                path: b.clone(),
                format: Some(DiskFormat::Raw)
            }
        );
        assert_eq!(
            detect(&b, BootKind::Detect, None).unwrap().media,
            BootMedia::Disk { path: b, format: None }
        );
        assert!(matches!(
            detect(&d.path().join("vm"), BootKind::Detect, None).unwrap().media,
            BootMedia::Disk { .. }
        ));
    }

    #[test]
    fn clear_errors() {
        let d = tempfile::tempdir().unwrap();
        let name = d.path().join("nothing");
        let e = detect(&name, BootKind::Detect, None).unwrap_err().to_string();
        let n = name.display();
        assert!(
            e.starts_with(&format!("no {n}-kernel, {n}.iso or disk image found for {n}")),
            "{e}"
        );
        touch(d.path(), "only-kernel", "k");
        let e = detect(&d.path().join("only"), BootKind::Squashfs, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("only-squashfs.img not found"), "{e}");
        let e = detect(&d.path().join("x.iso"), BootKind::Iso, None)
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("x.iso not found (needed to boot an ISO)"), "{e}");
    }
}
