//! `qemu`: userdata passed with QEMU's firmware configuration device,
//! `-fw_cfg name=opt/com.docker.linuxkit/userdata,file=PATH` (LinuxKit has no such provider; the
//! name follows QEMU's `opt/REVERSE.DOMAIN/NAME` rule for user entries).
//!
//! The guest sees it as `/sys/firmware/qemu_fw_cfg/by_name/opt/com.docker.linuxkit/userdata/raw`,
//! which needs the kernel's `qemu_fw_cfg` driver (`CONFIG_FW_CFG_SYSFS`): built in, or loaded with
//! `modprobe qemu_fw_cfg` before `metadata` runs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::Provider;

/// Where the kernel shows fw_cfg.
pub const DEFAULT_ROOT: &str = "/sys/firmware/qemu_fw_cfg";
/// The fw_cfg entry holding the userdata.
pub const ENTRY: &str = "opt/com.docker.linuxkit/userdata";

/// The `qemu` provider.
#[derive(Debug, Clone)]
pub struct FwCfg {
    root: PathBuf,
    userdata: Option<Vec<u8>>,
}

impl Default for FwCfg {
    fn default() -> Self {
        FwCfg::with_root(DEFAULT_ROOT)
    }
}

impl FwCfg {
    /// The provider reading fw_cfg's sysfs tree at `root` (tests use a fake one).
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        FwCfg {
            root: root.into(),
            userdata: None,
        }
    }

    /// The file holding the entry's contents.
    pub fn raw_path(&self) -> PathBuf {
        self.root.join("by_name").join(ENTRY).join("raw")
    }
}

impl Provider for FwCfg {
    fn name(&self) -> String {
        "QEMU fw_cfg".into()
    }

    fn probe(&mut self) -> bool {
        if !self.root.is_dir() {
            info!(
                "qemu: {} does not exist: not QEMU, or the kernel's qemu_fw_cfg driver is not loaded \
                 (CONFIG_FW_CFG_SYSFS: build it in or `modprobe qemu_fw_cfg` before metadata runs)",
                self.root.display()
            );
            return false;
        }
        let raw = self.raw_path();
        match fs::read(&raw) {
            Ok(data) if data.is_empty() => {
                info!("qemu: {} is empty", raw.display());
                false
            }
            Ok(data) => {
                self.userdata = Some(data);
                true
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                debug!("qemu: no fw_cfg entry {ENTRY} ({} missing)", raw.display());
                false
            }
            Err(e) => {
                info!("qemu: cannot read {}: {e}", raw.display());
                false
            }
        }
    }

    fn extract(&mut self, _config: &Path) -> Result<Option<Vec<u8>>, String> {
        Ok(self.userdata.take())
    }
}
