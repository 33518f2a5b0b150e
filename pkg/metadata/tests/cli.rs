//! The `metadata` binary end to end, writing into a temporary config directory
//! (`METADATA_CONFIG_PATH`). No test leaves a `hostname` file, so the host's name is never set.

// The whole file is test code: with `cfg(test)` on the crate, clippy.toml's allow-unwrap-in-tests
// and allow-expect-in-tests cover its helper functions too (clippy 1.95 counts test functions and
// `cfg(test)` items as tests, not integration test crates).
#![cfg(test)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

fn metadata(config: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metadata"))
        .args(args)
        .env("METADATA_CONFIG_PATH", config)
        .output()
        .unwrap()
}

#[test]
fn file_provider_json_userdata() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("run/config");
    let userdata = dir.path().join("userdata.json");
    fs::write(
        &userdata,
        r#"{"ssh":{"entries":{"authorized_keys":{"perm":"0600","content":"ssh-ed25519 AAAA k\n"}}},"../x":{"content":"no"}}"#,
    )
    .unwrap();
    let out = metadata(&config, &["-v", &format!("file={}", userdata.display())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("Trying file {}", userdata.display())),
        "{stderr}"
    );
    assert!(stderr.contains("Probe succeeded"), "{stderr}");
    assert!(stderr.contains("userdata entry /../x skipped"), "{stderr}");
    let keys = config.join("ssh/authorized_keys");
    assert_eq!(fs::read_to_string(&keys).unwrap(), "ssh-ed25519 AAAA k\n");
    assert_eq!(fs::metadata(&keys).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(
        fs::read_to_string(config.join("provider")).unwrap(),
        userdata.display().to_string()
    );
    assert!(!dir.path().join("run/x").exists());
}

#[test]
fn nothing_found_is_success() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    let out = metadata(&config, &["file=/nonexistent/userdata"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("No metadata/userdata found. Bye"));
    assert!(config.is_dir());
}

#[test]
fn unknown_provider_and_flag_fail() {
    let dir = tempfile::tempdir().unwrap();
    let out = metadata(dir.path(), &["azure"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unrecognised metadata provider: azure"));
    let out = metadata(dir.path(), &["-x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown flag -x"));
    let out = metadata(dir.path(), &["--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("file=PATH"));
}

#[test]
fn unimplemented_linuxkit_provider_is_skipped_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = metadata(dir.path(), &["hetzner"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("hetzner is not implemented"), "{stderr}");
}
