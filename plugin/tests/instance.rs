//! The Instance SPI over the socket, spoken as InfraKit's Go client speaks it: validation errors
//! that name the field, provision answered at once with the build failing in the background and
//! shown by Describe, label, destroy, tag filters, records that survive a restart. (Booting real
//! VMs through the plugin is `tests/examples.rs`'s end-to-end test.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{instance_plugin as start, Connection, UNREACHABLE};

/// How long a test waits for the plugin to get somewhere (not a timing assertion).
const PATIENCE: Duration = Duration::from_secs(60);

fn result(reply: &Value) -> &Value {
    assert!(reply.get("error").is_none_or(Value::is_null), "{reply}");
    &reply["result"]
}

fn error(reply: &Value) -> String {
    assert_eq!(reply["error"]["code"], -32000, "{reply}");
    assert_eq!(reply["error"]["data"], Value::Null, "{reply}");
    reply["error"]["message"].as_str().unwrap().to_string()
}

fn describe(connection: &mut Connection, tags: Value, properties: bool) -> Vec<Value> {
    let reply = connection.rpc(
        "Instance.DescribeInstances",
        json!({"Tags": tags, "Properties": properties}),
    );
    result(&reply)["Descriptions"].as_array().cloned().unwrap_or_default()
}

/// Waits until `id`'s state (Describe with properties) is `state`, and returns its description.
fn wait_state(connection: &mut Connection, id: &str, state: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let found = describe(connection, Value::Null, true)
            .into_iter()
            .find(|d| d["ID"] == id);
        if let Some(d) = found.filter(|d| d["Properties"]["State"] == state) {
            return d;
        }
        assert!(Instant::now() < deadline, "{id} never got {state}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn validate_names_the_field_and_the_spec_position() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = start(dir.path());
    let mut c = plugin.connect();
    let ok = c.rpc(
        "Instance.Validate",
        json!({"Type": "", "Properties": {"Moby": UNREACHABLE}}),
    );
    assert_eq!(result(&ok), &json!({"Type": "", "OK": true}));
    // Field names are matched as Go's decoder does.
    let ok = c.rpc(
        "instance.validate",
        json!([{"properties": {"moby": UNREACHABLE, "cpus": 2}}]),
    );
    assert_eq!(result(&ok)["OK"], true);
    for (properties, names) in [
        (json!(null), "Properties: missing"),
        (json!({}), "Properties.Moby: missing"),
        (json!({"Moby": UNREACHABLE, "CPUs": "two"}), "CPUs"),
        (json!({"Moby": UNREACHABLE, "CPUs": 0}), "Properties.CPUs"),
        (json!({"Moby": UNREACHABLE, "Colour": "red"}), "Colour"),
        (
            json!({"Moby": UNREACHABLE, "Disks": ["size=1G", "size=x"]}),
            "Properties.Disks[1]",
        ),
        (json!({"Moby": UNREACHABLE, "Publish": ["80"]}), "Properties.Publish[0]"),
        (json!({"Moby": UNREACHABLE, "Backend": "gce"}), "Properties.Backend"),
        (json!({"Moby": UNREACHABLE, "Format": "tar"}), "Properties.Format"),
        (json!({"Moby": 7}), "Properties.Moby"),
        (json!({"Moby": "no/such/spec.yml"}), "no/such/spec.yml"),
    ] {
        let reply = c.rpc("Instance.Validate", json!({"Properties": properties}));
        let message = error(&reply);
        assert!(message.contains(names), "{properties}: {message}");
    }
    // A spec that does not parse: the builder's file:line:column.
    let reply = c.rpc(
        "Instance.Validate",
        json!({"Properties": {"Moby": "kernel:\n  image: [\n"}}),
    );
    let message = error(&reply);
    assert!(message.contains("Properties.Moby:3:1: invalid YAML"), "{message}");
}

#[test]
fn provision_answers_at_once_and_describe_shows_how_the_build_failed() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = start(dir.path());
    let mut c = plugin.connect();
    let spec = |tags: Value| json!({"Spec": {"Properties": {"Moby": UNREACHABLE}, "Tags": tags, "Init": "hello"}});
    let web = c.rpc("Instance.Provision", spec(json!({"infrakit.group": "web"})));
    let web = result(&web)["ID"].as_str().unwrap().to_string();
    assert!(web.starts_with("moby-"), "{web}");
    let db = c.rpc("Instance.Provision", spec(json!({"infrakit.group": "db"})));
    let db = result(&db)["ID"].as_str().unwrap().to_string();

    let failed = wait_state(&mut c, &web, "failed");
    let why = failed["Properties"]["Error"].as_str().unwrap();
    assert!(why.contains("127.0.0.1:1/none/kernel"), "{why}");
    assert_eq!(failed["Properties"]["Properties"], json!({"Moby": UNREACHABLE}));
    assert_eq!(failed["Tags"], json!({"infrakit.group": "web"}));
    assert_eq!(failed["LogicalID"], Value::Null);
    wait_state(&mut c, &db, "failed");
    // A failed instance matches no tag filter (InfraKit's group controller lists its members by
    // their tags, with properties, and replaces the missing); without a filter it is listed.
    assert!(describe(&mut c, json!({"infrakit.group": "web"}), true).is_empty());
    assert!(describe(&mut c, json!({"infrakit.group": "web"}), false).is_empty());
    let all = describe(&mut c, Value::Null, false);
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all.iter().all(|d| d.get("Properties").is_none()));

    // Label merges.
    let ok = c.rpc("Instance.Label", json!({"Instance": web, "Labels": {"zone": "a"}}));
    assert_eq!(result(&ok)["OK"], true);
    let labelled = describe(&mut c, Value::Null, true);
    let labelled = labelled.iter().find(|d| d["ID"] == web.as_str()).unwrap();
    assert_eq!(labelled["Tags"], json!({"infrakit.group": "web", "zone": "a"}));

    // Destroy: gone from Describe at once; again is fine while it goes; unknown IDs are errors.
    let ok = c.rpc(
        "Instance.Destroy",
        json!({"Instance": web, "Context": {"Reason": "terminate"}}),
    );
    assert_eq!(result(&ok)["OK"], true);
    assert!(describe(&mut c, Value::Null, true)
        .iter()
        .all(|d| d["ID"] != web.as_str()));
    let deadline = Instant::now() + PATIENCE;
    loop {
        let again = c.rpc("Instance.Destroy", json!({"Instance": web}));
        if again.get("error").is_some_and(|e| !e.is_null()) {
            assert!(error(&again).contains(&format!("no instance {web}")), "{again}");
            break;
        }
        assert!(Instant::now() < deadline, "{web} was never removed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let reply = c.rpc("Instance.Label", json!({"Instance": "moby-nope", "Labels": {"a": "b"}}));
    assert!(error(&reply).contains("no instance moby-nope"));
}

#[test]
fn a_logical_id_names_the_instance_and_records_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut plugin = start(dir.path());
    let mut c = plugin.connect();
    let spec = json!({"Spec": {"Properties": {"Moby": UNREACHABLE}, "LogicalID": "10.0.0.5", "Tags": {"t": "1"}}});
    let reply = c.rpc("Instance.Provision", spec.clone());
    assert_eq!(result(&reply)["ID"], "10.0.0.5");
    wait_state(&mut c, "10.0.0.5", "failed");
    let bad = json!({"Spec": {"Properties": {"Moby": UNREACHABLE}, "LogicalID": "a/b"}});
    assert!(error(&c.rpc("Instance.Provision", bad)).contains("Spec.LogicalID"));
    // The same logical ID again replaces a failed instance.
    let reply = c.rpc("Instance.Provision", spec);
    assert_eq!(result(&reply)["ID"], "10.0.0.5");
    wait_state(&mut c, "10.0.0.5", "failed");

    // A new plugin process on the same state knows the instance.
    drop(c);
    plugin.stop();
    let plugin = start(dir.path());
    let mut c = plugin.connect();
    let found = describe(&mut c, Value::Null, true);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["Tags"], json!({"t": "1"}));
    assert_eq!(found[0]["LogicalID"], "10.0.0.5");
}
