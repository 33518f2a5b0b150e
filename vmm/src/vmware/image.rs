//! What a VMware VM boots: a `.vmdk` or an `.iso`, found from the path the user gave.

use std::path::{Path, PathBuf};

use super::{VmwareError, VmxBoot};

/// The boot image and the prefix that names the state dir (`PREFIX-state`) and the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmwareImage {
    /// What to boot.
    pub boot: VmxBoot,
    /// The path without `.vmdk`/`.iso`.
    pub prefix: PathBuf,
}

impl VmwareImage {
    /// LinuxKit's default state directory, `PREFIX-state`.
    pub fn default_state_dir(&self) -> PathBuf {
        with_suffix(&self.prefix, "-state")
    }
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn has_extension(p: &Path, ext: &str) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

fn is_kernel_output(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    ["-kernel", "-initrd.img", "-squashfs.img", "-cmdline"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// Finds the image for `path`:
/// - an existing `.vmdk` or `.iso` file boots as such (any other file is refused: VMware boots
///   nothing else; a `-kernel`/`-initrd.img` file gets the kernel+initrd hint);
/// - a prefix `P` boots `P.vmdk` (LinuxKit's only choice), else `P.iso`;
/// - a prefix with only `P-kernel` is a kernel+initrd build, which VMware cannot boot.
pub fn detect_image(path: &Path) -> Result<VmwareImage, VmwareError> {
    if path.is_file() {
        let boot = if has_extension(path, "vmdk") {
            VmxBoot::Vmdk(path.into())
        } else if has_extension(path, "iso") {
            VmxBoot::Iso(path.into())
        } else if is_kernel_output(path) {
            return Err(VmwareError::KernelBoot(path.into()));
        } else {
            return Err(VmwareError::UnsupportedImage(path.into()));
        };
        return Ok(VmwareImage {
            boot,
            prefix: path.with_extension(""),
        });
    }
    let vmdk = with_suffix(path, ".vmdk");
    if vmdk.is_file() {
        return Ok(VmwareImage {
            boot: VmxBoot::Vmdk(vmdk),
            prefix: path.into(),
        });
    }
    let iso = with_suffix(path, ".iso");
    if iso.is_file() {
        return Ok(VmwareImage {
            boot: VmxBoot::Iso(iso),
            prefix: path.into(),
        });
    }
    let kernel = with_suffix(path, "-kernel");
    if kernel.is_file() {
        return Err(VmwareError::KernelBoot(kernel));
    }
    for ext in ["qcow2", "raw", "img", "vhd"] {
        let other = with_suffix(path, &format!(".{ext}"));
        if other.is_file() {
            return Err(VmwareError::UnsupportedImage(other));
        }
    }
    Err(VmwareError::ImageNotFound {
        name: path.display().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, "x").unwrap();
        p
    }

    #[test]
    fn vmdk_first_then_iso() {
        let d = tempfile::tempdir().unwrap();
        let iso = touch(d.path(), "lk.iso");
        let lk = d.path().join("lk");
        let got = detect_image(&lk).unwrap();
        assert_eq!(got.boot, VmxBoot::Iso(iso.clone()));
        assert_eq!(got.default_state_dir(), d.path().join("lk-state"));
        let vmdk = touch(d.path(), "lk.vmdk");
        assert_eq!(detect_image(&lk).unwrap().boot, VmxBoot::Vmdk(vmdk.clone()));
        // A kernel next to them does not matter.
        touch(d.path(), "lk-kernel");
        assert_eq!(detect_image(&lk).unwrap().boot, VmxBoot::Vmdk(vmdk));
        // Explicit paths.
        let got = detect_image(&iso).unwrap();
        assert_eq!(got.boot, VmxBoot::Iso(iso));
        assert_eq!(got.prefix, lk);
        let upper = touch(d.path(), "VM.VMDK");
        assert_eq!(detect_image(&upper).unwrap().boot, VmxBoot::Vmdk(upper));
    }

    #[test]
    fn kernel_initrd_is_refused_with_a_hint() {
        let d = tempfile::tempdir().unwrap();
        let k = touch(d.path(), "lk-kernel");
        let i = touch(d.path(), "lk-initrd.img");
        let e = detect_image(&d.path().join("lk")).unwrap_err();
        assert!(matches!(e, VmwareError::KernelBoot(ref p) if *p == k), "{e}");
        assert_eq!(
            e.to_string(),
            format!(
                "VMware cannot boot a kernel+initrd directly ({}): build a bootable image instead \
                 (the iso-bios or vmdk output format) and run that",
                k.display()
            )
        );
        assert!(matches!(detect_image(&i), Err(VmwareError::KernelBoot(p)) if p == i));
        assert!(matches!(detect_image(&k), Err(VmwareError::KernelBoot(p)) if p == k));
    }

    #[test]
    fn other_disk_formats_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let q = touch(d.path(), "vm.qcow2");
        let e = detect_image(&q).unwrap_err();
        assert!(matches!(e, VmwareError::UnsupportedImage(ref p) if *p == q), "{e}");
        assert!(e.to_string().contains("qemu-img convert -O vmdk"), "{e}");
        assert!(matches!(detect_image(&d.path().join("vm")), Err(VmwareError::UnsupportedImage(p)) if p == q));
    }

    #[test]
    fn nothing_found() {
        let d = tempfile::tempdir().unwrap();
        let name = d.path().join("none");
        let n = name.display();
        assert_eq!(
            detect_image(&name).unwrap_err().to_string(),
            format!(
                "no {n}.vmdk or {n}.iso found: build one first (the vmdk or iso-bios output format) or give its path"
            )
        );
    }
}
