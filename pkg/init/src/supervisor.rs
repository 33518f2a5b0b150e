//! PID 1's main loop: onboot containers in order, services concurrently, one `waitpid(-1)` reaper,
//! container output to log files and the console, the control socket, the ACPI power button and
//! signals, the restart policy, and the shutdown sequence.
//!
//! Everything runs on one thread around `poll(2)`: libcontainer forks inside this process, so no
//! other thread may hold a lock at that moment, and the container inits (cloned with CLONE_PARENT)
//! are our children, reaped here.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libcontainer::container::Container;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::reboot::RebootMode;
use nix::sys::signal::{self, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::bundle::{self, Bundle, Phase, RestartPolicy};
use crate::control::{self, Request};

/// The line printed on the console when every service has been started.
pub const BANNER: &str = "Welcome to moby: the system is up";
/// How long a stopping service has between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long one onshutdown container may run before it is killed.
const ONSHUTDOWN_BOUND: Duration = Duration::from_secs(30);
/// Restart backoff: doubles from the first value up to the second; reset after a run this long.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);
/// Environment variable carrying CLOCK_BOOTTIME (ms) at the first `/init` across the re-exec.
const T0_ENV: &str = "MOBY_INIT_T0_MS";

/// The wait before restart number `failures` (0-based) of a service: 1, 2, 4, ... up to 30 s.
fn backoff(failures: u32) -> Duration {
    (BACKOFF_FIRST * 2u32.pow(failures.min(5))).min(BACKOFF_MAX)
}

/// How the machine goes down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    PowerOff,
    Halt,
    Reboot,
}

impl Shutdown {
    fn mode(self) -> RebootMode {
        match self {
            Shutdown::PowerOff => RebootMode::RB_POWER_OFF,
            Shutdown::Halt => RebootMode::RB_HALT_SYSTEM,
            Shutdown::Reboot => RebootMode::RB_AUTOBOOT,
        }
    }
    fn word(self) -> &'static str {
        match self {
            Shutdown::PowerOff => "poweroff",
            Shutdown::Halt => "halt",
            Shutdown::Reboot => "reboot",
        }
    }
}

#[derive(Debug)]
enum State {
    /// Never started (services before boot finished; onshutdown before shutdown).
    Idle,
    Running {
        pid: i32,
        since: Instant,
    },
    /// Exited on its own with this code (128+N for signal N).
    Exited(i32),
    /// Stopped on request.
    Stopped,
    /// Creating or starting failed; the message was logged.
    Failed,
    /// Waiting to be restarted.
    Backoff {
        until: Instant,
    },
}

struct Unit {
    bundle: Bundle,
    state: State,
    container: Option<Container>,
    prepared: bool,
    restarts: u32,
    failures: u32,
    /// SIGKILL time of a stop in progress.
    kill_at: Option<Instant>,
    /// Start again once the stop in progress is done (`restart NAME`).
    restart_after_stop: bool,
}

/// A container's output pipe, kept until EOF (orphans may outlive the container's init).
struct Output {
    name: String,
    pipe: File,
    log: Option<File>,
    partial: Vec<u8>,
}

struct Supervisor {
    units: Vec<Unit>,
    outputs: Vec<Output>,
    signals: File,
    control: Option<UnixListener>,
    power_button: Option<File>,
    hotplug: Option<crate::coldplug::Hotplug>,
    shutdown: Option<Shutdown>,
    shutdown_reason: String,
    first_start: Option<Duration>,
}

fn boottime_ms() -> u128 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| Duration::from(t).as_millis())
        .unwrap_or(0)
}

/// Stage 1 records when `/init` started, for the banner's figure.
pub fn record_t0() {
    if std::env::var_os(T0_ENV).is_none() {
        std::env::set_var(T0_ENV, boottime_ms().to_string());
    }
}

static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

/// The signal handler: writes the signal number into [`SIGNAL_PIPE`] for the main loop.
#[allow(unsafe_code)]
extern "C" fn on_signal(sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    let byte = sig as u8;
    // SAFETY: `__errno_location` returns this thread's errno slot, valid for the thread's life;
    // write(2) gets a pointer to a live local byte and the length 1. Both are async-signal-safe and
    // nothing is allocated. `fd` is the signal pipe's write end, never closed (its `OwnedFd` is
    // forgotten) and non-blocking, so a full pipe cannot hang the handler. errno is restored so the
    // interrupted code does not see ours.
    unsafe {
        let errno = *libc::__errno_location();
        libc::write(fd, (&byte as *const u8).cast(), 1);
        *libc::__errno_location() = errno;
    }
}

/// Self-pipe for signals. A blocked mask (signalfd) would be inherited by the containers, which
/// libcontainer does not reset, so handlers write the signal number into a pipe instead; handlers
/// are reset to the default by exec.
#[allow(unsafe_code)]
fn install_signals() -> Result<File> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).context("create the signal pipe")?;
    SIGNAL_PIPE.store(write.as_raw_fd(), Ordering::Relaxed);
    std::mem::forget(write);
    let action = signal::SigAction::new(
        SigHandler::Handler(on_signal),
        signal::SaFlags::SA_RESTART | signal::SaFlags::SA_NOCLDSTOP,
        signal::SigSet::empty(),
    );
    for sig in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGINT,
    ] {
        // SAFETY: on_signal only makes async-signal-safe calls and touches no state but an atomic
        // (see its SAFETY comment), and SIGNAL_PIPE is set above, before any handler can run.
        unsafe { signal::sigaction(sig, &action) }.with_context(|| format!("install the {sig} handler"))?;
    }
    // Rust's runtime ignores SIGPIPE, and an ignored signal stays ignored across exec: the
    // containers (forked by libcontainer, which does not reset it) would inherit that. PID 1 itself
    // is not killed by a default-action SIGPIPE (the kernel protects init); writes get EPIPE.
    // SAFETY: SIG_DFL installs no handler code, so nothing can run in signal context.
    unsafe { signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) }.context("reset SIGPIPE")?;
    // ctrl-alt-del sends SIGINT to init instead of rebooting at once.
    let _ = nix::sys::reboot::set_cad_enabled(false);
    Ok(File::from(read))
}

fn console(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Stage 2: set the system up, run everything, go down. Returns only on a set-up error.
pub fn run() -> Result<()> {
    crate::boot::mount_filesystems();
    let level = match std::env::var("INIT_LOG").as_deref() {
        Ok("debug") => tracing::Level::DEBUG,
        Ok("info") => tracing::Level::INFO,
        Ok("warn") => tracing::Level::WARN,
        _ => tracing::Level::ERROR,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .without_time()
        .with_ansi(false)
        .try_init();
    let signals = install_signals()?;
    crate::boot::rlimits();
    if let Err(err) = crate::coldplug::register_modprobe() {
        console(&format!("init: the kernel cannot load modules on demand: {err:#}"));
    }
    let t = Instant::now();
    match crate::coldplug::coldplug() {
        Ok(loaded) if !loaded.is_empty() => console(&format!(
            "init: loaded {} modules in {} ms: {}",
            loaded.len(),
            t.elapsed().as_millis(),
            loaded.join(" ")
        )),
        Ok(_) => {}
        Err(err) => console(&format!("init: coldplug: {err:#}")),
    }
    crate::boot::hostname();
    if let Err(err) = crate::netlink::link_up("lo") {
        console(&format!("init: {err:#}"));
    }
    if let Err(err) = fs::create_dir_all(bundle::STATE_ROOT) {
        console(&format!("init: cannot create {}: {err}", bundle::STATE_ROOT));
    }
    let _ = fs::remove_file(control::SOCKET);
    let control = match UnixListener::bind(control::SOCKET) {
        Ok(listener) => {
            let _ = listener.set_nonblocking(true);
            Some(listener)
        }
        Err(err) => {
            console(&format!("init: cannot listen on {}: {err}", control::SOCKET));
            None
        }
    };
    let mut sup = Supervisor {
        units: Vec::new(),
        outputs: Vec::new(),
        signals,
        control,
        power_button: open_power_button(),
        hotplug: crate::coldplug::Hotplug::open(),
        shutdown: None,
        shutdown_reason: String::new(),
        first_start: None,
    };

    for bundle in bundle::discover(Phase::Onboot) {
        if sup.shutdown.is_some() {
            break;
        }
        let i = sup.add(bundle);
        sup.start(i);
        while sup.units[i].is_running() {
            if sup.shutdown.is_some() && sup.units[i].kill_at.is_none() {
                sup.stop(i);
            }
            sup.step(Duration::from_secs(1));
        }
    }
    if sup.shutdown.is_none() {
        let services = bundle::discover(Phase::Service);
        let count = services.len();
        for bundle in services {
            let i = sup.add(bundle);
            sup.start(i);
        }
        let t0: u128 = std::env::var(T0_ENV).ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        let since_init = boottime_ms().saturating_sub(t0);
        console("");
        console(BANNER);
        console(&format!(
            "init: {count} services started; {since_init} ms from /init to this banner{}; control with `service` ({})",
            sup.first_start
                .map(|d| format!(", first container started in {} ms", d.as_millis()))
                .unwrap_or_default(),
            control::SOCKET
        ));
        console("");
        while sup.shutdown.is_none() {
            sup.step(Duration::from_secs(1));
        }
    }
    let how = sup.shutdown.unwrap_or(Shutdown::PowerOff);
    sup.go_down(how);
    final_power_off(how.mode())
}

/// Last steps: kill what is left, sync, unmount, reboot(2).
pub fn final_power_off(mode: RebootMode) -> ! {
    let _ = signal::kill(Pid::from_raw(-1), Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    let _ = signal::kill(Pid::from_raw(-1), Signal::SIGKILL);
    while let Ok(status) = waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
    nix::unistd::sync();
    unmount_all();
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(mode);
    // Still here (e.g. halt returned): nothing more to do.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn unmount_all() {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(|p| p.replace("\\040", " ")))
        .filter(|p| p != "/")
        .collect();
    points.reverse();
    for point in points {
        if nix::mount::umount(point.as_str()).is_err() {
            let _ = nix::mount::umount2(point.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

fn open_power_button() -> Option<File> {
    let entries = fs::read_dir("/sys/class/input").ok()?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("event") {
            continue;
        }
        let device = fs::read_to_string(entry.path().join("device/name")).unwrap_or_default();
        if device.trim() == "Power Button" {
            let path = format!("/dev/input/{name}");
            match OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&path)
            {
                Ok(file) => return Some(file),
                Err(err) => console(&format!("init: cannot open the power button {path}: {err}")),
            }
        }
    }
    None
}

use std::os::unix::fs::OpenOptionsExt;

impl Unit {
    fn is_running(&self) -> bool {
        matches!(self.state, State::Running { .. })
    }

    fn state_word(&self) -> String {
        match &self.state {
            State::Idle => "idle".into(),
            State::Running { .. } if self.kill_at.is_some() => "stopping".into(),
            State::Running { .. } => "running".into(),
            State::Exited(code) => format!("exited({code})"),
            State::Stopped => "stopped".into(),
            State::Failed => "failed".into(),
            State::Backoff { .. } => "restarting".into(),
        }
    }
}

fn set_nonblocking(fd: &impl AsFd) {
    if let Ok(flags) = fcntl(fd.as_fd().as_raw_fd(), FcntlArg::F_GETFL) {
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        let _ = fcntl(fd.as_fd().as_raw_fd(), FcntlArg::F_SETFL(flags));
    }
}

impl Supervisor {
    fn add(&mut self, bundle: Bundle) -> usize {
        self.units.push(Unit {
            bundle,
            state: State::Idle,
            container: None,
            prepared: false,
            restarts: 0,
            failures: 0,
            kill_at: None,
            restart_after_stop: false,
        });
        self.units.len() - 1
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.units
            .iter()
            .position(|u| u.bundle.phase == Phase::Service && u.bundle.name == name)
    }

    /// Creates and starts unit `i`; a failure is logged and leaves it `Failed`.
    fn start(&mut self, i: usize) {
        let t = Instant::now();
        let unit = &mut self.units[i];
        let label = format!("{} {}", unit.bundle.phase.label(), unit.bundle.name);
        unit.kill_at = None;
        unit.restart_after_stop = false;
        if !unit.prepared {
            if let Err(err) = unit.bundle.prepare_filesystem() {
                console(&format!("init: {label} failed to prepare: {err:#}"));
                unit.state = State::Failed;
                return;
            }
            unit.prepared = true;
        }
        let log_path = unit.bundle.phase.log_path(&unit.bundle.name);
        let log = OpenOptions::new().create(true).append(true).open(&log_path);
        if let Err(err) = &log {
            console(&format!("init: cannot open the log {}: {err}", log_path.display()));
        }
        let (read, write): (OwnedFd, OwnedFd) = match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
            Ok(pair) => pair,
            Err(err) => {
                console(&format!("init: {label}: cannot create an output pipe: {err}"));
                unit.state = State::Failed;
                return;
            }
        };
        set_nonblocking(&read);
        match unit.bundle.create_and_start(write) {
            Ok((container, pid)) => {
                let took = t.elapsed();
                if self.first_start.is_none() {
                    self.first_start = Some(took);
                }
                console(&format!("init: started {label} (pid {pid}) in {} ms", took.as_millis()));
                unit.container = Some(container);
                unit.state = State::Running {
                    pid,
                    since: Instant::now(),
                };
                self.outputs.push(Output {
                    name: unit.bundle.name.clone(),
                    pipe: File::from(read),
                    log: log.ok(),
                    partial: Vec::new(),
                });
            }
            Err(err) => {
                console(&format!("init: {label} failed to start: {err:#}"));
                unit.state = State::Failed;
                // A service with a restart policy is tried again, as if it had exited non-zero.
                if unit.bundle.phase == Phase::Service && unit.bundle.restart != RestartPolicy::No {
                    self.schedule_restart(i, Duration::ZERO);
                }
            }
        }
    }

    /// Puts service `i` in backoff after a failed run of length `ran`.
    fn schedule_restart(&mut self, i: usize, ran: Duration) {
        if self.shutdown.is_some() {
            return;
        }
        let unit = &mut self.units[i];
        if ran >= BACKOFF_RESET_AFTER {
            unit.failures = 0;
        }
        let delay = backoff(unit.failures);
        unit.failures += 1;
        console(&format!(
            "init: restarting {} {} in {} s",
            unit.bundle.phase.label(),
            unit.bundle.name,
            delay.as_secs()
        ));
        unit.state = State::Backoff {
            until: Instant::now() + delay,
        };
    }

    /// SIGTERM now, SIGKILL after [`STOP_GRACE`].
    fn stop(&mut self, i: usize) {
        let unit = &mut self.units[i];
        match unit.state {
            State::Running { pid, .. } if unit.kill_at.is_none() => {
                let _ = signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
                unit.kill_at = Some(Instant::now() + STOP_GRACE);
            }
            State::Backoff { .. } => unit.state = State::Stopped,
            _ => {}
        }
    }

    /// One round: wait up to `max_wait` for something to happen and handle it.
    fn step(&mut self, max_wait: Duration) {
        let now = Instant::now();
        let mut wait = max_wait;
        for unit in &self.units {
            if let Some(at) = unit.kill_at {
                wait = wait.min(at.saturating_duration_since(now));
            }
            if let State::Backoff { until } = unit.state {
                wait = wait.min(until.saturating_duration_since(now));
            }
        }
        let ready = {
            let mut fds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
            if let Some(listener) = &self.control {
                fds.push(PollFd::new(listener.as_fd(), PollFlags::POLLIN));
            }
            if let Some(button) = &self.power_button {
                fds.push(PollFd::new(button.as_fd(), PollFlags::POLLIN));
            }
            if let Some(hotplug) = &self.hotplug {
                fds.push(PollFd::new(hotplug.fd(), PollFlags::POLLIN));
            }
            let fixed = fds.len();
            for output in &self.outputs {
                fds.push(PollFd::new(output.pipe.as_fd(), PollFlags::POLLIN));
            }
            let timeout = PollTimeout::try_from(wait.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::NONE);
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => {}
                Err(err) => {
                    console(&format!("init: poll failed: {err}"));
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            (ready, fixed)
        };
        let (ready, fixed) = ready;
        let mut k = 0;
        if ready[k] {
            self.read_signals();
        }
        k += 1;
        if self.control.is_some() {
            if ready[k] {
                self.accept_control();
            }
            k += 1;
        }
        if self.power_button.is_some() {
            if ready[k] {
                self.read_power_button();
            }
            k += 1;
        }
        if let Some(hotplug) = &mut self.hotplug {
            if ready.get(k).copied().unwrap_or(false) {
                let loaded = hotplug.handle();
                if !loaded.is_empty() {
                    console(&format!("init: hotplug loaded {}", loaded.join(" ")));
                }
            }
        }
        // Outputs with data or hang-up, back to front so removal keeps indexes valid.
        for j in (0..self.outputs.len()).rev() {
            if ready.get(fixed + j).copied().unwrap_or(false) && !self.pump(j) {
                self.flush_partial(j);
                self.outputs.remove(j);
            }
        }
        self.reap();
        self.timers();
    }

    fn read_signals(&mut self) {
        let mut buf = [0u8; 64];
        while let Ok(n) = self.signals.read(&mut buf) {
            if n == 0 {
                break;
            }
            for &sig in &buf[..n] {
                let how = match sig as i32 {
                    libc::SIGTERM | libc::SIGUSR2 => Some(Shutdown::PowerOff),
                    libc::SIGUSR1 => Some(Shutdown::Halt),
                    libc::SIGINT => Some(Shutdown::Reboot),
                    _ => None,
                };
                if let Some(how) = how {
                    let name = Signal::try_from(sig as i32).map(|s| s.as_str()).unwrap_or("signal");
                    self.request_shutdown(how, name);
                }
            }
        }
    }

    fn request_shutdown(&mut self, how: Shutdown, reason: &str) {
        if self.shutdown.is_none() {
            console(&format!("init: {} requested ({reason})", how.word()));
            self.shutdown = Some(how);
            self.shutdown_reason = reason.to_string();
        }
    }

    fn read_power_button(&mut self) {
        const EV_KEY: u16 = 1;
        const KEY_POWER: u16 = 116;
        let Some(button) = &mut self.power_button else { return };
        let mut buf = [0u8; 24 * 16];
        let mut pressed = false;
        loop {
            match button.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    // struct input_event on 64-bit: timeval (16), type u16, code u16, value i32.
                    for event in buf[..n].chunks_exact(24) {
                        let kind = u16::from_ne_bytes([event[16], event[17]]);
                        let code = u16::from_ne_bytes([event[18], event[19]]);
                        let value = i32::from_ne_bytes([event[20], event[21], event[22], event[23]]);
                        pressed |= kind == EV_KEY && code == KEY_POWER && value == 1;
                    }
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.power_button = None;
                    break;
                }
            }
        }
        if pressed {
            self.request_shutdown(Shutdown::PowerOff, "ACPI power button");
        }
    }

    /// Moves what output `j` has into its log and the console; false at EOF.
    fn pump(&mut self, j: usize) -> bool {
        let output = &mut self.outputs[j];
        let mut buf = [0u8; 8192];
        loop {
            match output.pipe.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    if let Some(log) = &mut output.log {
                        let _ = log.write_all(&buf[..n]);
                    }
                    output.partial.extend_from_slice(&buf[..n]);
                    while let Some(pos) = output.partial.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = output.partial.drain(..=pos).collect();
                        let text = String::from_utf8_lossy(&line[..line.len() - 1]);
                        console(&format!("{}: {}", output.name, text.trim_end_matches('\r')));
                    }
                    if output.partial.len() > 4096 {
                        self.flush_partial(j);
                        return true;
                    }
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => return true,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }

    fn flush_partial(&mut self, j: usize) {
        let output = &mut self.outputs[j];
        if !output.partial.is_empty() {
            console(&format!(
                "{}: {}",
                output.name,
                String::from_utf8_lossy(&output.partial)
            ));
            output.partial.clear();
        }
    }

    /// Drains every output that has data now (before reporting an exit, so output comes first).
    fn pump_all(&mut self) {
        for j in (0..self.outputs.len()).rev() {
            if !self.pump(j) {
                self.flush_partial(j);
                self.outputs.remove(j);
            }
        }
    }

    fn reap(&mut self) {
        loop {
            let (pid, code) = match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid.as_raw(), code),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid.as_raw(), 128 + sig as i32),
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            let Some(i) = self
                .units
                .iter()
                .position(|u| matches!(u.state, State::Running { pid: p, .. } if p == pid))
            else {
                continue; // an orphan re-parented to PID 1
            };
            self.pump_all();
            self.exited(i, code);
        }
    }

    fn exited(&mut self, i: usize, code: i32) {
        let shutting_down = self.shutdown.is_some();
        let unit = &mut self.units[i];
        let ran = match unit.state {
            State::Running { since, .. } => since.elapsed(),
            _ => Duration::ZERO,
        };
        if let Some(mut container) = unit.container.take() {
            if let Err(err) = container.delete(true) {
                console(&format!(
                    "init: deleting the container of {} failed: {err}",
                    unit.bundle.name
                ));
            }
        }
        let label = format!("{} {}", unit.bundle.phase.label(), unit.bundle.name);
        let stopped = unit.kill_at.take().is_some();
        console(&format!("init: {label} exited with status {code}"));
        unit.state = if stopped { State::Stopped } else { State::Exited(code) };
        if unit.restart_after_stop && !shutting_down {
            unit.restart_after_stop = false;
            unit.restarts += 1;
            self.start(i);
            return;
        }
        let again = match unit.bundle.restart {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure => code != 0,
            RestartPolicy::Always => true,
        };
        if unit.bundle.phase == Phase::Service && again && !stopped && !shutting_down {
            self.schedule_restart(i, ran);
        }
    }

    fn timers(&mut self) {
        let now = Instant::now();
        for i in 0..self.units.len() {
            let unit = &mut self.units[i];
            if let (Some(at), State::Running { pid, .. }) = (unit.kill_at, &unit.state) {
                if now >= at {
                    console(&format!(
                        "init: {} did not stop within {} s, killing it",
                        unit.bundle.name,
                        STOP_GRACE.as_secs()
                    ));
                    let _ = signal::kill(Pid::from_raw(*pid), Signal::SIGKILL);
                    if let Some(container) = &mut unit.container {
                        let _ = container.kill(Signal::SIGKILL, true);
                    }
                    unit.kill_at = Some(now + Duration::from_secs(3600));
                }
            }
            if let State::Backoff { until } = unit.state {
                if now >= until && self.shutdown.is_none() {
                    self.units[i].restarts += 1;
                    self.start(i);
                }
            }
        }
    }

    fn accept_control(&mut self) {
        let Some(listener) = &self.control else { return };
        let Ok((mut stream, _)) = listener.accept() else { return };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while line.len() < 1024 {
            match stream.read(&mut byte) {
                Ok(1) if byte[0] != b'\n' => line.push(byte[0]),
                _ => break,
            }
        }
        let line = String::from_utf8_lossy(&line).into_owned();
        let answer = match control::parse(&line) {
            Ok(request) => self.handle(request),
            Err(message) => format!("error: {message}\n"),
        };
        let _ = stream.write_all(answer.as_bytes());
    }

    fn handle(&mut self, request: Request) -> String {
        let service = |name: &str, this: &Self| {
            this.find(name).ok_or_else(|| {
                let names: Vec<&str> = this
                    .units
                    .iter()
                    .filter(|u| u.bundle.phase == Phase::Service)
                    .map(|u| u.bundle.name.as_str())
                    .collect();
                format!("error: no service named {name} (services: {})\n", names.join(", "))
            })
        };
        match request {
            Request::List => {
                let mut out = format!(
                    "{:<20} {:<10} {:<12} {:>7} {:>8}\n",
                    "NAME", "KIND", "STATE", "PID", "RESTARTS"
                );
                for unit in &self.units {
                    let pid = match unit.state {
                        State::Running { pid, .. } => pid.to_string(),
                        _ => "-".into(),
                    };
                    out.push_str(&format!(
                        "{:<20} {:<10} {:<12} {:>7} {:>8}\n",
                        unit.bundle.name,
                        unit.bundle.phase.label(),
                        unit.state_word(),
                        pid,
                        unit.restarts
                    ));
                }
                out
            }
            Request::Start(name) => match service(&name, self) {
                Ok(i) if self.units[i].is_running() => format!("{name} is already running\n"),
                Ok(i) => {
                    self.units[i].failures = 0;
                    self.start(i);
                    format!("{name}: {}\n", self.units[i].state_word())
                }
                Err(e) => e,
            },
            Request::Stop(name) => match service(&name, self) {
                Ok(i) => {
                    self.units[i].restart_after_stop = false;
                    self.stop(i);
                    format!("{name}: {}\n", self.units[i].state_word())
                }
                Err(e) => e,
            },
            Request::Restart(name) => match service(&name, self) {
                Ok(i) if self.units[i].is_running() => {
                    self.stop(i);
                    self.units[i].restart_after_stop = true;
                    format!("{name}: restarting\n")
                }
                Ok(i) => {
                    self.units[i].restarts += 1;
                    self.start(i);
                    format!("{name}: {}\n", self.units[i].state_word())
                }
                Err(e) => e,
            },
            Request::Logs(name) => {
                let Some(unit) = self.units.iter().rev().find(|u| u.bundle.name == name) else {
                    return format!("error: no container named {name}\n");
                };
                let path = unit.bundle.phase.log_path(&name);
                match fs::read(&path) {
                    Ok(data) => String::from_utf8_lossy(&data).into_owned(),
                    Err(err) => format!("error: cannot read {}: {err}\n", path.display()),
                }
            }
            Request::Power(how) => {
                self.request_shutdown(how, "service command");
                format!("{}: going down\n", how.word())
            }
        }
    }

    /// onshutdown containers in order, then services stopped (SIGTERM, SIGKILL after the grace).
    fn go_down(&mut self, how: Shutdown) {
        console(&format!(
            "init: going down for {} ({})",
            how.word(),
            self.shutdown_reason
        ));
        let running: Vec<usize> = (0..self.units.len())
            .filter(|&i| self.units[i].is_running() && self.units[i].bundle.phase == Phase::Onboot)
            .collect();
        for i in running {
            self.stop(i);
        }
        for bundle in bundle::discover(Phase::Onshutdown) {
            let i = self.add(bundle);
            self.start(i);
            let deadline = Instant::now() + ONSHUTDOWN_BOUND;
            while self.units[i].is_running() {
                if Instant::now() >= deadline && self.units[i].kill_at.is_none() {
                    console(&format!(
                        "init: onshutdown {} is taking too long",
                        self.units[i].bundle.name
                    ));
                    self.stop(i);
                }
                self.step(Duration::from_millis(500));
            }
        }
        for i in 0..self.units.len() {
            if let State::Backoff { .. } = self.units[i].state {
                self.units[i].state = State::Stopped;
            }
            if self.units[i].is_running() {
                self.stop(i);
            }
        }
        let deadline = Instant::now() + STOP_GRACE + Duration::from_secs(5);
        while self.units.iter().any(Unit::is_running) && Instant::now() < deadline {
            self.step(Duration::from_millis(500));
        }
        // Output written just before the end.
        let mut rounds = VecDeque::from([0; 3]);
        while rounds.pop_front().is_some() && !self.outputs.is_empty() {
            self.step(Duration::from_millis(50));
        }
        console(&format!("init: everything stopped; {} now", how.word()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let secs: Vec<u64> = (0..8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
