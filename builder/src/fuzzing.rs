//! How the fuzz targets of the spec loader (`spec/fuzz.rs`), the tar reader (`tar/reader/fuzz.rs`)
//! and the layer flattener (`layer/flatten/fuzz.rs`) run: proptest cases, a bounded number in
//! `cargo test` (seconds; `PROPTEST_CASES=N` runs N per target), always in a child process whose
//! address space is capped with `ulimit -v` (`MOBY_FUZZ_MEMORY_KIB`, default 1 GiB), so that an
//! allocation sized by what hostile input claims (a header's size, an alias bomb) fails the run
//! instead of going unnoticed. The spec's targets are `#[ignore]`d so that only the child runs them.
//!
//! `cargo test -p builder --lib fuzz_targets_under_a_memory_cap -- --nocapture` prints each
//! target's number of executions.

use std::cell::Cell;
use std::ops::Range;
use std::process::Command;

use proptest::prelude::{any, Strategy};
use proptest::test_runner::{Config, TestCaseResult, TestRunner};

/// Set in the capped child process, where the targets run, to the cap in KiB.
const CAPPED: &str = "MOBY_FUZZ_CAPPED";

/// The address-space cap in KiB: far above what the targets need, far below a claimed size.
const DEFAULT_CAP_KIB: u64 = 1 << 20;

/// Test-name filters of the fuzz targets.
const TARGETS: [&str; 3] = ["spec::fuzz::", "tar::reader::fuzz::", "layer::flatten::fuzz::"];

/// Runs one fuzz target with `default_cases` cases (or `PROPTEST_CASES`), and only in the capped
/// child: outside it, [`fuzz_targets_under_a_memory_cap`] starts that child.
pub(crate) fn fuzz<S: Strategy>(
    name: &str,
    default_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> TestCaseResult,
) {
    let Some(cap_kib) = std::env::var(CAPPED).ok().and_then(|kib| kib.parse::<usize>().ok()) else {
        return;
    };
    // Without the cap in force, this run would prove nothing about memory.
    assert!(
        Vec::<u8>::new().try_reserve(cap_kib.saturating_add(1) * 1024).is_err(),
        "the address space is not capped at {cap_kib} KiB"
    );
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default_cases);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let executions = Cell::new(0u64);
    let result = runner.run(&strategy, |value| {
        executions.set(executions.get() + 1);
        test(value)
    });
    eprintln!("fuzz target {name}: {} executions", executions.get());
    if let Err(err) = result {
        panic!("fuzz target {name}: {err}");
    }
}

/// Bytes of a length in `len`, from a seed: much cheaper than a strategy per byte, still shrinking
/// to shorter prefixes.
pub(crate) fn bytes(len: Range<usize>) -> impl Strategy<Value = Vec<u8>> {
    (any::<u64>(), len).prop_map(|(mut seed, len)| {
        // splitmix64
        let mut next = move || {
            seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        (0..len.div_ceil(8))
            .flat_map(|_| next().to_le_bytes())
            .take(len)
            .collect()
    })
}

#[test]
fn fuzz_targets_under_a_memory_cap() {
    if std::env::var_os(CAPPED).is_some() {
        return;
    }
    let cap = std::env::var("MOBY_FUZZ_MEMORY_KIB").unwrap_or_else(|_| DEFAULT_CAP_KIB.to_string());
    let exe = std::env::current_exe().unwrap();
    let output = Command::new("sh")
        .args(["-c", r#"ulimit -v "$1" && shift && exec "$@""#, "sh", &cap])
        .arg(exe)
        .args(TARGETS)
        .args(["--include-ignored", "--nocapture"])
        .env(CAPPED, &cap)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "fuzz targets failed under a {cap} KiB cap ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for line in stderr.lines().filter(|line| line.starts_with("fuzz target")) {
        eprintln!("{line}");
    }
    // Every filter must still match targets (a rename would silently run nothing).
    for target in TARGETS {
        assert!(
            stdout.lines().any(|line| line.starts_with(&format!("test {target}"))),
            "no fuzz target matches {target}:\n{stdout}\n{stderr}"
        );
    }
}
