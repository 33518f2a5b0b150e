//! `moby push gcp` and `moby run gcp`, and the GCP backend's lifecycle, against a real Cloud
//! Storage emulator and a fake Compute Engine that checks every request against Google's
//! published API schema (tests/support/gce): uploads, image imports, instances with their
//! metadata and labels, long-running operations that are still running on the first poll, and
//! the failures (missing settings, refused credentials, API errors, retries, an archive that is
//! not a GCE image) that must leave nothing behind.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use vmm::gcp::{CredentialsSource, Endpoints, Gcp, Location, Machine, Settings};
use vmm::{Backend, Request, Tags};

use crate::examples::{package_cache, repo};
use crate::support::gce::{Fault, GceFake, PROJECT};
use crate::support::gcs::StorageEmulator;
use crate::support::{moby_bin, pkg_cargo};

const BUCKET: &str = "moby-images";
const ZONE: &str = "europe-west1-d";

/// `examples/minimal.yml` built as `web.img.tar.gz`, once for every test.
fn gcp_image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("moby-gcp-").tempdir().unwrap().keep();
        let out = Command::new(moby_bin())
            .args(["build", "--format", "gcp", "--name", "web", "--dir"])
            .arg(&dir)
            .arg(repo().join("examples/minimal.yml"))
            .env("MOBY_CACHE", package_cache())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        dir.join("web.img.tar.gz")
    })
}

/// pkg/metadata's binary, built as `moby pkg build` builds it (so usually built already).
fn metadata_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let (mut cargo, target_dir) = pkg_cargo("metadata", "build");
        assert!(cargo.status().unwrap().success(), "building pkg/metadata failed");
        target_dir.join("x86_64-unknown-linux-gnu/release/metadata")
    })
}

/// A fake Compute Engine, a storage emulator and a service-account key for them.
struct Cloud {
    fake: GceFake,
    storage: StorageEmulator,
    dir: tempfile::TempDir,
}

impl Cloud {
    fn start() -> Cloud {
        let storage = StorageEmulator::start(BUCKET);
        let fake = GceFake::start(Some(storage.url()));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key.json"), fake.service_account_key().to_string()).unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        Cloud { fake, storage, dir }
    }

    /// [`Cloud::start`] with [`gcp_image`] pushed as image `web`.
    fn with_image() -> Cloud {
        let cloud = Cloud::start();
        let path = gcp_image().to_str().unwrap();
        succeeds(cloud.moby(&["push", "gcp", path]).output().unwrap());
        cloud
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("key.json")
    }

    /// `moby ARGS` with the settings in the environment, as a user of LinuxKit sets them, and
    /// nothing of this host's own Google configuration.
    fn moby(&self, args: &[&str]) -> Command {
        let mut command = Command::new(moby_bin());
        command
            .args(args)
            .env("HOME", self.dir.path().join("home"))
            .env("CLOUDSDK_CORE_PROJECT", PROJECT)
            .env("CLOUDSDK_COMPUTE_ZONE", ZONE)
            .env("CLOUDSDK_IMAGE_BUCKET", BUCKET)
            .env("CLOUDSDK_COMPUTE_KEYS", self.key())
            .env("CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE", self.fake.compute_endpoint())
            .env("STORAGE_EMULATOR_HOST", self.storage.url())
            .env("GCE_METADATA_HOST", self.fake.metadata_host())
            .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
            .env_remove("CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE")
            .env_remove("CLOUDSDK_IMAGE_NAME")
            .env_remove("CLOUDSDK_IMAGE_FAMILY")
            .env_remove("CLOUDSDK_COMPUTE_MACHINE");
        command
    }

    fn calls(&self, method_id: &str) -> usize {
        self.fake.requests().iter().filter(|r| r.method_id == method_id).count()
    }

    /// The backend as the plugin and clusters use it, on the same fake.
    fn backend(&self) -> Gcp {
        let settings = Settings {
            location: Location {
                project: PROJECT.into(),
                zone: ZONE.into(),
            },
            endpoints: Endpoints::resolve(Some(self.fake.compute_endpoint()), Some(self.storage.url())),
            credentials: CredentialsSource::KeyFile(self.key()),
        };
        Gcp::new(&settings, Machine::default()).unwrap()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn fails(out: Output, wanted: &[&str]) -> String {
    let text = stderr(&out);
    assert!(!out.status.success(), "should have failed: {text}");
    for w in wanted {
        assert!(text.contains(w), "{w:?} not in: {text}");
    }
    text
}

#[track_caller]
fn succeeds(out: Output) -> String {
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn push_then_run_streams_the_console_with_the_userdata_and_deletes_the_instance() {
    let cloud = Cloud::start();
    let image = gcp_image();
    let path = image.to_str().unwrap();
    assert_eq!(succeeds(cloud.moby(&["push", "gcp", path]).output().unwrap()), "web\n");
    let images = cloud.fake.images();
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0]["name"], "web");
    assert_eq!(images[0]["status"], "READY");
    assert_eq!(images[0]["labels"]["created-by"], "moby");
    let uploaded = cloud
        .storage
        .object(BUCKET, "web.img.tar.gz")
        .expect("the archive was uploaded");
    assert!(
        uploaded == std::fs::read(image).unwrap(),
        "the upload is the archive, byte for byte"
    );

    // An image of that name is replaced only when asked.
    fails(
        cloud.moby(&["push", "gcp", path]).output().unwrap(),
        &["the image web exists in project", "--replace"],
    );
    assert_eq!(cloud.calls("compute.images.insert"), 1);
    succeeds(
        cloud
            .moby(&["push", "gcp", "-replace", "-family", "moby", path])
            .output()
            .unwrap(),
    );
    assert_eq!(cloud.calls("compute.images.delete"), 1);
    assert_eq!(cloud.fake.images()[0]["family"], "moby");

    // LinuxKit's single-dash flags; the console is followed until the guest powers off.
    let mut run = cloud
        .moby(&[
            "run",
            "gcp",
            "-name",
            "web-1",
            "-machine",
            "e2-small",
            "-disk-size",
            "2",
            "-data",
            "hello from moby",
            "--tag",
            "role=web",
            "web",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut console = BufReader::new(run.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("user-data: hello from moby") {
        let mut line = String::new();
        assert!(
            console.read_line(&mut line).unwrap() > 0,
            "the console ended early: {seen}"
        );
        seen.push_str(&line);
    }
    let instances = cloud.fake.instances();
    assert_eq!(instances.len(), 1);
    let instance = &instances[0];
    assert_eq!(instance["name"], "web-1");
    assert!(instance["machineType"]
        .as_str()
        .unwrap()
        .ends_with("/machineTypes/e2-small"));
    assert_eq!(instance["labels"]["role"], "web");
    assert_eq!(instance["labels"]["created-by"], "moby");
    let item = |key: &str| {
        instance["metadata"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["key"] == key)
            .map(|i| i["value"].as_str().unwrap().to_string())
    };
    assert_eq!(item("user-data").as_deref(), Some("hello from moby"));
    assert_eq!(item("serial-port-enable").as_deref(), Some("1"));
    // What the guest's metadata package makes of it, from the metadata server as the guest
    // sees it (in a UTS namespace of its own: it sets the hostname it is given).
    let config = cloud.dir.path().join("run-config");
    let out = Command::new("unshare")
        .args(["--map-root-user", "--uts"])
        .arg(metadata_binary())
        .arg("gcp")
        .env("METADATA_GCP_URL", cloud.fake.guest_metadata_url("web-1"))
        .env("METADATA_CONFIG_PATH", &config)
        .output()
        .unwrap();
    succeeds(out);
    assert_eq!(
        std::fs::read_to_string(config.join("userdata")).unwrap(),
        "hello from moby"
    );
    assert_eq!(
        std::fs::read_to_string(config.join("hostname")).unwrap(),
        format!("web-1.c.{PROJECT}.internal")
    );
    assert!(cloud.fake.set_instance_status("web-1", "TERMINATED"));
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        cloud.fake.instances().is_empty(),
        "the instance is deleted when the run ends"
    );
    cloud.fake.assert_no_violations();
}

#[test]
fn ctrl_c_deletes_the_instance_unless_asked_to_keep_it() {
    let cloud = Cloud::with_image();
    for keep in [false, true] {
        let mut args = vec!["run", "gcp", "--name", "ctrl-c"];
        if keep {
            args.push("--skip-cleanup");
        }
        args.push("web");
        let mut run = cloud
            .moby(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut console = BufReader::new(run.stdout.take().unwrap());
        let mut line = String::new();
        assert!(console.read_line(&mut line).unwrap() > 0, "the console shows the boot");
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(run.id() as i32).unwrap(),
            rustix::process::Signal::INT,
        )
        .unwrap();
        assert!(run.wait().unwrap().success());
        assert_eq!(cloud.fake.instances().len(), usize::from(keep), "keep: {keep}");
    }
    cloud.fake.assert_no_violations();
}

#[test]
fn missing_settings_and_bad_archives_fail_before_any_request() {
    let cloud = Cloud::start();
    let image = gcp_image().to_str().unwrap().to_string();
    let out = cloud
        .moby(&["push", "gcp", &image])
        .env_remove("CLOUDSDK_CORE_PROJECT")
        .output()
        .unwrap();
    fails(
        out,
        &[
            "no Google Cloud project is given: set CLOUDSDK_CORE_PROJECT",
            "--project",
        ],
    );
    let out = cloud
        .moby(&["push", "gcp", &image])
        .env_remove("CLOUDSDK_IMAGE_BUCKET")
        .output()
        .unwrap();
    fails(
        out,
        &["no Google Cloud bucket is given: set CLOUDSDK_IMAGE_BUCKET", "--bucket"],
    );
    let out = cloud
        .moby(&["push", "gcp", "--keys", "/nonexistent/key.json", &image])
        .output()
        .unwrap();
    fails(
        out,
        &[
            "cannot read the Google Cloud credentials file /nonexistent/key.json",
            "--keys",
        ],
    );
    let out = cloud
        .moby(&["push", "gcp", "--img-name", "Web_1", &image])
        .output()
        .unwrap();
    fails(out, &["the image name \"Web_1\" is not valid"]);

    // A gzipped tar of something else, and a file that is not even gzip.
    let other = cloud.dir.path().join("other.img.tar.gz");
    let tar = Command::new("tar")
        .args(["-czf"])
        .arg(&other)
        .args(["-C", "/etc", "hostname"])
        .status()
        .unwrap();
    assert!(tar.success());
    let out = cloud.moby(&["push", "gcp", other.to_str().unwrap()]).output().unwrap();
    fails(out, &["other.img.tar.gz is not a GCE image", "disk.raw"]);
    let plain = cloud.dir.path().join("plain.img.tar.gz");
    std::fs::write(&plain, "just text").unwrap();
    let out = cloud.moby(&["push", "gcp", plain.to_str().unwrap()]).output().unwrap();
    fails(out, &["is not a GCE image: it is not gzip-compressed"]);

    let compute: Vec<_> = cloud
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method_id.starts_with("compute."))
        .collect();
    assert!(compute.is_empty(), "nothing reached Compute Engine: {compute:?}");
    assert!(cloud.storage.objects(BUCKET).is_empty());
}

#[test]
fn api_errors_are_the_apis_words_retries_wait_and_failures_leave_nothing_behind() {
    let cloud = Cloud::start();
    let image = gcp_image().to_str().unwrap().to_string();
    let push = || cloud.moby(&["push", "gcp", &image]).output().unwrap();

    // Refused credentials: nothing is uploaded.
    cloud.fake.refuse_tokens(true);
    fails(push(), &["Compute Engine images.get web", "HTTP 401"]);
    cloud.fake.refuse_tokens(false);
    assert!(cloud.storage.objects(BUCKET).is_empty());

    // Permission denied on the import: the upload is removed again.
    let denied = "Required 'compute.images.create' permission for 'projects/moby-fake-project/global/images/web'";
    cloud.fake.fail_next("compute.images.insert", 403, "forbidden", denied);
    fails(push(), &[denied, "HTTP 403, forbidden"]);
    assert!(cloud.storage.objects(BUCKET).is_empty(), "the upload is removed");
    assert!(cloud.fake.images().is_empty());

    // An import that fails in its operation (still RUNNING on the first poll).
    cloud
        .fake
        .fail_operation("compute.images.insert", "The image file is corrupt");
    fails(push(), &["creating image web failed: The image file is corrupt"]);
    assert!(cloud.storage.objects(BUCKET).is_empty());
    assert!(cloud.fake.images().is_empty());

    // Rate limited twice (with Retry-After), then served: the push goes through.
    let gets = cloud.calls("compute.images.get");
    cloud.fake.inject(
        "compute.images.get",
        Fault::new(429, "rateLimitExceeded", "Rate Limit Exceeded")
            .times(2)
            .retry_after(1),
    );
    succeeds(push());
    assert_eq!(cloud.calls("compute.images.get"), gets + 3);
    assert_eq!(cloud.fake.images().len(), 1);

    // A server error is retried; a missing image is the API's message, and no instance is left.
    cloud.fake.inject(
        "compute.instances.insert",
        Fault::new(503, "backendError", "Backend Error"),
    );
    let out = cloud
        .moby(&["run", "gcp", "--name", "orphan", "no-such-image"])
        .output()
        .unwrap();
    fails(out, &["creating instance orphan failed", "no-such-image"]);
    assert!(cloud.calls("compute.instances.insert") >= 2, "the 503 was retried");
    assert!(cloud.fake.instances().is_empty());
    cloud.fake.assert_no_violations();
}

#[test]
fn credentials_come_from_the_metadata_server_or_an_authorized_user_file() {
    let cloud = Cloud::start();
    let image = gcp_image().to_str().unwrap().to_string();
    // No key, no file: application default credentials fall back to the metadata server.
    let out = cloud
        .moby(&["push", "gcp", "--img-name", "from-mds", &image])
        .env_remove("CLOUDSDK_COMPUTE_KEYS")
        .output()
        .unwrap();
    succeeds(out);
    assert!(
        cloud.calls("metadata.get") > 0,
        "the token came from the metadata server"
    );
    // gcloud's application-default login: a refresh token exchanged at the file's token_uri.
    let adc = cloud.dir.path().join("adc.json");
    std::fs::write(&adc, cloud.fake.authorized_user().to_string()).unwrap();
    let out = cloud
        .moby(&["push", "gcp", "--img-name", "from-user", &image])
        .env_remove("CLOUDSDK_COMPUTE_KEYS")
        .env("GOOGLE_APPLICATION_CREDENTIALS", &adc)
        .output()
        .unwrap();
    succeeds(out);
    assert!(
        cloud.calls("oauth2.token") > 0,
        "the token came from the token endpoint"
    );
    // The token endpoint refusing the refresh token.
    cloud.fake.refuse_tokens(true);
    let out = cloud
        .moby(&["push", "gcp", "--img-name", "refused", &image])
        .env_remove("CLOUDSDK_COMPUTE_KEYS")
        .env("GOOGLE_APPLICATION_CREDENTIALS", &adc)
        .output()
        .unwrap();
    fails(out, &["cannot get Google Cloud credentials"]);
    let names: Vec<Value> = cloud.fake.images().iter().map(|i| i["name"].clone()).collect();
    assert_eq!(names, ["from-mds", "from-user"]);
    cloud.fake.assert_no_violations();
}

#[test]
fn the_backend_describes_lists_labels_and_destroys_from_the_api_alone() {
    let cloud = Cloud::with_image();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let backend = cloud.backend();
        let tags =
            |pairs: &[(&str, &str)]| -> Tags { pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() };
        let mut request = Request::new("moby-10-128-0-7", "web");
        request.tags = tags(&[("infrakit.group", "workers"), ("infrakit.config.hash", "abc")]);
        request.logical_id = Some("10.128.0.7".into());
        request.spec_digest = Some("sha256:0123".into());
        let record = backend.start(&request).await.unwrap();
        assert_eq!(
            record.address.as_deref(),
            Some("10.128.0.7"),
            "an address logical ID is the instance's IP"
        );
        assert_eq!(record.logical_id.as_deref(), Some("10.128.0.7"));
        let mut other = Request::new("moby-other", "web");
        other.tags = tags(&[("infrakit.group", "other")]);
        backend.start(&other).await.unwrap();

        // A fresh backend (another process) knows them from the API alone.
        let fresh = cloud.backend();
        let described = fresh.describe("moby-10-128-0-7").await.unwrap();
        assert_eq!(described.tags, request.tags);
        assert_eq!(described.spec_digest.as_deref(), Some("sha256:0123"));
        assert_eq!(described.image, Path::new("web"));
        let workers = fresh.list(&tags(&[("infrakit.group", "workers")])).await.unwrap();
        assert_eq!(
            workers.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["moby-10-128-0-7"]
        );
        assert_eq!(fresh.list(&Tags::new()).await.unwrap().len(), 2);

        let labelled = fresh
            .label(
                "moby-10-128-0-7",
                &tags(&[("infrakit.config.hash", "def"), ("Role", "Web")]),
            )
            .await
            .unwrap();
        assert_eq!(labelled.tags["infrakit.config.hash"], "def");
        assert_eq!(labelled.tags["Role"], "Web");
        let instance = cloud
            .fake
            .instances()
            .into_iter()
            .find(|i| i["name"] == "moby-10-128-0-7")
            .unwrap();
        assert_eq!(instance["labels"]["infrakit_config_hash"], "def");
        assert_eq!(instance["labels"]["role"], "web");

        fresh.destroy("moby-other", Duration::from_secs(1)).await.unwrap();
        let e = fresh.destroy("moby-other", Duration::from_secs(1)).await.unwrap_err();
        assert!(e.to_string().contains("no instance named `moby-other`"), "{e}");
        assert_eq!(fresh.list(&Tags::new()).await.unwrap().len(), 1);

        // A zone the API does not know is its error, not an empty list.
        let missing = "The resource 'projects/moby-fake-project/zones/europe-west1-d' was not found";
        cloud.fake.fail_next("compute.instances.list", 404, "notFound", missing);
        let e = fresh.list(&Tags::new()).await.unwrap_err().to_string();
        assert!(e.contains(missing) && e.contains("HTTP 404"), "{e}");

        // A token that expired under us is the API's refusal, said as such.
        cloud.fake.expire_tokens();
        let e = fresh.describe("moby-10-128-0-7").await.unwrap_err().to_string();
        assert!(
            e.contains("instances.get moby-10-128-0-7") && e.contains("HTTP 401"),
            "{e}"
        );
    });
    cloud.fake.assert_no_violations();
}
