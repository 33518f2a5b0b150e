//! A VM booted by a foreground `moby run` in a private state directory: its console read line by
//! line, its stdin typed into the guest's serial console, stopped with `moby stop`, killed (with its
//! qemu) when a test fails first.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::guest::Console;
use super::moby_bin;

/// Bound on any one wait for the guest (TCG on a busy 2-core machine); only against hangs.
pub const BOUND: Duration = Duration::from_secs(300);

/// How long a line typed for a shell that is not there yet waits for its answer before it is
/// typed again (a getty flushes what was typed before it opened the line).
const RETYPE_AFTER: Duration = Duration::from_secs(5);

pub struct Vm {
    child: Child,
    pub console: Console,
    state_home: StateHome,
    pub name: String,
    /// Numbers the markers of [`Vm::shell`].
    commands: u32,
}

/// The `MOBY_STATE_HOME` of a VM: its own, or one shared with others (the VMs of one network).
enum StateHome {
    Own(tempfile::TempDir),
    Shared(PathBuf),
}

impl StateHome {
    fn path(&self) -> &Path {
        match self {
            StateHome::Own(dir) => dir.path(),
            StateHome::Shared(path) => path,
        }
    }
}

/// What `moby run` left when the VM was gone.
pub struct Exit {
    /// moby run's stderr (how the VM ended).
    pub stderr: String,
    /// Every console line.
    pub console: Vec<String>,
}

impl Vm {
    /// `moby run --accel tcg --mem 1024 ARGS PREFIX`; the instance is named after the prefix.
    pub fn boot(prefix: &Path, args: &[&str]) -> Vm {
        let name = prefix.file_name().expect("prefix").to_string_lossy().into_owned();
        Vm::boot_named(prefix, &name, args)
    }

    /// [`Vm::boot`] of an instance named `name` (`--name`).
    pub fn boot_named(prefix: &Path, name: &str, args: &[&str]) -> Vm {
        let state_home = StateHome::Own(tempfile::tempdir().expect("temp dir"));
        Vm::boot_at(state_home, prefix, name, args)
    }

    /// [`Vm::boot_named`] with the state home `home` (shared with other VMs).
    pub fn boot_in(home: &Path, prefix: &Path, name: &str, args: &[&str]) -> Vm {
        Vm::boot_at(StateHome::Shared(home.to_path_buf()), prefix, name, args)
    }

    fn boot_at(state_home: StateHome, prefix: &Path, name: &str, args: &[&str]) -> Vm {
        let name = name.to_string();
        let mut child = Command::new(moby_bin())
            .env("MOBY_STATE_HOME", state_home.path())
            .args(["run", "--accel", "tcg", "--mem", "1024", "--name", &name])
            .args(args)
            .arg(prefix)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run moby run");
        let console = Console::new(child.stdout.take().expect("piped stdout"));
        Vm {
            child,
            console,
            state_home,
            name,
            commands: 0,
        }
    }

    /// The next console line containing `text`; panics with the console so far, and with `moby
    /// run`'s messages when it ended first.
    pub fn wait(&mut self, text: &str) -> String {
        match self.console.try_wait_until(BOUND, |line| line.contains(text)) {
            Ok(line) => line,
            Err(err) => {
                let mut stderr = String::new();
                if err == std::sync::mpsc::RecvTimeoutError::Disconnected {
                    let _ = self.child.kill();
                    if let Some(mut pipe) = self.child.stderr.take() {
                        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                    }
                }
                panic!(
                    "{}: no console line with {text:?} ({err}); moby run said:\n{stderr}\nconsole so far:\n{}",
                    self.name,
                    self.console.seen.join("\n")
                )
            }
        }
    }

    /// Types `line` and Enter on the serial console.
    pub fn type_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("piped stdin");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .expect("type on the console");
    }

    /// Runs `command` in the shell on the console and returns the lines it printed. Until the
    /// shell has answered once, the command is typed again every few seconds: nothing typed
    /// before the getty opened the line is read, and typing twice must therefore be harmless.
    pub fn shell(&mut self, command: &str) -> Vec<String> {
        self.commands += 1;
        let n = self.commands;
        // The terminal echoes the typed `$((N+0))`; only the shell's output has the number.
        let (begin, end) = (format!("moby-test-begin-{n}"), format!("moby-test-end-{n}"));
        let typed = format!("echo moby-test-begin-$(({n}+0)); {command}; echo moby-test-end-$(({n}+0))");
        let mut waited = Duration::ZERO;
        loop {
            self.type_line(&typed);
            match self.console.try_wait_until(RETYPE_AFTER, |l| l.trim_end() == begin) {
                Ok(_) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if waited < BOUND => waited += RETYPE_AFTER,
                Err(err) => panic!(
                    "the console shell did not run {command:?} ({err}); console so far:\n{}",
                    self.console.seen.join("\n")
                ),
            }
        }
        let from = self.console.seen.len();
        self.console.wait_for(&end, BOUND);
        let seen = &self.console.seen;
        seen[from..seen.len() - 1].to_vec()
    }

    /// `moby stop -t 60` from another process; waits until `moby run` has exited successfully.
    pub fn stop(self) -> Exit {
        let stop = Command::new(moby_bin())
            .env("MOBY_STATE_HOME", self.state_home.path())
            .args(["stop", "-t", "60", &self.name])
            .output()
            .expect("run moby stop");
        assert!(
            stop.status.success(),
            "moby stop: {}",
            String::from_utf8_lossy(&stop.stderr)
        );
        self.wait_exit()
    }

    /// Waits until the VM has gone down by itself and `moby run` has exited successfully.
    pub fn wait_exit(mut self) -> Exit {
        self.console.drain(BOUND);
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut self.child.stderr.take().expect("piped stderr"), &mut stderr)
            .expect("read moby run's stderr");
        let status = self.child.wait().expect("wait for moby run");
        let console = std::mem::take(&mut self.console.seen);
        assert!(
            status.success(),
            "moby run: {status}\n{stderr}\nconsole:\n{}",
            console.join("\n")
        );
        Exit { stderr, console }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        // A failed test must not leave qemu behind: killing moby run kills its qemu.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
