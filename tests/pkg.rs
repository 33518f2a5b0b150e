//! `moby pkg build|show-tag|push` end to end: a package built without a container engine, used by
//! `@pkg:` in a spec, rebuilt to the same digest, pushed to a real registry and pulled back.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use builder::image::{ensure_images, Platform, PullOptions, Store};
use builder::Reference;

use crate::support::moby_bin;
use crate::support::registry::Registry;

/// A package using every step that needs no network: copy (a file and a folder), file, dir with
/// an owner, symlink, remove, a host script, and a `config` label.
fn write_package(dir: &Path) {
    std::fs::create_dir_all(dir.join("files/etc")).unwrap();
    std::fs::write(dir.join("files/hello"), "#!/bin/sh\necho hello from the package\n").unwrap();
    std::fs::write(dir.join("files/etc/greeting"), "hi\n").unwrap();
    std::fs::write(dir.join("files/etc/unwanted"), "x\n").unwrap();
    std::fs::write(
        dir.join("build.sh"),
        "mkdir -p \"$ROOTFS/usr/share\" && echo made > \"$ROOTFS/usr/share/by-script\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("build.yml"),
        r#"image: hello
org: moby
config:
  binds: [/var/run:/var/run]
  capabilities: [CAP_NET_ADMIN]
entrypoint: [/bin/hello]
rootfs:
  - copy: files/hello
    to: /bin/hello
    mode: "0755"
  - copy: files/etc
    to: /etc
  - remove: [/etc/unwanted]
  - file: /etc/motd
    content: "welcome\n"
  - dir: /home/user
    owner: "1000:1000"
  - symlink: /bin/hi
    target: hello
  - script: build.sh
"#,
    )
    .unwrap();
}

struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Workspace {
        let ws = Workspace {
            dir: tempfile::tempdir().unwrap(),
        };
        write_package(&ws.path("hello"));
        ws
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs moby in the workspace with the image cache `cache`.
    fn run(&self, cache: &str, args: &[&str]) -> Output {
        Command::new(moby_bin())
            .current_dir(self.dir.path())
            .env("MOBY_CACHE", self.path(cache))
            .env("MOBY_DEB_CACHE", self.path("debs"))
            .args(args)
            .output()
            .expect("run moby")
    }

    /// Runs moby, which must succeed.
    fn moby(&self, cache: &str, args: &[&str]) -> Output {
        let out = self.run(cache, args);
        assert!(out.status.success(), "moby {args:?}: {}", stderr(&out));
        out
    }

    /// Runs moby, which must fail; its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run("cache", args);
        assert!(!out.status.success(), "moby {args:?} succeeded");
        stderr(&out)
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_package_builds_once_reproducibly_and_feeds_a_spec() {
    let ws = Workspace::new();
    let tag = stdout(&ws.moby("cache", &["pkg", "show-tag", "hello"]));
    assert!(
        tag.starts_with("moby/hello:") && tag.len() == "moby/hello:".len() + 40,
        "{tag}"
    );

    let first = ws.moby("cache", &["pkg", "build", "hello"]);
    assert!(stderr(&first).contains(&format!("built {tag}")), "{}", stderr(&first));
    let again = ws.moby("cache", &["pkg", "build", "hello"]);
    assert!(stderr(&again).contains("is in the cache already"), "{}", stderr(&again));
    // Another cache, forced: byte-identical image.
    ws.moby("other", &["pkg", "build", "--force", "hello"]);
    let ls = |cache: &str| stdout(&ws.moby(cache, &["cache", "ls"]));
    assert_eq!(ls("cache"), ls("other"));

    // A source change is a new tag.
    std::fs::write(ws.path("hello/files/etc/greeting"), "hello\n").unwrap();
    let changed = stdout(&ws.moby("cache", &["pkg", "show-tag", "hello"]));
    assert_ne!(changed, tag);
    std::fs::write(ws.path("hello/files/etc/greeting"), "hi\n").unwrap();

    // `@pkg:` names the built image; its config label gives the container its defaults.
    std::fs::write(
        ws.path("spec.yml"),
        "onboot:\n  - name: hello\n    image: \"@pkg:./hello\"\n",
    )
    .unwrap();
    ws.moby("cache", &["build", "--format", "tar", "--name", "out", "spec.yml"]);
    let tar = std::fs::read(ws.path("out.tar")).unwrap();
    let mut reader = builder::TarReader::new(&tar[..]);
    let mut names = Vec::new();
    let mut config = String::new();
    while let Some(h) = reader.next_header().unwrap() {
        if h.name.ends_with("000-hello/config.json") {
            std::io::Read::read_to_string(&mut reader, &mut config).unwrap();
        }
        names.push((h.name.clone(), h.mode, h.uid, h.link_name.clone()));
    }
    let has = |name: &str| names.iter().find(|(n, ..)| n == name).cloned();
    let root = "containers/onboot/000-hello/lower/";
    assert_eq!(has(&format!("{root}bin/hello")).map(|e| e.1), Some(0o755));
    assert_eq!(has(&format!("{root}bin/hi")).map(|e| e.3), Some("hello".to_string()));
    assert_eq!(has(&format!("{root}home/user")).map(|e| e.2), Some(1000));
    assert!(has(&format!("{root}etc/greeting")).is_some() && has(&format!("{root}etc/motd")).is_some());
    assert!(has(&format!("{root}usr/share/by-script")).is_some());
    assert!(has(&format!("{root}etc/unwanted")).is_none());
    assert!(
        config.contains("CAP_NET_ADMIN") && config.contains("/var/run"),
        "{config}"
    );
    assert!(config.contains("\"/bin/hello\""), "{config}");
}

#[test]
fn a_package_is_pushed_to_a_registry_and_pulled_back() {
    let registry = Registry::start();
    let ws = Workspace::new();
    let tag = stdout(&ws.moby("cache", &["pkg", "show-tag", "hello"]));
    let pushed = ws.moby("cache", &["pkg", "push", "--registry", &registry.host(), "hello"]);
    let line = stdout(&pushed);
    let (name, digest) = line.split_once('@').unwrap_or_else(|| panic!("{line}"));
    assert_eq!(name, format!("{}/{tag}", registry.host()));

    // Pulled into an empty cache: the same manifest, config and layer.
    let fresh = tempfile::tempdir().unwrap();
    let store = Store::open(fresh.path()).unwrap();
    let reference = Reference::parse(name).unwrap();
    let options = PullOptions {
        platform: Platform::host(),
        ..PullOptions::default()
    };
    let pulled = ensure_images(&store, std::slice::from_ref(&reference), &options).unwrap();
    assert_eq!(pulled[0].root_digest, digest);
    let local = Store::open(&ws.path("cache")).unwrap();
    let original = local
        .resolve(&Reference::parse(&tag).unwrap(), &Platform::host())
        .unwrap()
        .unwrap();
    assert_eq!(pulled[0].layers, original.layers);
    assert_eq!(pulled[0].config_descriptor, original.config_descriptor);
    // Pushing again uploads nothing new and names the same digest.
    let again = ws.moby("cache", &["pkg", "push", "--registry", &registry.host(), "hello"]);
    assert_eq!(stdout(&again), line);
}

#[test]
fn package_mistakes_are_reported_with_the_file_and_field() {
    let ws = Workspace::new();
    std::fs::create_dir_all(ws.path("bad")).unwrap();
    std::fs::write(
        ws.path("bad/build.yml"),
        "image: bad\nrootfs:\n  - copy: nope\n    to: /x\n",
    )
    .unwrap();
    let e = ws.fails(&["pkg", "build", "bad"]);
    assert!(
        e.contains("bad/build.yml:3:5: rootfs[0] (copy): ") && e.contains("nope"),
        "{e}"
    );
    std::fs::write(ws.path("bad/build.yml"), "image: bad\nrootfs:\n  - copy: a\n").unwrap();
    let e = ws.fails(&["pkg", "show-tag", "bad"]);
    assert!(
        e.contains("bad/build.yml:3:5: rootfs[0].to: required field is missing"),
        "{e}"
    );

    // A LinuxKit package (built from its Dockerfile) is refused, not built into an empty image.
    std::fs::write(ws.path("bad/Dockerfile"), "FROM alpine\nRUN apk add curl\n").unwrap();
    std::fs::write(ws.path("bad/build.yml"), "image: bad\nnetwork: true\n").unwrap();
    let e = ws.fails(&["pkg", "build", "bad"]);
    assert!(
        e.contains("bad/build.yml:2:1: network: a LinuxKit Dockerfile package (Dockerfile)"),
        "{e}"
    );
}

/// `moby pkg build` of a package whose symbolic links name host files (a temp file standing in for
/// /etc/shadow, a folder for /etc): the image holds the links, never the host's files, and a copy
/// through a link that leads out of the package is refused.
#[test]
fn host_files_never_reach_a_package_image_through_links() {
    use std::os::unix::fs::symlink;
    let ws = Workspace::new();
    let host = ws.path("host");
    std::fs::create_dir_all(host.join("etc")).unwrap();
    std::fs::write(host.join("shadow"), "root:SECRET-SHADOW\n").unwrap();
    std::fs::write(host.join("etc/passwd"), "root:SECRET-PASSWD\n").unwrap();
    let pkg = ws.path("hostile");
    std::fs::create_dir_all(pkg.join("files/deep")).unwrap();
    symlink(host.join("shadow"), pkg.join("shadow")).unwrap();
    symlink(host.join("etc"), pkg.join("files/deep/etc")).unwrap();
    std::fs::write(
        pkg.join("build.yml"),
        "image: hostile\norg: moby\nrootfs:\n  - {copy: shadow, to: /etc/shadow}\n  - {copy: files, to: /files}\n",
    )
    .unwrap();
    ws.moby("cache", &["pkg", "build", "hostile"]);
    std::fs::write(
        ws.path("spec.yml"),
        "onboot:\n  - name: h\n    image: \"@pkg:./hostile\"\n",
    )
    .unwrap();
    ws.moby("cache", &["build", "--format", "tar", "--name", "out", "spec.yml"]);
    let tar = std::fs::read(ws.path("out.tar")).unwrap();
    assert!(
        !String::from_utf8_lossy(&tar).contains("SECRET"),
        "a host file is in the image"
    );
    let mut reader = builder::TarReader::new(&tar[..]);
    let mut links = Vec::new();
    while let Some(h) = reader.next_header().unwrap() {
        if let Some(name) = h.name.strip_prefix("containers/onboot/000-h/lower/") {
            if h.kind == builder::EntryKind::Symlink {
                links.push((name.to_string(), h.link_name.clone()));
            }
        }
    }
    let want = |name: &str, target: &Path| (name.to_string(), target.display().to_string());
    assert!(links.contains(&want("etc/shadow", &host.join("shadow"))), "{links:?}");
    assert!(links.contains(&want("files/deep/etc", &host.join("etc"))), "{links:?}");

    std::fs::write(
        pkg.join("build.yml"),
        "image: hostile\nrootfs:\n  - {copy: files/deep/etc/passwd, to: /etc/passwd}\n",
    )
    .unwrap();
    let e = ws.fails(&["pkg", "build", "hostile"]);
    assert!(
        e.contains("files/deep/etc/passwd is in ") && e.contains("outside the package and its extra-sources"),
        "{e}"
    );
}

/// A tiny `.deb` (`moby-lock-test`, architecture `all`) holding /usr/share/moby-lock-test/version,
/// named as `apt-get download` names it, and its sha256.
fn make_deb(dir: &Path, version: &str) -> (PathBuf, String) {
    let root = dir.join(format!("deb-{version}"));
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join("usr/share/moby-lock-test")).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        format!("Package: moby-lock-test\nVersion: {version}\nArchitecture: all\nMaintainer: moby <moby@example.invalid>\nDescription: test\n"),
    )
    .unwrap();
    std::fs::write(root.join("usr/share/moby-lock-test/version"), version).unwrap();
    let deb = dir.join(format!("moby-lock-test_{version}_all.deb"));
    let status = Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(&root)
        .arg(&deb)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let digest = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(
        std::fs::read(&deb).unwrap(),
    ));
    (deb, format!("{digest:x}"))
}

/// `debs:` installs exactly what debs.lock pins, by version and digest: a package apt has never
/// heard of builds from the deb cache, a cached file with other contents is not used, and a
/// version apt cannot supply is refused by name and version.
#[test]
fn debs_steps_install_what_the_lock_pins_and_nothing_else() {
    let ws = Workspace::new();
    let pkg = ws.path("locked");
    std::fs::create_dir_all(ws.path("debs")).unwrap();
    std::fs::create_dir_all(&pkg).unwrap();
    let (deb, sha) = make_deb(&ws.path("debs"), "1.2-3");
    std::fs::write(
        pkg.join("build.yml"),
        "image: locked\nrootfs:\n  - debs: [moby-lock-test]\n",
    )
    .unwrap();
    let e = ws.fails(&["pkg", "build", "locked"]);
    assert!(
        e.contains("locked/debs.lock: missing: the debs: steps (rootfs[0])") && e.contains("moby pkg lock locked"),
        "{e}"
    );
    let lock = format!("rootfs[0] debs: moby-lock-test\nrootfs[0] moby-lock-test 1.2-3 all {sha}\n");
    std::fs::write(pkg.join("debs.lock"), &lock).unwrap();
    ws.moby("cache", &["pkg", "build", "locked"]);
    let tag = stdout(&ws.moby("cache", &["pkg", "show-tag", "locked"]));
    let store = Store::open(&ws.path("cache")).unwrap();
    let image = store
        .resolve(&Reference::parse(&tag).unwrap(), &Platform::host())
        .unwrap()
        .unwrap();
    let layer = store.open_verified(&tag, &image.layers[0]).unwrap();
    let mut tar = builder::TarReader::new(flate2::read::GzDecoder::new(layer));
    let mut found = String::new();
    while let Some(h) = tar.next_header().unwrap() {
        if h.name == "usr/share/moby-lock-test/version" {
            std::io::Read::read_to_string(&mut tar, &mut found).unwrap();
        }
    }
    assert_eq!(found, "1.2-3", "the pinned .deb is unpacked");

    // The cache's file is not the pinned one: it is fetched again, and apt cannot supply it.
    std::fs::write(&deb, "not the pinned file").unwrap();
    let e = ws.fails(&["pkg", "build", "--force", "locked"]);
    assert!(
        e.contains("locked/build.yml:3:5: rootfs[0] (debs): moby-lock-test 1.2-3 (all) is pinned"),
        "{e}"
    );

    // A version of a real package that apt cannot supply.
    std::fs::write(
        pkg.join("build.yml"),
        "image: locked\nrootfs:\n  - debs: [busybox-static]\n",
    )
    .unwrap();
    let zeros = "0".repeat(64);
    std::fs::write(
        pkg.join("debs.lock"),
        format!("rootfs[0] debs: busybox-static\nrootfs[0] busybox-static 0.0-moby-test amd64 {zeros}\n"),
    )
    .unwrap();
    let e = ws.fails(&["pkg", "build", "locked"]);
    assert!(
        e.contains("busybox-static 0.0-moby-test (amd64) is pinned")
            && e.contains("apt-get download busybox-static=0.0-moby-test"),
        "{e}"
    );
}

/// `moby pkg lock` pins the closure apt resolves (from this host's lists; nothing is downloaded),
/// sorted, and says when nothing changed; a lock that no longer matches build.yml is refused.
#[test]
fn pkg_lock_writes_a_sorted_lock_that_builds_check() {
    let ws = Workspace::new();
    let pkg = ws.path("sshd");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(
        pkg.join("build.yml"),
        "image: sshd\nrootfs:\n  - dir: /x\n  - debs: [dropbear-bin]\n",
    )
    .unwrap();
    let out = ws.moby("cache", &["pkg", "lock", "sshd"]);
    assert!(
        stderr(&out).contains("sshd/debs.lock: ") && stderr(&out).contains("packages pinned"),
        "{}",
        stderr(&out)
    );
    let text = std::fs::read_to_string(pkg.join("debs.lock")).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines[0], "rootfs[1] debs: dropbear-bin");
    let packages: Vec<Vec<&str>> = lines[1..].iter().map(|l| l.split(' ').collect()).collect();
    assert!(
        packages
            .iter()
            .all(|p| p.len() == 5 && p[0] == "rootfs[1]" && p[4].len() == 64),
        "{text}"
    );
    let names: Vec<&str> = packages.iter().map(|p| p[1]).collect();
    assert!(names.contains(&"dropbear-bin") && names.contains(&"libc6"), "{names:?}");
    assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted: {names:?}");

    let again = ws.moby("cache", &["pkg", "lock", "sshd"]);
    assert!(stderr(&again).contains("unchanged"), "{}", stderr(&again));
    assert_eq!(std::fs::read_to_string(pkg.join("debs.lock")).unwrap(), text);

    std::fs::write(
        pkg.join("build.yml"),
        "image: sshd\nrootfs:\n  - debs: [dropbear-bin]\n",
    )
    .unwrap();
    let e = ws.fails(&["pkg", "build", "sshd"]);
    assert!(
        e.contains("sshd/debs.lock: out of date: it pins rootfs[1], which is not a debs: step")
            && e.contains("moby pkg lock sshd"),
        "{e}"
    );
}
