//! `moby cluster` end to end, without VMs: a wrong cluster file fails before anything starts,
//! naming the file, line, group and field; removing a cluster that never started is done at once.
//! (Booting a cluster needs the network between VMs: that test lives beside the network's.)

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
