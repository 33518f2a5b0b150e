//! Assembly against synthetic images: the rules the corpus does not reach.

use std::collections::HashMap;
use std::io;

use super::*;
use crate::image::{ImageConfigFile, LayoutEntry};
use crate::spec::model::{File, Image, ImageConfig, Kernel, Moby};
use crate::spec::{HostPaths, Spec};
use crate::tar::{EntryKind, EntrySink, Header};

/// A flattened image held in memory: its config and its entries with their data.
type FakeImage = (ImageConfigFile, Vec<(Header, Vec<u8>)>);

/// Images held in memory, by reference.
#[derive(Default)]
struct FakeImages {
    images: HashMap<String, FakeImage>,
}

impl FakeImages {
    fn with(mut self, reference: &str, entries: Vec<(Header, Vec<u8>)>) -> FakeImages {
        let key = Reference::parse(reference).unwrap().to_string();
        self.images.insert(key, (ImageConfigFile::default(), entries));
        self
    }

    fn get(&self, image: &Reference) -> Result<&FakeImage, BuildError> {
        self.images.get(&image.to_string()).ok_or_else(|| {
            BuildError::from(crate::image::ImageError::NotInCache {
                image: image.to_string(),
                dir: "/fake".into(),
            })
        })
    }
}

impl Images for FakeImages {
    fn config(&self, image: &Reference) -> Result<ImageConfigFile, BuildError> {
        Ok(self.get(image)?.0.clone())
    }

    fn walk(&self, image: &Reference, visit: &mut EntryVisitor<'_>) -> Result<(), BuildError> {
        for (header, data) in &self.get(image)?.1 {
            visit(header, &mut data.as_slice())?;
        }
        Ok(())
    }

    fn oci_layout(&self, _: &Reference, _: &[String]) -> Result<Vec<LayoutEntry>, BuildError> {
        Ok(Vec::new())
    }

    fn copy_blob(
        &self,
        _: &str,
        _: &crate::image::Descriptor,
        _: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<(), BuildError> {
        Ok(())
    }
}

/// Records every entry with its data.
#[derive(Debug, Default)]
struct Recorder {
    entries: Vec<(Header, Vec<u8>)>,
    finished: bool,
}

impl EntrySink for Recorder {
    fn write_header(&mut self, header: &Header) -> io::Result<()> {
        self.entries.push((header.clone(), Vec::new()));
        Ok(())
    }

    fn write_data(&mut self, data: &[u8]) -> io::Result<()> {
        self.entries
            .last_mut()
            .expect("data after a header")
            .1
            .extend_from_slice(data);
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.finished = true;
        Ok(())
    }
}

impl Recorder {
    fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|(h, _)| h.name.as_str()).collect()
    }

    fn data(&self, name: &str) -> &[u8] {
        &self
            .entries
            .iter()
            .rev()
            .find(|(h, _)| h.name == name)
            .unwrap_or_else(|| panic!("no entry {name}"))
            .1
    }
}

fn file(name: &str, data: &[u8]) -> (Header, Vec<u8>) {
    let mut h = Header::new(name, EntryKind::Regular, 0o644);
    h.size = data.len() as u64;
    (h, data.to_vec())
}

fn symlink(name: &str, target: &str) -> (Header, Vec<u8>) {
    let mut h = Header::new(name, EntryKind::Symlink, 0o777);
    h.link_name = target.into();
    (h, vec![])
}

/// A spec whose one onboot container `app` runs `localhost/app:1`.
fn onboot_app() -> Moby {
    Moby {
        onboot: vec![Image {
            name: "app".into(),
            image: "localhost/app:1".into(),
            config: ImageConfig::default(),
        }],
        ..Moby::default()
    }
}

/// `moby` as a spec whose relative host paths lead under `/nonexistent/base`.
fn spec(moby: &Moby) -> Spec {
    let paths = HostPaths {
        base_dir: "/nonexistent/base".into(),
        home_dir: None,
    };
    Spec::unchecked_for_tests(moby.clone(), paths)
}

fn build(moby: &Moby, images: &FakeImages) -> Result<Recorder, BuildError> {
    let mut sink = Recorder::default();
    assemble(&spec(moby), images, &mut sink)?;
    Ok(sink)
}

const KERNEL: &str = "localhost/k:1";

fn kernel_moby(kernel: Kernel) -> Moby {
    Moby {
        kernel: Kernel {
            image: KERNEL.into(),
            ..kernel
        },
        ..Moby::default()
    }
}

#[test]
fn kernel_section_streams_kernel_cmdline_and_ucode() {
    let images = FakeImages::default().with(
        KERNEL,
        vec![
            file("ucode.cpio", b"UCODE"),
            file("vmlinuz", b"KERNEL"),
            file("other", b"ignored"),
        ],
    );
    let moby = kernel_moby(Kernel {
        cmdline: "console=ttyS0".into(),
        binary: "vmlinuz".into(),
        tar: Some("none".into()),
        ucode: Some("ucode.cpio".into()),
        ..Kernel::default()
    });
    let out = build(&moby, &images).unwrap();
    assert_eq!(
        out.names(),
        ["boot", "boot/ucode.cpio", "boot/cmdline", "boot/kernel"],
        "boot written once, before the first file"
    );
    assert_eq!(out.data("boot/kernel"), b"KERNEL");
    assert_eq!(out.data("boot/cmdline"), b"console=ttyS0");
    assert!(out.finished);
    let kernel = &out.entries[3].0;
    assert_eq!(
        (
            kernel.pax["LINUXKIT.source"].as_str(),
            kernel.pax["LINUXKIT.location"].as_str()
        ),
        ("localhost/k:1", "kernel")
    );
}

#[test]
fn missing_kernel_files_are_named() {
    let images = FakeImages::default().with(KERNEL, vec![file("kernel", b"K")]);
    let err = build(&kernel_moby(Kernel::default()), &images).unwrap_err().to_string();
    assert!(err.contains("kernel.tar") && err.contains("localhost/k:1"), "{err}");
    let err = build(
        &kernel_moby(Kernel {
            tar: Some("none".into()),
            ucode: Some("u.cpio".into()),
            ..Kernel::default()
        }),
        &images,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("u.cpio"), "{err}");
    let err = build(
        &kernel_moby(Kernel {
            binary: "bzImage".into(),
            ..Kernel::default()
        }),
        &images,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("bzImage"), "{err}");
}

#[test]
fn a_truncated_modules_tar_is_the_kernel_images_fault() {
    // An entry of kernel.tar claiming more data than the tar holds was reported as a write error.
    let mut modules = crate::tar::TarWriter::new(Vec::new());
    let mut module = Header::new("lib/modules/x.ko", EntryKind::Regular, 0o644);
    module.size = 1000;
    modules.write_header(&module).unwrap();
    modules.write_data(&[1u8; 1000]).unwrap();
    let mut modules = modules.into_inner();
    modules.truncate(512 + 100);
    let images = FakeImages::default().with(KERNEL, vec![file("kernel", b"K"), file("kernel.tar", &modules)]);
    let err = build(&kernel_moby(Kernel::default()), &images).unwrap_err();
    assert!(
        matches!(&err, BuildError::Kernel { image, source }
            if image == "localhost/k:1" && matches!(**source, KernelError::BadTar { .. })),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("kernel.tar") && text.contains("lib/modules/x.ko") && text.contains("after 100 of 1000 bytes"),
        "{text}"
    );
}

#[test]
fn init_apk_databases_are_merged_after_the_last_init_image() {
    let images = FakeImages::default()
        .with("localhost/a:1", vec![file("lib/apk/db/installed", b"A")])
        .with("localhost/b:1", vec![file("lib/apk/db/installed", b"B")]);
    let moby = Moby {
        init: vec!["localhost/a:1".into(), "localhost/b:1".into()],
        ..Moby::default()
    };
    let out = build(&moby, &images).unwrap();
    let (merged, data) = out.entries.last().unwrap();
    assert_eq!(merged.name, "lib/apk/db/installed");
    assert_eq!(
        (merged.mtime, merged.pax["LINUXKIT.source"].as_str()),
        (0, "LINUXKIT.apkinit")
    );
    assert_eq!(data, b"A\n\nB\n\n");
    assert_eq!(
        out.data("etc/resolv.conf"),
        b"",
        "init images get a resolv.conf symlink"
    );
}

#[test]
fn image_tree_filters_replaces_and_touches() {
    let mut link = Header::new("bin/hard", EntryKind::HardLink, 0o755);
    link.link_name = "bin/tool".into();
    let images = FakeImages::default().with(
        "localhost/app:1",
        vec![
            file(".dockerenv", b""),
            file("etc/hostname", b"x"),
            file("etc/hosts", b"mine"),
            file("bin/tool", b"T"),
            (link, vec![]),
        ],
    );
    let out = build(&onboot_app(), &images).unwrap();
    let names = out.names();
    let root = "containers/onboot/000-app/lower";
    assert!(!names
        .iter()
        .any(|n| n.ends_with(".dockerenv") || n.ends_with("etc/hostname")));
    assert_eq!(out.data(&format!("{root}/etc/hosts")), image_tree::HOSTS.as_bytes());
    assert_eq!(
        out.data(&format!("{root}/etc/resolv.conf")),
        image_tree::RESOLV_CONF.as_bytes()
    );
    let hard = out.entries.iter().find(|(h, _)| h.kind == EntryKind::HardLink).unwrap();
    assert_eq!(hard.0.link_name, format!("{root}/bin/tool"), "hard links are re-rooted");
    let tail: Vec<&str> = names.iter().rev().take(2).copied().collect();
    assert_eq!(
        tail,
        [
            "containers/onboot/000-app/runtime.json",
            "containers/onboot/000-app/rootfs"
        ]
    );
}

#[test]
fn image_tree_refuses_what_its_adjustments_would_break() {
    let mut hard = Header::new("copy", EntryKind::HardLink, 0o644);
    hard.link_name = "etc/hostname".into();
    type Entries = Vec<(Header, Vec<u8>)>;
    let cases: [(Entries, &str); 5] = [
        // etc/hosts and etc/resolv.conf would be written through the image's symlink.
        (vec![symlink("etc", "/etc")], "\"etc\" is not a directory"),
        (vec![file("dev", b"")], "\"dev\" is not a directory"),
        (vec![symlink("proc", "/etc/shadow")], "\"proc\" is not a directory"),
        // A directory etc/hosts becomes a file: its content could not be extracted.
        (vec![file("etc/hosts/x", b"")], "lies below \"etc/hosts\""),
        // etc/hostname is left out: the link would point to nothing.
        (
            vec![file("etc/hostname", b"h"), (hard, vec![])],
            "points to \"etc/hostname\"",
        ),
    ];
    for (entries, expected) in cases {
        let images = FakeImages::default().with("localhost/app:1", entries);
        let Err(err) = build(&onboot_app(), &images) else {
            panic!("built despite: {expected}");
        };
        assert!(matches!(err, BuildError::ImageTree { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("localhost/app:1") && text.contains(expected), "{text}");
    }
}

#[test]
fn a_reused_image_is_extracted_once() {
    let images = FakeImages::default().with("localhost/app:1", vec![file("bin/tool", b"T")]);
    let entry = |name: &str| Image {
        name: name.into(),
        image: "localhost/app:1".into(),
        config: ImageConfig::default(),
    };
    let moby = Moby {
        onboot: vec![entry("one")],
        services: vec![entry("two")],
        ..Moby::default()
    };
    let out = build(&moby, &images).unwrap();
    let copies = out.names().iter().filter(|n| n.ends_with("bin/tool")).count();
    assert_eq!(copies, 1);
    let runtime = String::from_utf8(out.data("containers/services/two/runtime.json").to_vec()).unwrap();
    assert!(
        runtime.contains("lowerdir=/containers/onboot/000-one/lower"),
        "{runtime}"
    );
}

#[test]
fn files_get_parents_once_and_optional_sources_may_be_missing() {
    let moby = Moby {
        files: vec![
            File {
                path: "/a/b/c".into(),
                contents: Some("x".into()),
                mode: "0640".into(),
                ..File::default()
            },
            File {
                path: "a/b/d".into(),
                contents: Some("y".into()),
                ..File::default()
            },
            File {
                path: "a/skip".into(),
                source: "/nonexistent/moby-test".into(),
                optional: true,
                ..File::default()
            },
        ],
        ..Moby::default()
    };
    let out = build(&moby, &FakeImages::default()).unwrap();
    assert_eq!(out.names(), ["a", "a/b", "a/b/c", "a/b/d"]);
    assert_eq!(out.entries[0].0.mode, 0o750);
    let required = Moby {
        files: vec![File {
            path: "x".into(),
            source: "/nonexistent/moby-test".into(),
            ..File::default()
        }],
        ..Moby::default()
    };
    let err = build(&required, &FakeImages::default()).unwrap_err().to_string();
    assert!(
        err.contains("files[0]") && err.contains("/nonexistent/moby-test"),
        "{err}"
    );
}

fn spec_file(path: &str, contents: &str) -> File {
    File {
        path: path.into(),
        contents: Some(contents.into()),
        ..File::default()
    }
}

/// A `Spec` made without `spec::load` gets the same path rules: nothing outside the root or below
/// an earlier symlink, and nothing is written before the refusal.
#[test]
fn files_outside_the_root_are_refused_even_without_validation() {
    let link = File {
        path: "etc".into(),
        symlink: "/etc".into(),
        ..File::default()
    };
    for (files, expected) in [
        (vec![spec_file("../x", "")], "'..'"),
        (vec![spec_file("//etc/passwd", "")], "absolute"),
        (vec![spec_file("/", "")], "root itself"),
        (vec![spec_file("", "")], "needs a path"),
        (
            vec![link, spec_file("etc/passwd", "")],
            "which files[0] makes a symlink",
        ),
        (
            vec![spec_file("a", ""), spec_file("a/b", "")],
            "which files[0] makes a regular file",
        ),
    ] {
        let moby = Moby {
            files,
            ..Moby::default()
        };
        let mut sink = Recorder::default();
        let err = assemble(&spec(&moby), &FakeImages::default(), &mut sink)
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{err}");
        assert!(
            sink.entries
                .iter()
                .all(|(h, _)| !h.name.contains("..") && !h.name.starts_with('/')),
            "{:?}",
            sink.entries
        );
    }
}

/// Leading directories are LinuxKit's `path.Dir` elements: `./a//b` makes `a` only (no `.`), and
/// the entry keeps its name as written.
#[test]
fn file_parents_skip_dot_elements() {
    let moby = Moby {
        files: vec![spec_file("./a//b", "x")],
        ..Moby::default()
    };
    let out = build(&moby, &FakeImages::default()).unwrap();
    assert_eq!(out.names(), ["a", "./a//b"]);
}

/// A `source` is streamed with the size it has, and must be a regular file (a device such as
/// `/dev/zero` would never end).
#[test]
fn file_sources_are_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("host");
    std::fs::write(&host, b"from the host").unwrap();
    let source = |path: &std::path::Path| Moby {
        files: vec![File {
            path: "x".into(),
            source: path.display().to_string(),
            ..File::default()
        }],
        ..Moby::default()
    };
    let out = build(&source(&host), &FakeImages::default()).unwrap();
    assert_eq!(out.data("x"), b"from the host");
    for not_regular in [std::path::Path::new("/dev/zero"), dir.path()] {
        let err = build(&source(not_regular), &FakeImages::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a regular file"), "{err}");
    }
}

#[test]
fn a_visitor_error_stops_the_build() {
    struct Broken;
    impl EntrySink for Broken {
        fn write_header(&mut self, _: &Header) -> io::Result<()> {
            Err(io::Error::other("disk full"))
        }
        fn write_data(&mut self, _: &[u8]) -> io::Result<()> {
            Ok(())
        }
        fn finish(&mut self) -> io::Result<()> {
            panic!("finish after a failure")
        }
    }
    let images = FakeImages::default().with("localhost/a:1", vec![file("x", b"1")]);
    let moby = Moby {
        init: vec!["localhost/a:1".into()],
        ..Moby::default()
    };
    let err = assemble(&spec(&moby), &images, &mut Broken).unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");
}

#[test]
fn no_part_of_the_image_is_written_below_a_symlink_of_another() {
    let images = FakeImages::default()
        .with("localhost/a:1", vec![symlink("lib", "/host/lib")])
        .with("localhost/b:1", vec![file("lib/evil.so", b"x")]);
    let escape = |moby: &Moby| match build(moby, &images) {
        Err(BuildError::Escape(err)) => err.to_string(),
        other => panic!("expected an escape, got {other:?}"),
    };
    // One init image below another's symlink.
    let two_inits = Moby {
        init: vec!["localhost/a:1".into(), "localhost/b:1".into()],
        ..Moby::default()
    };
    let text = escape(&two_inits);
    assert!(
        text.contains("\"lib/evil.so\" (from localhost/b:1, init[1]) lies below \"lib\"")
            && text.contains("(from localhost/a:1, init[0])"),
        "{text}"
    );
    // A files entry below an init image's symlink (the loader cannot see images).
    let file_below = Moby {
        init: vec!["localhost/a:1".into()],
        files: vec![File {
            path: "lib/x".into(),
            contents: Some("x".into()),
            ..File::default()
        }],
        ..Moby::default()
    };
    assert!(escape(&file_below).contains("\"lib/x\""));
}
