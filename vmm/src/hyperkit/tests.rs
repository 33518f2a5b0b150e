//! Exact argument vectors and `hyperkit.json` content.

use super::*;
use crate::machine::{detect, BootKind};

fn strs(args: &[OsString]) -> Vec<String> {
    args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
}

/// A kernel+initrd config with LinuxKit's defaults.
fn kernel_config(hyperkit: &str, state_dir: &str) -> HyperkitConfig {
    let boot = BootMedia::Kernel {
        kernel: "/img/lk-kernel".into(),
        initrd: Some("/img/lk-initrd.img".into()),
        cmdline: "console=ttyS0 page_poison=1".into(),
    };
    HyperkitConfig::new(hyperkit.into(), state_dir.into(), boot, None).unwrap()
}

#[test]
fn kernel_initrd_cmdline_defaults() {
    let c = kernel_config("/usr/local/bin/hyperkit", "/img/lk-state");
    assert_eq!(
        strs(&c.args()),
        [
            "-A",
            "-u",
            "-F",
            "/img/lk-state/hyperkit.pid",
            "-c",
            "1",
            "-m",
            "1024M",
            "-s",
            "0:0,hostbridge",
            "-s",
            "31,lpc",
            "-s",
            "1,virtio-sock,guest_cid=3,path=/img/lk-state",
            "-s",
            "2,virtio-rnd",
            "-l",
            "com1,stdio,log=/img/lk-state/console-ring",
            "-f",
            "kexec,/img/lk-kernel,/img/lk-initrd.img,earlyprintk=serial console=ttyS0 page_poison=1",
        ]
    );
}

#[test]
fn vpnkit_with_publish_disks_userdata_and_tty_console() {
    let mut c = kernel_config("hyperkit", "/st");
    c.cpus = 2;
    c.memory_mib = 4096;
    c.uuid = Some("11111111-2222-4333-8444-555555555555".into());
    c.vpnkit = Some(VpnkitNic {
        socket: "/st/vpnkit_eth.sock".into(),
        uuid: Some("0123abcd-89ab-cdef-0123-456789abcdef".into()),
        preferred_ipv4: Some(Ipv4Addr::new(192, 168, 65, 10)),
    });
    c.disks = vec![
        RawDisk {
            path: "/st/disk.raw".into(),
            size_mib: Some(1024),
            driver: DiskDriver::AhciHd,
        },
        RawDisk {
            path: "/data/extra.img".into(),
            size_mib: None,
            driver: DiskDriver::AhciHd,
        },
    ];
    c.cdroms = vec!["/st/data.iso".into()];
    c.vsock_ports = vec![2374, VPNKIT_VSOCK_PORT];
    c.sockets_9p = vec![Socket9p {
        path: "/st/vpnkit_port.sock".into(),
        tag: "port".into(),
    }];
    c.console = Console::Tty;
    assert_eq!(
        strs(&c.args())[4..],
        [
            "-c",
            "2",
            "-m",
            "4096M",
            "-s",
            "0:0,hostbridge",
            "-s",
            "31,lpc",
            "-s",
            "1:0,virtio-vpnkit,path=/st/vpnkit_eth.sock,uuid=0123abcd-89ab-cdef-0123-456789abcdef,preferred_ipv4=192.168.65.10",
            "-U",
            "11111111-2222-4333-8444-555555555555",
            "-s",
            "2:0,ahci-hd,/st/disk.raw",
            "-s",
            "3:0,ahci-hd,/data/extra.img",
            "-s",
            "4,virtio-sock,guest_cid=3,path=/st,guest_forwards=2374;62373",
            "-s",
            "5,ahci-cd,/st/data.iso",
            "-s",
            "6,virtio-rnd",
            "-s",
            "7,virtio-9p,path=/st/vpnkit_port.sock,tag=port",
            "-l",
            "com1,autopty=/st/tty,log=/st/console-ring",
            "-f",
            "kexec,/img/lk-kernel,/img/lk-initrd.img,earlyprintk=serial console=ttyS0 page_poison=1",
        ]
    );
}

#[test]
fn squashfs_root_is_the_first_virtio_disk() {
    let mut c = HyperkitConfig::new(
        "hyperkit".into(),
        "/st".into(),
        BootMedia::Squashfs {
            initrd: None,
            kernel: "/i/lk-kernel".into(),
            squashfs: "/i/lk-squashfs.img".into(),
            cmdline: "console=ttyS0".into(),
        },
        // A kernel boot does without the firmware, even where UEFI was asked for.
        Some(Path::new("/nonexistent/UEFI.fd")),
    )
    .unwrap();
    c.vmnet = true;
    c.disks = vec![RawDisk {
        path: "/st/disk.raw".into(),
        size_mib: Some(512),
        driver: DiskDriver::AhciHd,
    }];
    let args = strs(&c.args());
    assert_eq!(
        args[12..],
        [
            "-s",
            "1:0,virtio-net",
            "-s",
            "2:0,virtio-blk,/i/lk-squashfs.img",
            "-s",
            "3:0,ahci-hd,/st/disk.raw",
            "-s",
            "4,virtio-sock,guest_cid=3,path=/st",
            "-s",
            "5,virtio-rnd",
            "-l",
            "com1,stdio,log=/st/console-ring",
            "-f",
            "kexec,/i/lk-kernel,,earlyprintk=serial console=ttyS0 root=/dev/vda",
        ]
    );
}

#[test]
fn iso_boots_through_firmware() {
    let dir = tempfile::tempdir().unwrap();
    let iso = dir.path().join("lk-efi.iso");
    std::fs::write(&iso, "iso").unwrap();
    let fw = dir.path().join("UEFI.fd");
    let media = detect(&iso, BootKind::Detect, None).unwrap().media;
    let config = |firmware| HyperkitConfig::new("hyperkit".into(), "/st".into(), media.clone(), firmware);
    let e = config(None).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "hyperkit boots an ISO ({}) only through UEFI firmware: boot it with UEFI (and the firmware's \
             path unless it is Docker Desktop's)",
            iso.display()
        )
    );
    let e = config(Some(&fw)).unwrap_err();
    assert!(matches!(e, HyperkitError::FirmwareMissing(ref p) if *p == fw), "{e}");
    std::fs::write(&fw, "fw").unwrap();
    let mut c = config(Some(&fw)).unwrap();
    c.cdroms = vec!["/st/data.iso".into()];
    let args = strs(&c.args());
    let tail: Vec<&str> = args[12..].iter().map(String::as_str).collect();
    let iso_slot = format!("2,ahci-cd,{}", iso.display());
    let bootrom = format!("bootrom,{},,", fw.display());
    assert_eq!(
        tail,
        [
            "-s",
            "1,virtio-sock,guest_cid=3,path=/st",
            "-s",
            &iso_slot,
            "-s",
            "3,ahci-cd,/st/data.iso",
            "-s",
            "4,virtio-rnd",
            "-l",
            "com1,stdio,log=/st/console-ring",
            "-f",
            &bootrom,
        ]
    );
    assert_eq!(c.kernel_cmdline(), None);
    let json = c.state_json(1);
    assert_eq!((json.kernel.as_str(), json.initrd.as_str()), ("", ""));
    assert_eq!(json.bootrom, fw.display().to_string());
    assert_eq!(json.iso, [iso.display().to_string(), "/st/data.iso".into()]);
}

#[test]
fn disk_images_are_not_bootable() {
    let media = BootMedia::Disk {
        path: "/i/lk.qcow2".into(),
        format: None,
    };
    let fw = tempfile::NamedTempFile::new().unwrap();
    assert_eq!(
        HyperkitConfig::new("hyperkit".into(), "/st".into(), media, Some(fw.path()))
            .unwrap_err()
            .to_string(),
        "hyperkit cannot boot /i/lk.qcow2: it boots PREFIX-kernel with PREFIX-initrd.img or PREFIX-squashfs.img, \
         or an ISO through UEFI firmware"
    );
}

#[test]
fn commas_in_paths_are_refused() {
    let mut c = kernel_config("hyperkit", "/st");
    assert!(c.check_paths().is_ok());
    c.disks.push(RawDisk {
        path: "/d/a,b.raw".into(),
        size_mib: None,
        driver: DiskDriver::AhciHd,
    });
    assert_eq!(
        c.check_paths().unwrap_err().to_string(),
        "disk path /d/a,b.raw contains a comma, which hyperkit's option syntax cannot carry: rename or move it"
    );
}

#[test]
fn hyperkit_json_matches_the_go_library() {
    let mut c = kernel_config("/usr/local/bin/hyperkit", "/st");
    c.uuid = Some("11111111-2222-4333-8444-555555555555".into());
    c.vpnkit = Some(VpnkitNic {
        socket: "/v/eth".into(),
        uuid: Some("0123abcd-89ab-cdef-0123-456789abcdef".into()),
        preferred_ipv4: None,
    });
    c.disks = vec![RawDisk {
        path: "/st/disk.raw".into(),
        size_mib: Some(1024),
        driver: DiskDriver::AhciHd,
    }];
    c.vsock_ports = vec![62373];
    let json = serde_json::to_value(c.state_json(4321)).unwrap();
    let args: Vec<String> = strs(&c.args());
    let expected = serde_json::json!({
        "hyperkit": "/usr/local/bin/hyperkit",
        "argv0": "",
        "state_dir": "/st",
        "vpnkit_sock": "/v/eth",
        "vpnkit_uuid": "0123abcd-89ab-cdef-0123-456789abcdef",
        "vpnkit_preferred_ipv4": "",
        "uuid": "11111111-2222-4333-8444-555555555555",
        "disks": [{"path": "/st/disk.raw", "size": 1024, "format": "", "trim": true}],
        "iso": [],
        "vsock": true,
        "vsock_dir": "/st",
        "vsock_ports": [62373],
        "vsock_guest_cid": 3,
        "vmnet": false,
        "9p_sockets": [],
        "kernel": "/img/lk-kernel",
        "initrd": "/img/lk-initrd.img",
        "bootrom": "",
        "cpus": 1,
        "memory": 1024,
        "console": 0,
        "pid": 4321,
        "arguments": args,
        "cmdline": format!("/usr/local/bin/hyperkit {}", args.join(" ")),
    });
    assert_eq!(json, expected);
    // Field order follows the Go struct, so the file reads the same as LinuxKit's.
    let text = serde_json::to_string(&c.state_json(4321)).unwrap();
    assert!(
        text.starts_with("{\"hyperkit\":\"/usr/local/bin/hyperkit\",\"argv0\":\"\",\"state_dir\":\"/st\","),
        "{text}"
    );
    // And it round-trips through the state dir.
    let dir = tempfile::tempdir().unwrap();
    let state = crate::state::StateDir::new(dir.path(), "lk", crate::instance::BackendKind::Hyperkit);
    files::write_json(&state, &c.state_json(4321)).unwrap();
    assert_eq!(files::read_json(&state).unwrap(), Some(c.state_json(4321)));
    assert_eq!(
        state.read_pid().unwrap(),
        Some(4321),
        "the pid comes from hyperkit.json without hyperkit.pid"
    );
}

#[test]
fn finding_hyperkit() {
    let dir = tempfile::tempdir().unwrap();
    let e = find_hyperkit_in(None, Some(dir.path().as_os_str()), &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "hyperkit not found (looked for hyperkit and com.docker.hyperkit in $PATH, /usr/local/bin/hyperkit, \
         /Applications/Docker.app/Contents/Resources/bin/hyperkit, \
         /Applications/Docker.app/Contents/MacOS/com.docker.hyperkit): hyperkit runs only on macOS; install it \
         with `brew install hyperkit` or Docker Desktop, or give its path (elsewhere, run the image under qemu)"
    );
    let docker = dir.path().join("com.docker.hyperkit");
    std::fs::write(&docker, "").unwrap();
    assert_eq!(
        find_hyperkit_in(None, Some(dir.path().as_os_str()), &[]).unwrap(),
        docker
    );
    let fixed = dir.path().join("fixed-hyperkit");
    std::fs::write(&fixed, "").unwrap();
    let fixed_str = fixed.to_str().unwrap();
    assert_eq!(find_hyperkit_in(None, None, &[fixed_str]).unwrap(), fixed);
    assert_eq!(
        find_hyperkit_in(
            Some(Path::new("com.docker.hyperkit")),
            Some(dir.path().as_os_str()),
            &[]
        )
        .unwrap(),
        docker
    );
    let missing = dir.path().join("nope/hyperkit");
    assert_eq!(
        find_hyperkit_in(Some(&missing), None, &[]).unwrap_err().to_string(),
        format!("hyperkit binary {} does not exist: check its path", missing.display())
    );
}

#[test]
fn vsock_ports_parse() {
    assert_eq!(parse_vsock_ports("").unwrap(), Vec::<u32>::new());
    assert_eq!(parse_vsock_ports("2374,2375").unwrap(), [2374, 2375]);
    assert_eq!(
        parse_vsock_ports("2374,x").unwrap_err().to_string(),
        "invalid vsock port list \"2374,x\": use comma separated port numbers, e.g. 2374,2375"
    );
}
