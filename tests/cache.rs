//! The `moby` command line over a damaged or interrupted image cache: a cached blob that is not
//! what its digest says fails the build or the export with the image, the blob and what to do,
//! and leaves no output behind; temporary files of interrupted runs are swept.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use builder::image::{Descriptor, Platform, Store};
use builder::Reference;

use crate::support::{copy_dir, moby_bin};

const HELLO: &str = "localhost:5000/conformance/hello:v1";

/// A writable copy of the corpus cache in a scratch directory.
struct CacheCopy {
    dir: tempfile::TempDir,
    layer: Descriptor,
}

impl CacheCopy {
    /// The copy as it is, hello:v1's layer named but intact.
    fn intact() -> CacheCopy {
        let dir = tempfile::tempdir().unwrap();
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/cache");
        copy_dir(&corpus, &dir.path().join("cache"));
        let store = Store::open(&dir.path().join("cache")).unwrap();
        let hello = store
            .resolve(&Reference::parse(HELLO).unwrap(), &Platform::linux("amd64"))
            .unwrap()
            .unwrap();
        let layer = hello.layers[0].clone();
        CacheCopy { dir, layer }
    }

    /// The copy with hello:v1's layer changed in a way only its digest shows (byte 9 is gzip's
    /// OS field).
    fn damaged() -> CacheCopy {
        let cache = CacheCopy::intact();
        let path = cache.path("cache/blobs/sha256").join(&cache.layer.digest[7..]);
        let mut bytes = fs::read(&path).unwrap();
        bytes[9] ^= 1;
        fs::write(&path, bytes).unwrap();
        cache
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn moby(&self, args: &[&str]) -> Output {
        Command::new(moby_bin())
            .current_dir(self.dir.path())
            .env("MOBY_CACHE", self.path("cache"))
            .args(args)
            .output()
            .expect("run moby")
    }

    /// The command failed, naming the image and the blob and saying how to get a good copy.
    fn assert_reported(&self, output: &Output) {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(
            stderr.contains(HELLO) && stderr.contains(&self.layer.digest),
            "{stderr}"
        );
        assert!(stderr.contains(&format!("moby cache rm {HELLO}")), "{stderr}");
        assert!(stderr.contains("--pull"), "{stderr}");
    }

    /// The files in the scratch directory besides the cache.
    fn outputs(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name != "cache")
            .collect();
        names.sort();
        names
    }
}

#[test]
fn a_damaged_layer_fails_the_build_and_says_what_to_do() {
    let cache = CacheCopy::damaged();
    fs::write(
        cache.path("hello.yml"),
        format!("onboot:\n  - name: hello\n    image: {HELLO}\n"),
    )
    .unwrap();
    let output = cache.moby(&["build", "--format", "tar", "-o", "out.tar", "hello.yml"]);
    cache.assert_reported(&output);
    assert_eq!(cache.outputs(), ["hello.yml"], "no output, not even a partial one");
}

#[test]
fn exporting_a_damaged_image_fails_and_keeps_the_previous_file() {
    let cache = CacheCopy::damaged();
    let output = cache.moby(&["cache", "export", HELLO, "-o", "new.tar"]);
    cache.assert_reported(&output);
    assert_eq!(
        cache.outputs(),
        Vec::<String>::new(),
        "no output, not even a partial one"
    );

    fs::write(cache.path("old.tar"), "the previous export").unwrap();
    let output = cache.moby(&["cache", "export", HELLO, "-o", "old.tar"]);
    assert!(!output.status.success());
    assert_eq!(
        fs::read_to_string(cache.path("old.tar")).unwrap(),
        "the previous export"
    );
    assert_eq!(cache.outputs(), ["old.tar"]);
}

#[test]
fn temporary_files_of_interrupted_runs_are_swept_by_the_next_build() {
    let cache = CacheCopy::intact();
    let tmp = cache.path("cache/.tmp");
    fs::create_dir_all(&tmp).unwrap();
    let plant = |name: &str| {
        let path = tmp.join(name);
        let file = fs::File::create(&path).unwrap();
        file.set_len(1 << 20).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        (path, file)
    };
    let (stale, _) = plant("blob-killed");
    // This test process is alive and holds the lock a writing moby holds on its file.
    let (live, writer) = plant("blob-writing");
    writer.try_lock().unwrap();
    fs::write(
        cache.path("hello.yml"),
        format!("onboot:\n  - name: hello\n    image: {HELLO}\n"),
    )
    .unwrap();
    let output = cache.moby(&["build", "--format", "tar", "-o", "out.tar", "hello.yml"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(!stale.exists(), "the file a killed run left is removed");
    assert!(live.exists(), "the file a running process writes is kept");
}
