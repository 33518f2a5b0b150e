//! Private networks (`moby run --network`): three test guests on one network, one with a static
//! address, take their addresses from the network's DHCP and reach each other by name (its DNS)
//! and by address; what cannot be honoured is refused before anything boots; the network is gone
//! once its last member is.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::guest::write_guest;
use crate::support::vm::Vm;
use crate::support::{moby_bin, ping_peers, wait_network_gone};

/// The guest's user-data script: each peer pinged by name until it answers, then by the address
/// its name resolved to; one `moby-guest: peer NAME ADDRESS ok` line each (or what failed).
fn pinger(peers: &[&str]) -> String {
    format!("#!/bin/sh\n{}", ping_peers("moby-guest:", peers, 120))
}

/// `moby run` of the guest in `home` with `args`, expected to fail before booting: its stderr.
fn refused(home: &Path, prefix: &Path, name: &str, args: &[&str]) -> String {
    let out = Command::new(moby_bin())
        .env("MOBY_STATE_HOME", home)
        .args(["run", "--accel", "tcg", "--name", name])
        .args(args)
        .arg(prefix)
        .output()
        .expect("run moby run");
    assert!(!out.status.success(), "moby run {args:?} booted");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn vms_on_one_network_reach_each_other_by_name_and_address() {
    let out = tempfile::tempdir().expect("temp dir");
    let prefix = write_guest(out.path(), "guest");
    let home = tempfile::tempdir().expect("temp dir");
    let names = ["net-a", "net-b", "net-c"];
    let boot = |name: &str, network: &str| {
        let peers: Vec<&str> = names.iter().copied().filter(|n| *n != name).collect();
        Vm::boot_in(
            home.path(),
            &prefix,
            name,
            &["--network", network, "--data", &pinger(&peers)],
        )
    };
    // The first member makes the network with its subnet; the others join it as it is.
    let mut vms = vec![boot("net-a", "lab,subnet=10.77.0.0/24,ip=10.77.0.10")];
    let deadline = Instant::now() + Duration::from_secs(60);
    while !home.path().join("networks/lab/switch.sock").exists() {
        assert!(Instant::now() < deadline, "net-a never made the network");
        std::thread::sleep(Duration::from_millis(50));
    }
    vms.extend(["net-b", "net-c"].map(|name| boot(name, "lab")));

    // Addresses from the network's DHCP: the static one, and stable picks in the upper half.
    let mut addresses = BTreeMap::new();
    for vm in &mut vms {
        let line = vm.wait("moby-guest: net eth1 ");
        let cidr = line.rsplit(' ').next().expect("address").trim().to_string();
        assert!(
            cidr.starts_with("10.77.0.") && cidr.ends_with("/24"),
            "{}: {line}",
            vm.name
        );
        addresses.insert(vm.name.clone(), cidr.trim_end_matches("/24").to_string());
    }
    assert_eq!(addresses["net-a"], "10.77.0.10");
    for name in ["net-b", "net-c"] {
        let last: u8 = addresses[name].rsplit('.').next().unwrap().parse().unwrap();
        assert!(
            last >= 128,
            "{name} got {} (picked addresses are in the upper half)",
            addresses[name]
        );
    }

    // `moby ps` shows each member's place.
    let ps = Command::new(moby_bin())
        .env("MOBY_STATE_HOME", home.path())
        .arg("ps")
        .output()
        .expect("run moby ps");
    let ps = String::from_utf8_lossy(&ps.stdout);
    for (name, address) in &addresses {
        let row = ps.lines().find(|l| l.starts_with(name.as_str())).unwrap_or_default();
        assert!(row.contains(&format!(" lab:{address} ")), "{name} in\n{ps}");
    }

    // Refused while they run, before anything boots.
    let err = refused(home.path(), &prefix, "net-d", &["--network", "lab,ip=10.77.0.10"]);
    assert!(err.contains("10.77.0.10 is already the address of `net-a`"), "{err}");
    let err = refused(home.path(), &prefix, "net-d", &["--network", "lab,subnet=10.78.0.0/24"]);
    assert!(err.contains("network lab exists with subnet 10.77.0.0/24"), "{err}");
    let err = refused(
        home.path(),
        &prefix,
        "net-d",
        &["--network", "other,subnet=10.77.0.0/16"],
    );
    assert!(err.contains("overlaps 10.77.0.0/24 of network lab"), "{err}");
    let err = refused(home.path(), &prefix, "net-d", &["--network", "lab,ip=10.77.1.10"]);
    assert!(
        err.contains("10.77.1.10 is not a member address of 10.77.0.0/24"),
        "{err}"
    );

    // Every guest reached every other by name (DNS) and by the address the name resolved to.
    for vm in &mut vms {
        let me = vm.name.clone();
        for peer in names.iter().filter(|n| **n != me) {
            let line = vm.wait(&format!("moby-guest: peer {peer} "));
            assert_eq!(
                line.trim_end(),
                format!("moby-guest: peer {peer} {} ok", addresses[*peer]),
                "{} pinging {peer}",
                vm.name
            );
        }
    }

    let network = home.path().join("networks/lab");
    assert!(network.join("switch.sock").exists());
    for vm in vms {
        vm.stop();
    }
    wait_network_gone(&network);
}
