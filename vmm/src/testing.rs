//! Test helpers shared by the backends' unit tests.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Writes an executable script (`text` includes the `#!` line) to `path`.
///
/// A child process writes it: had this process held the file open for writing, a child forked
/// meanwhile by another test thread would inherit that descriptor until it execs, and running the
/// script then fails with ETXTBSY ("Text file busy").
pub(crate) fn write_script(path: &Path, text: &str) {
    let mut writer = Command::new("sh")
        .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("start sh to write a script");
    writer
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .expect("write the script");
    let status = writer.wait().expect("wait for sh");
    assert!(status.success(), "writing {} failed: {status}", path.display());
}

/// A pid no process has: above the kernel's pid_max.
pub(crate) fn dead_pid() -> u32 {
    let max = std::fs::read_to_string("/proc/sys/kernel/pid_max").expect("pid_max");
    max.trim().parse::<u32>().expect("pid_max") + 1
}
