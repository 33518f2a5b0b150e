//! The one extra disk a VMware VM takes (LinuxKit's): a VMDK, created with
//! `vmware-vdiskmanager` when it has a size and does not exist.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};

use super::vmrun::{exe_name, exec, search_path};
use super::{Vmrun, VmwareError};
use crate::machine::{DiskFormat, DiskSpec};

/// The extra disk created for a size without a path (LinuxKit's name).
pub const DEFAULT_DISK_FILE: &str = "disk.vmdk";

/// The extra disk of a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VmdkDisk {
    /// The VMDK file (absolute).
    pub path: PathBuf,
    /// The size to create it with, in MiB, when it does not exist.
    pub size_mib: Option<u64>,
}

/// The extra disk for `specs` (at most one): without a path it is `STATE/disk.vmdk`; it must be
/// VMDK (`format=vmdk` or a `.vmdk` name). Paths are made absolute.
pub(crate) fn resolve_disk(specs: &[DiskSpec], state_dir: &Path) -> Result<Option<VmdkDisk>, VmwareError> {
    let spec = match specs {
        [] => return Ok(None),
        [spec] => spec,
        _ => return Err(VmwareError::TooManyDisks(specs.len())),
    };
    let path = match &spec.path {
        Some(p) if !p.as_os_str().is_empty() => std::path::absolute(p).map_err(VmwareError::io("make absolute", p))?,
        _ => state_dir.join(DEFAULT_DISK_FILE),
    };
    match spec.format.or_else(|| DiskFormat::from_extension(&path)) {
        Some(DiskFormat::Vmdk) => {}
        Some(other) => {
            return Err(VmwareError::DiskNotVmdk {
                path,
                got: format!("format {other}"),
            })
        }
        None => {
            return Err(VmwareError::DiskNotVmdk {
                path,
                got: "a name without .vmdk and no format".into(),
            })
        }
    }
    Ok(Some(VmdkDisk {
        path,
        size_mib: spec.size_mib,
    }))
}

/// The arguments of `vmware-vdiskmanager` that create a growable (`-t 0`) LSI Logic VMDK of
/// `size_mib` MiB at `path`, as LinuxKit does.
pub(crate) fn vdiskmanager_args(path: &Path, size_mib: u64) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-c", "-s", &format!("{size_mib}MB"), "-a", "lsilogic", "-t", "0"]
        .iter()
        .map(OsString::from)
        .collect();
    args.push(path.into());
    args
}

/// vmware-vdiskmanager: next to vmrun (where VMware installs both), else from `$PATH`.
fn find_vdiskmanager(vmrun: &Path, os: &str, path_var: Option<&OsStr>) -> Result<PathBuf, VmwareError> {
    let name = exe_name("vmware-vdiskmanager", os);
    let sibling = vmrun.parent().map(|d| d.join(&name));
    if let Some(p) = sibling.as_ref().filter(|p| p.is_file()) {
        return Ok(p.clone());
    }
    search_path(&name, path_var).ok_or_else(|| {
        let mut looked: Vec<String> = sibling.iter().map(|p| p.display().to_string()).collect();
        looked.push(format!("$PATH for {name}"));
        VmwareError::VdiskmanagerNotFound { looked }
    })
}

/// Creates `disk` with vmware-vdiskmanager if it does not exist. Returns whether it was created.
pub(crate) fn ensure_disk(vmrun: &Vmrun, disk: &VmdkDisk) -> Result<bool, VmwareError> {
    match std::fs::symlink_metadata(&disk.path) {
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(VmwareError::io("check disk", &disk.path)(e)),
    }
    let size = disk
        .size_mib
        .ok_or_else(|| VmwareError::DiskMissingNoSize(disk.path.clone()))?;
    let path_var = std::env::var_os("PATH");
    let manager = find_vdiskmanager(&vmrun.path, std::env::consts::OS, path_var.as_deref())?;
    exec(&manager, &vdiskmanager_args(&disk.path, size))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_resolution() {
        let st = Path::new("/s/st");
        assert_eq!(resolve_disk(&[], st).unwrap(), None);
        let d = resolve_disk(&["size=512M".parse().unwrap()], st).unwrap().unwrap();
        assert_eq!(
            d,
            VmdkDisk {
                path: st.join("disk.vmdk"),
                size_mib: Some(512)
            }
        );
        let d = resolve_disk(&["file=/d/data,format=vmdk".parse().unwrap()], st)
            .unwrap()
            .unwrap();
        assert_eq!(d.path, Path::new("/d/data"));
        let e = resolve_disk(&["/d/data".parse().unwrap()], st).unwrap_err().to_string();
        assert_eq!(
            e,
            "disk /d/data: VMware needs a VMDK disk (got a name without .vmdk and no format); give it a .vmdk \
             name or the vmdk format"
        );
        let d = resolve_disk(&["rel.vmdk".parse().unwrap()], st).unwrap().unwrap();
        assert_eq!(d.path, std::env::current_dir().unwrap().join("rel.vmdk"));
        let e = resolve_disk(&["a.vmdk".parse().unwrap(), "b.vmdk".parse().unwrap()], st).unwrap_err();
        assert_eq!(
            e.to_string(),
            "VMware runs take at most one extra disk (got 2), as LinuxKit's"
        );
        assert_eq!(
            vdiskmanager_args(Path::new("/s/st/disk.vmdk"), 1024),
            ["-c", "-s", "1024MB", "-a", "lsilogic", "-t", "0", "/s/st/disk.vmdk"]
        );
    }

    #[test]
    fn vdiskmanager_is_found_next_to_vmrun_or_in_path() {
        let dir = tempfile::tempdir().unwrap();
        let vmrun = dir.path().join("vmrun");
        let manager = dir.path().join("vmware-vdiskmanager");
        std::fs::write(&manager, "").unwrap();
        assert_eq!(find_vdiskmanager(&vmrun, "linux", None).unwrap(), manager);
        let empty = tempfile::tempdir().unwrap();
        let lone = empty.path().join("vmrun");
        let e = find_vdiskmanager(&lone, "linux", Some(empty.path().as_os_str())).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "vmware-vdiskmanager not found (looked in {}/vmware-vdiskmanager, $PATH for vmware-vdiskmanager): \
                 it comes with VMware Workstation and Fusion; create the disk yourself or give an existing .vmdk disk",
                empty.path().display()
            )
        );
        assert_eq!(
            find_vdiskmanager(&lone, "linux", Some(dir.path().as_os_str())).unwrap(),
            manager
        );
    }
}
