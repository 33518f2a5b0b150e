//! The providers and the whole run against fakes: a local HTTP server for GCP, a fake fw_cfg
//! sysfs tree, userdata CDs made with genisoimage in a fake /dev (laid out like the one `moby run`
//! attaches; the `vmm-cd` crate beside this one tests vmm's own CD).

// The whole file is test code: with `cfg(test)` on the crate, clippy.toml's allow-unwrap-in-tests
// and allow-expect-in-tests cover its helper functions too (clippy 1.95 counts test functions and
// `cfg(test)` items as tests, not integration test crates).
#![cfg(test)]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use metadata::providers::cdrom::{self, Cdrom};
use metadata::providers::ec2::{Ec2, Flavor};
use metadata::providers::fwcfg::{FwCfg, ENTRY};
use metadata::providers::gcp::Gcp;
use metadata::providers::iso9660::Iso;
use metadata::providers::Provider;
use metadata::run::{run, select, Environment, Report};

const JSON_USERDATA: &str = r#"{"ssh":{"entries":{"authorized_keys":{"perm":"0600","content":"ssh-ed25519 AAAAuser me@laptop\n"}}},"hostname":{"content":"from-userdata"}}"#;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let f = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        for d in ["dev", "sys/class/block", "tmp", "fw_cfg"] {
            fs::create_dir_all(f.path(d)).unwrap();
        }
        f
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn config(&self) -> PathBuf {
        self.path("run/config")
    }

    fn env(&self) -> Environment {
        let quick = metadata::http::Retry {
            timeout: Duration::from_millis(500),
            attempts: 1,
            delay: Duration::ZERO,
        };
        let mut gcp = Gcp::with_base("http://127.0.0.1:9/computeMetadata/v1/");
        gcp.retry = quick;
        let mut aws = Ec2::with_base(Flavor::Aws, "http://127.0.0.1:9/latest/");
        aws.retry = quick;
        let mut openstack = Ec2::with_base(Flavor::OpenStack, "http://127.0.0.1:9/latest/");
        openstack.retry = quick;
        Environment {
            cdrom: cdrom::Paths {
                dev: self.path("dev"),
                sys_block: self.path("sys/class/block"),
                mount_root: self.path("tmp"),
            },
            fw_cfg_root: self.path("fw_cfg"),
            gcp,
            aws,
            openstack,
        }
    }

    fn run(&self, names: &[&str], env: &Environment) -> Report {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        run(select(&names, env).unwrap(), &self.config()).unwrap()
    }

    /// A block device in the fake /dev (and listed in the fake sysfs).
    fn add_block_device(&self, name: &str, image: &Path) {
        fs::copy(image, self.path("dev").join(name)).unwrap();
        fs::create_dir(self.path("sys/class/block").join(name)).unwrap();
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.config().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    fn mode(&self, rel: &str) -> u32 {
        fs::metadata(self.config().join(rel)).unwrap().permissions().mode() & 0o7777
    }
}

/// A userdata CD laid out like `moby run`'s (see support::cidata_iso).
fn cidata_iso(path: &Path, userdata: &[u8]) {
    support::cidata_iso(path, std::str::from_utf8(userdata).unwrap());
}

// --- GCP ----------------------------------------------------------------------------------

#[test]
fn gcp_hostname_ssh_keys_and_userdata() {
    let f = Fixture::new();
    let server = support::gcp_server(&[
        ("instance/hostname", "vm-1.c.project.internal"),
        (
            "project/attributes/ssh-keys",
            "alice:ssh-rsa AAAAalice alice@host\nbob:ssh-ed25519 AAAAbob bob\nno colon line\n",
        ),
        (
            "instance/attributes/user-data",
            r#"{"etc":{"entries":{"motd":{"content":"hello from gcp\n"}}}}"#,
        ),
    ]);
    let mut env = f.env();
    env.gcp = Gcp::with_base(&format!("{}/computeMetadata/v1/", server.url));
    let report = f.run(&["gcp"], &env);
    assert_eq!(report.provider.as_deref(), Some("GCP"));
    assert_eq!(f.read("provider"), "GCP");
    assert_eq!(f.read("hostname"), "vm-1.c.project.internal");
    assert_eq!(f.mode("hostname"), 0o644);
    assert_eq!(report.hostname.as_deref(), Some("vm-1.c.project.internal"));
    assert_eq!(
        f.read("ssh/authorized_keys"),
        "ssh-rsa AAAAalice alice@host\nssh-ed25519 AAAAbob bob\n"
    );
    assert_eq!(f.mode("ssh/authorized_keys"), 0o600);
    assert_eq!(f.mode("ssh"), 0o755);
    assert_eq!(f.read("etc/motd"), "hello from gcp\n");
    assert!(f.read("userdata").starts_with("{\"etc\""));
    let seen = server.seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|s| s.header("Metadata-Flavor") == Some("Google")),
        "{seen:?}"
    );
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/computeMetadata/v1/instance/hostname",
            "/computeMetadata/v1/instance/hostname",
            "/computeMetadata/v1/project/attributes/ssh-keys",
            "/computeMetadata/v1/instance/attributes/user-data",
        ]
    );
}

#[test]
fn gcp_without_userdata_or_keys_still_writes_hostname_and_provider() {
    let f = Fixture::new();
    let server = support::gcp_server(&[("instance/hostname", "bare")]);
    let mut env = f.env();
    env.gcp = Gcp::with_base(&format!("{}/computeMetadata/v1/", server.url));
    let report = f.run(&["gcp"], &env);
    assert_eq!(report.provider.as_deref(), Some("GCP"));
    assert!(!report.userdata);
    assert_eq!(f.read("hostname"), "bare");
    assert!(!f.config().join("userdata").exists());
    assert!(!f.config().join("ssh").exists(), "no keys: no ssh directory");
    // A 404 is an answer: no retries.
    assert_eq!(server.seen.lock().unwrap().len(), 4);
}

#[test]
fn gcp_absent_is_not_found_quickly_and_falls_through_to_the_next_round() {
    let f = Fixture::new();
    // Nothing listens on the GCP address; a userdata CD is there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/computeMetadata/v1/", listener.local_addr().unwrap());
    drop(listener);
    let mut env = f.env();
    env.gcp = Gcp::with_base(&dead);
    env.gcp.retry.delay = Duration::from_millis(50);
    cidata_iso(&f.path("cd.iso"), b"plain userdata\n");
    fs::copy(f.path("cd.iso"), f.path("dev/sr0")).unwrap();
    let start = Instant::now();
    let report = f.run(&["cdrom", "gcp"], &env);
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
    let device = f.path("dev/sr0");
    assert_eq!(report.provider, Some(format!("CDROM {}", device.display())));
    assert_eq!(f.read("userdata"), "plain userdata\n");
}

#[test]
fn gcp_silent_server_is_bounded_by_timeout_and_attempts() {
    let f = Fixture::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut env = f.env();
    env.gcp = Gcp::with_base(&format!(
        "http://{}/computeMetadata/v1/",
        listener.local_addr().unwrap()
    ));
    env.gcp.retry = metadata::http::Retry {
        timeout: Duration::from_millis(300),
        attempts: 2,
        delay: Duration::from_millis(100),
    };
    let start = Instant::now();
    let report = f.run(&["gcp"], &env);
    let took = start.elapsed();
    assert_eq!(report.provider, None);
    assert!(
        took >= Duration::from_millis(650) && took < Duration::from_secs(3),
        "took {took:?}"
    );
    assert!(
        f.config().is_dir(),
        "the config directory is made even when nothing is found"
    );
    assert_eq!(fs::read_dir(f.config()).unwrap().count(), 0);
    drop(listener);
}

// --- EC2-style: aws, openstack ------------------------------------------------------------

const EC2_ROUTES: [(&str, &str); 9] = [
    ("meta-data/hostname", "ip-10-0-0-5.ec2.internal"),
    ("meta-data/public-ipv4", "203.0.113.7"),
    ("meta-data/local-ipv4", "10.0.0.5"),
    ("meta-data/placement/availability-zone", "eu-west-1a"),
    ("meta-data/instance-type", "t3.micro"),
    ("meta-data/instance-id", "i-0123456789abcdef0"),
    // no local-hostname: logged and skipped
    ("meta-data/public-keys/0/openssh-key", "ssh-ed25519 AAAAec2 ec2-key\n"),
    ("user-data", "#!/bin/sh\necho not json\n"),
    ("meta-data/unused", "x"),
];

fn ec2_checks(f: &Fixture, report: &Report, provider: &str) {
    assert_eq!(report.provider.as_deref(), Some(provider));
    assert_eq!(f.read("provider"), provider);
    assert_eq!(f.read("hostname"), "ip-10-0-0-5.ec2.internal");
    assert_eq!(f.read("public_ipv4"), "203.0.113.7");
    assert_eq!(f.read("local_ipv4"), "10.0.0.5");
    assert_eq!(f.read("availability_zone"), "eu-west-1a");
    assert_eq!(f.read("instance_type"), "t3.micro");
    assert_eq!(f.read("instance_id"), "i-0123456789abcdef0");
    assert!(!f.config().join("local_hostname").exists());
    assert_eq!(f.read("ssh/authorized_keys"), "ssh-ed25519 AAAAec2 ec2-key\n");
    assert_eq!(f.mode("ssh/authorized_keys"), 0o600);
    assert_eq!(f.read("userdata"), "#!/bin/sh\necho not json\n");
}

#[test]
fn aws_with_imdsv2_token() {
    let f = Fixture::new();
    let server = support::ec2_server(&EC2_ROUTES, Some("TOKEN123"));
    let mut env = f.env();
    env.aws = Ec2::with_base(Flavor::Aws, &format!("{}/latest/", server.url));
    let report = f.run(&["aws"], &env);
    ec2_checks(&f, &report, "AWS");
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen[0].method, "PUT");
    assert_eq!(seen[0].path, "/latest/api/token");
    assert_eq!(seen[0].header("X-aws-ec2-metadata-token-ttl-seconds"), Some("21600"));
    assert!(
        seen[1..]
            .iter()
            .all(|s| s.method == "GET" && s.header("X-aws-ec2-metadata-token") == Some("TOKEN123")),
        "{seen:#?}"
    );
}

#[test]
fn aws_imdsv1_and_openstack_without_token() {
    let f = Fixture::new();
    let server = support::ec2_server(&EC2_ROUTES, None);
    let mut env = f.env();
    env.aws = Ec2::with_base(Flavor::Aws, &format!("{}/latest/", server.url));
    let report = f.run(&["aws"], &env);
    ec2_checks(&f, &report, "AWS");
    assert!(server
        .seen
        .lock()
        .unwrap()
        .iter()
        .all(|s| s.header("X-aws-ec2-metadata-token").is_none()));

    let g = Fixture::new();
    let server = support::ec2_server(&EC2_ROUTES, None);
    let mut env = g.env();
    env.openstack = Ec2::with_base(Flavor::OpenStack, &format!("{}/latest", server.url));
    // Nothing answers for aws or gcp (the fixture's dead address): openstack is found.
    let report = g.run(&["aws", "gcp", "openstack"], &env);
    ec2_checks(&g, &report, "openstack");
    assert!(
        server.seen.lock().unwrap().iter().all(|s| s.method == "GET"),
        "no token request for openstack"
    );
}

#[test]
fn ec2_existing_ssh_directory_is_used() {
    let f = Fixture::new();
    fs::create_dir_all(f.config().join("ssh")).unwrap();
    let server = support::ec2_server(&EC2_ROUTES, None);
    let mut env = f.env();
    env.openstack = Ec2::with_base(Flavor::OpenStack, &format!("{}/latest/", server.url));
    f.run(&["openstack"], &env);
    assert_eq!(f.read("ssh/authorized_keys"), "ssh-ed25519 AAAAec2 ec2-key\n");
}

// --- fw_cfg -------------------------------------------------------------------------------

#[test]
fn qemu_fw_cfg_from_a_fake_sysfs() {
    let f = Fixture::new();
    let entry = f.path("fw_cfg/by_name").join(ENTRY);
    fs::create_dir_all(&entry).unwrap();
    fs::write(entry.join("raw"), JSON_USERDATA).unwrap();
    fs::write(entry.join("name"), ENTRY).unwrap();
    let report = f.run(&["qemu"], &f.env());
    assert_eq!(report.provider.as_deref(), Some("QEMU fw_cfg"));
    assert_eq!(f.read("userdata"), JSON_USERDATA);
    assert_eq!(f.read("ssh/authorized_keys"), "ssh-ed25519 AAAAuser me@laptop\n");
    assert_eq!(f.mode("ssh/authorized_keys"), 0o600);
    assert_eq!(report.hostname.as_deref(), Some("from-userdata"));
}

#[test]
fn qemu_fw_cfg_missing_driver_or_entry() {
    let f = Fixture::new();
    let mut missing = FwCfg::with_root(f.path("no-such-dir"));
    assert!(!missing.probe(), "no sysfs directory: the module is not loaded");
    let mut no_entry = FwCfg::with_root(f.path("fw_cfg"));
    assert!(!no_entry.probe());
    let raw = no_entry.raw_path();
    assert_eq!(
        raw,
        f.path("fw_cfg/by_name/opt/com.docker.linuxkit/userdata/raw"),
        "the path QEMU's -fw_cfg name=opt/com.docker.linuxkit/userdata shows"
    );
    fs::create_dir_all(raw.parent().unwrap()).unwrap();
    fs::write(&raw, "").unwrap();
    assert!(!no_entry.probe(), "an empty entry is no userdata");
}

// --- cdrom --------------------------------------------------------------------------------

#[test]
fn cdrom_reads_a_cidata_cd() {
    let f = Fixture::new();
    cidata_iso(&f.path("cd.iso"), JSON_USERDATA.as_bytes());
    fs::copy(f.path("cd.iso"), f.path("dev/sr0")).unwrap();
    let report = f.run(&["cdrom"], &f.env());
    assert_eq!(report.provider, Some(format!("CDROM {}", f.path("dev/sr0").display())));
    assert_eq!(f.read("provider"), format!("CDROM {}", f.path("dev/sr0").display()));
    assert_eq!(f.read("userdata"), JSON_USERDATA);
    assert_eq!(f.read("ssh/authorized_keys"), "ssh-ed25519 AAAAuser me@laptop\n");
    assert_eq!(f.mode("ssh/authorized_keys"), 0o600);
    assert_eq!(f.read("hostname"), "from-userdata");
    assert_eq!(
        fs::read_dir(f.path("tmp")).unwrap().count(),
        0,
        "mount points are removed"
    );
}

#[test]
fn iso_reader_on_a_cidata_cd() {
    let f = Fixture::new();
    let userdata = vec![b'x'; 5000]; // more than one sector
    cidata_iso(&f.path("cd.iso"), &userdata);
    let mut iso = Iso::open(fs::File::open(f.path("cd.iso")).unwrap()).unwrap();
    assert_eq!(iso.label, "cidata");
    assert_eq!(iso.read_file("user-data").unwrap().unwrap(), userdata);
    assert_eq!(iso.read_file("/config").unwrap().unwrap(), userdata);
    assert_eq!(
        iso.read_file("meta-data").unwrap().unwrap(),
        b"instance-id: instance-1\nlocal-hostname: instance-1\n"
    );
    assert_eq!(iso.read_file("nothing").unwrap(), None);
    assert_eq!(iso.read_file("user-data/below").unwrap(), None);
    assert!(Iso::open(std::io::Cursor::new(vec![0u8; 40000])).is_err());
}

#[test]
fn iso_reader_never_panics_on_corrupt_images() {
    let f = Fixture::new();
    cidata_iso(&f.path("cd.iso"), JSON_USERDATA.as_bytes());
    let good = fs::read(f.path("cd.iso")).unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut opened = 0;
    for round in 0..3000 {
        let mut image = good.clone();
        // Corrupt 1 to 8 bytes in the descriptors, the root directory and the first file.
        for _ in 0..=(next() % 8) {
            let at = 16 * 2048 + (next() as usize % (6 * 2048));
            image[at] = next() as u8;
        }
        if round % 10 == 0 {
            image.truncate(next() as usize % image.len());
        }
        if let Ok(mut iso) = Iso::open(std::io::Cursor::new(image)) {
            opened += 1;
            for path in ["user-data", "config", "openstack/latest/user_data"] {
                let _ = iso.read_file(path);
            }
        }
    }
    assert!(opened > 1000, "most corruptions still open: {opened}");
}

#[test]
fn labelled_disks_come_first_and_loop_devices_are_ignored() {
    let f = Fixture::new();
    cidata_iso(&f.path("a.iso"), b"from the labelled disk");
    cidata_iso(&f.path("b.iso"), b"from the cd drive");
    f.add_block_device("vdb", &f.path("a.iso"));
    f.add_block_device("loop0", &f.path("a.iso"));
    fs::write(f.path("unlabelled"), vec![0u8; 40000]).unwrap();
    f.add_block_device("vda", &f.path("unlabelled"));
    fs::write(f.path("dev/sr0"), fs::read(f.path("b.iso")).unwrap()).unwrap();
    fs::write(f.path("dev/srx"), b"not a cd drive name").unwrap();
    let devices = cdrom::list_devices(&f.env().cdrom);
    assert_eq!(devices, [f.path("dev/vdb"), f.path("dev/sr0")]);
    f.run(&["cdrom"], &f.env());
    assert_eq!(f.read("userdata"), "from the labelled disk");
}

#[test]
fn cdrom_skips_devices_without_userdata() {
    let f = Fixture::new();
    fs::write(f.path("dev/sr0"), vec![0u8; 64 * 1024]).unwrap(); // no filesystem
                                                                 // An ISO with only meta-data: no userdata file.
    support::genisoimage(&f.path("empty.iso"), &["-r", "-V", "cidata"], &[("meta-data", "x")]);
    fs::copy(f.path("empty.iso"), f.path("dev/sr1")).unwrap();
    let mut no_userdata = Cdrom::new(f.path("dev/sr1"), f.path("tmp"));
    assert!(!no_userdata.probe());
    let err = no_userdata.extract(&f.config()).unwrap_err();
    assert!(err.contains("no userdata file found"), "{err}");
    cidata_iso(&f.path("good.iso"), b"found it");
    fs::copy(f.path("good.iso"), f.path("dev/sr2")).unwrap();
    let mut bad = Cdrom::new(f.path("dev/sr0"), f.path("tmp"));
    assert!(!bad.probe());
    let err = bad.extract(&f.config()).unwrap_err();
    assert!(err.contains("sr0") && err.contains("ISO 9660"), "{err}");
    let report = f.run(&["cdrom"], &f.env());
    assert_eq!(report.provider, Some(format!("CDROM {}", f.path("dev/sr2").display())));
    assert_eq!(f.read("userdata"), "found it");
}

/// Name, genisoimage arguments, files, the userdata expected.
type IsoCase = (
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[test]
fn genisoimage_rock_ridge_joliet_plain_and_config_drive() {
    let f = Fixture::new();
    let cases: [IsoCase; 4] = [
        (
            "rr",
            &["-r", "-V", "cidata"],
            &[("user-data", "rock ridge"), ("meta-data", "m")],
            "rock ridge",
        ),
        ("joliet", &["-J", "-V", "CIDATA"], &[("user-data", "joliet")], "joliet"),
        (
            "plain",
            &["-V", "cidata"],
            &[("config", "plain iso names")],
            "plain iso names",
        ),
        (
            "configdrive",
            &["-r", "-V", "config-2"],
            &[
                ("openstack/latest/user_data", "openstack"),
                ("openstack/latest/meta_data.json", "{}"),
            ],
            "openstack",
        ),
    ];
    for (name, args, files, expected) in cases {
        let iso = f.path(&format!("{name}.iso"));
        support::genisoimage(&iso, args, files);
        let mut cd = Cdrom::new(&iso, f.path("tmp"));
        assert!(cd.probe(), "{name}");
        assert_eq!(cd.extract(&f.config()).unwrap().unwrap(), expected.as_bytes(), "{name}");
    }
    // Labelled disks are found by label: config-2 and CIDATA too.
    f.add_block_device("vdc", &f.path("configdrive.iso"));
    f.add_block_device("vdd", &f.path("joliet.iso"));
    assert_eq!(
        cdrom::list_devices(&f.env().cdrom),
        [f.path("dev/vdc"), f.path("dev/vdd")]
    );
}

// --- selection and rounds ----------------------------------------------------------------

#[test]
fn rounds_network_then_local_then_file() {
    let f = Fixture::new();
    fs::write(f.path("userdata.txt"), "from a file").unwrap();
    let entry = f.path("fw_cfg/by_name").join(ENTRY);
    fs::create_dir_all(&entry).unwrap();
    fs::write(entry.join("raw"), "from fw_cfg").unwrap();
    let file_arg = format!("file={}", f.path("userdata.txt").display());
    let names = vec![file_arg.clone(), "qemu".to_string(), "gcp".to_string()];
    let order: Vec<String> = select(&names, &f.env())
        .unwrap()
        .iter()
        .map(|s| s.provider.name())
        .collect();
    assert_eq!(
        order,
        ["GCP", "QEMU fw_cfg", &f.path("userdata.txt").display().to_string()]
    );
    let report = f.run(&[&file_arg, "qemu"], &f.env());
    assert_eq!(report.provider.as_deref(), Some("QEMU fw_cfg"), "local before file");
    assert_eq!(f.read("userdata"), "from fw_cfg");

    let g = Fixture::new();
    fs::write(g.path("userdata.txt"), "from a file").unwrap();
    let file_arg = format!("file={}", g.path("userdata.txt").display());
    let report = g.run(&["qemu", &file_arg], &g.env());
    assert_eq!(report.provider, Some(g.path("userdata.txt").display().to_string()));
    assert_eq!(g.read("provider"), g.path("userdata.txt").display().to_string());
    assert_eq!(g.read("userdata"), "from a file");
}

#[test]
fn unknown_providers_are_refused_and_unimplemented_ones_skipped() {
    let f = Fixture::new();
    let err = select(&["azure".to_string()], &f.env()).err().unwrap();
    assert!(err.contains("Unrecognised metadata provider: azure"), "{err}");
    let selected = select(&["vultr".to_string(), "hetzner".to_string()], &f.env()).unwrap();
    assert!(selected.is_empty());
    let report = f.run(&["vmware"], &f.env());
    assert_eq!(report.provider, None);
}

#[test]
fn default_list_is_linuxkits_with_qemu_before_cdrom() {
    let f = Fixture::new();
    cidata_iso(&f.path("cd.iso"), b"cd");
    fs::copy(f.path("cd.iso"), f.path("dev/sr0")).unwrap();
    let order: Vec<String> = select(&[], &f.env())
        .unwrap()
        .iter()
        .map(|s| s.provider.name())
        .collect();
    assert_eq!(
        order,
        [
            "AWS".to_string(),
            "GCP".to_string(),
            "openstack".to_string(),
            "QEMU fw_cfg".to_string(),
            format!("CDROM {}", f.path("dev/sr0").display())
        ]
    );
}
