//! Registry pulls against a real `docker-registry` process on loopback: single and multi-platform
//! images, Docker and OCI media types, basic auth, mirrors, corrupt blobs, a registry killed
//! mid-pull.

use crate::support::registry as support;

use std::time::Duration;

use builder::image::{
    ensure_images, ensure_layouts, oci_layout_entries, parse_mirror, push_image, ImageError, LayerFile, Platform,
    PullOptions, PushOptions, Store,
};
use builder::Reference;
use support::{dir_bytes, pseudo_random, wait_for, Registry, Throttle};

fn new_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("cache")).unwrap();
    (dir, store)
}

fn options(arch: &str) -> PullOptions {
    PullOptions {
        platform: Platform::linux(arch),
        ..PullOptions::default()
    }
}

fn reference(host: &str, name: &str) -> Reference {
    Reference::parse(&format!("{host}/{name}")).unwrap()
}

fn descriptors(blobs: &[support::Blob]) -> Vec<(String, String, u64)> {
    blobs
        .iter()
        .map(|b| (b.media_type.clone(), b.digest.clone(), b.size))
        .collect()
}

fn layer_descriptors(image: &builder::image::ResolvedImage) -> Vec<(String, String, u64)> {
    image
        .layers
        .iter()
        .map(|l| (l.media_type.clone(), l.digest.clone(), l.size))
        .collect()
}

#[test]
fn pulls_a_single_platform_image_then_serves_it_from_the_cache() {
    let mut registry = Registry::start();
    let pushed = registry.push_image(
        "test/single",
        Some("v1"),
        "amd64",
        &[pseudo_random(1, 3000), pseudo_random(2, 70_000)],
    );
    let (_dir, store) = new_store();
    let r = reference(&registry.host(), "test/single:v1");

    let resolved = ensure_images(&store, std::slice::from_ref(&r), &options("amd64")).unwrap();
    let image = &resolved[0];
    assert_eq!(image.reference, r);
    assert_eq!(image.root_digest, pushed.manifest.digest);
    assert_eq!(image.manifest_digest, pushed.manifest.digest);
    assert_eq!(image.config_descriptor.digest, pushed.config.digest);
    assert_eq!(layer_descriptors(image), descriptors(&pushed.layers));
    assert_eq!(image.config.entrypoint, ["/bin/test-single"]);
    assert_eq!(image.config.cmd, ["--arch", "amd64"]);
    assert_eq!(image.config.working_dir, "/work");
    assert_eq!(image.config.labels["test"], "test-single");
    for layer in &pushed.layers {
        assert!(store.has_blob(&layer.digest, layer.size));
    }
    assert_eq!(store.list().unwrap(), [(r.to_string(), pushed.manifest.digest.clone())]);

    // A missing tag is reported as such.
    let err = ensure_images(
        &store,
        &[reference(&registry.host(), "test/single:v2")],
        &options("amd64"),
    )
    .unwrap_err();
    assert!(matches!(err, ImageError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("test/single:v2"), "{err}");

    // With the registry gone, the cached image still resolves, for any platform (a single
    // manifest is used whatever the platform, as LinuxKit does)...
    registry.kill();
    let again = ensure_images(&store, std::slice::from_ref(&r), &options("arm64")).unwrap();
    assert_eq!(again[0].manifest_digest, pushed.manifest.digest);
    // ...while anything else fails with a clear message.
    let err = ensure_images(
        &store,
        &[reference(&registry.host(), "test/other:v1")],
        &options("amd64"),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ImageError::Unreachable { .. }), "{text}");
    assert!(
        text.contains("test/other:v1") && text.contains(&format!("http://{}", registry.host())),
        "{text}"
    );
    assert!(text.contains("run with network access"), "{text}");
}

#[test]
fn shared_layers_are_downloaded_once() {
    let registry = Registry::start();
    let shared = pseudo_random(10, 50_000);
    let a = registry.push_image("test/a", Some("v1"), "amd64", &[shared.clone(), pseudo_random(11, 100)]);
    let b = registry.push_image("test/b", Some("v1"), "amd64", &[shared, pseudo_random(12, 100)]);
    assert_eq!(a.layers[0].digest, b.layers[0].digest);
    let (_dir, store) = new_store();
    let refs = [
        reference(&registry.host(), "test/a:v1"),
        reference(&registry.host(), "test/b:v1"),
    ];
    let resolved = ensure_images(&store, &refs, &options("amd64")).unwrap();
    assert_eq!(resolved[0].layers[0], resolved[1].layers[0]);
    assert_eq!(registry.blob_gets(&a.layers[0].digest), 1, "{}", registry.log());
    assert_eq!(registry.blob_gets(&a.layers[1].digest), 1);
    assert_eq!(registry.blob_gets(&b.layers[1].digest), 1);

    // Pulling again only re-reads the cache; always_pull refetches manifests but no blob.
    ensure_images(&store, &refs, &options("amd64")).unwrap();
    let always = PullOptions {
        always_pull: true,
        ..options("amd64")
    };
    ensure_images(&store, &refs, &always).unwrap();
    assert_eq!(registry.blob_gets(&a.layers[0].digest), 1);
    assert_eq!(registry.blob_gets(&a.config.digest), 1);
}

#[test]
fn one_failure_does_not_stop_the_others() {
    let registry = Registry::start();
    let pushed = registry.push_image("test/fine", Some("v1"), "amd64", &[pseudo_random(15, 500)]);
    let (_dir, store) = new_store();
    let fine = reference(&registry.host(), "test/fine:v1");
    let absent = reference(&registry.host(), "test/absent:v1");
    let err = ensure_images(&store, &[absent, fine.clone()], &options("amd64")).unwrap_err();
    assert!(matches!(err, ImageError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("test/absent:v1"), "{err}");
    let cached = store.resolve(&fine, &Platform::linux("amd64")).unwrap().unwrap();
    assert_eq!(cached.manifest_digest, pushed.manifest.digest);
}

#[test]
fn multi_platform_index_resolves_each_platform() {
    let registry = Registry::start();
    let amd = registry.push_image("test/multi", None, "amd64", &[pseudo_random(20, 4000)]);
    let arm = registry.push_image("test/multi", None, "arm64", &[pseudo_random(21, 5000)]);
    let index = registry.push_index("test/multi", "v1", &[(&amd, "amd64"), (&arm, "arm64")], false);
    let (_dir, store) = new_store();
    let r = reference(&registry.host(), "test/multi:v1");

    let on_amd = ensure_images(&store, std::slice::from_ref(&r), &options("amd64")).unwrap();
    assert_eq!(on_amd[0].root_digest, index.digest);
    assert_eq!(on_amd[0].manifest_digest, amd.manifest.digest);
    assert_eq!(on_amd[0].config.architecture, "amd64");
    // Only the requested platform's blobs were fetched.
    assert!(!store.has_blob(&arm.layers[0].digest, arm.layers[0].size));
    assert_eq!(registry.blob_gets(&arm.layers[0].digest), 0);

    let arm_v8 = PullOptions {
        platform: Platform::parse("linux/arm64/v8").unwrap(),
        ..PullOptions::default()
    };
    let on_arm = ensure_images(&store, std::slice::from_ref(&r), &arm_v8).unwrap();
    assert_eq!(on_arm[0].root_digest, index.digest);
    assert_eq!(on_arm[0].manifest_digest, arm.manifest.digest);
    assert_eq!(layer_descriptors(&on_arm[0]), descriptors(&arm.layers));
    assert_eq!(store.list().unwrap(), [(r.to_string(), index.digest.clone())]);

    let err = ensure_images(&store, std::slice::from_ref(&r), &options("riscv64")).unwrap_err();
    assert!(matches!(err, ImageError::NoPlatform { .. }), "{err}");
    assert!(err.to_string().contains("linux/amd64, linux/arm64"), "{err}");

    // A format: oci volume of every platform.
    let (_dir2, fresh) = new_store();
    ensure_layouts(&fresh, &[(r.clone(), vec![])], &PullOptions::default()).unwrap();
    let entries = oci_layout_entries(&fresh, &r, &[]).unwrap();
    assert_eq!(entries.len(), 3 + 2 * 3 + 2);
    assert_eq!(
        entries[entries.len() - 2].name,
        format!("blobs/sha256/{}", &index.digest[7..])
    );
}

#[test]
fn docker_manifest_lists_are_understood() {
    let registry = Registry::start();
    let amd = registry.push_image_typed("test/docker", None, "amd64", &[pseudo_random(30, 300)], true);
    let arm = registry.push_image_typed("test/docker", None, "arm64", &[pseudo_random(31, 300)], true);
    let list = registry.push_index("test/docker", "v1", &[(&amd, "amd64"), (&arm, "arm64")], true);
    let (_dir, store) = new_store();
    let r = reference(&registry.host(), "test/docker:v1");
    let resolved = ensure_images(&store, std::slice::from_ref(&r), &options("arm64")).unwrap();
    assert_eq!(resolved[0].root_digest, list.digest);
    assert_eq!(resolved[0].manifest_digest, arm.manifest.digest);
    assert_eq!(resolved[0].layers[0].media_type, support::DOCKER_LAYER);
    assert_eq!(resolved[0].config_descriptor.media_type, support::DOCKER_CONFIG);
    assert_eq!(resolved[0].config.architecture, "arm64");

    // A digest reference is stored under its own name, not the tag's.
    let by_digest = reference(&registry.host(), &format!("test/docker@{}", amd.manifest.digest));
    let resolved = ensure_images(&store, std::slice::from_ref(&by_digest), &options("amd64")).unwrap();
    assert_eq!(resolved[0].manifest_digest, amd.manifest.digest);
    let names: Vec<String> = store.list().unwrap().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, [r.to_string(), by_digest.to_string()]);
}

#[test]
fn basic_auth_uses_docker_config_credentials() {
    let registry = Registry::start_with_auth("alice", "s3cret");
    let pushed = registry.push_image("test/private", Some("v1"), "amd64", &[pseudo_random(40, 1000)]);
    let r = reference(&registry.host(), "test/private:v1");

    let (_empty_dir, empty) = {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{}").unwrap();
        (dir, path)
    };
    let (_dir, store) = new_store();
    let anonymous = PullOptions {
        docker_config: Some(empty),
        ..options("amd64")
    };
    let err = ensure_images(&store, std::slice::from_ref(&r), &anonymous).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{text}");
    assert!(text.contains("test/private:v1"), "{text}");
    assert!(text.contains(&format!("docker login {}", registry.host())), "{text}");
    assert!(store.list().unwrap().is_empty());

    let (_wrong_dir, wrong) = registry.docker_config("alice", "guess");
    let wrong = PullOptions {
        docker_config: Some(wrong),
        ..options("amd64")
    };
    let err = ensure_images(&store, std::slice::from_ref(&r), &wrong).unwrap_err();
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err}");

    let (_config_dir, config) = registry.docker_config("alice", "s3cret");
    let authorised = PullOptions {
        docker_config: Some(config),
        ..options("amd64")
    };
    let resolved = ensure_images(&store, std::slice::from_ref(&r), &authorised).unwrap();
    assert_eq!(resolved[0].manifest_digest, pushed.manifest.digest);
}

#[test]
fn mirrors_redirect_pulls() {
    let registry = Registry::start();
    let pushed = registry.push_image("test/mirrored", Some("v1"), "amd64", &[pseudo_random(50, 100)]);
    let (_dir, store) = new_store();
    let r = Reference::parse("registry.invalid/test/mirrored:v1").unwrap();
    let opts = PullOptions {
        mirrors: vec![parse_mirror(&format!("registry.invalid=http://{}", registry.host())).unwrap()],
        ..options("amd64")
    };
    let resolved = ensure_images(&store, std::slice::from_ref(&r), &opts).unwrap();
    assert_eq!(resolved[0].manifest_digest, pushed.manifest.digest);
    assert_eq!(store.list().unwrap()[0].0, "registry.invalid/test/mirrored:v1");
}

#[test]
fn corrupt_registry_blob_is_rejected_and_not_cached() {
    let registry = Registry::start();
    let pushed = registry.push_image("test/corrupt", Some("v1"), "amd64", &[pseudo_random(60, 20_000)]);
    let layer = &pushed.layers[0];
    let data = registry.blob_data_path(&layer.digest);
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[1234] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();

    let (_dir, store) = new_store();
    let r = reference(&registry.host(), "test/corrupt:v1");
    let err = ensure_images(&store, std::slice::from_ref(&r), &options("amd64")).unwrap_err();
    let text = err.to_string();
    let ImageError::DigestMismatch { expected, actual, .. } = &err else {
        panic!("expected a digest mismatch, got {text}");
    };
    assert_eq!(expected, &layer.digest);
    assert_eq!(actual, &support::digest(&bytes));
    assert!(
        text.contains("test/corrupt:v1") && text.contains(&layer.digest) && text.contains(actual),
        "{text}"
    );
    assert!(!store.blob_path(&layer.digest).unwrap().exists());
    assert_eq!(dir_bytes(&store.dir().join(".tmp")), 0);
    assert!(store.list().unwrap().is_empty());
    assert!(store.resolve(&r, &Platform::linux("amd64")).unwrap().is_none());
}

#[test]
fn registry_killed_mid_pull_leaves_a_usable_cache() {
    let mut registry = Registry::start();
    let small = registry.push_image("test/small", Some("v1"), "amd64", &[pseudo_random(70, 1000)]);
    let big = registry.push_image("test/big", Some("v1"), "amd64", &[pseudo_random(71, 24 << 20)]);
    // Through a proxy limited to 8 MiB/s the big layer takes about three seconds.
    let proxy = Throttle::start(registry.port(), 8 << 20);
    let (_dir, store) = new_store();
    let small_ref = reference(&proxy.host(), "test/small:v1");
    let big_ref = reference(&proxy.host(), "test/big:v1");
    ensure_images(&store, std::slice::from_ref(&small_ref), &options("amd64")).unwrap();

    let pull = {
        let store = store.clone();
        let big_ref = big_ref.clone();
        std::thread::spawn(move || ensure_images(&store, &[big_ref], &options("amd64")))
    };
    let tmp = store.dir().join(".tmp");
    wait_for("the layer download to start", Duration::from_secs(60), || {
        dir_bytes(&tmp) > 1 << 20
    });
    registry.kill();
    let err = pull.join().unwrap().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ImageError::Registry { .. }), "{text}");
    assert!(
        text.contains("test/big:v1") && text.contains(&big.layers[0].digest),
        "{text}"
    );

    // The cache is intact: valid index, the earlier image resolves, nothing of the big layer.
    let reopened = Store::open(store.dir()).unwrap();
    assert_eq!(
        reopened.list().unwrap(),
        [(small_ref.to_string(), small.manifest.digest.clone())]
    );
    assert!(reopened
        .resolve(&small_ref, &Platform::linux("amd64"))
        .unwrap()
        .is_some());
    assert!(!reopened.blob_path(&big.layers[0].digest).unwrap().exists());
    assert_eq!(dir_bytes(&tmp), 0);

    registry.restart();
    let resolved = ensure_images(&reopened, std::slice::from_ref(&big_ref), &options("amd64")).unwrap();
    assert_eq!(resolved[0].manifest_digest, big.manifest.digest);
    assert!(reopened.has_blob(&big.layers[0].digest, big.layers[0].size));
}

#[test]
fn pushing_a_damaged_image_fails_naming_the_blob() {
    let registry = Registry::start();
    let (dir, store) = new_store();
    let bytes = pseudo_random(80, 5000);
    let layer = LayerFile {
        path: dir.path().join("layer"),
        digest: support::digest(&bytes),
        size: bytes.len() as u64,
    };
    std::fs::write(&layer.path, &bytes).unwrap();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
        layer.digest
    );
    let local = Reference::parse("example.org/damaged:v1").unwrap();
    store
        .put_image(&local, config.as_bytes(), std::slice::from_ref(&layer))
        .unwrap();
    let cached = store.blob_path(&layer.digest).unwrap();
    let mut damaged = bytes.clone();
    damaged[2500] ^= 1;
    std::fs::write(&cached, damaged).unwrap();

    let remote = reference(&registry.host(), "test/damaged:v1");
    let err = push_image(&store, &local, &remote, &PushOptions::default()).unwrap_err();
    let ImageError::CorruptBlob(damage) = &err else {
        panic!("expected a damaged blob, got {err}");
    };
    assert_eq!(
        (damage.image.as_str(), &damage.digest),
        ("example.org/damaged:v1", &layer.digest)
    );
    let manifest = registry
        .request("GET", "/v2/test/damaged/manifests/v1", &[], b"")
        .unwrap();
    assert_eq!(manifest.status, 404, "nothing was tagged");
}
