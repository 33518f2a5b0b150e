//! Progress bars of `moby build`: drawn on a terminal (a pseudo-terminal from util-linux's
//! `script`), never into a pipe, under CI, with `-q` or on a `TERM=dumb` terminal.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use builder::{EntryKind, EntrySink, Header, TarWriter};

use crate::support::moby_bin;
use crate::support::registry::{pseudo_random, Registry};

/// A registry holding `test/big:v1`, one layer with a file of 1 MiB, and a spec running it
/// (and adding a file, which logs while the build's line is shown).
fn registry_and_spec(dir: &Path) -> (Registry, String) {
    let registry = Registry::start();
    let data = pseudo_random(7, 1 << 20);
    let mut layer = TarWriter::new(Vec::new());
    let mut header = Header::new("big", EntryKind::Regular, 0o644);
    header.size = data.len() as u64;
    layer.write_header(&header).unwrap();
    layer.write_data(&data).unwrap();
    layer.finish().unwrap();
    registry.push_image("test/big", Some("v1"), "amd64", &[layer.into_inner()]);
    let image = format!("{}/test/big:v1", registry.host());
    let spec = dir.join("big.yml");
    std::fs::write(
        &spec,
        format!("onboot:\n  - name: big\n    image: {image}\nfiles:\n  - path: etc/hello\n    contents: hi\n"),
    )
    .unwrap();
    (registry, image)
}

/// `moby build -o DIR/out.tar DIR/big.yml` with a new cache, outside CI, on an xterm, with
/// `extra` flags before the spec; `env` set on top.
fn build_command(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(moby_bin());
    command
        .arg("build")
        .arg("--cache")
        .arg(dir.join("cache"))
        .arg("-o")
        .arg(dir.join("out.tar"))
        .args(extra)
        .arg(dir.join("big.yml"))
        .env_remove("CI")
        .env_remove("MOBY_LOG")
        .env("TERM", "xterm")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    command
}

/// Runs `command` with its stdout and stderr on a pseudo-terminal; what the terminal showed.
fn on_a_terminal(command: &Command) -> String {
    let (mut unset, mut set) = (String::new(), String::new());
    for (name, value) in command.get_envs() {
        let name = name.to_string_lossy();
        match value {
            Some(value) => set.push_str(&format!("{name}='{}' ", value.to_string_lossy())),
            None => unset.push_str(&format!("-u {name} ")),
        }
    }
    let mut line = format!("env {unset}{set}'{}'", command.get_program().to_string_lossy());
    for arg in command.get_args() {
        line.push_str(&format!(" '{}'", arg.to_string_lossy()));
    }
    let output = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("run script (util-linux) for a pseudo-terminal");
    let shown = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{line} failed:\n{shown}");
    shown
}

fn ok(output: Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "moby failed: {stderr}");
    stderr
}

#[test]
fn a_terminal_shows_a_bar_per_pull_and_the_build() {
    let dir = tempfile::tempdir().unwrap();
    let (_registry, image) = registry_and_spec(dir.path());
    let shown = on_a_terminal(&build_command(dir.path(), &[], &[]));
    // The pull's line as first drawn, once its size is known.
    let pull = shown
        .lines()
        .find(|line| line.contains("/test/big:v1 ["))
        .unwrap_or_else(|| panic!("no bar for {image}:\n{shown:?}"));
    assert!(pull.contains("0 B / 1.0 MiB"), "{pull:?}");
    assert!(shown.contains(&format!("building {image}")), "{shown:?}");
    // Drawn in place, and taken off the screen at the end: the last thing shown clears it.
    assert!(shown.contains("\x1b[1A\r\x1b[J"), "{shown:?}");
    assert!(shown.ends_with("\x1b[J"), "{shown:?}");
    // The log is all there, each line written once the bars were taken off.
    assert!(shown.contains(&format!("pulling {image}")), "{shown:?}");
    let logged = shown.find("Add files:").unwrap();
    assert!(shown[..logged].ends_with("\x1b[1A\r\x1b[J"), "{shown:?}");
}

#[test]
fn no_bars_without_someone_watching() {
    let dir = tempfile::tempdir().unwrap();
    let (_registry, image) = registry_and_spec(dir.path());
    let fresh = |dir: &Path| std::fs::remove_dir_all(dir.join("cache")).unwrap();
    // stderr into a pipe: the log as it always was.
    let logged = ok(build_command(dir.path(), &[], &[]).output().unwrap());
    assert!(logged.contains(&format!("pulling {image}")), "{logged}");
    assert!(!logged.contains(['\r', '\x1b']), "{logged:?}");
    for (extra, env) in [
        (&[][..], &[("CI", "true")][..]),
        (&["-q"][..], &[][..]),
        (&[][..], &[("TERM", "dumb")][..]),
    ] {
        fresh(dir.path());
        let shown = on_a_terminal(&build_command(dir.path(), extra, env));
        assert!(!shown.contains('\x1b'), "{extra:?} {env:?}: {shown:?}");
        assert!(
            !shown.contains(&format!("building {image}")),
            "{extra:?} {env:?}: {shown:?}"
        );
    }
}
