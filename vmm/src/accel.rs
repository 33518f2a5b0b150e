//! Choosing qemu's accelerator: KVM only where it really runs a guest, else TCG.
//!
//! The presence of `/dev/kvm` proves nothing (on some hosts it exists and guests hang), so
//! [`probe_kvm`] starts qemu with KVM for real, bounded by a timeout, and [`choose`] falls back to
//! TCG with the reason. An explicit choice (`--accel`, or [`ACCEL_ENV`]) wins without probing.
//!
//! The probe runs in two stages:
//! 1. a 64 KiB firmware image built here ([`probe_firmware`]) that goes from the reset vector
//!    through protected mode and paging into long mode, checks the CPUID bits a 64-bit Linux
//!    needs, and writes a code to the `isa-debug-exit` device; qemu exits at once with that code;
//! 2. optionally the kernel that is about to be booted (no initrd, `panic=-1`, `-no-reboot`):
//!    the probe succeeds once the kernel prints `Linux version` on its serial console. This stage
//!    catches hosts where KVM runs the firmware but hangs in the kernel's decompressor (seen on the
//!    build host: stage 1 passes, the Debian cloud kernel never prints a line).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Environment variable that overrides the accelerator (same values as `--accel`).
pub const ACCEL_ENV: &str = "MOBY_QEMU_ACCEL";

/// Exit status qemu reports when the probe firmware wrote `0x10` to `isa-debug-exit`
/// (qemu exits with `(value << 1) | 1`).
const PROBE_OK_STATUS: i32 = 0x21;

/// A qemu accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Accel {
    /// Linux KVM.
    Kvm,
    /// qemu's software emulation (always available, slow).
    Tcg,
    /// macOS Hypervisor.framework.
    Hvf,
}

impl Accel {
    /// The name qemu uses (`-accel NAME`, `-machine ...,accel=NAME`).
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
            Accel::Hvf => "hvf",
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Accel {
    type Err = AccelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            "hvf" => Ok(Accel::Hvf),
            _ => Err(AccelError::Unknown(s.to_string())),
        }
    }
}

/// Errors from parsing or probing an accelerator.
#[derive(Debug, thiserror::Error)]
pub enum AccelError {
    /// The accelerator name is not one we know.
    #[error("unknown accelerator {0:?}: use kvm, tcg or hvf")]
    Unknown(String),
    /// The value of [`ACCEL_ENV`] is not an accelerator name.
    #[error("{ACCEL_ENV}={0:?} is not an accelerator: use kvm, tcg or hvf")]
    BadEnv(String),
    /// The probe could not even set up its scratch files.
    #[error("could not write the KVM probe firmware in {dir}: {source}")]
    Scratch {
        /// Directory used for the probe's files.
        dir: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// How the accelerator was chosen, for the one line the CLI prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccelChoice {
    /// Given explicitly (`--accel` or [`ACCEL_ENV`]); nothing was probed.
    Explicit(Accel),
    /// KVM was probed and works.
    KvmProbed,
    /// KVM was probed and does not work; the string says why. Use TCG.
    TcgFallback(String),
}

impl AccelChoice {
    /// The accelerator to use.
    pub fn accel(&self) -> Accel {
        match self {
            AccelChoice::Explicit(a) => *a,
            AccelChoice::KvmProbed => Accel::Kvm,
            AccelChoice::TcgFallback(_) => Accel::Tcg,
        }
    }
}

/// What [`probe_kvm`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvmProbe {
    /// A KVM guest ran (and, if a kernel was given, printed its banner).
    Usable,
    /// KVM is not usable; the string says why (includes qemu's own message when it had one).
    Unusable(String),
}

/// Settings of the KVM probe.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// The qemu binary (e.g. `qemu-system-x86_64`).
    pub qemu: PathBuf,
    /// Time allowed for each stage before the guest counts as hung and is killed.
    pub timeout: Duration,
    /// A kernel to boot in stage 2 (the one the user is about to boot), if any.
    pub kernel: Option<PathBuf>,
    /// A file that remembers verdicts, so that a host where KVM hangs pays the probe's timeout
    /// once, not on every run. Keyed by the host kernel, the qemu binary and the probe kernel
    /// (paths, sizes, modification times); any change probes again.
    pub cache: Option<PathBuf>,
}

/// Decides the accelerator: `explicit` (from `--accel`) wins, then [`ACCEL_ENV`] (`env_value`,
/// pass `std::env::var(ACCEL_ENV).ok()`), else KVM if [`probe_kvm`] says it works, else TCG
/// with the reason. The probe only runs on an x86_64 Linux host for an x86_64 guest; otherwise
/// (no explicit choice) TCG is used.
pub fn choose(
    explicit: Option<Accel>,
    env_value: Option<&str>,
    guest_arch: crate::machine::Arch,
    probe: &ProbeConfig,
) -> Result<AccelChoice, AccelError> {
    if let Some(a) = explicit {
        return Ok(AccelChoice::Explicit(a));
    }
    if let Some(v) = env_value.filter(|v| !v.trim().is_empty()) {
        let a = v.parse().map_err(|_| AccelError::BadEnv(v.to_string()))?;
        return Ok(AccelChoice::Explicit(a));
    }
    if guest_arch != crate::machine::Arch::X86_64 || !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        return Ok(AccelChoice::TcgFallback(format!(
            "KVM is only probed for x86_64 guests on x86_64 Linux (guest is {guest_arch})"
        )));
    }
    if !Path::new("/dev/kvm").exists() {
        return Ok(AccelChoice::TcgFallback("/dev/kvm does not exist".into()));
    }
    Ok(match probe_kvm_cached(probe)? {
        KvmProbe::Usable => AccelChoice::KvmProbed,
        KvmProbe::Unusable(why) => AccelChoice::TcgFallback(why),
    })
}

/// The 64 KiB firmware image of probe stage 1 (see the module doc). The source is in the
/// comment below; bytes were produced with GNU as (`as --32`, `ld -Ttext=0xF0000 --oformat binary`).
///
/// ```text
/// start16 (0xF000): cli; lgdtl %cs:gdtr; cr0.PE=1; ljmpl $0x08,$pm32
/// pm32: ds=es=ss=0x10; PML4[0]@0x1000 -> PDPT@0x2000 -> PD@0x3000 (one 2 MiB page at 0)
///       cr4.PAE=1; cr3=0x1000; EFER.LME=1; cr0.PG=1; ljmp $0x18,$lm64
/// lm64: cpuid(1).edx has fpu,pae,cx8,cmov,fxsr,sse,sse2 ? and cpuid(0x80000001).edx has lm ?
///       al = 0x10 ok / 0x11 / 0x12; outb %al,$0xf4; hlt
/// gdt:  null, code32 (0x00CF9B..), data (0x00CF93..), code64 (0x00AF9B..), accessed bits preset
/// reset (0xFFF0): cli; jmp start16
/// ```
pub fn probe_firmware() -> Vec<u8> {
    const CODE: [u8; 198] = [
        0xfa, 0x2e, 0x66, 0x0f, 0x01, 0x16, 0xc0, 0xf0, 0x0f, 0x20, 0xc0, 0x66, 0x83, 0xc8, 0x01, 0x0f, 0x22, 0xc0,
        0x66, 0xea, 0x1a, 0xf0, 0x0f, 0x00, 0x08, 0x00, 0x66, 0xb8, 0x10, 0x00, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0,
        0xc7, 0x05, 0x00, 0x10, 0x00, 0x00, 0x03, 0x20, 0x00, 0x00, 0xc7, 0x05, 0x00, 0x20, 0x00, 0x00, 0x03, 0x30,
        0x00, 0x00, 0xc7, 0x05, 0x00, 0x30, 0x00, 0x00, 0x83, 0x00, 0x00, 0x00, 0x0f, 0x20, 0xe0, 0x83, 0xc8, 0x20,
        0x0f, 0x22, 0xe0, 0xb8, 0x00, 0x10, 0x00, 0x00, 0x0f, 0x22, 0xd8, 0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32,
        0x0d, 0x00, 0x01, 0x00, 0x00, 0x0f, 0x30, 0x0f, 0x20, 0xc0, 0x0d, 0x00, 0x00, 0x00, 0x80, 0x0f, 0x22, 0xc0,
        0xea, 0x73, 0xf0, 0x0f, 0x00, 0x18, 0x00, 0xb8, 0x01, 0x00, 0x00, 0x00, 0x0f, 0xa2, 0x81, 0xe2, 0x41, 0x81,
        0x00, 0x07, 0x81, 0xfa, 0x41, 0x81, 0x00, 0x07, 0xb0, 0x11, 0x75, 0x11, 0xb8, 0x01, 0x00, 0x00, 0x80, 0x0f,
        0xa2, 0x0f, 0xba, 0xe2, 0x1d, 0xb0, 0x12, 0x73, 0x02, 0xb0, 0x10, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x9b, 0xcf, 0x00, 0xff, 0xff, 0x00, 0x00,
        0x00, 0x93, 0xcf, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x9b, 0xaf, 0x00, 0x1f, 0x00, 0xa0, 0xf0, 0x0f, 0x00,
    ];
    const RESET: [u8; 4] = [0xfa, 0xe9, 0x0c, 0xf0];
    let mut rom = vec![0xf4u8; 0x10000];
    rom[0xF000..0xF000 + CODE.len()].copy_from_slice(&CODE);
    rom[0xFFF0..0xFFF0 + RESET.len()].copy_from_slice(&RESET);
    rom
}

/// The argument vector of probe stage 1 with accelerator `accel` and firmware file `bios`.
pub fn probe_firmware_args(accel: Accel, bios: &Path) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = [
        "-accel",
        accel.as_str(),
        "-machine",
        "q35",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-m",
        "16",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-bios",
    ]
    .iter()
    .map(Into::into)
    .collect();
    v.push(bios.into());
    v
}

/// Probes whether KVM runs a guest, in one or two stages (see the module doc), each bounded by
/// `config.timeout`; a guest still running at the timeout is killed and counts as hung.
/// `Err` only when the probe itself cannot be set up; a missing qemu binary or any qemu failure
/// is reported as [`KvmProbe::Unusable`] with qemu's message.
pub fn probe_kvm(config: &ProbeConfig) -> Result<KvmProbe, AccelError> {
    probe_with(Accel::Kvm, config)
}

/// The key of a probe verdict in [`ProbeConfig::cache`], or `None` when a part cannot be read.
fn cache_key(config: &ProbeConfig) -> Option<String> {
    let stamp = |p: &Path| -> Option<String> {
        let p = std::fs::canonicalize(p).ok()?;
        let m = std::fs::metadata(&p).ok()?;
        let mtime = m.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
        Some(format!("{}:{}:{}", p.display(), m.len(), mtime.as_nanos()))
    };
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let kernel = match &config.kernel {
        Some(k) => stamp(k)?,
        None => "-".into(),
    };
    Some(format!(
        "host {} qemu {} kernel {kernel}",
        host.trim(),
        stamp(&config.qemu)?
    ))
}

/// [`probe_kvm`] with its verdict remembered in [`ProbeConfig::cache`] (when set). A cache that
/// cannot be read or written only costs a probe.
pub fn probe_kvm_cached(config: &ProbeConfig) -> Result<KvmProbe, AccelError> {
    let (Some(cache), Some(key)) = (&config.cache, cache_key(config)) else {
        return probe_kvm(config);
    };
    let mut verdicts: std::collections::BTreeMap<String, Option<String>> = std::fs::read(cache)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if let Some(verdict) = verdicts.get(&key) {
        return Ok(match verdict {
            None => KvmProbe::Usable,
            Some(why) => KvmProbe::Unusable(format!("{why} (remembered in {})", cache.display())),
        });
    }
    let probe = probe_kvm(config)?;
    verdicts.insert(
        key,
        match &probe {
            KvmProbe::Usable => None,
            KvmProbe::Unusable(why) => Some(why.clone()),
        },
    );
    let tmp = cache.with_extension("tmp");
    let written = cache
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&tmp, serde_json::to_vec_pretty(&verdicts).unwrap_or_default()))
        .and_then(|()| std::fs::rename(&tmp, cache));
    if let Err(e) = written {
        tracing::debug!("cannot remember the KVM probe verdict in {}: {e}", cache.display());
    }
    Ok(probe)
}

/// [`probe_kvm`] for any accelerator (used by the tests with TCG, which always works).
pub fn probe_with(accel: Accel, config: &ProbeConfig) -> Result<KvmProbe, AccelError> {
    let dir = tempfile::Builder::new()
        .prefix("moby-accel-probe")
        .tempdir()
        .map_err(|source| AccelError::Scratch {
            dir: std::env::temp_dir(),
            source,
        })?;
    let bios = dir.path().join("probe.rom");
    std::fs::write(&bios, probe_firmware()).map_err(|source| AccelError::Scratch {
        dir: dir.path().to_path_buf(),
        source,
    })?;
    let mut cmd = Command::new(&config.qemu);
    cmd.args(probe_firmware_args(accel, &bios));
    match run_bounded(cmd, config.timeout, None) {
        Bounded::Exited(status, stderr) => {
            if status.code() != Some(PROBE_OK_STATUS) {
                let code = status.code().map(|c| (c - 1) / 2);
                let why = match code {
                    Some(0x11) => "the guest CPU lacks features a 64-bit Linux needs".to_string(),
                    Some(0x12) => "the guest CPU has no long mode".to_string(),
                    _ => format!("qemu -accel {accel} failed ({status}){}", stderr_suffix(&stderr)),
                };
                return Ok(KvmProbe::Unusable(why));
            }
        }
        Bounded::TimedOut => {
            return Ok(KvmProbe::Unusable(format!(
                "a {accel} test guest did not finish within {:?} (hung)",
                config.timeout
            )))
        }
        Bounded::SpawnFailed(e) => {
            return Ok(KvmProbe::Unusable(format!(
                "could not start {}: {e}",
                config.qemu.display()
            )))
        }
    }
    let Some(kernel) = &config.kernel else {
        return Ok(KvmProbe::Usable);
    };
    let log = dir.path().join("console.log");
    let mut cmd = Command::new(&config.qemu);
    cmd.args(probe_kernel_args(accel, kernel, &log));
    Ok(match run_bounded(cmd, config.timeout, Some((&log, "Linux version"))) {
        Bounded::Exited(status, stderr) => {
            if std::fs::read_to_string(&log).is_ok_and(|s| s.contains("Linux version")) {
                KvmProbe::Usable
            } else {
                KvmProbe::Unusable(format!(
                    "kernel {} printed nothing under {accel} ({status}){}",
                    kernel.display(),
                    stderr_suffix(&stderr)
                ))
            }
        }
        Bounded::TimedOut => KvmProbe::Unusable(format!(
            "kernel {} printed nothing under {accel} within {:?} (hung)",
            kernel.display(),
            config.timeout
        )),
        Bounded::SpawnFailed(e) => KvmProbe::Unusable(format!("could not start {}: {e}", config.qemu.display())),
    })
}

/// The argument vector of probe stage 2: boot `kernel` alone, serial console to `log`.
pub fn probe_kernel_args(accel: Accel, kernel: &Path, log: &Path) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = Vec::new();
    for a in [
        "-accel",
        accel.as_str(),
        "-machine",
        "q35",
        "-nodefaults",
        "-no-user-config",
    ] {
        v.push(a.into());
    }
    for a in ["-display", "none", "-m", "256", "-no-reboot", "-kernel"] {
        v.push(a.into());
    }
    v.push(kernel.into());
    v.push("-append".into());
    v.push("console=ttyS0 panic=-1".into());
    v.push("-serial".into());
    let mut s = std::ffi::OsString::from("file:");
    s.push(log);
    v.push(s);
    v
}

fn stderr_suffix(stderr: &str) -> String {
    let t = stderr.trim();
    if t.is_empty() {
        String::new()
    } else {
        format!(": {t}")
    }
}

enum Bounded {
    Exited(ExitStatus, String),
    TimedOut,
    SpawnFailed(std::io::Error),
}

/// Runs `cmd` until it exits, `done` (a file containing a marker) is satisfied, or `timeout`
/// passes; kills the child in the last two cases and always reaps it.
fn run_bounded(mut cmd: Command, timeout: Duration, done: Option<(&Path, &str)>) -> Bounded {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Bounded::SpawnFailed(e),
    };
    let mut guard = KillOnDrop(Some(child));
    let start = Instant::now();
    loop {
        let Some(child) = guard.0.as_mut() else {
            return Bounded::TimedOut;
        };
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut s) = child.stderr.take() {
                    let _ = s.read_to_string(&mut err);
                }
                guard.0 = None;
                return Bounded::Exited(status, err);
            }
            Ok(None) => {}
            Err(_) => return Bounded::TimedOut,
        }
        if let Some((file, marker)) = done {
            if std::fs::read_to_string(file).is_ok_and(|s| s.contains(marker)) {
                drop(guard);
                return Bounded::Exited(ExitStatus::default(), String::new());
            }
        }
        if start.elapsed() >= timeout {
            return Bounded::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills (SIGKILL) and reaps the child when dropped, unless it was taken out.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Arch;

    fn qemu() -> PathBuf {
        PathBuf::from("qemu-system-x86_64")
    }

    #[test]
    fn parses_names_case_insensitively() {
        assert_eq!("KVM".parse::<Accel>().unwrap(), Accel::Kvm);
        assert_eq!("tcg".parse::<Accel>().unwrap(), Accel::Tcg);
        assert_eq!("hvf".parse::<Accel>().unwrap(), Accel::Hvf);
        let e = "xen".parse::<Accel>().unwrap_err().to_string();
        assert_eq!(e, "unknown accelerator \"xen\": use kvm, tcg or hvf");
    }

    #[test]
    fn explicit_choice_wins_without_probing() {
        // A qemu that does not exist: probing would report it, an explicit choice never runs it.
        let probe = ProbeConfig {
            qemu: "/nonexistent/qemu".into(),
            timeout: Duration::from_secs(1),
            kernel: None,
            cache: None,
        };
        let c = choose(Some(Accel::Kvm), Some("tcg"), Arch::X86_64, &probe).unwrap();
        assert_eq!(c, AccelChoice::Explicit(Accel::Kvm));
        let c = choose(None, Some("tcg"), Arch::X86_64, &probe).unwrap();
        assert_eq!(c, AccelChoice::Explicit(Accel::Tcg));
        let e = choose(None, Some("fast"), Arch::X86_64, &probe)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("MOBY_QEMU_ACCEL=\"fast\""), "{e}");
    }

    #[test]
    fn foreign_guest_arch_uses_tcg() {
        let probe = ProbeConfig {
            qemu: "/nonexistent/qemu".into(),
            timeout: Duration::from_secs(1),
            kernel: None,
            cache: None,
        };
        let c = choose(None, None, Arch::Aarch64, &probe).unwrap();
        assert_eq!(c.accel(), Accel::Tcg);
    }

    #[test]
    fn firmware_has_reset_vector_and_size() {
        let rom = probe_firmware();
        assert_eq!(rom.len(), 65536);
        assert_eq!(&rom[0xFFF0..0xFFF4], &[0xfa, 0xe9, 0x0c, 0xf0]);
        // The GDT pointer at 0xF0C0 points at the GDT at linear 0xF00A0 (low BIOS alias).
        assert_eq!(&rom[0xF0C0..0xF0C6], &[0x1f, 0x00, 0xa0, 0xf0, 0x0f, 0x00]);
    }

    #[test]
    fn firmware_probe_passes_under_tcg() {
        let probe = ProbeConfig {
            qemu: qemu(),
            timeout: Duration::from_secs(60),
            kernel: None,
            cache: None,
        };
        assert_eq!(probe_with(Accel::Tcg, &probe).unwrap(), KvmProbe::Usable);
    }

    #[test]
    fn missing_qemu_is_unusable_with_its_name() {
        let probe = ProbeConfig {
            qemu: "/nonexistent/qemu".into(),
            timeout: Duration::from_secs(5),
            kernel: None,
            cache: None,
        };
        match probe_kvm(&probe).unwrap() {
            KvmProbe::Unusable(why) => assert!(why.contains("/nonexistent/qemu"), "{why}"),
            KvmProbe::Usable => panic!("a missing qemu cannot be usable"),
        }
    }

    #[test]
    fn hung_guest_is_killed_and_reported() {
        // A "qemu" that never finishes: the probe must give up and kill it.
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("qemu-hangs");
        crate::testing::write_script(&fake, "#!/bin/sh\nexec sleep 600\n");
        let probe = ProbeConfig {
            qemu: fake,
            timeout: Duration::from_millis(300),
            kernel: None,
            cache: None,
        };
        match probe_kvm(&probe).unwrap() {
            KvmProbe::Unusable(why) => assert!(why.contains("hung"), "{why}"),
            KvmProbe::Usable => panic!("a hanging guest cannot be usable"),
        }
    }

    #[test]
    fn verdict_is_remembered_until_qemu_changes() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("qemu-hangs");
        let counter = dir.path().join("runs");
        crate::testing::write_script(
            &fake,
            &format!("#!/bin/sh\necho x >> {}\nexec sleep 600\n", counter.display()),
        );
        let probe = ProbeConfig {
            qemu: fake.clone(),
            timeout: Duration::from_millis(300),
            kernel: None,
            cache: Some(dir.path().join("state/accel-probe.json")),
        };
        let runs = || std::fs::read_to_string(&counter).unwrap_or_default().lines().count();
        let KvmProbe::Unusable(first) = probe_kvm_cached(&probe).unwrap() else {
            panic!("usable")
        };
        assert_eq!(runs(), 1);
        let KvmProbe::Unusable(second) = probe_kvm_cached(&probe).unwrap() else {
            panic!("usable")
        };
        assert_eq!(runs(), 1, "the second verdict comes from the cache");
        assert_eq!(
            second,
            format!(
                "{first} (remembered in {})",
                dir.path().join("state/accel-probe.json").display()
            )
        );
        // A changed qemu binary is probed again.
        crate::testing::write_script(
            &fake,
            &format!("#!/bin/sh\necho y >> {}\nexec sleep 600\n", counter.display()),
        );
        probe_kvm_cached(&probe).unwrap();
        assert_eq!(runs(), 2);
    }

    #[test]
    fn qemu_error_text_is_kept() {
        let probe = ProbeConfig {
            qemu: qemu(),
            timeout: Duration::from_secs(30),
            kernel: None,
            cache: None,
        };
        // An accelerator qemu-system-x86_64 on Linux does not have.
        match probe_with(Accel::Hvf, &probe).unwrap() {
            KvmProbe::Unusable(why) => assert!(why.contains("hvf"), "{why}"),
            KvmProbe::Usable => panic!("hvf cannot work on linux"),
        }
    }

    /// The real probe on this host, both stages, with the test guest's kernel (or `MOBY_TEST_KERNEL`);
    /// on the build host stage 2 finds KVM hanging and the choice falls back to TCG.
    #[test]
    fn real_kvm_probe_on_this_host() {
        // The test guest's kernel (Debian's cloud kernel, from scripts/test-guest.sh).
        let kernel = std::env::var_os("MOBY_TEST_KERNEL")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-guest/vmlinuz"));
        assert!(
            kernel.is_file(),
            "no kernel at {}: run scripts/test-guest.sh",
            kernel.display()
        );
        let probe = ProbeConfig {
            qemu: qemu(),
            timeout: Duration::from_secs(20),
            kernel: Some(kernel),
            cache: None,
        };
        let choice = choose(None, None, Arch::X86_64, &probe).unwrap();
        eprintln!("accel choice here: {choice:?}");
        if let AccelChoice::TcgFallback(why) = &choice {
            assert!(
                why.contains("kernel") || why.contains("/dev/kvm") || why.contains("-accel kvm"),
                "{why}"
            );
        }
        // Stage 2 itself works: under TCG the same kernel prints its banner.
        let tcg = ProbeConfig {
            timeout: Duration::from_secs(120),
            ..probe
        };
        assert_eq!(probe_with(Accel::Tcg, &tcg).unwrap(), KvmProbe::Usable);
    }
}
