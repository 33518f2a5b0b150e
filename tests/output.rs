//! Where outputs go, end to end: FIFOs and pipes as `-o`, standard output closed by its reader.

use std::fs;
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::cli::{example_dir, ok, Workspace};
use crate::support::moby_bin;

/// Runs moby with its standard output a pipe whose reader reads `keep` bytes and closes it (for
/// 0, before moby starts). Unless moby writes more than a pipe holds, `keep` must be 0 for the
/// reader to be gone when moby writes.
fn with_reader_closing_after(keep: usize, command: &mut Command) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    let reader = (keep > 0).then_some(reader);
    let child = command.stdout(writer).stderr(Stdio::piped()).spawn().expect("run moby");
    if let Some(mut reader) = reader {
        let mut head = vec![0u8; keep];
        reader.read_exact(&mut head).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn text_output_into_a_closed_pipe_ends_quietly() {
    let ws = Workspace::new();
    let cwd = ws.dir.path();
    // A spec whose merged YAML is far larger than a pipe's buffer.
    let files: String = (0..2000)
        .map(|i| format!("  - path: etc/f{i}\n    contents: \"{}\"\n", "x".repeat(1000)))
        .collect();
    fs::write(ws.path("big.yml"), format!("files:\n{files}")).unwrap();
    fs::create_dir(ws.path("pkg")).unwrap();
    fs::write(ws.path("pkg/build.yml"), "image: quiet\n").unwrap();
    let state = ws.path("state");
    let commands: [(&[&str], usize); 5] = [
        (&["build", "--dry-run", "big.yml"], 1),
        (&["cache", "ls"], 0),
        (&["pkg", "show-tag", "pkg"], 0),
        (&["ps", "-a"], 0),
        (&["version"], 0),
    ];
    for (args, keep) in commands {
        let mut moby = Command::new(moby_bin());
        moby.current_dir(cwd)
            .env("MOBY_CACHE", ws.cache())
            .env("MOBY_STATE_HOME", &state)
            .args(args);
        let output = with_reader_closing_after(keep, &mut moby);
        assert!(
            output.status.success() && !stderr(&output).contains("panicked"),
            "moby {args:?}: {:?}\n{}",
            output.status,
            stderr(&output)
        );
    }
}

#[test]
fn an_image_cut_short_on_standard_output_is_an_error() {
    let ws = Workspace::new();
    let mut build = Command::new(moby_bin());
    build
        .current_dir(example_dir())
        .env("MOBY_CACHE", ws.cache())
        .args(["build", "-o", "-", "linuxkit.yml"]);
    let mut export = Command::new(moby_bin());
    export
        .env("MOBY_CACHE", ws.cache())
        .args(["cache", "export", "localhost:5000/conformance/hello:v1", "-o", "-"]);
    // The image is megabytes, more than a pipe holds; the cached image is small.
    for (what, keep, command) in [("build", 1024, &mut build), ("cache export", 0, &mut export)] {
        let output = with_reader_closing_after(keep, command);
        let stderr = stderr(&output);
        assert!(!output.status.success(), "{what}: {stderr}");
        assert!(
            stderr.contains("standard output") && stderr.contains("truncated"),
            "{what}: {stderr}"
        );
    }
}

#[test]
fn an_image_written_into_a_fifo_leaves_the_fifo() {
    let ws = Workspace::new();
    let file = ws.path("img.tar");
    let fifo = ws.path("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let reader = std::thread::spawn({
        let fifo = fifo.clone();
        move || fs::read(fifo).unwrap()
    });
    for output in [&file, &fifo] {
        ok(ws.moby(
            &example_dir(),
            &["build", "-o", output.to_str().unwrap(), "linuxkit.yml"],
        ));
    }
    assert!(is_fifo(&fifo), "still a FIFO");
    assert_eq!(reader.join().unwrap(), fs::read(&file).unwrap());
}

fn is_fifo(path: &Path) -> bool {
    fs::symlink_metadata(path).unwrap().file_type().is_fifo()
}

#[test]
fn cache_export_and_rm_of_a_missing_image_fail_and_change_nothing() {
    let ws = Workspace::new();
    let cwd = ws.dir.path();
    let missing = "localhost:5000/conformance/nosuch:v1";
    let archive = ws.path("nosuch.tar");
    let earlier = ws.path("earlier.tar");
    fs::write(&earlier, b"an earlier export").unwrap();
    for target in [&archive, &earlier] {
        let output = ws.moby(cwd, &["cache", "export", missing, "-o", target.to_str().unwrap()]);
        assert!(
            !output.status.success() && stderr(&output).contains(missing),
            "{}",
            stderr(&output)
        );
    }
    assert!(!archive.exists(), "no empty file left");
    assert_eq!(fs::read(&earlier).unwrap(), b"an earlier export");

    let hello = "localhost:5000/conformance/hello:v1";
    let output = ws.moby(cwd, &["cache", "rm", hello, missing]);
    let stderr = stderr(&output);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("removed {hello}")), "{stderr}");
    assert!(stderr.contains(&format!("nothing removed for: {missing}")), "{stderr}");
    assert!(!stderr.contains(&format!("removed {missing}")), "{stderr}");
}

#[test]
fn flag_mistakes_are_refused_naming_the_flag_and_write_nothing() {
    let ws = Workspace::new();
    let out = ws.path("a/b/out");
    fs::create_dir_all(&out).unwrap();
    let spec = example_dir().join("linuxkit.yml");
    let spec = spec.to_str().unwrap();
    let dir = out.to_str().unwrap();
    let cases: [(&[&str], &str); 8] = [
        (&["build", "--dir", dir, "--name", "../../X", spec], "--name"),
        (&["build", "--dir", dir, "--name", "", spec], "--name"),
        (&["build", "--dir", dir, "--name", ".hidden", spec], "--name"),
        (&["build", "--dir", dir, "--arch", "evil", spec], "--arch"),
        (&["run", "--mem", "0", "img"], "--mem"),
        (&["run", "--cpus", "0", "img"], "--cpus"),
        (&["run", "--disk", "/a,b.img,size=10M", "img"], "--disk"),
        (&["run", "qemu", "--disk", "a.img,size=1G,size=2G", "img"], "--disk"),
    ];
    let accepted: Vec<String> = cases
        .iter()
        .filter_map(|(args, flag)| {
            let output = ws.moby(ws.dir.path(), args);
            let refused = !output.status.success() && stderr(&output).contains(flag);
            (!refused).then(|| format!("{args:?}: {}", stderr(&output)))
        })
        .collect();
    assert!(
        accepted.is_empty(),
        "not refused by flag name:\n{}",
        accepted.join("\n")
    );
    let written: Vec<_> = walk(&ws.path("a"));
    assert_eq!(written, [ws.path("a/b"), out], "nothing written anywhere under a/");
}

/// Every path under `dir`, sorted.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            paths.push(path.clone());
            paths.extend(walk(&path));
        } else {
            paths.push(path);
        }
    }
    paths.sort();
    paths
}

/// The names of the hidden (temporary) files in `dir`.
fn hidden_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    names.sort();
    names
}

#[test]
fn a_signal_mid_build_leaves_no_partial_output() {
    for (signal, status) in [("TERM", 143), ("INT", 130)] {
        let ws = Workspace::new();
        let out = ws.path("out");
        fs::create_dir(&out).unwrap();
        // img.tar is a FIFO nobody reads: the build waits there, with img-initrd.img staged.
        let fifo = out.join("img.tar");
        assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let mut child = Command::new(moby_bin())
            .current_dir(example_dir())
            .env("MOBY_CACHE", ws.cache())
            .args(["build", "--format", "kernel+initrd,tar", "--dir", out.to_str().unwrap()])
            .args(["--name", "img", "linuxkit.yml"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        while hidden_files(&out).is_empty() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "moby ended before staging its output"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap()
            .success());
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(status), "SIG{signal}: {}", stderr(&output));
        assert_eq!(hidden_files(&out), Vec::<String>::new(), "SIG{signal}");
        assert!(is_fifo(&fifo));
    }
}

#[test]
fn a_later_build_sweeps_the_partial_outputs_of_dead_builds_only() {
    let ws = Workspace::new();
    let out = ws.path("out");
    fs::create_dir(&out).unwrap();
    // pid_max itself is never a process id: a build that was killed.
    let dead_pid: u32 = fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let live_pid = std::process::id();
    let dead = format!(".img-initrd.img.moby-{dead_pid}.AbC123");
    let kept = [
        format!(".img-initrd.img.moby-{live_pid}.AbC123"),
        format!(".other-initrd.img.moby-{dead_pid}.AbC123"),
        ".img-initrd.img.AbC123".to_string(),
        format!(".img-initrd.img.moby-{dead_pid}.AbC123.mine"),
    ];
    for name in kept.iter().chain([&dead]) {
        fs::write(out.join(name), b"partial").unwrap();
    }
    ok(ws.moby(
        &example_dir(),
        &["build", "--dir", out.to_str().unwrap(), "--name", "img", "linuxkit.yml"],
    ));
    let mut expected = kept.to_vec();
    expected.sort();
    assert_eq!(hidden_files(&out), expected);
}
