//! Running hyperkit: prepare the state dir, disks, userdata CD and vpnkit, spawn hyperkit, record
//! `hyperkit.json`, and wait (or leave it running, detached).

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::vpnkit::{self, VpnkitError, VpnkitPort};
use super::{ensure_raw_disk, Console, DiskAction, HyperkitConfig, HyperkitError, HyperkitState};
use crate::machine::PublishedPort;

/// How long vpnkit gets to create its sockets, and to answer.
const VPNKIT_TIMEOUT: Duration = Duration::from_secs(30);

/// A vpnkit to start for this VM (`--networking vpnkit` without sockets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpnkitLaunch {
    /// The vpnkit binary (see [`vpnkit::find_vpnkit`]).
    pub binary: PathBuf,
    /// The ethernet socket it listens on.
    pub ethernet: PathBuf,
    /// The port control socket it listens on.
    pub port: PathBuf,
    /// hyperkit's vsock socket it connects to (`STATE/connect`).
    pub vsock: PathBuf,
}

/// Everything one run needs besides the command line.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// The command line.
    pub config: HyperkitConfig,
    /// The state dir (the same directory as [`HyperkitConfig::state_dir`]).
    pub state: HyperkitState,
    /// Userdata for the CD at [`HyperkitState::userdata_iso`] (which `config.cdroms` must list).
    pub userdata: Option<Vec<u8>>,
    /// A vpnkit to start first.
    pub vpnkit_launch: Option<VpnkitLaunch>,
    /// vpnkit's ethernet socket, port socket and the UUID, for publishing.
    pub publish_via: Option<(PathBuf, PathBuf, String)>,
    /// The preferred guest address (`--ip`).
    pub preferred_ipv4: Option<Ipv4Addr>,
    /// Ports to publish through vpnkit.
    pub publish: Vec<PublishedPort>,
    /// With [`Console::Tty`] in the foreground: copy the console from `STATE/tty` to stdout
    /// (LinuxKit's behaviour when stdout is not a terminal).
    pub copy_tty_to_stdout: bool,
    /// Leave hyperkit running and return (console in `STATE/tty` and `console-ring`; give the
    /// config [`Console::Tty`], since nobody is left on stdio). Refused with `publish` or
    /// `vpnkit_launch`, which end with the run.
    pub detach: bool,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// hyperkit exited (foreground).
    Exited(ExitStatus),
    /// hyperkit runs in the background.
    Detached {
        /// Its pid.
        pid: u32,
    },
}

/// Kills the vpnkit we started when the run ends.
struct VpnkitGuard(Child);

impl Drop for VpnkitGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Unexposes published ports when the run ends.
struct PublishGuard {
    socket: PathBuf,
    ports: Vec<VpnkitPort>,
}

impl Drop for PublishGuard {
    fn drop(&mut self) {
        for port in &self.ports {
            if let Err(e) = vpnkit::unexpose(&self.socket, port) {
                tracing::warn!("{e}");
            }
        }
    }
}

/// Waits until `path` exists, or `child` exits, or the timeout passes.
fn wait_for_socket(path: &Path, child: &mut Child) -> Result<(), HyperkitError> {
    let start = Instant::now();
    while !path.exists() {
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || start.elapsed() > VPNKIT_TIMEOUT {
            return Err(VpnkitError::SocketTimeout {
                path: path.to_path_buf(),
                secs: VPNKIT_TIMEOUT.as_secs(),
                exited: exited.map(|s| format!(", it exited with {s}")).unwrap_or_default(),
            }
            .into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn start_vpnkit(launch: &VpnkitLaunch) -> Result<VpnkitGuard, HyperkitError> {
    for socket in [&launch.ethernet, &launch.port] {
        let _ = std::fs::remove_file(socket);
    }
    let child = Command::new(&launch.binary)
        .args(vpnkit::vpnkit_args(&launch.ethernet, &launch.vsock, &launch.port))
        .stdin(Stdio::null())
        .spawn()
        .map_err(|source| HyperkitError::Spawn {
            binary: launch.binary.clone(),
            source,
        })?;
    let mut guard = VpnkitGuard(child);
    wait_for_socket(&launch.ethernet, &mut guard.0)?;
    wait_for_socket(&launch.port, &mut guard.0)?;
    Ok(guard)
}

/// Copies the console pty (`STATE/tty`, created by hyperkit once it runs) to stdout until it closes.
fn copy_tty(tty: PathBuf, done: Arc<AtomicBool>) {
    std::thread::spawn(move || loop {
        match File::open(&tty) {
            Ok(mut f) => {
                let _ = io::copy(&mut f, &mut io::stdout());
                return;
            }
            Err(_) if !done.load(Ordering::Relaxed) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => return,
        }
    });
}

/// Runs one VM as planned (see the module doc). The state dir is locked for the whole run.
pub fn run(plan: &RunPlan) -> Result<RunOutcome, HyperkitError> {
    let config = &plan.config;
    if plan.detach && (plan.vpnkit_launch.is_some() || !plan.publish.is_empty()) {
        return Err(HyperkitError::DetachUnsupported);
    }
    config.check_paths()?;
    let lock = plan.state.lock()?;
    for disk in &config.disks {
        match ensure_raw_disk(disk)? {
            DiskAction::Created => tracing::info!(
                "created disk {} ({} MiB)",
                disk.path.display(),
                disk.size_mib.unwrap_or(0)
            ),
            DiskAction::Grown { from_mib } => tracing::info!(
                "grew disk {} from {from_mib} MiB to {} MiB",
                disk.path.display(),
                disk.size_mib.unwrap_or(0)
            ),
            DiskAction::NotShrunk { current_mib } => tracing::warn!(
                "disk {} is {current_mib} MiB, more than the {} MiB asked for; not shrinking it",
                disk.path.display(),
                disk.size_mib.unwrap_or(0)
            ),
            DiskAction::Kept => {}
        }
    }
    if let Some(data) = &plan.userdata {
        crate::userdata::write_userdata_iso(&plan.state.userdata_iso(), data, plan.state.name())?;
    }
    let _vpnkit = plan.vpnkit_launch.as_ref().map(start_vpnkit).transpose()?;
    let mut _published = None;
    if let Some((ethernet, port_socket, uuid)) = plan.publish_via.as_ref().filter(|_| !plan.publish.is_empty()) {
        let vif = vpnkit::connect_vif(ethernet, uuid, plan.preferred_ipv4, VPNKIT_TIMEOUT)?;
        tracing::debug!("vpnkit gives UUID {uuid} the address {}", vif.ip);
        let mut guard = PublishGuard {
            socket: port_socket.clone(),
            ports: Vec::new(),
        };
        for publish in &plan.publish {
            let port = VpnkitPort::new(publish, vif.ip);
            vpnkit::expose(port_socket, &port)?;
            guard.ports.push(port);
        }
        _published = Some(guard);
    }

    let mut cmd = Command::new(&config.hyperkit);
    cmd.args(config.args());
    if plan.detach {
        let log = plan.state.hyperkit_log();
        let out = File::create(&log).map_err(|source| HyperkitError::Io {
            doing: "create",
            path: log.clone(),
            source,
        })?;
        let err = out.try_clone().map_err(|source| HyperkitError::Io {
            doing: "open",
            path: log,
            source,
        })?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
    } else if config.console == Console::Tty {
        cmd.stdin(Stdio::null());
    }
    let mut child = cmd.spawn().map_err(|source| HyperkitError::Spawn {
        binary: config.hyperkit.clone(),
        source,
    })?;
    let pid = child.id();
    if let Err(e) = plan.state.write_json(&config.state_json(pid)) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e.into());
    }
    if plan.detach {
        drop(lock);
        return Ok(RunOutcome::Detached { pid });
    }
    let done = Arc::new(AtomicBool::new(false));
    if config.console == Console::Tty && plan.copy_tty_to_stdout {
        copy_tty(plan.state.tty(), done.clone());
    }
    let status = child.wait().map_err(|source| HyperkitError::Wait { pid, source });
    done.store(true, Ordering::Relaxed);
    // hyperkit is gone: what it left behind would only read as a stale instance.
    plan.state.clean_stale()?;
    drop(lock);
    Ok(RunOutcome::Exited(status?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hyperkit::{Boot, DiskDriver, RawDisk};
    use crate::state::ProcessStatus;

    /// A stand-in for hyperkit (which only exists on macOS): records its arguments, writes its pid
    /// file like `-F` does, then runs `tail`.
    fn fake_hyperkit(dir: &Path, tail: &str) -> PathBuf {
        let p = dir.join("hyperkit");
        let body = format!(
            "#!/bin/sh\n\
             printf '%s\\n' \"$@\" > \"$(dirname \"$0\")/args\"\necho $$ > \"$4\"\n{tail}\n"
        );
        crate::testing::write_script(&p, &body);
        p
    }

    fn plan(dir: &Path, hyperkit: PathBuf) -> RunPlan {
        let state_dir = dir.join("lk-state");
        let boot = Boot::Kernel {
            kernel: dir.join("lk-kernel"),
            initrd: Some(dir.join("lk-initrd.img")),
            cmdline: "console=ttyS0".into(),
        };
        let mut config = HyperkitConfig::new(hyperkit, state_dir.clone(), boot);
        config.console = Console::Tty;
        config.disks = vec![RawDisk {
            path: state_dir.join("disk.raw"),
            size_mib: Some(64),
            driver: DiskDriver::AhciHd,
        }];
        config.cdroms = vec![state_dir.join("data.iso")];
        RunPlan {
            config,
            state: HyperkitState::new(&state_dir, "lk"),
            userdata: Some(b"{\"hostname\":\"lk\"}".to_vec()),
            vpnkit_launch: None,
            publish_via: None,
            preferred_ipv4: None,
            publish: Vec::new(),
            copy_tty_to_stdout: false,
            detach: false,
        }
    }

    #[test]
    fn foreground_run_prepares_state_and_reports_the_exit_status() {
        let dir = tempfile::tempdir().unwrap();
        let plan = plan(dir.path(), fake_hyperkit(dir.path(), "exit 3"));
        let outcome = run(&plan).unwrap();
        let RunOutcome::Exited(status) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(status.code(), Some(3));
        let state = &plan.state;
        let args = std::fs::read_to_string(dir.path().join("args")).unwrap();
        let expected: Vec<String> = plan
            .config
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args.lines().collect::<Vec<_>>(), expected);
        assert_eq!(std::fs::metadata(state.dir().join("disk.raw")).unwrap().len(), 64 << 20);
        assert!(std::fs::read(state.userdata_iso()).unwrap().len() > 16 * 2048);
        // hyperkit has exited: nothing is left that reads as a running or stale VM.
        assert!(!state.pid_file().exists() && !state.json_file().exists());
        assert_eq!(state.status().unwrap(), ProcessStatus::Stopped);
    }

    #[test]
    fn detached_run_records_the_pid_in_hyperkit_json() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = plan(dir.path(), fake_hyperkit(dir.path(), "exec sleep 30"));
        plan.detach = true;
        let outcome = run(&plan).unwrap();
        let RunOutcome::Detached { pid } = outcome else {
            panic!("{outcome:?}")
        };
        let json = plan.state.read_json().unwrap().expect("hyperkit.json");
        // Stop the stand-in (our own child) before asserting, so a failure leaves nothing behind.
        let killed = Command::new("kill").arg(pid.to_string()).status().unwrap();
        assert!(killed.success());
        assert_eq!(json.pid, pid);
        assert_eq!(json.console, 1);
        assert_eq!(json.iso, [plan.state.userdata_iso().to_string_lossy()]);
        assert!(plan.state.hyperkit_log().exists());
    }

    #[test]
    fn detach_refuses_what_would_end_with_moby_run() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = plan(dir.path(), fake_hyperkit(dir.path(), "exit 0"));
        plan.detach = true;
        plan.publish = vec!["2222:22".parse().unwrap()];
        assert!(matches!(run(&plan), Err(HyperkitError::DetachUnsupported)));
        assert!(!plan.state.dir().exists(), "refused before touching the state dir");
    }

    #[test]
    fn missing_hyperkit_binary_is_reported_after_locking() {
        let dir = tempfile::tempdir().unwrap();
        let plan = plan(dir.path(), dir.path().join("no-such-hyperkit"));
        let e = run(&plan).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("cannot start {}/no-such-hyperkit: ", dir.path().display())),
            "{e}"
        );
    }
}
