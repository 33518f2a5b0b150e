//! Starting the qemu process: either tied to the `moby run` that started it (it dies with it) or
//! detached into a session of its own.

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;

use super::command::QemuConfig;
use crate::process::new_session;

/// How long qemu may outlive the process that starts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Killed (SIGKILL) by the kernel when the starting thread exits, however it exits, so a killed
    /// `moby run` leaves no orphan VM. Start it from a thread that lives as long as the run (the
    /// main thread).
    TiedToParent,
    /// Runs on in a new session, without a terminal, after `moby run --detach` exits.
    Detached,
}

/// The qemu command for `config`: stdin from `/dev/null`, stdout and stderr into `log` (qemu's
/// own messages; the guest console goes to the sockets in `config`), its own process group so a
/// Ctrl-C on the terminal reaches `moby run` (which shuts the VM down cleanly) and not qemu.
pub fn command(config: &QemuConfig, lifetime: Lifetime, log: &Path) -> io::Result<std::process::Command> {
    let log = File::create(log)?;
    let mut cmd = config.command();
    cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    match lifetime {
        Lifetime::TiedToParent => {
            cmd.process_group(0);
            die_with_parent(&mut cmd);
        }
        Lifetime::Detached => new_session(&mut cmd),
    }
    if let Some(nic) = &config.network_nic {
        inherit(&mut cmd, nic.fd);
    }
    Ok(cmd)
}

/// Lets the child inherit descriptor `fd` (close-on-exec, as every descriptor we open, in the
/// parent) under its number.
#[allow(unsafe_code)]
fn inherit(cmd: &mut std::process::Command, fd: i32) {
    use rustix::io::{fcntl_setfd, FdFlags};
    // SAFETY: runs in the child between fork and exec; fcntl is async-signal-safe, nothing is
    // allocated, and the descriptor is the parent's open one (the caller keeps it open until
    // the child is spawned).
    unsafe {
        cmd.pre_exec(move || {
            let fd = std::os::fd::BorrowedFd::borrow_raw(fd);
            fcntl_setfd(fd, FdFlags::empty()).map_err(io::Error::from)
        });
    }
}

/// Sets `PR_SET_PDEATHSIG` to SIGKILL in the child, and exits the child if the parent is already
/// gone by then (the signal would never come).
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut std::process::Command) {
    use rustix::process::{getpid, getppid, set_parent_process_death_signal, Signal};
    let parent = getpid();
    // SAFETY: the closure runs in the child between fork and exec. It makes only async-signal-safe
    // system calls (prctl, getppid) and does not allocate: errors are raw errno values.
    unsafe {
        cmd.pre_exec(move || {
            set_parent_process_death_signal(Some(Signal::KILL)).map_err(io::Error::from)?;
            if getppid() != Some(parent) {
                return Err(io::Error::from(rustix::io::Errno::SRCH));
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accel::Accel;
    use crate::machine::{Arch, BootMedia};
    use crate::process::alive;
    use std::time::{Duration, Instant};

    fn fake_qemu(dir: &Path, script: &str) -> QemuConfig {
        let bin = dir.join("qemu-system-x86_64");
        crate::testing::write_script(&bin, &format!("#!/bin/sh\n{script}\n"));
        QemuConfig::new(bin, Arch::X86_64, Accel::Tcg, BootMedia::Iso("/x.iso".into()))
    }

    #[test]
    fn output_goes_to_the_log_and_groups_differ() {
        let d = tempfile::tempdir().unwrap();
        let cfg = fake_qemu(
            d.path(),
            "a=\"$*\"; set -- $(cat /proc/$$/stat); echo \"pgid=$5 args=$a\"; echo oops >&2",
        );
        let log = d.path().join("qemu.log");
        let status = command(&cfg, Lifetime::TiedToParent, &log).unwrap().status().unwrap();
        assert!(status.success());
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("args=-machine q35,accel=tcg"), "{text}");
        assert!(text.ends_with("oops\n"), "{text}");
        let pgid: u32 = text
            .split("pgid=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_ne!(pgid, std::process::id(), "qemu must not share our process group");
    }

    #[test]
    fn tied_child_dies_with_the_thread_that_started_it() {
        let d = tempfile::tempdir().unwrap();
        let cfg = fake_qemu(d.path(), "exec sleep 30");
        let log = d.path().join("qemu.log");
        // The "parent" is a thread that exits right after spawning, as a killed `moby run` would.
        let pid = std::thread::spawn(move || {
            command(&cfg, Lifetime::TiedToParent, &log)
                .unwrap()
                .spawn()
                .unwrap()
                .id()
        })
        .join()
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(pid), "qemu (pid {pid}) outlived the thread that started it");
    }

    #[test]
    fn detached_child_gets_its_own_session() {
        let d = tempfile::tempdir().unwrap();
        let cfg = fake_qemu(d.path(), "set -- $(cat /proc/$$/stat); echo \"sid=$6 pid=$1\"");
        let log = d.path().join("qemu.log");
        let status = command(&cfg, Lifetime::Detached, &log).unwrap().status().unwrap();
        assert!(status.success());
        let text = std::fs::read_to_string(&log).unwrap();
        let field = |k: &str| -> u32 {
            text.split(k)
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        assert_eq!(field("sid="), field("pid="), "{text}");
    }
}
