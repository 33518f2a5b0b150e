//! The `moby` command line end to end, on the conformance corpus's images: every output format,
//! reproducibility, stdin specs, LinuxKit's single-dash flags, and the cache subcommands.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support::{copy_dir, moby_bin};

pub(crate) fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance")
}

/// A writable copy of the corpus cache and a scratch directory.
pub(crate) struct Workspace {
    pub(crate) dir: tempfile::TempDir,
}

impl Workspace {
    pub(crate) fn new() -> Workspace {
        let dir = tempfile::tempdir().expect("temp dir");
        copy_dir(&corpus().join("cache"), &dir.path().join("cache"));
        Workspace { dir }
    }

    pub(crate) fn cache(&self) -> String {
        self.dir.path().join("cache").to_string_lossy().into_owned()
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs moby in `cwd` with `MOBY_CACHE` pointing at the copy.
    pub(crate) fn moby(&self, cwd: &Path, args: &[&str]) -> Output {
        Command::new(moby_bin())
            .current_dir(cwd)
            .env("MOBY_CACHE", self.cache())
            .args(args)
            .output()
            .expect("run moby")
    }
}

pub(crate) fn ok(output: Output) -> Output {
    assert!(
        output.status.success(),
        "moby failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

pub(crate) fn example_dir() -> PathBuf {
    corpus().join("cases/024-example-linuxkit")
}

#[test]
fn every_format_builds_twice_to_the_same_bytes() {
    let ws = Workspace::new();
    let formats = ["tar", "kernel+initrd", "tar-kernel-initrd", "docker"];
    let mut builds = Vec::new();
    for round in ["a", "b"] {
        let out = ws.path(round);
        fs::create_dir_all(&out).unwrap();
        let dir = out.to_str().unwrap();
        ok(ws.moby(
            &example_dir(),
            &[
                "build",
                "--format",
                &formats.join(","),
                "--dir",
                dir,
                "--name",
                "img",
                "linuxkit.yml",
            ],
        ));
        let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(&out)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        builds.push(files);
    }
    let names: Vec<&str> = builds[0].iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "img-cmdline",
            "img-initrd.img",
            "img-initrd.tar",
            "img-kernel",
            "img.docker",
            "img.tar"
        ],
        "one pass writes every format"
    );
    assert_eq!(builds[0], builds[1], "two builds of the same input are byte-identical");
    let docker = &builds[0].iter().find(|(n, _)| n == "img.docker").unwrap().1;
    let tar = &builds[0].iter().find(|(n, _)| n == "img.tar").unwrap().1;
    assert!(docker.len() > tar.len() && docker.windows(12).any(|w| w == b"FROM scratch"));
}

#[test]
fn spec_from_stdin_and_single_dash_flags() {
    let ws = Workspace::new();
    let spec = fs::read_to_string(corpus().join("cases/001-kernel-minimal/linuxkit.yml")).unwrap();
    let out = ws.path("stdin.tar");
    let mut child = Command::new(moby_bin())
        .env("MOBY_CACHE", ws.cache())
        .args(["build", "-format", "tar", "-o", out.to_str().unwrap(), "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(spec.as_bytes()).unwrap();
    ok(child.wait_with_output().unwrap());
    let expected: serde_json::Value = serde_json::from_slice(&fs::read(corpus().join("index.json")).unwrap()).unwrap();
    let sum = expected
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "001-kernel-minimal")
        .unwrap()["tar_sha256"]
        .clone();
    use sha2::Digest;
    let ours: String = sha2::Sha256::digest(fs::read(&out).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(serde_json::Value::String(ours), sum, "same bytes as LinuxKit");
}

#[test]
fn a_failed_build_leaves_no_output_behind() {
    let ws = Workspace::new();
    let spec = ws.path("bad.yml");
    fs::write(
        &spec,
        "onboot:\n  - name: x\n    image: localhost:5000/conformance/nosuch:v1\n",
    )
    .unwrap();
    let out = ws.path("out");
    fs::create_dir_all(&out).unwrap();
    let output = ws.moby(ws.dir.path(), &["build", "--dir", out.to_str().unwrap(), "bad.yml"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("localhost:5000/conformance/nosuch:v1"), "{stderr}");
    assert_eq!(fs::read_dir(&out).unwrap().count(), 0, "no partial outputs");
}

#[test]
fn dry_run_prints_the_merged_spec() {
    let ws = Workspace::new();
    let dir = corpus().join("cases/027-multi-file");
    let output = ok(ws.moby(&dir, &["build", "--dry-run", "base.yml", "extra.yml"]));
    let yaml = String::from_utf8(output.stdout).unwrap();
    assert!(yaml.starts_with("kernel:\n"), "{yaml}");
    assert!(yaml.contains("- name: one") && yaml.contains("- name: two"), "{yaml}");
}

#[test]
fn cache_ls_export_import_rm() {
    let ws = Workspace::new();
    let cwd = ws.dir.path();
    let listing = String::from_utf8(ok(ws.moby(cwd, &["cache", "ls"])).stdout).unwrap();
    let hello = "localhost:5000/conformance/hello:v1";
    assert!(
        listing.lines().any(|l| l.starts_with(&format!("{hello}\tsha256:"))),
        "{listing}"
    );

    let archive = ws.path("hello.tar");
    ok(ws.moby(cwd, &["cache", "export", hello, "-o", archive.to_str().unwrap()]));
    let other = ws.path("other-cache");
    let imported = Command::new(moby_bin())
        .args([
            "cache",
            "--cache",
            other.to_str().unwrap(),
            "import",
            archive.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    ok(imported);
    let other_listing = ok(Command::new(moby_bin())
        .args(["cache", "--cache", other.to_str().unwrap(), "ls"])
        .output()
        .unwrap());
    assert_eq!(String::from_utf8(other_listing.stdout).unwrap().lines().count(), 1);

    ok(ws.moby(cwd, &["cache", "rm", hello]));
    let after = String::from_utf8(ok(ws.moby(cwd, &["cache", "ls"])).stdout).unwrap();
    assert!(!after.lines().any(|l| l.starts_with(&format!("{hello}\t"))), "{after}");
    assert_eq!(after.lines().count(), listing.lines().count() - 1);
}

/// An endless spec file (`/dev/zero`) or stdin stops at `MAX_SPEC_BYTES` with an error naming the
/// file and the limit, instead of growing without bound.
#[test]
fn endless_specs_stop_at_the_read_limit() {
    let limit = builder::spec::MAX_SPEC_BYTES;
    let output = Command::new(moby_bin())
        .args(["build", "--dry-run", "/dev/zero"])
        .output()
        .expect("run moby");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("/dev/zero: the spec is larger than {limit} bytes")),
        "{stderr}"
    );
    let mut child = Command::new(moby_bin())
        .args(["build", "--dry-run", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run moby");
    let mut stdin = child.stdin.take().expect("stdin");
    let feeder = std::thread::spawn(move || {
        let chunk = vec![b'#'; 1 << 16];
        // moby stops reading at the limit and exits, which ends this loop with a broken pipe.
        while stdin.write_all(&chunk).is_ok() {}
    });
    let output = child.wait_with_output().expect("moby output");
    feeder.join().expect("feeder");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("<stdin>: the spec is larger than {limit} bytes")),
        "{stderr}"
    );
}
