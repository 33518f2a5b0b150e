//! `moby run qemu`, `ps`, `stop` and `console` booting the test guest (Debian's cloud kernel and a
//! busybox init, tests/support/guest.rs) under TCG, reading its serial console.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::alive;
use crate::support::guest::{self, marker, Console};
use crate::support::moby_bin;

/// Upper bound for a guest to reach a marker; only guards against hangs (TCG on a busy machine).
const BOOT_BOUND: Duration = Duration::from_secs(180);

/// A scratch dir with the test guest and a private `MOBY_STATE_HOME`.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        Host {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn state_home(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn state(&self, name: &str) -> PathBuf {
        self.state_home().join(name)
    }

    fn guest(&self, name: &str) -> PathBuf {
        guest::write_guest(&self.dir.path().join("out"), name)
    }

    fn moby(&self) -> Command {
        let mut c = Command::new(moby_bin());
        c.env("MOBY_STATE_HOME", self.state_home())
            .env_remove("MOBY_QEMU_ACCEL")
            .env_remove("LINUXKIT_QEMU_ACCEL");
        c
    }

    fn output(&self, args: &[&str]) -> Output {
        self.moby().args(args).output().expect("run moby")
    }
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn wait_gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    !alive(pid)
}

fn qemu_pid(state: &Path) -> u32 {
    let text = std::fs::read_to_string(state.join("instance.json")).expect("instance.json");
    let record: serde_json::Value = serde_json::from_str(&text).expect("instance.json is JSON");
    record["pid"].as_u64().expect("pid") as u32
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -s {sig} {pid}");
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One boot exercising everything a foreground VM offers: console, `--publish` (TCP round trip
/// into the guest), `--data` (read back by the guest from the cidata CD), `--disk` (created, seen
/// by the guest), then Ctrl-C: the guest sees the ACPI power button and powers off, qemu exits
/// cleanly and the state dir keeps only what outlives a run.
#[test]
fn foreground_vm_publishes_reads_userdata_sees_disk_and_powers_down_on_ctrl_c() {
    let host = Host::new();
    let prefix = host.guest("fg");
    let port = free_port();
    let mut child = host
        .moby()
        .args(["run", "qemu", "--accel", "tcg", "--mem", "512"])
        .args(["--publish", &format!("{port}:{}", guest::PONG_PORT)])
        .args(["--data", "hello from the host\nsecond line"])
        .args(["--disk", "size=64M"])
        .arg(&prefix)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start moby run");
    let mut console = Console::new(child.stdout.take().expect("piped stdout"));

    console.wait_for(marker::INIT, BOOT_BOUND);
    let userdata = console.wait_for(marker::USERDATA, BOOT_BOUND);
    assert_eq!(userdata, guest::userdata_line("hello from the host\nsecond line"));
    let disk = console.wait_for(marker::DISK, BOOT_BOUND);
    assert_eq!(disk, "moby-guest: disk vda 67108864");
    console.wait_for(marker::READY, BOOT_BOUND);

    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect to the published port");
    conn.set_read_timeout(Some(BOOT_BOUND)).unwrap();
    conn.write_all(b"ping 42\n").unwrap();
    let mut answer = String::new();
    BufReader::new(&conn).read_line(&mut answer).unwrap();
    assert_eq!(answer, "pong ping 42\n");

    let state = host.state("fg");
    let qemu = qemu_pid(&state);
    assert!(alive(qemu));
    let ps = host.output(&["ps"]);
    let ps_text = String::from_utf8_lossy(&ps.stdout).into_owned();
    let row = ps_text
        .lines()
        .find(|l| l.starts_with("fg "))
        .unwrap_or_else(|| panic!("{ps_text}"));
    assert!(
        row.contains(" running ") && row.contains(&qemu.to_string()) && row.contains(&format!("{port}:7777/tcp")),
        "{row}"
    );

    signal(child.id(), "INT"); // what Ctrl-C does: moby, not qemu (own process group), gets it
    console.wait_for(marker::POWER_BUTTON, BOOT_BOUND);
    console.drain(BOOT_BOUND);
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "moby run: {status}\n{err}");
    assert!(err.contains("VM `fg` powered off after the ACPI power button"), "{err}");
    assert!(wait_gone(qemu), "qemu {qemu} still runs");

    let mut left: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "console.log",
            "data.iso",
            "disk.img",
            "instance.json",
            "lock",
            "mac-addr",
            "qemu.log",
            "record.lock"
        ]
    );
    let log = std::fs::read_to_string(state.join("console.log")).unwrap();
    assert!(
        log.contains(marker::READY) && log.contains(marker::POWER_BUTTON),
        "{log}"
    );
    let img = Command::new("qemu-img")
        .arg("info")
        .arg(state.join("disk.img"))
        .output()
        .expect("qemu-img");
    assert!(String::from_utf8_lossy(&img.stdout).contains("file format: qcow2"));
}

/// A detached VM: `moby run -d` returns, `moby ps` lists it, a second run of the same name is
/// refused, `moby console` replays its console, `moby stop` powers it down through QMP.
#[test]
fn detached_vm_is_listed_attached_to_and_stopped() {
    let host = Host::new();
    let prefix = host.guest("bg");
    let prefix_arg = prefix.to_str().unwrap();
    let run = host.output(&["run", "--accel", "tcg", "--mem", "256", "-d", prefix_arg]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(String::from_utf8_lossy(&run.stdout), "bg\n");
    let state = host.state("bg");
    let qemu = qemu_pid(&state);
    assert!(alive(qemu), "detached qemu runs after moby run returned");

    let again = host.output(&["run", "--accel", "tcg", "-d", prefix_arg]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains(&format!("instance `bg` is still running from {}", state.display())),
        "{}",
        stderr(&again)
    );

    // The console: replayed from the log, then live, until the guest is ready.
    let mut attach = host
        .moby()
        .args(["console", "bg"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut console = Console::new(attach.stdout.take().expect("piped stdout"));
    console.wait_for(marker::INIT, BOOT_BOUND);
    console.wait_for(marker::READY, BOOT_BOUND);
    // Ctrl-] detaches; the VM keeps running.
    attach.stdin.take().unwrap().write_all(&[0x1d]).unwrap();
    assert!(attach.wait().unwrap().success());
    assert!(alive(qemu));

    let ps = host.output(&["ps"]);
    let ps_text = String::from_utf8_lossy(&ps.stdout).into_owned();
    assert!(
        ps_text
            .lines()
            .any(|l| l.starts_with("bg ") && l.contains(" running ") && l.contains(&qemu.to_string())),
        "{ps_text}"
    );

    let stop = host.output(&["stop", "bg"]);
    assert!(stop.status.success(), "{}", stderr(&stop));
    assert!(
        stderr(&stop).contains("VM `bg` powered off after the ACPI power button"),
        "{}",
        stderr(&stop)
    );
    assert!(!alive(qemu), "moby stop returns once qemu has exited");
    let log = std::fs::read_to_string(state.join("console.log")).unwrap();
    assert!(log.contains(marker::POWER_BUTTON), "{log}");

    let ps = host.output(&["ps"]);
    assert!(!String::from_utf8_lossy(&ps.stdout).contains("bg "));
    let all = host.output(&["ps", "-a"]);
    let all = String::from_utf8_lossy(&all.stdout).into_owned();
    assert!(
        all.lines().any(|l| l.starts_with("bg ") && l.contains(" stopped ")),
        "{all}"
    );
    let again = host.output(&["stop", "bg"]);
    assert!(stderr(&again).contains("VM `bg` is not running"), "{}", stderr(&again));
}

/// SIGKILL to a foreground `moby run` takes qemu with it; the next run of the same name finds
/// the stale state, cleans it, shows the whole console and reports a guest that powers itself off.
#[test]
fn killed_moby_leaves_no_qemu_and_the_next_run_reports_guest_poweroff() {
    let host = Host::new();
    let prefix = host.guest("k");
    let mut child = host
        .moby()
        .args(["run", "--accel", "tcg", "--mem", "256"])
        .arg(&prefix)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut console = Console::new(child.stdout.take().expect("piped stdout"));
    console.wait_for(marker::INIT, BOOT_BOUND);
    let state = host.state("k");
    let qemu = qemu_pid(&state);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(wait_gone(qemu), "qemu {qemu} outlived the killed moby run");
    assert!(state.join("qemu.pid").exists(), "a killed run cannot clean up");

    let prefix = guest::write_guest_with_cmdline(
        &host.dir.path().join("out"),
        "k",
        &format!("{} {}", guest::CMDLINE, guest::POWEROFF_OPTION),
    );
    let run = host
        .moby()
        .args(["run", "--accel", "tcg", "--mem", "256"])
        .arg(&prefix)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    let console = String::from_utf8_lossy(&run.stdout);
    assert!(console.contains(marker::POWEROFF), "{console}");
    assert!(
        stderr(&run).contains("VM `k` powered off by the guest"),
        "{}",
        stderr(&run)
    );
    assert!(!state.join("qemu.pid").exists());
}

/// Errors a user can act on, before anything boots.
#[test]
fn run_errors_name_what_to_fix() {
    let host = Host::new();
    let out = host.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let missing = out.join("nothing");
    let e = host.output(&["run", "--accel", "tcg", missing.to_str().unwrap()]);
    assert!(!e.status.success());
    assert!(
        stderr(&e).contains("no ") && stderr(&e).contains("nothing-kernel") && stderr(&e).contains("moby build"),
        "{}",
        stderr(&e)
    );

    let prefix = host.guest("e");
    let p = prefix.to_str().unwrap();
    let e = host.output(&["run", "--accel", "tcg", "--disk", "size=1G,format=qcow3", p]);
    assert!(stderr(&e).contains("unknown disk format \"qcow3\""), "{}", stderr(&e));
    let e = host.output(&["run", "--accel", "tcg", "--qemu", "/nonexistent/qemu-system-x86_64", p]);
    assert!(
        stderr(&e).contains("/nonexistent/qemu-system-x86_64 does not exist"),
        "{}",
        stderr(&e)
    );
    let e = host.output(&["run", "--accel", "tcg", "--uefi", "--fw", "/nonexistent/OVMF.fd", p]);
    assert!(
        stderr(&e).contains("firmware /nonexistent/OVMF.fd does not exist"),
        "{}",
        stderr(&e)
    );
    let e = host.output(&[
        "run",
        "--accel",
        "tcg",
        "--networking",
        "none",
        "--publish",
        "8080:80",
        p,
    ]);
    assert!(!e.status.success() && stderr(&e).contains("user"), "{}", stderr(&e));

    // qemu's own complaint, when it refuses its command line.
    let e = host.output(&["run", "--accel", "tcg", "--device", "nonsense-dev", p]);
    assert!(
        stderr(&e).contains("qemu exited while starting")
            && stderr(&e).contains("'nonsense-dev' is not a valid device model name"),
        "{}",
        stderr(&e)
    );

    let held = TcpListener::bind(("0.0.0.0", 0)).unwrap();
    let port = held.local_addr().unwrap().port();
    let e = host.output(&["run", "--accel", "tcg", "--publish", &format!("{port}:80"), p]);
    assert!(
        stderr(&e).contains(&format!("host port {port}/tcp is already in use")),
        "{}",
        stderr(&e)
    );
    assert!(!host.state("e").join("qemu.pid").exists(), "nothing was started");
}

/// `scripts/qemu.sh` boots an output by hand on the same machine: the guest reaches init, sees its
/// NIC and powers itself off, and qemu exits cleanly.
#[test]
fn qemu_sh_boots_an_output_by_hand() {
    let host = Host::new();
    let prefix = guest::write_guest_with_cmdline(
        &host.dir.path().join("out"),
        "byhand",
        &format!("{} {}", guest::CMDLINE, guest::POWEROFF_OPTION),
    );
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/qemu.sh");
    let out = Command::new(script)
        .args(["--mem", "256"])
        .arg(&prefix)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/qemu.sh");
    let console = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{console}", stderr(&out));
    for m in [marker::INIT, marker::NO_USERDATA, marker::NET, marker::POWEROFF] {
        assert!(
            console.lines().any(|l| l.trim_end_matches('\r').starts_with(m)),
            "no {m:?} in:\n{console}"
        );
    }
}

/// `--uefi`: OVMF (from the ovmf package) boots the kernel; the VM gets its own UEFI variables.
#[test]
fn uefi_boot_with_ovmf() {
    let host = Host::new();
    let prefix = guest::write_guest_with_cmdline(
        &host.dir.path().join("out"),
        "efi",
        &format!("{} {}", guest::CMDLINE, guest::POWEROFF_OPTION),
    );
    let run = host
        .moby()
        .args(["run", "--uefi", "--accel", "tcg", "--mem", "512"])
        .arg(&prefix)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    let console = String::from_utf8_lossy(&run.stdout);
    assert!(console.contains(marker::POWEROFF), "{console}");
    let vars = host.state("efi").join("efi-vars.fd");
    let template = std::fs::metadata("/usr/share/OVMF/OVMF_VARS_4M.fd").expect("ovmf is installed");
    assert_eq!(
        std::fs::metadata(&vars).expect("per-VM UEFI variables").len(),
        template.len()
    );
}

/// A guest that ignores the ACPI power button: after `--stop-timeout` qemu is told to quit; with a
/// second Ctrl-C it is killed at once.
#[test]
fn a_guest_ignoring_the_power_button_is_quit_or_killed() {
    let host = Host::new();
    let prefix = guest::write_guest_with_cmdline(
        &host.dir.path().join("out"),
        "deaf",
        &format!("{} {}", guest::CMDLINE, guest::DEAF_OPTION),
    );
    for second_ctrl_c in [false, true] {
        let mut child = host
            .moby()
            .args(["run", "--accel", "tcg", "--mem", "256", "--stop-timeout", "3"])
            .arg(&prefix)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut console = Console::new(child.stdout.take().expect("piped stdout"));
        console.wait_for(marker::READY, BOOT_BOUND);
        let qemu = qemu_pid(&host.state("deaf"));
        signal(child.id(), "INT");
        console.wait_for(marker::IGNORED, BOOT_BOUND);
        if second_ctrl_c {
            signal(child.id(), "INT");
        }
        console.drain(BOOT_BOUND);
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{status}: {err}");
        let expected = if second_ctrl_c {
            "VM `deaf` killed"
        } else {
            "VM `deaf` did not power off within 3s of the ACPI power button; it was told to quit"
        };
        assert!(err.contains(expected), "{err}");
        assert!(!alive(qemu));
    }
}
