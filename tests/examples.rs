//! The examples, built from this repository's packages (`moby pkg build`, offline from the deb
//! cache that `scripts/setup.sh` fills) and booted under qemu (TCG) with our Rust init: banner,
//! onboot output, services, DHCP, userdata, an SSH login, persistent storage, and a clean
//! power-down through QMP that runs the onshutdown containers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::support::vm::Vm;
use crate::support::{assert_pkg_unit_tests_pass, moby_bin};

/// Every package folder of the repository.
const PACKAGES: [&str; 12] = [
    "kernel",
    "pkg/init",
    "pkg/ca-certificates",
    "pkg/getty",
    "pkg/sysctl",
    "pkg/dhcpcd",
    "pkg/metadata",
    "pkg/sshd",
    "pkg/poweroff",
    "pkg/format",
    "pkg/mount",
    "pkg/bootloader",
];

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn moby(cache: &Path) -> Command {
    let mut c = Command::new(moby_bin());
    c.current_dir(repo()).env("MOBY_CACHE", cache);
    c
}

fn ok(o: Output, what: &str) -> Output {
    assert!(o.status.success(), "{what}: {}", String::from_utf8_lossy(&o.stderr));
    o
}

/// The package images, built once per test run into a private cache.
pub fn package_cache() -> &'static Path {
    static CACHE: OnceLock<PathBuf> = OnceLock::new();
    CACHE.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("moby-examples-")
            .tempdir()
            .unwrap()
            .keep();
        let cache = dir.join("cache");
        ok(
            moby(&cache).args(["pkg", "build"]).args(PACKAGES).output().unwrap(),
            "moby pkg build",
        );
        cache
    })
}

/// Builds `examples/NAME.yml` into a fresh directory; returns the output prefix.
fn build_example(name: &str) -> (tempfile::TempDir, PathBuf) {
    let out = tempfile::tempdir().unwrap();
    let spec = repo().join(format!("examples/{name}.yml"));
    ok(
        moby(package_cache())
            .args(["build", "--dir"])
            .arg(out.path())
            .arg(&spec)
            .output()
            .unwrap(),
        &format!("moby build {name}"),
    );
    let prefix = out.path().join(name);
    (out, prefix)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

/// pkg/metadata's own unit tests (providers against local HTTP servers and ISO images, the
/// /run/config JSON expansion), run from here so that CI runs them.
#[test]
fn pkg_metadata_unit_tests_pass() {
    assert_pkg_unit_tests_pass("metadata");
}

#[test]
fn all_packages_build_reproducibly() {
    let first = package_cache();
    let second = tempfile::tempdir().unwrap();
    ok(
        moby(&second.path().join("cache"))
            .args(["pkg", "build", "--force"])
            .args(PACKAGES)
            .output()
            .unwrap(),
        "second moby pkg build",
    );
    let ls =
        |cache: &Path| String::from_utf8(ok(moby(cache).args(["cache", "ls"]).output().unwrap(), "ls").stdout).unwrap();
    let (a, b) = (ls(first), ls(&second.path().join("cache")));
    assert_eq!(a.lines().count(), PACKAGES.len(), "{a}");
    assert_eq!(a, b, "two builds of every package give the same digests");
}

/// A fresh ed25519 key pair for root's logins: (directory holding it, private key, public key).
fn ssh_key() -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen (apt-get install openssh-client)");
    assert!(keygen.status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (dir, key, public.trim().to_string())
}

/// LinuxKit's metadata JSON that puts `public` into /run/config/ssh/authorized_keys.
fn authorized_keys_userdata(public: &str) -> String {
    serde_json::json!({
        "ssh": {"entries": {"authorized_keys": {"perm": "0600", "content": format!("{public}\n")}}}
    })
    .to_string()
}

/// `ssh -p PORT root@127.0.0.1 COMMAND` with `key`. While the server is not listening yet (host
/// keys are made at its first start) qemu's forward accepts and then drops the connection: that is
/// retried for a while, as a user would.
fn try_ssh(port: u16, key: &Path, command: &str) -> Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let out = Command::new("ssh")
            .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=60", "-i"])
            .arg(key)
            .args(["-p", &port.to_string(), "root@127.0.0.1", command])
            .output()
            .expect("ssh (apt-get install openssh-client)");
        let err = String::from_utf8_lossy(&out.stderr);
        let not_listening = err.contains("kex_exchange_identification") || err.contains("Connection reset");
        if !not_listening || std::time::Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// [`try_ssh`] that must succeed; returns its stdout.
fn ssh(port: u16, key: &Path, command: &str) -> String {
    let out = try_ssh(port, key, command);
    assert!(
        out.status.success(),
        "ssh -p {port} root@127.0.0.1 {command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// linuxkit.yml: banner, onboot output, services (`service ls` on the console), DHCP on eth0,
/// userdata in /run/config, SSH login with the key from the userdata, then `moby stop`: the
/// onshutdown container runs and the machine powers off.
#[test]
fn linuxkit_example() {
    let (_out, prefix) = build_example("linuxkit");
    let (_keys, key, public) = ssh_key();
    let port = free_port();
    let userdata = authorized_keys_userdata(&public);
    let mut vm = Vm::boot(&prefix, &["--publish", &format!("{port}:22"), "--data", &userdata]);

    vm.wait("init: onboot sysctl exited with status 0");
    vm.wait("init: onboot dhcpcd exited with status 0");
    vm.wait("init: onboot metadata exited with status 0");
    vm.wait("Welcome to moby");
    // Each onboot container's own output is on the console, prefixed with its name.
    for (name, says) in [
        ("sysctl", "sysctl: applying"),
        ("dhcpcd", "10.0.2.15"),
        ("metadata", "Probe succeeded"),
    ] {
        assert!(
            vm.console
                .seen
                .iter()
                .any(|l| l.starts_with(&format!("{name}: ")) && l.contains(says)),
            "no output of onboot {name} ({says:?}) on the console:\n{}",
            vm.console.seen.join("\n")
        );
    }
    let listing = vm.shell("service ls");
    for service in ["getty", "sshd"] {
        assert!(
            listing
                .iter()
                .any(|l| l.starts_with(service) && l.contains(" running ")),
            "{service} not running: {listing:#?}"
        );
    }
    let addr = vm.shell("ip -4 addr show eth0");
    assert!(
        addr.iter().any(|l| l.trim().starts_with("inet 10.0.2.15/24")),
        "no DHCP address on eth0: {addr:#?}"
    );
    let keys = vm.shell("cat /run/config/ssh/authorized_keys");
    assert!(
        keys.contains(&public),
        "the userdata key is not in /run/config: {keys:#?}"
    );

    let hostname = ssh(port, &key, "hostname");
    assert!(
        vm.shell("hostname").contains(&hostname.trim().to_string()),
        "ssh reached another machine than the console's ({hostname})"
    );

    let exit = vm.stop();
    assert!(
        exit.stderr.contains("powered off after the ACPI power button"),
        "{}",
        exit.stderr
    );
    assert!(
        exit.console.iter().any(|l| l.contains("goodbye: moby: onshutdown ran")),
        "the onshutdown container did not run:\n{}",
        exit.console.join("\n")
    );
}

/// sshd.yml: nothing but an SSH server; root logs in with the key from the userdata.
#[test]
fn sshd_example() {
    let (_out, prefix) = build_example("sshd");
    let (_keys, key, public) = ssh_key();
    let port = free_port();
    let userdata = authorized_keys_userdata(&public);
    let mut vm = Vm::boot(&prefix, &["--publish", &format!("{port}:22"), "--data", &userdata]);
    vm.wait("Welcome to moby");
    assert_eq!(ssh(port, &key, "echo $((6*7)) $(id -u)").trim(), "42 0");
    // A key that is not in the userdata is refused.
    let (_other, stranger, _) = ssh_key();
    let refused = try_ssh(port, &stranger, "true");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("Permission denied"), "{err}");
    vm.stop();
}

/// minimal.yml boots to a shell; static-ip.yml sets its address.
#[test]
fn minimal_and_static_ip_examples() {
    let (_out, prefix) = build_example("minimal");
    let mut vm = Vm::boot(&prefix, &[]);
    vm.wait("Welcome to moby");
    assert!(vm.shell("echo shell-$((6*7))").contains(&"shell-42".to_string()));
    let exit = vm.stop();
    assert!(
        exit.stderr.contains("powered off after the ACPI power button"),
        "{}",
        exit.stderr
    );

    let (_out, prefix) = build_example("static-ip");
    let mut vm = Vm::boot(&prefix, &[]);
    vm.wait("static-ip: moby: static address 10.0.2.20 on eth0");
    vm.wait("Welcome to moby");
    let addr = vm.shell("ip -4 addr show eth0");
    assert!(
        addr.iter().any(|l| l.trim().starts_with("inet 10.0.2.20/24")),
        "{addr:#?}"
    );
    vm.stop();
}

/// persistent.yml: `format` makes a filesystem on the blank disk at the first boot, `mount`
/// mounts it; a file written there is read back at the second boot.
#[test]
fn persistent_example_keeps_state_across_boots() {
    let (out, prefix) = build_example("persistent");
    let disk = out.path().join("data.qcow2");
    let disk_arg = format!("file={},size=256M", disk.display());
    for boot in 0..2 {
        let mut vm = Vm::boot(&prefix, &["--disk", &disk_arg]);
        vm.wait("init: onboot mount exited with status 0");
        vm.wait("Welcome to moby");
        if boot == 0 {
            vm.shell("echo kept-across-boots > /var/lib/data/file && sync");
        } else {
            let read = vm.shell("cat /var/lib/data/file");
            assert!(
                read.contains(&"kept-across-boots".to_string()),
                "the file did not survive the reboot: {read:#?}"
            );
        }
        vm.stop();
    }
}
