//! `moby plugin` end to end, spoken to as InfraKit's Go client speaks (raw HTTP over its unix
//! socket): three instances of `examples/linuxkit.yml` provisioned from one spec (one build),
//! described with their tags, one labelled, one destroyed; the plugin restarted finds the two
//! survivors running and re-attaches; destroyed, they leave no qemu behind. Two instances of a
//! disk format share one image.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::examples::{package_cache, repo};
use crate::support::{alive, moby_bin};

#[path = "../plugin/tests/support/mod.rs"]
pub(crate) mod wire;

/// Upper bound for builds and boots (TCG on a busy machine); only guards against hangs.
const PATIENCE: Duration = Duration::from_secs(600);

/// The variables that point the plugin at Google Cloud: removed, so that only what a test gives
/// reaches it.
const GCP_VARIABLES: [&str; 9] = [
    "CLOUDSDK_CORE_PROJECT",
    "CLOUDSDK_COMPUTE_ZONE",
    "CLOUDSDK_IMAGE_BUCKET",
    "CLOUDSDK_COMPUTE_KEYS",
    "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE",
    "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE",
    "STORAGE_EMULATOR_HOST",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GCE_METADATA_HOST",
];

/// A `moby plugin` process, killed on drop.
pub(crate) struct PluginProcess {
    child: Child,
    socket: PathBuf,
}

impl PluginProcess {
    fn start(dir: &Path) -> PluginProcess {
        PluginProcess::start_with(dir, &[])
    }

    /// A plugin keeping its state in `dir`, with `env` in its environment (and none of
    /// [`GCP_VARIABLES`] but those).
    pub(crate) fn start_with(dir: &Path, env: &[(&str, String)]) -> PluginProcess {
        std::fs::create_dir_all(dir).unwrap();
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(dir.join("plugin.log"))
            .unwrap();
        let mut command = Command::new(moby_bin());
        command
            .args(["plugin", "--stop-timeout", "60", "--state-dir"])
            .arg(dir.join("state"))
            .env("INFRAKIT_PLUGINS_DIR", dir.join("plugins"))
            .env("MOBY_CACHE", package_cache())
            .env("MOBY_QEMU_ACCEL", "tcg")
            .current_dir(repo().join("examples"))
            .stdin(Stdio::null())
            .stderr(log);
        for variable in GCP_VARIABLES {
            command.env_remove(variable);
        }
        command.envs(env.iter().map(|(k, v)| (k, v)));
        let child = command.spawn().unwrap();
        let socket = dir.join("plugins/instance-moby");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "the plugin never listened on {socket:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        PluginProcess { child, socket }
    }

    /// The result of a call that must succeed.
    pub(crate) fn call(&self, method: &str, params: Value) -> Value {
        wire::Connection::open(&self.socket).ok(method, params)
    }

    /// The reply to a call: its result or its error.
    pub(crate) fn rpc(&self, method: &str, params: Value) -> Value {
        wire::Connection::open(&self.socket).rpc(method, params)
    }

    pub(crate) fn describe(&self, tags: Value, properties: bool) -> Vec<Value> {
        let result = self.call(
            "Instance.DescribeInstances",
            json!({"Tags": tags, "Properties": properties}),
        );
        result["Descriptions"].as_array().cloned().unwrap_or_default()
    }

    /// Stops the plugin as a service manager would (SIGTERM) and waits for it.
    pub(crate) fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "moby plugin exited with {status}");
    }
}

impl Drop for PluginProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until Describe (with properties) shows exactly `ids`, every one running; returns them.
fn wait_running(plugin: &PluginProcess, ids: &[String], dir: &Path) -> Vec<Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let all = plugin.describe(Value::Null, true);
        let running = all.iter().filter(|d| d["Properties"]["State"] == "running").count();
        let failed: Vec<_> = all.iter().filter(|d| d["Properties"]["State"] == "failed").collect();
        assert!(failed.is_empty(), "{failed:?}\n{}", log(dir));
        if running == ids.len() && all.len() == ids.len() {
            return all;
        }
        assert!(Instant::now() < deadline, "not all running: {all:?}\n{}", log(dir));
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub(crate) fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("plugin.log")).unwrap_or_default()
}

fn pid(description: &Value) -> u32 {
    u32::try_from(description["Properties"]["Pid"].as_u64().expect("a pid")).unwrap()
}

#[test]
fn three_instances_of_one_spec_one_build_survive_a_plugin_restart() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = PluginProcess::start(dir.path());
    let spec = json!({"Spec": {
        "Properties": {"Moby": "linuxkit.yml", "Memory": 512},
        "Tags": {"infrakit.group": "workers", "infrakit.config.hash": "abc"},
        "Init": "{\"hello\": \"world\"}"
    }});
    let mut ids = Vec::new();
    for _ in 0..3 {
        let asked = Instant::now();
        let result = plugin.call("Instance.Provision", spec.clone());
        eprintln!("provision answered in {:?}", asked.elapsed());
        ids.push(result["ID"].as_str().unwrap().to_string());
    }
    // Each appears in the very next Describe, before its image is even built.
    let listed = plugin.describe(json!({"infrakit.group": "workers"}), true);
    assert_eq!(listed.len(), 3, "{listed:?}");

    let all = wait_running(&plugin, &ids, dir.path());
    let images: Vec<_> = std::fs::read_dir(dir.path().join("state/images"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| !n.to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(images.len(), 1, "one build for one spec: {images:?}");
    let digest = all[0]["Properties"]["SpecDigest"].as_str().unwrap().to_string();
    assert!(all.iter().all(|d| d["Properties"]["SpecDigest"] == digest.as_str()));
    for d in &all {
        assert_eq!(
            d["Tags"],
            json!({"infrakit.group": "workers", "infrakit.config.hash": "abc"})
        );
        assert!(alive(pid(d)));
    }
    let plain = plugin.describe(json!({"infrakit.group": "workers"}), false);
    assert_eq!(plain.len(), 3);
    assert!(plain.iter().all(|d| d.get("Properties").is_none()));

    plugin.call(
        "Instance.Label",
        json!({"Instance": ids[0], "Labels": {"role": "leader"}}),
    );
    assert_eq!(plugin.describe(json!({"role": "leader"}), false).len(), 1);

    let gone = all.iter().find(|d| d["ID"] == ids[2]).unwrap();
    let gone_pid = pid(gone);
    plugin.call(
        "Instance.Destroy",
        json!({"Instance": ids[2], "Context": {"Reason": "terminate"}}),
    );
    let deadline = Instant::now() + PATIENCE;
    while alive(gone_pid) {
        assert!(Instant::now() < deadline, "the destroyed instance's qemu still runs");
        std::thread::sleep(Duration::from_millis(200));
    }
    let survivors: Vec<(String, u32)> = plugin
        .describe(Value::Null, true)
        .iter()
        .map(|d| (d["ID"].as_str().unwrap().to_string(), pid(d)))
        .collect();
    assert_eq!(survivors.len(), 2);

    // The plugin goes; its instances stay (they are the cluster).
    plugin.stop();
    assert!(survivors.iter().all(|(_, pid)| alive(*pid)));
    let plugin = PluginProcess::start(dir.path());
    let again = wait_running(&plugin, &ids[..2], dir.path());
    let reattached: Vec<(String, u32)> = again
        .iter()
        .map(|d| (d["ID"].as_str().unwrap().to_string(), pid(d)))
        .collect();
    assert_eq!(reattached, survivors);
    assert_eq!(plugin.describe(json!({"role": "leader"}), false).len(), 1);

    for (id, _) in &survivors {
        plugin.call("Instance.Destroy", json!({"Instance": id}));
    }
    // A destroy ends by removing the record, once the VM and its state dir are gone: Describe
    // stops listing the instance as the destroy starts.
    let records = || std::fs::read_dir(dir.path().join("state/instances")).unwrap().count();
    let deadline = Instant::now() + PATIENCE;
    while survivors.iter().any(|(_, pid)| alive(*pid))
        || !plugin.describe(Value::Null, true).is_empty()
        || records() > 0
    {
        assert!(
            Instant::now() < deadline,
            "instances or records left after destroy ({} records)\n{}",
            records(),
            log(dir.path())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    plugin.stop();
}

/// A disk format: two instances of one spec boot the one qcow2 build side by side (each
/// copy-on-write; qemu would refuse to open a shared image for writing twice), and the image is
/// never written.
#[test]
fn instances_of_a_disk_format_share_one_image() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = PluginProcess::start(dir.path());
    let spec = json!({"Spec": {
        "Properties": {"Moby": "minimal.yml", "Memory": 512, "Format": "qcow2-bios"},
        "Tags": {"infrakit.group": "disks"}
    }});
    let ids: Vec<String> = (0..2)
        .map(|_| {
            plugin.call("Instance.Provision", spec.clone())["ID"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let all = wait_running(&plugin, &ids, dir.path());
    let images: Vec<PathBuf> = std::fs::read_dir(dir.path().join("state/images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(images.len(), 1, "{images:?}");
    let image = images[0].join("moby.qcow2");
    let before = std::fs::read(&image).unwrap();
    // Both still up a while later: neither lost the image to the other.
    std::thread::sleep(Duration::from_secs(20));
    assert!(all.iter().all(|d| alive(pid(d))), "{}", log(dir.path()));
    for id in &ids {
        plugin.call("Instance.Destroy", json!({"Instance": id}));
    }
    let deadline = Instant::now() + PATIENCE;
    while all.iter().any(|d| alive(pid(d))) {
        assert!(Instant::now() < deadline, "instances left after destroy");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(std::fs::read(&image).unwrap() == before, "the shared image was written");
    plugin.stop();
}

/// The calls InfraKit's group controller makes for a group of pets on one private network:
/// Validate, Describe (empty), Provision each logical ID with the group's tags, Describe until
/// they are up; then a rolling update to a new config: one instance at a time, Destroy, Provision
/// it again (same logical ID: same name and address), wait until it is back. Every member's
/// probe reaches every other by name and address, before and after.
#[test]
fn a_group_on_a_network_rolls_one_instance_at_a_time() {
    use crate::cluster::{probe_spec, wait_probe};

    let dir = tempfile::tempdir().unwrap();
    let members = ["web-10-77-0-20", "web-10-77-0-21"];
    let spec_file = dir.path().join("probe.yml");
    std::fs::write(&spec_file, probe_spec(&members)).unwrap();
    let plugin = PluginProcess::start(dir.path());
    let properties = |memory: u64| {
        json!({
            "Moby": spec_file.to_str().unwrap(),
            "Memory": memory,
            "Network": {"Name": "lab", "Subnet": "10.77.0.0/24"},
            "NamePrefix": "web",
        })
    };
    let spec = |logical_id: &str, memory: u64, hash: &str| {
        json!({"Spec": {
            "Properties": properties(memory),
            "Tags": {"infrakit.group": "web", "infrakit.config.hash": hash},
            "LogicalID": logical_id,
        }})
    };
    let group = json!({"infrakit.group": "web"});
    plugin.call("Instance.Validate", json!({"Properties": properties(512)}));
    assert!(plugin.describe(group.clone(), false).is_empty());
    for (logical_id, member) in ["10.77.0.20", "10.77.0.21"].iter().zip(members) {
        let result = plugin.call("Instance.Provision", spec(logical_id, 512, "v1"));
        assert_eq!(result["ID"], member);
    }
    let log = |member: &str| dir.path().join("state/vm").join(member).join("console.log");
    let mut probes: Vec<_> = members
        .iter()
        .map(|m| wait_probe(&log(m), &members, |_| true))
        .collect();
    assert_eq!(probes[0].me, "10.77.0.20");
    assert_eq!(probes[1].me, "10.77.0.21");
    for probe in &probes {
        assert_eq!(probe.peers[members[0]], "10.77.0.20");
        assert_eq!(probe.peers[members[1]], "10.77.0.21");
    }
    for d in plugin.describe(group.clone(), true) {
        assert_eq!(d["Properties"]["Network"], "lab");
        let expected = if d["ID"] == members[0] {
            "10.77.0.20"
        } else {
            "10.77.0.21"
        };
        assert_eq!(d["Properties"]["Address"], expected, "{d}");
    }

    // The rolling update, as the group controller does it.
    for (i, (logical_id, member)) in ["10.77.0.20", "10.77.0.21"].iter().zip(members).enumerate() {
        plugin.call(
            "Instance.Destroy",
            json!({"Instance": member, "Context": {"Reason": "rolling_update"}}),
        );
        // The controller provisions the missing logical ID at each of its ticks until the plugin
        // takes it (it refuses while the destroy is still under way).
        let deadline = Instant::now() + PATIENCE;
        let result = loop {
            let reply = plugin.rpc("Instance.Provision", spec(logical_id, 576, "v2"));
            match reply.get("result").filter(|r| !r.is_null()) {
                Some(result) => break result.clone(),
                None => {
                    let message = reply["error"]["message"].as_str().unwrap_or_default().to_string();
                    assert!(message.contains("is being destroyed"), "{reply}");
                    assert!(
                        Instant::now() < deadline,
                        "{member} was never provisioned again: {reply}"
                    );
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        };
        assert_eq!(result["ID"], member);
        let old = probes[i].boot.clone();
        probes[i] = wait_probe(&log(member), &members, |p| p.boot != old);
        assert_eq!(probes[i].me, *logical_id, "{member} keeps its address");
        assert_eq!(probes[i].peers[members[1 - i]], probes[1 - i].me);
    }
    let described = plugin.describe(json!({"infrakit.group": "web", "infrakit.config.hash": "v2"}), true);
    assert_eq!(described.len(), 2, "{described:?}");

    for member in members {
        plugin.call("Instance.Destroy", json!({"Instance": member}));
    }
    let network = dir.path().join("state/vm/networks/lab");
    let deadline = Instant::now() + PATIENCE;
    while !plugin.describe(Value::Null, false).is_empty() || network.exists() {
        assert!(
            Instant::now() < deadline,
            "instances or their network left\n{}",
            self::log(dir.path())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    plugin.stop();
}
