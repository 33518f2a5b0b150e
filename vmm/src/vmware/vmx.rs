//! The `.vmx` file: [`VmxConfig`] and its deterministic text.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::VmwareError;

/// What the VM boots from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmxBoot {
    /// A bootable ISO (the `iso-bios` output format), attached as the IDE CD-ROM `ide1:0`.
    Iso(PathBuf),
    /// A bootable VMDK (the `vmdk` output format), attached as the SCSI disk `scsi0:0`.
    Vmdk(PathBuf),
}

/// How the NIC is connected (`ethernet0.connectionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// VMware's NAT network (`vmnet8`), the default.
    #[default]
    Nat,
    /// Bridged to the host's network.
    Bridged,
    /// Host-only network (`vmnet1`).
    HostOnly,
    /// No NIC at all.
    None,
}

impl Network {
    /// The `ethernet0.connectionType` value, `None` for no NIC.
    pub fn connection_type(self) -> Option<&'static str> {
        match self {
            Network::Nat => Some("nat"),
            Network::Bridged => Some("bridged"),
            Network::HostOnly => Some("hostonly"),
            Network::None => None,
        }
    }
}

impl FromStr for Network {
    type Err = VmwareError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "nat" => Ok(Network::Nat),
            "bridged" => Ok(Network::Bridged),
            "hostonly" | "host-only" => Ok(Network::HostOnly),
            "none" => Ok(Network::None),
            _ => Err(VmwareError::UnknownNetwork(s.to_string())),
        }
    }
}

/// A VM's hardware, as written to its `.vmx`. Paths should be absolute: VMware resolves relative
/// ones against the `.vmx` file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmxConfig {
    /// `displayName`, shown by Workstation/Fusion.
    pub display_name: String,
    /// `numvcpus`.
    pub cpus: u32,
    /// `memsize`, in MiB (a multiple of 4).
    pub memory_mib: u64,
    /// The boot image.
    pub boot: VmxBoot,
    /// An extra VMDK disk (LinuxKit's), on the SCSI bus after the boot disk.
    pub data_disk: Option<PathBuf>,
    /// The file the serial port (`ttyS0`) writes to; `None` leaves out the serial port.
    pub console: Option<PathBuf>,
    /// The NIC's connection.
    pub network: Network,
}

/// The `"..."` form of a `.vmx` value: `|` becomes `|7C`, `"` `|22`, and control characters
/// `|XX` (VMware's escape), so that any string stays one quoted value on one line.
pub fn vmx_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '|' || c == '"' || c.is_ascii_control() {
            let _ = write!(out, "|{:02X}", c as u32);
        } else {
            out.push(c);
        }
    }
    out.push('"');
    out
}

fn utf8(path: &Path) -> Result<&str, VmwareError> {
    path.to_str()
        .ok_or_else(|| VmwareError::NonUtf8Path(path.to_path_buf()))
}

/// LinuxKit's PCI layout: bridge 0 and four PCIe root ports with 8 functions each.
const PCI_BRIDGES: &[(&str, &str)] = &[
    ("pciBridge0.present", "TRUE"),
    ("pciBridge4.present", "TRUE"),
    ("pciBridge4.virtualDev", "pcieRootPort"),
    ("pciBridge4.functions", "8"),
    ("pciBridge5.present", "TRUE"),
    ("pciBridge5.virtualDev", "pcieRootPort"),
    ("pciBridge5.functions", "8"),
    ("pciBridge6.present", "TRUE"),
    ("pciBridge6.virtualDev", "pcieRootPort"),
    ("pciBridge6.functions", "8"),
    ("pciBridge7.present", "TRUE"),
    ("pciBridge7.virtualDev", "pcieRootPort"),
    ("pciBridge7.functions", "8"),
];

impl VmxConfig {
    /// Checks what VMware would refuse: no CPUs, memory not a multiple of 4 MiB.
    pub fn validate(&self) -> Result<(), VmwareError> {
        if self.cpus == 0 {
            return Err(VmwareError::BadCpus);
        }
        if self.memory_mib < 4 || !self.memory_mib.is_multiple_of(4) {
            return Err(VmwareError::BadMemory(self.memory_mib));
        }
        Ok(())
    }

    /// The `.vmx` text: one `key = "value"` per line in a fixed order (header, machine, PCI,
    /// SCSI disks, CD-ROM, serial, network). Fails on a path that is not UTF-8 or on values
    /// [`VmxConfig::validate`] refuses.
    pub fn vmx(&self) -> Result<String, VmwareError> {
        self.validate()?;
        let mut lines: Vec<(String, String)> = Vec::new();
        let mut put = |k: &str, v: &str| lines.push((k.to_string(), v.to_string()));
        put(".encoding", "UTF-8");
        put("config.version", "8");
        put("virtualHW.version", "12");
        put("displayName", &self.display_name);
        put("guestOS", "other3xlinux-64");
        put("numvcpus", &self.cpus.to_string());
        put("memsize", &self.memory_mib.to_string());
        put("vmci0.present", "TRUE");
        put("floppy0.present", "FALSE");
        put("msg.autoAnswer", "TRUE");
        for (k, v) in PCI_BRIDGES {
            put(k, v);
        }
        put("scsi0.present", "TRUE");
        put("scsi0.sharedBus", "none");
        put("scsi0.virtualDev", "lsilogic");
        let mut disks = Vec::new();
        if let VmxBoot::Vmdk(path) = &self.boot {
            disks.push(utf8(path)?);
        }
        if let Some(path) = &self.data_disk {
            disks.push(utf8(path)?);
        }
        for (unit, path) in disks.into_iter().enumerate() {
            put(&format!("scsi0:{unit}.present"), "TRUE");
            put(&format!("scsi0:{unit}.fileName"), path);
            put(&format!("scsi0:{unit}.deviceType"), "scsi-hardDisk");
        }
        if let VmxBoot::Iso(path) = &self.boot {
            put("ide1:0.present", "TRUE");
            put("ide1:0.fileName", utf8(path)?);
            put("ide1:0.deviceType", "cdrom-image");
            put("ide1:0.startConnected", "TRUE");
            put("bios.bootOrder", "cdrom");
        }
        if let Some(path) = &self.console {
            put("serial0.present", "TRUE");
            put("serial0.fileType", "file");
            put("serial0.fileName", utf8(path)?);
            put("serial0.startConnected", "TRUE");
            put("serial0.yieldOnMsrRead", "TRUE");
        }
        if let Some(connection) = self.network.connection_type() {
            put("ethernet0.present", "TRUE");
            put("ethernet0.pciSlotNumber", "32");
            put("ethernet0.virtualDev", "e1000");
            put("ethernet0.connectionType", connection);
            put("ethernet0.addressType", "generated");
            put("ethernet0.generatedAddressOffset", "0");
        }
        let mut text = String::new();
        for (k, v) in lines {
            let _ = writeln!(text, "{k} = {}", vmx_quote(&v));
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = r#".encoding = "UTF-8"
config.version = "8"
virtualHW.version = "12"
displayName = "lk"
guestOS = "other3xlinux-64"
numvcpus = "2"
memsize = "2048"
vmci0.present = "TRUE"
floppy0.present = "FALSE"
msg.autoAnswer = "TRUE"
pciBridge0.present = "TRUE"
pciBridge4.present = "TRUE"
pciBridge4.virtualDev = "pcieRootPort"
pciBridge4.functions = "8"
pciBridge5.present = "TRUE"
pciBridge5.virtualDev = "pcieRootPort"
pciBridge5.functions = "8"
pciBridge6.present = "TRUE"
pciBridge6.virtualDev = "pcieRootPort"
pciBridge6.functions = "8"
pciBridge7.present = "TRUE"
pciBridge7.virtualDev = "pcieRootPort"
pciBridge7.functions = "8"
scsi0.present = "TRUE"
scsi0.sharedBus = "none"
scsi0.virtualDev = "lsilogic"
"#;

    const SERIAL_NAT: &str = r#"serial0.present = "TRUE"
serial0.fileType = "file"
serial0.fileName = "/s/lk-state/console.log"
serial0.startConnected = "TRUE"
serial0.yieldOnMsrRead = "TRUE"
ethernet0.present = "TRUE"
ethernet0.pciSlotNumber = "32"
ethernet0.virtualDev = "e1000"
ethernet0.connectionType = "nat"
ethernet0.addressType = "generated"
ethernet0.generatedAddressOffset = "0"
"#;

    fn config(boot: VmxBoot) -> VmxConfig {
        VmxConfig {
            display_name: "lk".into(),
            cpus: 2,
            memory_mib: 2048,
            boot,
            data_disk: None,
            console: Some("/s/lk-state/console.log".into()),
            network: Network::Nat,
        }
    }

    #[test]
    fn iso_boot() {
        let got = config(VmxBoot::Iso("/s/lk.iso".into())).vmx().unwrap();
        let cd = r#"ide1:0.present = "TRUE"
ide1:0.fileName = "/s/lk.iso"
ide1:0.deviceType = "cdrom-image"
ide1:0.startConnected = "TRUE"
bios.bootOrder = "cdrom"
"#;
        assert_eq!(got, format!("{HEADER}{cd}{SERIAL_NAT}"));
    }

    #[test]
    fn iso_boot_with_data_disk_puts_it_on_scsi0_0() {
        let mut c = config(VmxBoot::Iso("/s/lk.iso".into()));
        c.data_disk = Some("/s/lk-state/disk.vmdk".into());
        let got = c.vmx().unwrap();
        let disk = r#"scsi0:0.present = "TRUE"
scsi0:0.fileName = "/s/lk-state/disk.vmdk"
scsi0:0.deviceType = "scsi-hardDisk"
ide1:0.present = "TRUE"
"#;
        assert!(got.contains(disk), "{got}");
        assert!(!got.contains("scsi0:1"), "{got}");
    }

    #[test]
    fn vmdk_boot_with_data_disk() {
        let mut c = config(VmxBoot::Vmdk("/s/lk.vmdk".into()));
        c.data_disk = Some("/s/lk-state/disk.vmdk".into());
        let disks = r#"scsi0:0.present = "TRUE"
scsi0:0.fileName = "/s/lk.vmdk"
scsi0:0.deviceType = "scsi-hardDisk"
scsi0:1.present = "TRUE"
scsi0:1.fileName = "/s/lk-state/disk.vmdk"
scsi0:1.deviceType = "scsi-hardDisk"
"#;
        assert_eq!(c.vmx().unwrap(), format!("{HEADER}{disks}{SERIAL_NAT}"));
    }

    #[test]
    fn vmdk_boot_without_console_or_network() {
        let mut c = config(VmxBoot::Vmdk("/s/lk.vmdk".into()));
        c.console = None;
        c.network = Network::None;
        let disk = r#"scsi0:0.present = "TRUE"
scsi0:0.fileName = "/s/lk.vmdk"
scsi0:0.deviceType = "scsi-hardDisk"
"#;
        assert_eq!(c.vmx().unwrap(), format!("{HEADER}{disk}"));
    }

    #[test]
    fn network_kinds() {
        for (name, want) in [
            ("nat", Some("nat")),
            ("Bridged", Some("bridged")),
            ("hostonly", Some("hostonly")),
            ("host-only", Some("hostonly")),
            ("none", None),
        ] {
            assert_eq!(name.parse::<Network>().unwrap().connection_type(), want, "{name}");
        }
        let e = "vmnet8".parse::<Network>().unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown VMware networking \"vmnet8\": use nat, bridged, hostonly or none"
        );
        let mut c = config(VmxBoot::Vmdk("/s/lk.vmdk".into()));
        c.network = Network::Bridged;
        assert!(c.vmx().unwrap().contains("ethernet0.connectionType = \"bridged\"\n"));
    }

    #[test]
    fn values_are_escaped() {
        assert_eq!(vmx_quote(r#"a"b|c"#), r#""a|22b|7Cc""#);
        assert_eq!(vmx_quote("x\ny"), r#""x|0Ay""#);
        assert_eq!(vmx_quote("C:\\VMs\\lk é.iso"), "\"C:\\VMs\\lk é.iso\"");
        let mut c = config(VmxBoot::Iso("/s/my \"lk\".iso".into()));
        c.display_name = "a|b".into();
        let got = c.vmx().unwrap();
        assert!(got.contains("displayName = \"a|7Cb\"\n"), "{got}");
        assert!(got.contains("ide1:0.fileName = \"/s/my |22lk|22.iso\"\n"), "{got}");
        assert_eq!(got.lines().count(), HEADER.lines().count() + 5 + 11);
    }

    #[test]
    fn refuses_what_vmware_refuses() {
        let mut c = config(VmxBoot::Iso("/s/lk.iso".into()));
        c.memory_mib = 1022;
        assert_eq!(
            c.vmx().unwrap_err().to_string(),
            "memory size 1022 MiB: VMware needs a memory size in MiB that is a multiple of 4 and at least 4"
        );
        c.memory_mib = 0;
        assert!(matches!(c.vmx(), Err(VmwareError::BadMemory(0))));
        c.memory_mib = 1024;
        c.cpus = 0;
        assert!(matches!(c.vmx(), Err(VmwareError::BadCpus)));
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_path_is_an_error() {
        use std::os::unix::ffi::OsStrExt;
        let p = PathBuf::from(std::ffi::OsStr::from_bytes(b"/s/\xffbad.iso"));
        let e = config(VmxBoot::Iso(p.clone())).vmx().unwrap_err();
        assert!(matches!(e, VmwareError::NonUtf8Path(ref q) if *q == p), "{e}");
    }
}
