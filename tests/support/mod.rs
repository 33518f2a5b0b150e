//! Helpers shared by the integration tests.

pub mod gce;
pub mod gcs;
pub mod guest;
pub mod registry;
pub mod vm;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `moby` binary under test.
pub fn moby_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_moby"))
}

/// `cargo SUBCOMMAND --release --locked --target x86_64-unknown-linux-gnu` on the Rust package
/// `pkg/NAME` (a workspace of its own), static, with the flags and target directory that
/// `moby pkg build pkg/NAME` uses, so the two share their build. Returns the command and that
/// target directory.
pub fn pkg_cargo(name: &str, subcommand: &str) -> (Command, PathBuf) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let krate = fs::canonicalize(repo.join("pkg").join(name)).expect("the package folder");
    let target_dir = builder::PkgBuildOptions::new().cargo_target.join(name);
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .args([
            subcommand,
            "--release",
            "--locked",
            "--target",
            "x86_64-unknown-linux-gnu",
            "--manifest-path",
        ])
        .arg(krate.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", builder::static_rustflags(&krate, name))
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    (cargo, target_dir)
}

/// Runs `cargo test` of the Rust package `pkg/NAME` through [`pkg_cargo`] (so it shares the
/// package build's dependencies) and fails when its tests fail.
pub fn assert_pkg_unit_tests_pass(name: &str) {
    let (mut cargo, _) = pkg_cargo(name, "test");
    let status = cargo
        .status()
        .unwrap_or_else(|e| panic!("run cargo test on pkg/{name}: {e}"));
    assert!(
        status.success(),
        "pkg/{name}'s unit tests failed (see the cargo output above)"
    );
}

/// Copies a directory tree (the corpus is read-only; tests copy what they would modify).
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create dir");
    for entry in fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy file");
            let mut perms = fs::metadata(&target).expect("metadata").permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            fs::set_permissions(&target, perms).expect("make writable");
        }
    }
}

/// A newc cpio archive as `initrd-listing.tsv` lines: name, mode (6 octal digits), uid, gid, size,
/// mtime, nlink, link target, sha256 of regular files.
pub fn cpio_listing(archive: &[u8]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut pos = 0;
    let field = |data: &[u8], i: usize| {
        u64::from_str_radix(std::str::from_utf8(&data[6 + i * 8..14 + i * 8]).expect("ascii"), 16).expect("hex")
    };
    while pos + 110 <= archive.len() {
        let header = &archive[pos..pos + 110];
        assert_eq!(&header[..6], b"070701", "newc magic at offset {pos}");
        let (mode, uid, gid, nlink, mtime, size) = (
            field(header, 1),
            field(header, 2),
            field(header, 3),
            field(header, 4),
            field(header, 5),
            field(header, 6),
        );
        let name_size = field(header, 11) as usize;
        let name_start = pos + 110;
        let name = String::from_utf8_lossy(&archive[name_start..name_start + name_size - 1]).into_owned();
        let data_start = (name_start + name_size + 3) & !3;
        let data = &archive[data_start..data_start + size as usize];
        pos = (data_start + size as usize + 3) & !3;
        if name == "TRAILER!!!" {
            break;
        }
        let is_link = mode & 0o170000 == 0o120000;
        let is_file = mode & 0o170000 == 0o100000;
        let link = if is_link {
            String::from_utf8_lossy(data).into_owned()
        } else {
            String::new()
        };
        let sum = if is_file {
            use sha2::Digest;
            sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
        } else {
            String::new()
        };
        lines.push(format!(
            "{name}\t{mode:06o}\t{uid}\t{gid}\t{size}\t{mtime}\t{nlink}\t{link}\t{sum}"
        ));
    }
    lines
}

/// Whether process `pid` exists and is not a zombie (its state in `/proc/PID/stat`).
pub fn alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The command name is in parentheses and may itself contain spaces or parentheses.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    state.is_some_and(|s| s != "Z")
}

/// A guest shell script's loop over `peers`: each pinged by name until it answers (at most `tries`
/// seconds: only against hangs), then by the address its name resolved to; one line per peer,
/// `PREFIX peer NAME ADDRESS ok` or `PREFIX peer NAME failed: WHAT PING SAID`. Needs no writable
/// directory (the output is kept in a variable).
pub fn ping_peers(prefix: &str, peers: &[&str], tries: u32) -> String {
    format!(
        r#"for peer in {peers}; do
  n=0
  until out=$(ping -c 1 -W 1 "$peer" 2>&1); do
    n=$((n + 1))
    [ "$n" -ge {tries} ] && break
    sleep 1
  done
  addr=$(echo "$out" | sed -n 's/^PING [^ ]* (\([0-9.]*\)).*/\1/p')
  if [ -n "$addr" ] && ping -c 1 -W 2 "$addr" >/dev/null 2>&1; then
    echo "{prefix} peer $peer $addr ok"
  else
    echo "{prefix} peer $peer failed: $(echo "$out" | tr '\n' ' ')"
  fi
done
"#,
        peers = peers.join(" ")
    )
}

/// Waits (60 s at most) until the private network directory `network` is gone: a network ends a
/// few seconds after its last member.
pub fn wait_network_gone(network: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while network.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} outlived its members",
            network.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
