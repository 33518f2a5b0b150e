//! The fake Compute Engine API (tests/support/gce) driven with raw HTTP over one keep-alive
//! connection: schema checks, operations, fingerprints, auth, faults, image files.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::support::gce::{sign_jwt, Fault, GceFake};

const ZONE: &str = "us-central1-a";

/// One answer: status, headers (lower-case names), JSON body (`Null` if not JSON).
struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: Value,
}

/// A raw HTTP/1.1 client on one kept-alive connection.
struct Client {
    reader: BufReader<TcpStream>,
    token: Option<String>,
}

impl Client {
    fn new(fake: &GceFake, token: Option<String>) -> Client {
        let stream = TcpStream::connect(fake.metadata_host()).unwrap();
        Client {
            reader: BufReader::new(stream),
            token,
        }
    }

    /// A Compute call; `path` is relative to `/compute/v1/projects/PROJECT/`.
    fn compute(&mut self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        let path = format!("/compute/v1/projects/{}/{path}", crate::support::gce::PROJECT);
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let mut headers = vec![];
        if !body.is_empty() {
            headers.push(("Content-Type", "application/json".to_string()));
        }
        self.send(method, &path, &headers, &body, false)
    }

    fn send(&mut self, method: &str, target: &str, headers: &[(&str, String)], body: &[u8], chunked: bool) -> Answer {
        let stream = self.reader.get_mut();
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: fake\r\n");
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if chunked {
            head.push_str("Transfer-Encoding: chunked\r\n\r\n");
            stream.write_all(head.as_bytes()).unwrap();
            for chunk in body.chunks(7) {
                write!(stream, "{:x}\r\n", chunk.len()).unwrap();
                stream.write_all(chunk).unwrap();
                stream.write_all(b"\r\n").unwrap();
            }
            stream.write_all(b"0\r\n\r\n").unwrap();
        } else {
            head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(body).unwrap();
        }
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line).unwrap();
        let status = status_line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            headers.insert(name.to_ascii_lowercase(), value.trim().to_string());
        }
        let length: usize = headers["content-length"].parse().unwrap();
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).unwrap();
        let body = serde_json::from_slice(&body).unwrap_or_else(|_| json!(String::from_utf8_lossy(&body)));
        Answer { status, headers, body }
    }

    /// Polls an operation with `get` until DONE; returns every status seen and the last answer.
    fn wait_done(&mut self, operation: &Value) -> (Vec<String>, Value) {
        let scope = match operation["zone"].as_str() {
            Some(_) => format!("zones/{ZONE}"),
            None => "global".to_string(),
        };
        let name = operation["name"].as_str().unwrap();
        let mut statuses = vec![operation["status"].as_str().unwrap().to_string()];
        let mut last = operation.clone();
        for _ in 0..10 {
            if last["status"] == "DONE" {
                break;
            }
            let answer = self.compute("GET", &format!("{scope}/operations/{name}"), None);
            assert_eq!(answer.status, 200, "{}", answer.body);
            last = answer.body;
            statuses.push(last["status"].as_str().unwrap().to_string());
        }
        (statuses, last)
    }
}

/// A Cloud Storage stand-in serving `GET /storage/v1/b/BUCKET/o/OBJECT?alt=media` from a map
/// of `BUCKET/OBJECT` (URL-encoded as sent) to bytes; 404 for anything else.
struct StorageStub {
    addr: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StorageStub {
    fn start(objects: HashMap<String, Vec<u8>>) -> StorageStub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap() == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                let target = request_line.split_whitespace().nth(1).unwrap_or_default();
                let key = target
                    .strip_prefix("/storage/v1/b/")
                    .and_then(|rest| rest.strip_suffix("?alt=media"))
                    .map(|rest| rest.replacen("/o/", "/", 1));
                let (status, body) = match key.and_then(|k| objects.get(&k)) {
                    Some(bytes) => ("200 OK", bytes.clone()),
                    None => ("404 Not Found", b"No such object".to_vec()),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            }
        });
        StorageStub {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for StorageStub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `tar --format=oldgnu -Sczf` (Google's documented command) of files of the given sizes, each
/// sparse but for a few bytes every 64 MiB (more data regions than the tar header holds).
fn gcp_archive(files: &[(&str, u64)]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    for (name, size) in files {
        let file = File::create(dir.path().join(name)).unwrap();
        file.set_len(*size).unwrap();
        for offset in (0..*size).step_by(64 << 20) {
            std::os::unix::fs::FileExt::write_at(&file, b"some data", offset).unwrap();
        }
    }
    let archive = dir.path().join("image.tar.gz");
    let status = Command::new("tar")
        .args(["--format=oldgnu", "-Sczf"])
        .arg(&archive)
        .arg("-C")
        .arg(dir.path())
        .args(files.iter().map(|(name, _)| name))
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(archive).unwrap()
}

const GIB: u64 = 1 << 30;

fn image_body(name: &str, source: &str) -> Value {
    json!({ "name": name, "rawDisk": { "source": source }, "labels": { "made-by": "moby" } })
}

fn instance_body(name: &str, image: &str) -> Value {
    json!({
        "name": name,
        "machineType": format!("zones/{ZONE}/machineTypes/e2-small"),
        "disks": [{
            "boot": true,
            "autoDelete": true,
            "initializeParams": { "sourceImage": format!("global/images/{image}"), "diskSizeGb": "10" },
        }],
        "networkInterfaces": [{ "network": "global/networks/default", "accessConfigs": [{ "type": "ONE_TO_ONE_NAT" }] }],
        "labels": { "infrakit-group": "workers" },
        "metadata": { "items": [{ "key": "user-data", "value": "hello from the test" }] },
    })
}

/// A fake with a READY image `linuxkit` (from a stub bucket) and a client holding a token.
fn fake_with_image() -> (GceFake, StorageStub, Client) {
    let storage = StorageStub::start(HashMap::from([(
        "bucket/linuxkit.img.tar.gz".to_string(),
        gcp_archive(&[("disk.raw", GIB)]),
    )]));
    let fake = GceFake::start(Some(storage.url()));
    let mut client = Client::new(&fake, Some(fake.access_token()));
    let answer = client.compute(
        "POST",
        "global/images",
        Some(&image_body(
            "linuxkit",
            "https://storage.googleapis.com/bucket/linuxkit.img.tar.gz",
        )),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let (_, done) = client.wait_done(&answer.body);
    assert!(done.get("error").is_none(), "{done}");
    (fake, storage, client)
}

#[test]
fn gce_fake_image_and_instance_lifecycle_passes_the_schema() {
    let (fake, _storage, mut client) = fake_with_image();
    let image = client.compute("GET", "global/images/linuxkit", None);
    assert_eq!(image.status, 200);
    assert_eq!(image.body["status"], "READY");
    assert_eq!(image.body["diskSizeGb"], "1");
    assert_eq!(image.body["labels"]["made-by"], "moby");

    let insert = client.compute(
        "POST",
        &format!("zones/{ZONE}/instances"),
        Some(&instance_body("vm-1", "linuxkit")),
    );
    assert_eq!(insert.status, 200, "{}", insert.body);
    let operation = insert.body;
    assert_eq!(operation["kind"], "compute#operation");
    assert_eq!(operation["operationType"], "insert");
    assert!(operation["targetLink"]
        .as_str()
        .unwrap()
        .ends_with(&format!("zones/{ZONE}/instances/vm-1")));
    assert!(operation["zone"].as_str().unwrap().ends_with(&format!("zones/{ZONE}")));
    let (statuses, done) = client.wait_done(&operation);
    assert_eq!(statuses, ["PENDING", "RUNNING", "DONE"]);
    assert!(done.get("error").is_none(), "{done}");

    let mut seen = vec![];
    for _ in 0..3 {
        let instance = client.compute("GET", &format!("zones/{ZONE}/instances/vm-1"), None);
        assert_eq!(instance.status, 200);
        seen.push(instance.body["status"].as_str().unwrap().to_string());
    }
    assert_eq!(seen, ["PROVISIONING", "STAGING", "RUNNING"]);
    let instance = &fake.instances()[0];
    assert_eq!(instance["networkInterfaces"][0]["networkIP"], "10.128.0.2");
    assert!(instance["id"].as_str().unwrap().parse::<u64>().is_ok());
    assert!(instance["machineType"]
        .as_str()
        .unwrap()
        .starts_with(&fake.compute_endpoint()));

    // The serial console grows over polls and shows the user data; `next` continues it.
    let mut console = String::new();
    let mut next = "0".to_string();
    for _ in 0..6 {
        let answer = client.compute(
            "GET",
            &format!("zones/{ZONE}/instances/vm-1/serialPort?start={next}"),
            None,
        );
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body["start"], next.as_str());
        console.push_str(answer.body["contents"].as_str().unwrap());
        next = answer.body["next"].as_str().unwrap().to_string();
    }
    assert!(
        console.contains("fake-gce: user-data: hello from the test\r\n"),
        "{console}"
    );
    assert_eq!(next, console.len().to_string());

    let delete = client.compute("DELETE", &format!("zones/{ZONE}/instances/vm-1"), None);
    assert_eq!(delete.status, 200, "{}", delete.body);
    assert_eq!(
        fake.instances().len(),
        1,
        "an instance goes only when its delete is DONE"
    );
    client.wait_done(&delete.body);
    assert!(fake.instances().is_empty());
    let gone = client.compute("GET", &format!("zones/{ZONE}/instances/vm-1/serialPort"), None);
    assert_eq!(gone.status, 404);
    assert_eq!(gone.body["error"]["errors"][0]["reason"], "notFound");
    fake.assert_no_violations();
}

#[test]
fn gce_fake_records_schema_violations() {
    let fake = GceFake::start(None);
    let mut client = Client::new(&fake, Some(fake.access_token()));
    let path = format!("zones/{ZONE}/instances");
    let cases = [
        (
            "unknownField",
            json!({ "name": "a", "machineType": "zones/z/machineTypes/t", "bogus": 1 }),
            "resource.bogus",
        ),
        (
            "wrong type",
            json!({ "name": "a", "disks": [{ "initializeParams": { "diskSizeGb": 10 } }] }),
            "resource.disks[0].initializeParams.diskSizeGb",
        ),
        (
            "bad enum",
            json!({ "name": "a", "disks": [{ "type": "FLOPPY" }] }),
            "resource.disks[0].type",
        ),
        (
            "missing required",
            json!({ "machineType": "zones/z/machineTypes/t" }),
            "resource.name",
        ),
        ("pattern", json!({ "name": "Not_A_Name" }), "resource.name"),
        (
            "nested required",
            json!({ "name": "a", "metadata": { "items": [{ "key": "k" }] } }),
            "resource.metadata.items[0].value",
        ),
    ];
    for (what, body, field) in cases {
        let before = fake.violations().len();
        let answer = client.compute("POST", &path, Some(&body));
        assert_eq!(answer.status, 400, "{what}: {}", answer.body);
        assert_eq!(answer.body["error"]["code"], 400);
        assert_eq!(answer.body["error"]["errors"][0]["domain"], "global");
        assert_eq!(answer.body["error"]["errors"][0]["reason"], "invalid");
        let new: Vec<_> = fake.violations()[before..].to_vec();
        assert!(
            new.iter()
                .any(|v| v.field == field && v.method_id == "compute.instances.insert"),
            "{what}: {new:?}"
        );
    }
    let bad_query = client.compute("GET", &format!("{path}?maxResults=-1&colour=blue"), None);
    assert_eq!(bad_query.status, 400);
    let fields: Vec<String> = fake.violations().iter().map(|v| v.field.clone()).collect();
    assert!(fields.contains(&"query.maxResults".to_string()), "{fields:?}");
    assert!(fields.contains(&"query.colour".to_string()), "{fields:?}");
    let bad_path = client.compute("GET", "zones/US_CENTRAL/instances/a", None);
    assert_eq!(bad_path.status, 400);
    assert!(fake.violations().iter().any(|v| v.field == "path.zone"));
    let unknown = client.compute("GET", "global/snapshots", None);
    assert_eq!(unknown.status, 404);
    assert_eq!(fake.violations().last().unwrap().method_id, "unknown");
    // A semantic refusal GCE makes is a violation too: label keys cannot hold dots.
    let mut dotted = instance_body("b", "missing");
    dotted["labels"] = json!({ "infrakit.group": "workers" });
    assert_eq!(client.compute("POST", &path, Some(&dotted)).status, 400);
    assert!(fake.violations().last().unwrap().message.contains("infrakit.group"));
    let recorded = fake.requests();
    assert_eq!(recorded[0].method_id, "compute.instances.insert");
    assert_eq!(recorded[0].body["bogus"], 1);
}

#[test]
fn gce_fake_chunked_body_and_missing_image() {
    let fake = GceFake::start(None);
    let mut client = Client::new(&fake, Some(fake.access_token()));
    let body = instance_body("vm-2", "nothing-here").to_string();
    let target = format!("/compute/v1/projects/{}/zones/{ZONE}/instances", fake.project());
    let answer = client.send(
        "POST",
        &target,
        &[("Content-Type", "application/json".into())],
        body.as_bytes(),
        true,
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let (_, done) = client.wait_done(&answer.body);
    assert_eq!(done["error"]["errors"][0]["code"], "RESOURCE_NOT_FOUND");
    assert!(done["error"]["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("global/images/nothing-here"));
    assert!(fake.instances().is_empty());
    fake.assert_no_violations();
}

#[test]
fn gce_fake_labels_fingerprint_must_match() {
    let (fake, _storage, mut client) = fake_with_image();
    let insert = client.compute(
        "POST",
        &format!("zones/{ZONE}/instances"),
        Some(&instance_body("vm-3", "linuxkit")),
    );
    client.wait_done(&insert.body);
    let instance = client
        .compute("GET", &format!("zones/{ZONE}/instances/vm-3"), None)
        .body;
    let path = format!("zones/{ZONE}/instances/vm-3/setLabels");
    let stale = client.compute(
        "POST",
        &path,
        Some(&json!({ "labels": { "a": "b" }, "labelFingerprint": "AAAAAAAAAAA=" })),
    );
    assert_eq!(stale.status, 412);
    assert_eq!(stale.body["error"]["errors"][0]["reason"], "conditionNotMet");
    let fresh = json!({ "labels": { "a": "b" }, "labelFingerprint": instance["labelFingerprint"] });
    let set = client.compute("POST", &path, Some(&fresh));
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(
        fake.instances()[0]["labels"],
        json!({ "infrakit-group": "workers" }),
        "applied only when DONE"
    );
    client.wait_done(&set.body);
    let after = &fake.instances()[0];
    assert_eq!(after["labels"], json!({ "a": "b" }));
    assert_ne!(after["labelFingerprint"], instance["labelFingerprint"]);

    // The same with metadata, then a filtered, paged list.
    let metadata_path = format!("zones/{ZONE}/instances/vm-3/setMetadata");
    let stale = client.compute(
        "POST",
        &metadata_path,
        Some(&json!({ "items": [], "fingerprint": "AAAAAAAAAAA=" })),
    );
    assert_eq!(stale.status, 412);
    let items = json!({ "items": [{ "key": "k", "value": "v" }], "fingerprint": after["metadata"]["fingerprint"] });
    let set = client.compute("POST", &metadata_path, Some(&items));
    client.wait_done(&set.body);
    assert_eq!(fake.instances()[0]["metadata"]["items"], items["items"]);

    for name in ["vm-4", "vm-5"] {
        let insert = client.compute(
            "POST",
            &format!("zones/{ZONE}/instances"),
            Some(&instance_body(name, "linuxkit")),
        );
        client.wait_done(&insert.body);
    }
    let list = |client: &mut Client, query: &str| {
        client
            .compute("GET", &format!("zones/{ZONE}/instances?{query}"), None)
            .body
    };
    let names = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect()
    };
    let filtered = list(&mut client, "filter=labels.infrakit-group%20%3D%20%22workers%22");
    assert_eq!(names(&filtered), ["vm-4", "vm-5"]);
    let filtered = list(&mut client, "filter=(labels.a=b)%20AND%20(name%20=%20vm-3)");
    assert_eq!(names(&filtered), ["vm-3"]);
    let none = list(&mut client, "filter=labels.a%3Dz");
    assert!(
        none.get("items").is_none(),
        "GCE leaves items out of an empty list: {none}"
    );
    let first = list(&mut client, "maxResults=2");
    assert_eq!(names(&first), ["vm-3", "vm-4"]);
    let token = first["nextPageToken"].as_str().unwrap();
    let second = list(&mut client, &format!("maxResults=2&pageToken={token}"));
    assert_eq!(names(&second), ["vm-5"]);
    assert!(second.get("nextPageToken").is_none());
    fake.assert_no_violations();
}

#[test]
fn gce_fake_bad_image_files_fail_the_operation() {
    let objects = HashMap::from([
        (
            "b/two.tar.gz".to_string(),
            gcp_archive(&[("disk.raw", GIB), ("extra", 10)]),
        ),
        ("b/odd-size.tar.gz".to_string(), gcp_archive(&[("disk.raw", GIB + 512)])),
        ("b/plain.tar".to_string(), b"not gzip".to_vec()),
    ]);
    let storage = StorageStub::start(objects);
    let fake = GceFake::start(Some(storage.url()));
    let mut client = Client::new(&fake, Some(fake.access_token()));
    let cases = [
        ("two", "gs://b/two.tar.gz", "only disk.raw"),
        ("odd", "gs://b/odd-size.tar.gz", "whole number of GiB"),
        ("plain", "gs://b/plain.tar", "not gzip"),
        ("missing", "gs://b/missing.tar.gz", "was not found"),
    ];
    for (name, source, why) in cases {
        let answer = client.compute("POST", "global/images", Some(&image_body(name, source)));
        assert_eq!(answer.status, 200, "{}", answer.body);
        let (_, done) = client.wait_done(&answer.body);
        let message = done["error"]["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{name}: {done}");
    }
    assert!(fake.images().is_empty());
    let malformed = client.compute("POST", "global/images", Some(&image_body("x", "s3://b/o")));
    assert_eq!(malformed.status, 400);
    assert_eq!(fake.violations().len(), 1, "{:?}", fake.violations());
}

#[test]
fn gce_fake_tokens_refused_expired_and_missing_are_401() {
    let fake = GceFake::start(None);
    let path = format!("zones/{ZONE}/instances");
    let mut anonymous = Client::new(&fake, None);
    let answer = anonymous.compute("GET", &path, None);
    assert_eq!(answer.status, 401);
    assert_eq!(answer.body["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(answer.body["error"]["errors"][0]["reason"], "required");

    let mut client = Client::new(&fake, Some(fake.access_token()));
    assert_eq!(client.compute("GET", &path, None).status, 200);
    fake.refuse_tokens(true);
    let refused = client.compute("GET", &path, None);
    assert_eq!(refused.status, 401);
    assert_eq!(refused.body["error"]["errors"][0]["reason"], "authError");
    fake.refuse_tokens(false);
    assert_eq!(client.compute("GET", &path, None).status, 200);
    fake.expire_tokens();
    assert_eq!(client.compute("GET", &path, None).status, 401);
    let mut renewed = Client::new(&fake, Some(fake.access_token()));
    assert_eq!(renewed.compute("GET", &path, None).status, 200);
    let mut stranger = Client::new(&fake, Some("ya29.not-issued-here".into()));
    assert_eq!(stranger.compute("GET", &path, None).status, 401);

    // The metadata server hands out tokens to clients that say Metadata-Flavor: Google.
    let mut metadata = Client::new(&fake, None);
    let token_path = "/computeMetadata/v1/instance/service-accounts/default/token";
    assert_eq!(metadata.send("GET", token_path, &[], b"", false).status, 403);
    let flavor = [("Metadata-Flavor", "Google".to_string())];
    let token = metadata.send("GET", token_path, &flavor, b"", false);
    assert_eq!(token.status, 200);
    assert_eq!(token.headers["metadata-flavor"], "Google");
    let project = metadata.send("GET", "/computeMetadata/v1/project/project-id", &flavor, b"", false);
    assert_eq!(project.body, fake.project());
    let mut from_metadata = Client::new(&fake, Some(token.body["access_token"].as_str().unwrap().into()));
    assert_eq!(from_metadata.compute("GET", &path, None).status, 200);
    fake.assert_no_violations();
}

#[test]
fn gce_fake_service_account_jwts() {
    let fake = GceFake::start(None);
    let key = fake.service_account_key();
    assert_eq!(key["type"], "service_account");
    assert_eq!(key["token_uri"], fake.token_uri().as_str());
    assert!(key["private_key"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let email = key["client_email"].as_str().unwrap();
    let path = format!("zones/{ZONE}/instances");

    // A self-signed JWT with the Compute audience is a bearer token.
    let claims =
        json!({ "iss": email, "sub": email, "aud": "https://compute.googleapis.com/", "iat": now, "exp": now + 3600 });
    let mut client = Client::new(&fake, Some(sign_jwt(&key, &claims).unwrap()));
    assert_eq!(client.compute("GET", &path, None).status, 200);

    // The same claims signed by another RSA key (with the registered key id) are refused.
    let mut forged_key = key.clone();
    forged_key["private_key"] = json!(crate::support::gce::generate_rsa_pem().unwrap());
    let mut forger = Client::new(&fake, Some(sign_jwt(&forged_key, &claims).unwrap()));
    let refused = forger.compute("GET", &path, None);
    assert_eq!(refused.status, 401);
    assert!(
        refused.body["error"]["message"].as_str().unwrap().contains("signature"),
        "{}",
        refused.body
    );
    let expired =
        json!({ "iss": email, "aud": "https://compute.googleapis.com/", "iat": now - 7200, "exp": now - 3600 });
    let mut late = Client::new(&fake, Some(sign_jwt(&key, &expired).unwrap()));
    assert_eq!(late.compute("GET", &path, None).status, 401);

    // The JWT-bearer grant at the token endpoint.
    let mut oauth = Client::new(&fake, None);
    let form = [("Content-Type", "application/x-www-form-urlencoded".to_string())];
    let grant = |assertion: String| {
        format!("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}")
    };
    let scope = "https://www.googleapis.com/auth/compute";
    let assertion = json!({ "iss": email, "scope": scope, "aud": fake.token_uri(), "iat": now, "exp": now + 3600 });
    let answer = oauth.send(
        "POST",
        "/token",
        &form,
        grant(sign_jwt(&key, &assertion).unwrap()).as_bytes(),
        false,
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["token_type"], "Bearer");
    let mut granted = Client::new(&fake, Some(answer.body["access_token"].as_str().unwrap().into()));
    assert_eq!(granted.compute("GET", &path, None).status, 200);
    let forged = oauth.send(
        "POST",
        "/token",
        &form,
        grant(sign_jwt(&forged_key, &assertion).unwrap()).as_bytes(),
        false,
    );
    assert_eq!(forged.status, 400);
    assert_eq!(forged.body["error"], "invalid_grant");

    // A token with a read-only scope cannot insert.
    let read_only = json!({ "iss": email, "scope": "https://www.googleapis.com/auth/compute.readonly", "aud": fake.token_uri(), "iat": now, "exp": now + 3600 });
    let answer = oauth.send(
        "POST",
        "/token",
        &form,
        grant(sign_jwt(&key, &read_only).unwrap()).as_bytes(),
        false,
    );
    let mut reader = Client::new(&fake, Some(answer.body["access_token"].as_str().unwrap().into()));
    assert_eq!(reader.compute("GET", &path, None).status, 200);
    assert_eq!(
        reader.compute("POST", &path, Some(&instance_body("x", "y"))).status,
        403
    );

    // The refresh-token grant of an authorized_user file.
    let user = fake.authorized_user();
    let refresh = format!(
        "grant_type=refresh_token&client_id={}&client_secret={}&refresh_token={}",
        user["client_id"].as_str().unwrap(),
        user["client_secret"].as_str().unwrap(),
        user["refresh_token"].as_str().unwrap().replace('/', "%2F"),
    );
    let answer = oauth.send("POST", "/token", &form, refresh.as_bytes(), false);
    assert_eq!(answer.status, 200, "{}", answer.body);
    fake.refuse_tokens(true);
    let answer = oauth.send("POST", "/token", &form, refresh.as_bytes(), false);
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["error"], "invalid_grant");
    fake.assert_no_violations();
}

#[test]
fn gce_fake_injected_faults() {
    let (fake, _storage, mut client) = fake_with_image();
    fake.inject(
        "compute.instances.list",
        Fault::new(503, "backendError", "try later").times(2).retry_after(3),
    );
    let path = format!("zones/{ZONE}/instances");
    for _ in 0..2 {
        let answer = client.compute("GET", &path, None);
        assert_eq!(answer.status, 503);
        assert_eq!(answer.headers["retry-after"], "3");
        assert_eq!(answer.body["error"]["errors"][0]["reason"], "backendError");
    }
    assert_eq!(client.compute("GET", &path, None).status, 200);

    fake.fail_next("compute.images.insert", 429, "rateLimitExceeded", "Rate Limit Exceeded");
    let body = image_body("again", "gs://bucket/linuxkit.img.tar.gz");
    let limited = client.compute("POST", "global/images", Some(&body));
    assert_eq!(limited.status, 429);
    assert_eq!(limited.body["error"]["errors"][0]["domain"], "usageLimits");
    let taken = client.compute(
        "POST",
        "global/images",
        Some(&image_body("linuxkit", "gs://bucket/linuxkit.img.tar.gz")),
    );
    assert_eq!(taken.status, 409);
    assert_eq!(taken.body["error"]["errors"][0]["reason"], "alreadyExists");

    fake.fail_operation("compute.instances.insert", "ZONE_RESOURCE_POOL_EXHAUSTED");
    let insert = client.compute("POST", &path, Some(&instance_body("vm-6", "linuxkit")));
    assert_eq!(fake.instances().len(), 1, "visible while its insert runs");
    let (_, done) = client.wait_done(&insert.body);
    assert_eq!(done["error"]["errors"][0]["message"], "ZONE_RESOURCE_POOL_EXHAUSTED");
    assert!(fake.instances().is_empty(), "a failed insert leaves no instance");

    // `wait` advances an operation one poll per call; a retried requestId gets the same one.
    fake.set_operation_polls(3);
    let request_id = "8a5f4f0e-2b1c-4d3e-9f00-112233445566";
    let first = client.compute(
        "DELETE",
        &format!("global/images/linuxkit?requestId={request_id}"),
        None,
    );
    let again = client.compute(
        "DELETE",
        &format!("global/images/linuxkit?requestId={request_id}"),
        None,
    );
    assert_eq!(first.body["name"], again.body["name"]);
    let wait = format!("global/operations/{}/wait", first.body["name"].as_str().unwrap());
    let statuses: Vec<Value> = (0..3)
        .map(|_| client.compute("POST", &wait, None).body["status"].clone())
        .collect();
    assert_eq!(statuses, [json!("RUNNING"), json!("RUNNING"), json!("DONE")]);
    assert!(fake.images().is_empty());
    fake.assert_no_violations();
}
