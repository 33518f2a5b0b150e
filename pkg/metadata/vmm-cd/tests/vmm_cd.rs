//! The `cdrom` provider and the ISO 9660 reader on the userdata CD `moby run` attaches
//! (vmm::userdata::write_userdata_iso): label `cidata`, Rock Ridge names, `config`, `meta-data`,
//! `user-data`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use metadata::providers::cdrom::{self, Cdrom};
use metadata::providers::iso9660::Iso;
use metadata::providers::label::read_label;
use metadata::providers::Provider;
use metadata::run::{run, select, Environment};

fn vmm_iso(path: &Path, userdata: &[u8]) {
    vmm::userdata::write_userdata_iso(path, userdata, "instance-1").unwrap();
}

#[test]
fn reader_finds_every_file_and_the_label() {
    let dir = tempfile::tempdir().unwrap();
    let iso_path = dir.path().join("cd.iso");
    let userdata: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect(); // several sectors, binary
    vmm_iso(&iso_path, &userdata);
    assert_eq!(
        read_label(&iso_path).unwrap().as_deref(),
        Some(vmm::userdata::VOLUME_LABEL)
    );
    let mut iso = Iso::open(fs::File::open(&iso_path).unwrap()).unwrap();
    assert_eq!(iso.label, "cidata");
    assert_eq!(iso.read_file("user-data").unwrap().unwrap(), userdata);
    assert_eq!(iso.read_file("config").unwrap().unwrap(), userdata);
    assert_eq!(
        iso.read_file("meta-data").unwrap().unwrap(),
        b"instance-id: instance-1\nlocal-hostname: instance-1\n"
    );
    assert_eq!(
        iso.read_file("USER_DAT").unwrap(),
        None,
        "Rock Ridge names win over ISO names"
    );
}

#[test]
fn whole_run_from_a_labelled_disk_and_a_cd_drive() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for d in ["dev", "sys/class/block/vdb", "tmp"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    let json = r#"{"ssh":{"entries":{"authorized_keys":{"perm":"0600","content":"ssh-ed25519 AAAA k\n"}}}}"#;
    vmm_iso(&root.join("dev/vdb"), json.as_bytes());
    vmm_iso(&root.join("dev/sr0"), b"the cd drive's");
    let env = Environment {
        cdrom: cdrom::Paths {
            dev: root.join("dev"),
            sys_block: root.join("sys/class/block"),
            mount_root: root.join("tmp"),
        },
        fw_cfg_root: root.join("no-fw-cfg"),
        ..Environment::default()
    };
    assert_eq!(
        cdrom::list_devices(&env.cdrom),
        [root.join("dev/vdb"), root.join("dev/sr0")]
    );
    let config = root.join("run/config");
    let report = run(select(&["qemu".into(), "cdrom".into()], &env).unwrap(), &config).unwrap();
    assert_eq!(
        report.provider,
        Some(format!("CDROM {}", root.join("dev/vdb").display()))
    );
    assert_eq!(fs::read_to_string(config.join("userdata")).unwrap(), json);
    let keys = config.join("ssh/authorized_keys");
    assert_eq!(fs::read_to_string(&keys).unwrap(), "ssh-ed25519 AAAA k\n");
    assert_eq!(fs::metadata(&keys).unwrap().permissions().mode() & 0o777, 0o600);

    let mut drive = Cdrom::new(root.join("dev/sr0"), root.join("tmp"));
    assert!(drive.probe());
    assert_eq!(drive.extract(&config).unwrap().unwrap(), b"the cd drive's");
}

#[test]
fn corrupt_vmm_images_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let iso_path = dir.path().join("cd.iso");
    vmm_iso(&iso_path, b"{\"a\":{\"content\":\"b\"}}");
    let good = fs::read(&iso_path).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..2000 {
        let mut image = good.clone();
        for _ in 0..=(next() % 6) {
            let at = 16 * 2048 + (next() as usize % (8 * 2048));
            image[at] = next() as u8;
        }
        if let Ok(mut iso) = Iso::open(std::io::Cursor::new(image)) {
            for path in ["user-data", "config", "meta-data"] {
                let _ = iso.read_file(path);
            }
        }
    }
}
