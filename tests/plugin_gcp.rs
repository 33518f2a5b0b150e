//! `moby plugin` with `"Backend": "gcp"` end to end, spoken to as InfraKit's Go client speaks,
//! against the fake Compute Engine (`support::gce`) and a Cloud Storage emulator: the project and
//! zone come from the plugin's environment, the bucket from the properties; two instances of one
//! spec provisioned at once push one image; an IPv4 logical ID names the instance and becomes its
//! internal address; labels and destroys reach the API; a plugin that lost its records still
//! describes and destroys the instances from the API.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::plugin::{log, PluginProcess};
use crate::support::gce::GceFake;
use crate::support::gcs::StorageEmulator;

/// Upper bound for the build, the push and the fake's operations; only guards against hangs.
const PATIENCE: Duration = Duration::from_secs(600);
const BUCKET: &str = "moby-plugin-images";
const ZONE: &str = "us-central1-a";

/// The plugin's environment: the fake's project, a zone, the endpoints and a key file.
fn gcp_env(fake: &GceFake, storage: &StorageEmulator, dir: &Path) -> Vec<(&'static str, String)> {
    let key = dir.join("key.json");
    std::fs::write(&key, fake.service_account_key().to_string()).unwrap();
    vec![
        ("CLOUDSDK_CORE_PROJECT", fake.project().to_string()),
        ("CLOUDSDK_COMPUTE_ZONE", ZONE.to_string()),
        ("CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE", fake.compute_endpoint()),
        ("STORAGE_EMULATOR_HOST", storage.url()),
        ("CLOUDSDK_COMPUTE_KEYS", key.display().to_string()),
        // Nothing reaches for a real metadata server.
        ("GCE_METADATA_HOST", fake.metadata_host()),
    ]
}

fn error(reply: &Value) -> String {
    assert_eq!(reply["error"]["code"], -32000, "{reply}");
    reply["error"]["message"].as_str().unwrap().to_string()
}

/// Waits until Describe (with properties, filtered by `tags`) shows exactly `ids`, each in
/// `state`.
fn wait_state(plugin: &PluginProcess, tags: &Value, ids: &BTreeSet<String>, state: &str, dir: &Path) -> Vec<Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let all = plugin.describe(Value::Null, true);
        let failed: Vec<_> = all.iter().filter(|d| d["Properties"]["State"] == "failed").collect();
        assert!(failed.is_empty(), "{failed:?}\n{}", log(dir));
        let listed = plugin.describe(tags.clone(), true);
        let there: BTreeSet<String> = listed
            .iter()
            .filter(|d| d["Properties"]["State"] == state)
            .map(|d| d["ID"].as_str().unwrap().to_string())
            .collect();
        if &there == ids && listed.len() == ids.len() {
            return listed;
        }
        assert!(Instant::now() < deadline, "not all {state}: {all:?}\n{}", log(dir));
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits until the fake no longer has the instance `name`.
fn wait_deleted(fake: &GceFake, name: &str, dir: &Path) {
    let deadline = Instant::now() + PATIENCE;
    while fake.instances().iter().any(|i| i["name"] == name) {
        assert!(Instant::now() < deadline, "{name} was never deleted\n{}", log(dir));
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn instance<'a>(instances: &'a [Value], name: &str) -> &'a Value {
    instances
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no instance {name} in {instances:?}"))
}

fn metadata<'a>(instance: &'a Value, key: &str) -> Option<&'a str> {
    instance["metadata"]["items"]
        .as_array()?
        .iter()
        .find(|item| item["key"] == key)?["value"]
        .as_str()
}

#[test]
fn gcp_instances_of_one_spec_push_one_image_and_outlive_the_plugin_s_records() {
    let dir = tempfile::tempdir().unwrap();
    let storage = StorageEmulator::start(BUCKET);
    let fake = GceFake::start(Some(storage.url()));
    let env = gcp_env(&fake, &storage, dir.path());
    let first_dir = dir.path().join("first");
    let plugin = PluginProcess::start_with(&first_dir, &env);

    // The bucket is in neither the properties nor the environment: the error names both.
    let reply = plugin.rpc(
        "Instance.Validate",
        json!({"Properties": {"Moby": "minimal.yml", "Backend": "gcp"}}),
    );
    let message = error(&reply);
    assert!(
        message.contains("Properties.GCP.Bucket") && message.contains("CLOUDSDK_IMAGE_BUCKET"),
        "{message}"
    );
    let properties =
        json!({"Moby": "minimal.yml", "Backend": "gcp", "GCP": {"Bucket": BUCKET, "MachineType": "e2-small"}});
    let ok = plugin.call("Instance.Validate", json!({"Properties": properties}));
    assert_eq!(ok["OK"], true);

    // Two provisions of one spec at once, as InfraKit's group controller makes them.
    let tags = json!({"infrakit.group": "workers", "infrakit.config.hash": "abc"});
    let provision = |logical_id: Option<&str>| {
        let spec = json!({"Spec": {
            "Properties": properties,
            "Tags": tags,
            "Init": "{\"hello\": \"world\"}",
            "LogicalID": logical_id,
        }});
        plugin.call("Instance.Provision", spec)["ID"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (pet, cattle) = std::thread::scope(|s| {
        let pet = s.spawn(|| provision(Some("10.0.0.5")));
        let cattle = s.spawn(|| provision(None));
        (pet.join().unwrap(), cattle.join().unwrap())
    });
    assert_eq!(pet, "moby-10-0-0-5");
    assert!(
        cattle.starts_with("moby-") && cattle.len() == "moby-".len() + 12,
        "{cattle}"
    );
    let group = json!({"infrakit.group": "workers"});
    let both = BTreeSet::from([pet.clone(), cattle.clone()]);
    // Booting (the fake moves an instance on when it is read one by one, and the plugin lists
    // them): a booting instance is alive, so it matches the group's filter.
    let deadline = Instant::now() + PATIENCE;
    while fake.instances().len() < 2 {
        let all = plugin.describe(Value::Null, true);
        assert!(Instant::now() < deadline, "not created: {all:?}\n{}", log(&first_dir));
        assert!(
            all.iter().all(|d| d["Properties"]["State"] != "failed"),
            "{all:?}\n{}",
            log(&first_dir)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    wait_state(&plugin, &group, &both, "starting", &first_dir);
    for name in &both {
        assert!(fake.set_instance_status(name, "RUNNING"), "{name}");
    }
    let described = wait_state(&plugin, &group, &both, "running", &first_dir);

    // One image for one spec, pushed once, named after the spec's digest.
    let digest = described[0]["Properties"]["SpecDigest"].as_str().unwrap().to_string();
    let hex = digest.trim_start_matches("sha256:");
    let image = format!("moby-{}", &hex[..32]);
    let images: Vec<String> = fake
        .images()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(images, std::slice::from_ref(&image));
    let inserts = fake
        .requests()
        .iter()
        .filter(|r| r.method_id == "compute.images.insert")
        .count();
    assert_eq!(inserts, 1, "one push for one spec");
    assert_eq!(storage.objects(BUCKET), [format!("{image}.img.tar.gz")]);

    // The instances, as the API has them.
    let instances = fake.instances();
    assert_eq!(instances.len(), 2, "{instances:?}");
    let ip = instance(&instances, &pet);
    assert_eq!(ip["networkInterfaces"][0]["networkIP"], "10.0.0.5");
    assert_eq!(ip["labels"]["created-by"], "moby");
    assert!(ip["machineType"].as_str().unwrap().ends_with("/machineTypes/e2-small"));
    assert!(ip["disks"][0]["source"].is_string(), "{ip}");
    assert_eq!(metadata(ip, "user-data"), Some("{\"hello\": \"world\"}"));
    assert_eq!(metadata(ip, "moby-logical-id"), Some("10.0.0.5"));
    assert_eq!(metadata(ip, "moby-spec-digest"), Some(digest.as_str()));
    let pet_described = described.iter().find(|d| d["ID"] == pet.as_str()).unwrap();
    assert_eq!(pet_described["LogicalID"], "10.0.0.5");
    assert_eq!(pet_described["Tags"], tags);
    let details = &pet_described["Properties"];
    assert_eq!(
        (&details["Backend"], &details["Address"], &details["Zone"]),
        (&json!("gcp"), &json!("10.0.0.5"), &json!(ZONE))
    );
    assert_eq!(details["Properties"], properties);

    // Label: in Describe and on the instance.
    plugin.call("Instance.Label", json!({"Instance": pet, "Labels": {"role": "leader"}}));
    let leaders = plugin.describe(json!({"role": "leader"}), false);
    assert_eq!(leaders.len(), 1, "{leaders:?}");
    assert_eq!(leaders[0]["ID"], pet.as_str());
    let labelled = fake.instances();
    let labelled = instance(&labelled, &pet);
    assert_eq!(labelled["labels"]["role"], "leader");
    assert!(metadata(labelled, "moby-tags").unwrap().contains("\"role\":\"leader\""));

    // The API cannot be asked: the state is unknown, and the instances still match their group
    // (InfraKit replaces the dead ones only).
    fake.fail_next("compute.instances.list", 403, "forbidden", "the test forbids listing");
    let unsure = plugin.describe(group.clone(), true);
    assert_eq!(unsure.len(), 2, "{unsure:?}");
    for d in &unsure {
        assert_eq!(d["Properties"]["State"], "unknown", "{d}");
        let why = d["Properties"]["Error"].as_str().unwrap();
        assert!(why.contains("the test forbids listing"), "{why}");
    }

    // Destroy: gone from Describe at once, then from the API.
    plugin.call(
        "Instance.Destroy",
        json!({"Instance": cattle, "Context": {"Reason": "terminate"}}),
    );
    assert!(plugin
        .describe(Value::Null, false)
        .iter()
        .all(|d| d["ID"] != cattle.as_str()));
    wait_deleted(&fake, &cattle, &first_dir);
    plugin.stop();

    // A plugin with no records still has the instance, from the API alone.
    let second_dir = dir.path().join("second");
    let plugin = PluginProcess::start_with(&second_dir, &env);
    let found = plugin.describe(group.clone(), true);
    assert_eq!(found.len(), 1, "{found:?}\n{}", log(&second_dir));
    assert_eq!(found[0]["ID"], pet.as_str());
    assert_eq!(found[0]["LogicalID"], "10.0.0.5");
    assert_eq!(
        found[0]["Tags"],
        json!({"infrakit.group": "workers", "infrakit.config.hash": "abc", "role": "leader"})
    );
    let details = &found[0]["Properties"];
    assert_eq!(
        (&details["State"], &details["Backend"], &details["Address"]),
        (&json!("running"), &json!("gcp"), &json!("10.0.0.5"))
    );
    assert_eq!(details["SpecDigest"], digest.as_str());
    plugin.call("Instance.Destroy", json!({"Instance": pet}));
    assert!(plugin.describe(group.clone(), false).is_empty());
    wait_deleted(&fake, &pet, &second_dir);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let again = plugin.rpc("Instance.Destroy", json!({"Instance": pet}));
        if again.get("error").is_some_and(|e| !e.is_null()) {
            assert!(error(&again).contains(&format!("no instance {pet}")), "{again}");
            break;
        }
        assert!(Instant::now() < deadline, "{pet}'s record was never removed");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(plugin.describe(Value::Null, false).is_empty());
    plugin.stop();

    // The first plugin's record outlived the instance: dead (in no group), and destroying it is
    // done at once.
    let plugin = PluginProcess::start_with(&first_dir, &env);
    assert!(plugin.describe(group.clone(), true).is_empty());
    let stale = plugin.describe(Value::Null, true);
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0]["Properties"]["State"], "stopped");
    let why = stale[0]["Properties"]["Error"].as_str().unwrap();
    assert!(why.contains(&format!("no instance named {pet}")), "{why}");
    plugin.call("Instance.Destroy", json!({"Instance": pet}));
    let records = first_dir.join("state/instances");
    let deadline = Instant::now() + PATIENCE;
    while std::fs::read_dir(&records).unwrap().count() > 0 {
        assert!(Instant::now() < deadline, "the record stayed\n{}", log(&first_dir));
        std::thread::sleep(Duration::from_millis(200));
    }
    plugin.stop();
    fake.assert_no_violations();
}
