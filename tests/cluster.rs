//! `moby cluster` end to end: a wrong cluster file fails before anything starts, naming the file,
//! line, group and field; removing a cluster that never started is done at once; three members
//! on one network (one with a static address) reach each other by name and address, and
//! `up --watch` replaces one whose VM was killed under its name and address.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::moby_bin;

/// `moby cluster ARGS` with its state under `home`.
fn cluster(home: &Path, args: &[&str]) -> Output {
    Command::new(moby_bin())
        .env("MOBY_STATE_HOME", home.join("run"))
        .env("MOBY_CACHE", home.join("cache"))
        .arg("cluster")
        .args(args)
        .current_dir(home)
        .output()
        .expect("run moby")
}

#[test]
fn a_wrong_cluster_file_starts_nothing_and_says_where() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("cluster.yml"),
        "name: demo\nnetworks:\n  lab: {subnet: 10.77.0.0/24}\ngroups:\n  nodes:\n    spec: missing.yml\n    size: -1\n  pets:\n    spec: missing.yml\n    logicalIDs: [10.78.0.5]\n    network: lab\n",
    )
    .unwrap();
    let out = cluster(home.path(), &["up", "cluster.yml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for expected in [
        "cluster.yml:7:11: groups.nodes.size: -1 is below zero: give 0 or more",
        "cluster.yml:10:18: groups.pets.logicalIDs[0]: 10.78.0.5 is not a member address of network lab",
    ] {
        assert!(stderr.contains(expected), "{expected}\n{stderr}");
    }
    assert!(!home.path().join("run").exists(), "nothing was created");

    // Its specs are read only once the file itself is right.
    std::fs::write(
        home.path().join("cluster.yml"),
        "name: demo\ngroups:\n  nodes: {spec: missing.yml, size: 2}\n",
    )
    .unwrap();
    let out = cluster(home.path(), &["up", "cluster.yml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cluster.yml:3:17: groups.nodes.spec: cannot read "),
        "{stderr}"
    );
    assert!(!home.path().join("run").exists(), "nothing was created");
}

#[test]
fn a_cluster_that_never_started_is_removed_at_once() {
    let home = tempfile::tempdir().unwrap();
    // Only its name counts: the rest of the file may be wrong by now.
    std::fs::write(home.path().join("c.yml"), "name: demo\ngroups:\n  nodes: {size: -1}\n").unwrap();
    let out = cluster(home.path(), &["down", "c.yml"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "removed the cluster (0 instances)\n"
    );
    let out = cluster(home.path(), &["up", "--interval", "3", "c.yml"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--watch"),
        "--interval goes with --watch"
    );
}

#[test]
fn the_example_cluster_file_checks() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cluster/cluster.yml");
    let file = plugin::cluster::ClusterFile::read(&path).unwrap();
    assert_eq!(file.name(), "demo");
    // Its spec is the example every boot test uses, found from the cluster file's directory.
    assert!(file.dir().join("../linuxkit.yml").is_file());
    let home = tempfile::tempdir().unwrap();
    let out = cluster(home.path(), &["down", path.to_str().unwrap()]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "removed the cluster (0 instances)\n"
    );
}

/// The spec of the booting test: DHCP on both NICs, then a `probe` service that prints the
/// guest's boot id and its network address, then pings every member of the cluster by name until
/// it answers, and by the address its name resolved to.
pub(crate) fn probe_spec(members: &[&str]) -> String {
    let repo = env!("CARGO_MANIFEST_DIR");
    let script = format!(
        r#"#!/bin/sh
echo "probe: boot $(cat /proc/sys/kernel/random/boot_id)"
echo "probe: me $(ip -4 -o addr show dev eth1 | awk '{{print $4}}')"
{}"#,
        crate::support::ping_peers("probe:", members, 150)
    );
    let indented: String = script.lines().map(|l| format!("      {l}\n")).collect();
    format!(
        r#"kernel:
  image: "@pkg:{repo}/kernel"
  cmdline: "console=ttyS0"
init:
  - "@pkg:{repo}/pkg/init"
onboot:
  - name: dhcpcd
    image: "@pkg:{repo}/pkg/dhcpcd"
    command: ["/sbin/dhcpcd", "-1"]
services:
  - name: probe
    image: "@pkg:{repo}/pkg/dhcpcd"
    net: host
    binds:
      - /etc/probe.sh:/probe.sh:ro
      - /run/resolvconf/resolv.conf:/etc/resolv.conf:ro
    command: ["/bin/sh", "/probe.sh"]
files:
  - path: etc/probe.sh
    mode: "0755"
    contents: |
{indented}"#
    )
}

/// What one boot of a member printed: its boot id, its address, and each peer's address.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Probe {
    pub boot: String,
    pub me: String,
    pub peers: std::collections::BTreeMap<String, String>,
}

/// The probe of `log` (a console log), once it has pinged all of `members`.
fn probe(log: &Path, members: &[&str]) -> Option<Probe> {
    let text = std::fs::read_to_string(log).ok()?;
    let mut probe = Probe::default();
    for line in text.lines() {
        let Some((_, said)) = line.split_once("probe: probe: ") else {
            continue;
        };
        let words: Vec<&str> = said.split_whitespace().collect();
        match words.as_slice() {
            ["boot", id] => probe.boot = id.to_string(),
            ["me", cidr] => probe.me = cidr.trim_end_matches("/24").to_string(),
            ["peer", name, address, "ok"] => {
                probe.peers.insert(name.to_string(), address.to_string());
            }
            ["peer", name, "failed:", ..] => panic!("{}: pinging {name} failed: {said}", log.display()),
            _ => {}
        }
    }
    (probe.peers.len() == members.len()).then_some(probe)
}

/// Waits for [`probe`] of `log` to be there and satisfy `done`.
pub(crate) fn wait_probe(log: &Path, members: &[&str], done: impl Fn(&Probe) -> bool) -> Probe {
    let deadline = std::time::Instant::now() + crate::support::vm::BOUND;
    loop {
        if let Some(found) = probe(log, members).filter(|p| done(p)) {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no probe in {}:\n{}",
            log.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// Sends signal `name` to process `pid`.
fn signal(name: &str, pid: u32) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

#[test]
fn a_cluster_boots_on_its_network_and_heals() {
    let home = tempfile::tempdir().unwrap();
    let cache = crate::examples::package_cache();
    let members = ["t-leader-10-77-0-10", "t-nodes-0", "t-nodes-1"];
    std::fs::write(home.path().join("probe.yml"), probe_spec(&members)).unwrap();
    std::fs::write(
        home.path().join("cluster.yml"),
        "name: t\nnetworks:\n  lab: {subnet: 10.77.0.0/24}\ngroups:\n  leader:\n    spec: probe.yml\n    logicalIDs: [10.77.0.10]\n    network: lab\n    properties: {Memory: 512, Accel: tcg}\n  nodes:\n    spec: probe.yml\n    size: 2\n    network: lab\n    properties: {Memory: 512, Accel: tcg}\n",
    )
    .unwrap();
    let moby = |args: &[&str]| {
        let mut c = Command::new(moby_bin());
        c.env("MOBY_STATE_HOME", home.path().join("run"))
            .env("MOBY_CACHE", cache)
            .args(args)
            .current_dir(home.path());
        c
    };
    let mut watch = moby(&["cluster", "up", "--watch", "--interval", "2", "cluster.yml"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let watch_out = watch.stdout.take().unwrap();
    let watch_log = std::thread::spawn(move || std::io::read_to_string(watch_out).unwrap_or_default());
    let stop_watch = |mut watch: std::process::Child| {
        signal("TERM", watch.id());
        watch.wait().unwrap()
    };
    let run = home.path().join("run");
    let log = |name: &str| run.join(name).join("console.log");

    // Every member has its address (the leader its static one) and reached the others by name
    // and by address.
    let probes: Vec<Probe> = members
        .iter()
        .map(|m| wait_probe(&log(m), &members, |_| true))
        .collect();
    assert_eq!(probes[0].me, "10.77.0.10");
    for (member, probe) in members.iter().zip(&probes) {
        for (peer, peer_probe) in members.iter().zip(&probes) {
            assert_eq!(probe.peers[*peer], peer_probe.me, "{member} pinging {peer}");
        }
    }
    let status = moby(&["cluster", "status", "cluster.yml"]).output().unwrap();
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    for (member, probe) in members.iter().zip(&probes) {
        let row = table.lines().find(|l| l.contains(member)).unwrap_or_default();
        assert!(row.contains(&probe.me), "{member} in\n{table}");
    }

    // A member whose VM dies is replaced under its name, and rejoins with its address.
    let victim = "t-nodes-1";
    let pid_file = run.join(victim).join("qemu.pid");
    let old_pid: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    signal("KILL", old_pid);
    let old = &probes[2];
    let new = wait_probe(&log(victim), &members, |p| p.boot != old.boot);
    assert_eq!(new.me, old.me, "the replacement keeps its address");
    assert_eq!(new.peers, old.peers);

    let status = stop_watch(watch);
    let said = watch_log.join().unwrap();
    assert!(status.success(), "{said}");
    assert!(said.contains(victim), "the watch says what it replaced:\n{said}");

    let down = moby(&["cluster", "down", "cluster.yml"]).output().unwrap();
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    let ps = moby(&["ps", "-a"]).output().unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert_eq!(ps.lines().count(), 1, "only the header is left:\n{ps}");
    crate::support::wait_network_gone(&run.join("networks/lab"));
}
