//! [`QemuConfig`] and its argument vector.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::disk::Disk;
use super::network::Networking;
use crate::accel::Accel;
use crate::firmware::UefiFirmware;
use crate::machine::Arch;
use crate::machine::BootMedia;
use crate::machine::PublishedPort;

/// Where the guest's serial console goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Console {
    /// The terminal: `-nographic` (serial and qemu's monitor multiplexed on stdio, as LinuxKit).
    Stdio,
    /// A unix socket to attach to later (`moby console`), everything also logged to `log`.
    Socket {
        /// The console socket (qemu listens).
        socket: PathBuf,
        /// The console log.
        log: PathBuf,
    },
}

/// Everything the qemu command line is made of. Paths are used as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuConfig {
    /// The qemu system binary (see [`super::find_qemu`]).
    pub qemu: PathBuf,
    /// Guest architecture.
    pub arch: Arch,
    /// Number of vCPUs (`-smp`).
    pub cpus: u32,
    /// Memory in MiB (`-m`).
    pub memory_mib: u64,
    /// Accelerator (see [`crate::accel::choose`]).
    pub accel: Accel,
    /// UEFI firmware, for `--uefi`.
    pub firmware: Option<UefiFirmware>,
    /// What to boot.
    pub boot: BootMedia,
    /// Extra disks (`--disk`), after the boot disk if any.
    pub disks: Vec<Disk>,
    /// Extra CDs, e.g. the userdata ISO (after the boot ISO if any).
    pub cdroms: Vec<PathBuf>,
    /// Networking mode.
    pub networking: Networking,
    /// Published ports (only with [`Networking::User`]; see [`super::check_publish`]).
    pub publish: Vec<PublishedPort>,
    /// A second NIC on a private network: its connection to the network's switch, inherited.
    pub network_nic: Option<SocketNic>,
    /// MAC address of the NIC (kept across runs in the state dir), e.g. `02:42:ac:11:00:02`.
    pub mac: Option<String>,
    /// SMBIOS UUID (`-uuid`), so the guest's `/sys/class/dmi/id/product_uuid` is set.
    pub uuid: Option<String>,
    /// Where qemu writes its pid (`-pidfile`).
    pub pidfile: Option<PathBuf>,
    /// QMP sockets (`-qmp unix:PATH,server=on,wait=off` each). qemu serves one client per
    /// socket, so the `moby run` that owns the VM and other tools (`moby stop`) each get one.
    pub qmp_sockets: Vec<PathBuf>,
    /// Serial console.
    pub console: Console,
    /// Show a graphical display.
    pub gui: bool,
    /// Exit instead of rebooting (`-no-reboot`); LinuxKit leaves it off.
    pub no_reboot: bool,
    /// Start with the vCPUs stopped (`-S`) until QMP `cont`, so that the console can be attached
    /// before the firmware prints anything.
    pub start_paused: bool,
    /// Boot a disk image copy-on-write (`snapshot=on`): the image is shared with other VMs and
    /// never written; the VM's writes to it are discarded when it stops.
    pub boot_snapshot: bool,
    /// Extra `-device` values (`--device`), passed through.
    pub devices: Vec<String>,
}

/// `-kernel`, `-initrd` and `-append` with `root` after the command line.
fn kernel_args(a: &mut Vec<String>, kernel: &Path, initrd: Option<&Path>, cmdline: &str, root: &str) {
    a.extend(["-kernel".into(), kernel.to_string_lossy().into_owned()]);
    if let Some(initrd) = initrd {
        a.extend(["-initrd".into(), initrd.to_string_lossy().into_owned()]);
    }
    let cmdline = if cmdline.is_empty() {
        root.to_string()
    } else {
        format!("{cmdline} {root}")
    };
    a.extend(["-append".into(), cmdline]);
}

/// Escapes a path for qemu's `key=value,...` option syntax (a comma is written twice).
fn opt_path(p: &Path) -> String {
    p.to_string_lossy().replace(',', ",,")
}

/// A NIC whose frames go over a connected socket that qemu inherits (`-netdev socket,fd=N`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketNic {
    /// The socket's descriptor number in qemu (the same as in the process starting it: it is
    /// inherited as it is).
    pub fd: i32,
    /// The NIC's MAC address.
    pub mac: String,
}

impl QemuConfig {
    /// A config with LinuxKit's defaults (1 CPU, 1024 MiB, user networking, console on stdio).
    pub fn new(qemu: PathBuf, arch: Arch, accel: Accel, boot: BootMedia) -> QemuConfig {
        QemuConfig {
            qemu,
            arch,
            cpus: 1,
            memory_mib: 1024,
            accel,
            firmware: None,
            boot,
            disks: Vec::new(),
            cdroms: Vec::new(),
            networking: Networking::User,
            publish: Vec::new(),
            network_nic: None,
            mac: None,
            uuid: None,
            pidfile: None,
            qmp_sockets: Vec::new(),
            console: Console::Stdio,
            gui: false,
            no_reboot: false,
            start_paused: false,
            boot_snapshot: false,
            devices: Vec::new(),
        }
    }

    /// The arguments after the binary, always in the same order for the same config.
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<String> = Vec::new();
        let push = |a: &mut Vec<String>, items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        let accel = self.accel.as_str();
        match self.arch {
            Arch::X86_64 => a.extend(["-machine".into(), format!("q35,accel={accel}")]),
            Arch::Aarch64 => {
                a.extend(["-machine".into(), format!("virt,accel={accel}")]);
                let cpu = if self.accel == Accel::Tcg { "cortex-a57" } else { "host" };
                push(&mut a, &["-cpu", cpu]);
            }
        }
        a.extend([
            "-smp".into(),
            self.cpus.to_string(),
            "-m".into(),
            self.memory_mib.to_string(),
        ]);
        if let Some(u) = &self.uuid {
            a.extend(["-uuid".into(), u.clone()]);
        }
        if let Some(p) = &self.pidfile {
            a.extend(["-pidfile".into(), p.to_string_lossy().into_owned()]);
        }
        push(
            &mut a,
            &[
                "-object",
                "rng-random,id=rng0,filename=/dev/urandom",
                "-device",
                "virtio-rng-pci,rng=rng0",
            ],
        );

        if let Some(fw) = &self.firmware {
            match &fw.vars {
                None if self.arch == Arch::X86_64 => a.extend(["-bios".into(), fw.code.to_string_lossy().into_owned()]),
                _ => a.extend([
                    "-drive".into(),
                    format!("if=pflash,format=raw,unit=0,readonly=on,file={}", opt_path(&fw.code)),
                ]),
            }
            if let Some(v) = &fw.vars {
                a.extend([
                    "-drive".into(),
                    format!("if=pflash,format=raw,unit=1,file={}", opt_path(v)),
                ]);
            }
        }

        // Boot media: kernel arguments, and the boot disk / boot CD in front of the others.
        // (path, format, boot disk, extra drive options)
        let mut disks: Vec<(&Path, Option<&str>, bool, &str)> = Vec::new();
        let mut cds: Vec<(&Path, bool)> = Vec::new();
        match &self.boot {
            BootMedia::Kernel {
                kernel,
                initrd,
                cmdline,
            } => {
                a.extend(["-kernel".into(), kernel.to_string_lossy().into_owned()]);
                if let Some(i) = initrd {
                    a.extend(["-initrd".into(), i.to_string_lossy().into_owned()]);
                }
                a.extend(["-append".into(), cmdline.clone()]);
            }
            BootMedia::Squashfs {
                kernel,
                initrd,
                squashfs,
                cmdline,
            } => {
                kernel_args(&mut a, kernel, initrd.as_deref(), cmdline, "root=/dev/vda");
                // Read-only by nature, and shared by every instance booted from it.
                disks.push((squashfs, Some("raw"), false, ",readonly=on"));
            }
            BootMedia::KernelIso {
                kernel,
                initrd,
                iso,
                cmdline,
            } => {
                kernel_args(&mut a, kernel, Some(initrd), cmdline, "root=/dev/sr0");
                cds.push((iso, false));
            }
            BootMedia::Iso(iso) => cds.push((iso, true)),
            BootMedia::Disk { path, format } => {
                let snapshot = if self.boot_snapshot { ",snapshot=on" } else { "" };
                disks.push((path, format.map(|f| f.qemu_name()), true, snapshot));
            }
        }
        disks.extend(
            self.disks
                .iter()
                .map(|d| (d.path.as_path(), d.format.map(|f| f.qemu_name()), false, "")),
        );
        cds.extend(self.cdroms.iter().map(|c| (c.as_path(), false)));

        for (i, (path, format, boot, extra)) in disks.iter().enumerate() {
            let format = format.map(|f| format!(",format={f}")).unwrap_or_default();
            a.extend([
                "-drive".into(),
                format!("file={}{format}{extra},if=none,id=disk{i}", opt_path(path)),
            ]);
            let bootindex = if *boot { ",bootindex=0" } else { "" };
            a.extend(["-device".into(), format!("virtio-blk-pci,drive=disk{i}{bootindex}")]);
        }
        if !cds.is_empty() {
            push(&mut a, &["-device", "virtio-scsi-pci,id=scsi0"]);
        }
        for (i, (path, boot)) in cds.iter().enumerate() {
            a.extend([
                "-drive".into(),
                format!(
                    "file={},format=raw,if=none,id=cd{i},media=cdrom,readonly=on",
                    opt_path(path)
                ),
            ]);
            let bootindex = if *boot { ",bootindex=0" } else { "" };
            a.extend(["-device".into(), format!("scsi-cd,bus=scsi0.0,drive=cd{i}{bootindex}")]);
        }

        let netdev = match &self.networking {
            Networking::None => None,
            Networking::User => {
                let fwd: String = self
                    .publish
                    .iter()
                    .map(|p| format!(",hostfwd={}::{}-:{}", p.protocol.as_str(), p.host, p.guest))
                    .collect();
                Some(format!("user,id=t0{fwd}"))
            }
            Networking::Tap(ifname) => Some(format!("tap,id=t0,ifname={ifname},script=no,downscript=no")),
            Networking::Bridge(br) => Some(format!("bridge,id=t0,br={br}")),
        };
        match netdev {
            None => push(&mut a, &["-nic", "none"]),
            Some(nd) => {
                let mac = self.mac.as_ref().map(|m| format!(",mac={m}")).unwrap_or_default();
                a.extend([
                    "-device".into(),
                    format!("virtio-net-pci,netdev=t0{mac}"),
                    "-netdev".into(),
                    nd,
                ]);
            }
        }

        if let Some(nic) = &self.network_nic {
            a.extend([
                "-device".into(),
                format!("virtio-net-pci,netdev=n1,mac={}", nic.mac),
                "-netdev".into(),
                format!("socket,id=n1,fd={}", nic.fd),
            ]);
        }

        match &self.console {
            Console::Stdio if !self.gui => push(&mut a, &["-nographic"]),
            Console::Stdio => push(&mut a, &["-serial", "stdio"]),
            Console::Socket { socket, log } => {
                a.extend([
                    "-chardev".into(),
                    format!(
                        "socket,id=con0,path={},server=on,wait=off,logfile={}",
                        opt_path(socket),
                        opt_path(log)
                    ),
                    "-serial".into(),
                    "chardev:con0".into(),
                ]);
            }
        }
        if !self.gui && self.console != Console::Stdio {
            push(&mut a, &["-display", "none", "-monitor", "none"]);
        }
        for q in &self.qmp_sockets {
            a.extend(["-qmp".into(), format!("unix:{},server=on,wait=off", opt_path(q))]);
        }
        if self.start_paused {
            push(&mut a, &["-S"]);
        }
        if self.no_reboot {
            push(&mut a, &["-no-reboot"]);
        }
        for d in &self.devices {
            a.extend(["-device".into(), d.clone()]);
        }

        // Paths that are not UTF-8 are passed lossily (qemu's option syntax is text anyway).
        a.into_iter().map(OsString::from).collect()
    }

    /// The whole command: binary and [`QemuConfig::args`].
    pub fn command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(&self.qemu);
        c.args(self.args());
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::{DiskFormat, Protocol};

    #[track_caller]
    fn check(cfg: &QemuConfig, expect: &str) {
        let got: Vec<String> = cfg.args().iter().map(|s| s.to_string_lossy().into_owned()).collect();
        let want: Vec<&str> = expect.split('\n').map(str::trim).filter(|l| !l.is_empty()).collect();
        // One argument per line in the expectation, for readable diffs.
        assert_eq!(got, want, "\ngot:\n{}", got.join("\n"));
    }

    fn kernel_boot() -> BootMedia {
        BootMedia::Kernel {
            kernel: "/out/lk-kernel".into(),
            initrd: Some("/out/lk-initrd.img".into()),
            cmdline: "console=ttyS0".into(),
        }
    }

    #[test]
    fn kernel_boot_with_userdata_publish_and_qmp() {
        let mut c = QemuConfig::new("qemu-system-x86_64".into(), Arch::X86_64, Accel::Tcg, kernel_boot());
        c.cpus = 2;
        c.memory_mib = 512;
        c.uuid = Some("6c1f4e7a-0000-4000-8000-000000000001".into());
        c.pidfile = Some("/st/qemu.pid".into());
        c.cdroms = vec!["/st/data.iso".into()];
        c.publish = vec![
            PublishedPort {
                host: 8080,
                guest: 80,
                protocol: Protocol::Tcp,
            },
            PublishedPort {
                host: 5353,
                guest: 53,
                protocol: Protocol::Udp,
            },
        ];
        c.mac = Some("02:00:00:00:00:01".into());
        c.qmp_sockets = vec!["/st/qmp.sock".into()];
        check(
            &c,
            "
            -machine
            q35,accel=tcg
            -smp
            2
            -m
            512
            -uuid
            6c1f4e7a-0000-4000-8000-000000000001
            -pidfile
            /st/qemu.pid
            -object
            rng-random,id=rng0,filename=/dev/urandom
            -device
            virtio-rng-pci,rng=rng0
            -kernel
            /out/lk-kernel
            -initrd
            /out/lk-initrd.img
            -append
            console=ttyS0
            -device
            virtio-scsi-pci,id=scsi0
            -drive
            file=/st/data.iso,format=raw,if=none,id=cd0,media=cdrom,readonly=on
            -device
            scsi-cd,bus=scsi0.0,drive=cd0
            -device
            virtio-net-pci,netdev=t0,mac=02:00:00:00:00:01
            -netdev
            user,id=t0,hostfwd=tcp::8080-:80,hostfwd=udp::5353-:53
            -nographic
            -qmp
            unix:/st/qmp.sock,server=on,wait=off
            ",
        );
    }

    #[test]
    fn iso_boot_uefi_detached_with_disks() {
        let boot = BootMedia::Iso("/out/lk-efi.iso".into());
        let mut c = QemuConfig::new("qemu-system-x86_64".into(), Arch::X86_64, Accel::Kvm, boot);
        c.firmware = Some(UefiFirmware {
            code: "/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
            vars: Some("/st/efi-vars.fd".into()),
        });
        c.disks = vec![
            Disk {
                path: "/st/disk.img".into(),
                format: Some(DiskFormat::Qcow2),
                size_mib: Some(1024),
            },
            Disk {
                path: "/data/my,disk.vhd".into(),
                format: Some(DiskFormat::Vhd),
                size_mib: None,
            },
        ];
        c.cdroms = vec!["/st/data.iso".into()];
        c.networking = Networking::None;
        c.console = Console::Socket {
            socket: "/st/console.sock".into(),
            log: "/st/console.log".into(),
        };
        c.no_reboot = true;
        c.start_paused = true;
        c.devices = vec!["usb-host,hostbus=1,hostaddr=2".into()];
        check(
            &c,
            "
            -machine
            q35,accel=kvm
            -smp
            1
            -m
            1024
            -object
            rng-random,id=rng0,filename=/dev/urandom
            -device
            virtio-rng-pci,rng=rng0
            -drive
            if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd
            -drive
            if=pflash,format=raw,unit=1,file=/st/efi-vars.fd
            -drive
            file=/st/disk.img,format=qcow2,if=none,id=disk0
            -device
            virtio-blk-pci,drive=disk0
            -drive
            file=/data/my,,disk.vhd,format=vpc,if=none,id=disk1
            -device
            virtio-blk-pci,drive=disk1
            -device
            virtio-scsi-pci,id=scsi0
            -drive
            file=/out/lk-efi.iso,format=raw,if=none,id=cd0,media=cdrom,readonly=on
            -device
            scsi-cd,bus=scsi0.0,drive=cd0,bootindex=0
            -drive
            file=/st/data.iso,format=raw,if=none,id=cd1,media=cdrom,readonly=on
            -device
            scsi-cd,bus=scsi0.0,drive=cd1
            -nic
            none
            -chardev
            socket,id=con0,path=/st/console.sock,server=on,wait=off,logfile=/st/console.log
            -serial
            chardev:con0
            -display
            none
            -monitor
            none
            -S
            -no-reboot
            -device
            usb-host,hostbus=1,hostaddr=2
            ",
        );
    }

    #[test]
    fn kernel_with_an_iso_root() {
        let boot = BootMedia::KernelIso {
            kernel: "/o/lk-kernel".into(),
            initrd: "/o/lk-boot-initrd.img".into(),
            iso: "/o/lk.iso".into(),
            cmdline: "console=ttyS0".into(),
        };
        let c = QemuConfig::new("q".into(), Arch::X86_64, Accel::Tcg, boot);
        let args: Vec<String> = c.args().iter().map(|s| s.to_string_lossy().into_owned()).collect();
        let at = |flag: &str| args[args.iter().position(|x| x == flag).unwrap() + 1].clone();
        assert_eq!(at("-kernel"), "/o/lk-kernel");
        assert_eq!(at("-initrd"), "/o/lk-boot-initrd.img");
        assert_eq!(at("-append"), "console=ttyS0 root=/dev/sr0");
        assert!(args.contains(&"file=/o/lk.iso,format=raw,if=none,id=cd0,media=cdrom,readonly=on".to_string()));
        assert!(args.contains(&"scsi-cd,bus=scsi0.0,drive=cd0".to_string()), "{args:?}");
    }

    #[test]
    fn disk_and_squashfs_boots_tap_bridge_stdio() {
        let boot = BootMedia::Disk {
            path: "/out/lk.qcow2".into(),
            format: Some(DiskFormat::Qcow2),
        };
        let mut c = QemuConfig::new("q".into(), Arch::X86_64, Accel::Tcg, boot);
        c.networking = Networking::Tap("tap0".into());
        c.console = Console::Stdio;
        c.firmware = Some(UefiFirmware {
            code: "/usr/share/ovmf/OVMF.fd".into(),
            vars: None,
        });
        check(
            &c,
            "
            -machine
            q35,accel=tcg
            -smp
            1
            -m
            1024
            -object
            rng-random,id=rng0,filename=/dev/urandom
            -device
            virtio-rng-pci,rng=rng0
            -bios
            /usr/share/ovmf/OVMF.fd
            -drive
            file=/out/lk.qcow2,format=qcow2,if=none,id=disk0
            -device
            virtio-blk-pci,drive=disk0,bootindex=0
            -device
            virtio-net-pci,netdev=t0
            -netdev
            tap,id=t0,ifname=tap0,script=no,downscript=no
            -nographic
            ",
        );
        // A shared image: copy-on-write; the other disks are written as they are.
        c.boot_snapshot = true;
        c.disks = vec![Disk {
            path: "/st/data.img".into(),
            format: Some(DiskFormat::Raw),
            size_mib: None,
        }];
        let args: Vec<String> = c.args().iter().map(|s| s.to_string_lossy().into_owned()).collect();
        assert!(args.contains(&"file=/out/lk.qcow2,format=qcow2,snapshot=on,if=none,id=disk0".to_string()));
        assert!(args.contains(&"file=/st/data.img,format=raw,if=none,id=disk1".to_string()));

        let boot = BootMedia::Squashfs {
            kernel: "/out/lk-kernel".into(),
            initrd: None,
            squashfs: "/out/lk-squashfs.img".into(),
            cmdline: "console=ttyS0".into(),
        };
        let mut c = QemuConfig::new("q".into(), Arch::X86_64, Accel::Tcg, boot);
        c.networking = Networking::Bridge("br0".into());
        c.gui = true;
        let args: Vec<String> = c.args().iter().map(|s| s.to_string_lossy().into_owned()).collect();
        let tail = &args[args.iter().position(|x| x == "-kernel").unwrap()..];
        assert_eq!(
            tail,
            [
                "-kernel",
                "/out/lk-kernel",
                "-append",
                "console=ttyS0 root=/dev/vda",
                "-drive",
                "file=/out/lk-squashfs.img,format=raw,readonly=on,if=none,id=disk0",
                "-device",
                "virtio-blk-pci,drive=disk0",
                "-device",
                "virtio-net-pci,netdev=t0",
                "-netdev",
                "bridge,id=t0,br=br0",
                "-serial",
                "stdio",
            ]
        );
    }

    #[test]
    fn aarch64_machine_and_cpu() {
        let mut c = QemuConfig::new("qemu-system-aarch64".into(), Arch::Aarch64, Accel::Tcg, kernel_boot());
        c.firmware = Some(UefiFirmware {
            code: "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd".into(),
            vars: None,
        });
        let args: Vec<String> = c.args().iter().map(|s| s.to_string_lossy().into_owned()).collect();
        assert_eq!(&args[..4], ["-machine", "virt,accel=tcg", "-cpu", "cortex-a57"]);
        assert!(args
            .contains(&"if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/qemu-efi-aarch64/QEMU_EFI.fd".into()));
        c.accel = Accel::Kvm;
        assert_eq!(c.args()[3], "host");
    }

    #[test]
    fn same_config_same_args() {
        let c = QemuConfig::new("q".into(), Arch::X86_64, Accel::Tcg, kernel_boot());
        assert_eq!(c.args(), c.clone().args());
        assert_eq!(c.command().get_program(), "q");
    }
}
