//! `moby run [qemu] [FLAGS] IMAGE`: boot an image under qemu, on the terminal or detached.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use vmm::accel::{self, AccelChoice, ProbeConfig, ACCEL_ENV};
use vmm::console::RawTerminal;
use vmm::machine::{self, Arch, BootKind, BootMedia, DiskSpec, PublishedPort};
use vmm::qemu::launch::{launch, LaunchError, LaunchOptions, StopResult};
use vmm::qemu::{self, Networking, QemuConfig};
use vmm::qmp::ShutdownReason;
use vmm::state::{StateDir, StateRoot};

use crate::cli::{QemuArgs, RunArgs, RunBackend, VmResources};

/// LinuxKit's name for [`ACCEL_ENV`], honoured too.
const LINUXKIT_ACCEL_ENV: &str = "LINUXKIT_QEMU_ACCEL";

/// How long each stage of the KVM probe may take before KVM counts as hanging.
const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(20);

pub fn run(args: RunArgs) -> Result<()> {
    if args.backend.is_some() && !args.qemu.is_default() {
        bail!("backend flags go after the backend name (moby run qemu --publish 8080:80 IMAGE); only --cpus, --mem and --disk may come before it");
    }
    match args.backend {
        Some(RunBackend::Qemu(q)) => run_qemu(&args.resources, &q),
        Some(RunBackend::Hyperkit(h)) => {
            let r = &args.resources;
            crate::run_hyperkit::run(&h, r.cpus, r.mem, &r.disks)
        }
        Some(RunBackend::Vmware(v)) => {
            let r = &args.resources;
            crate::run_vmware::run(&v, r.cpus, r.mem, &r.disks)
        }
        None => run_qemu(&args.resources, &args.qemu),
    }
}

/// The state root for instances: `$MOBY_STATE_HOME` or `~/.moby/run`.
pub fn state_root() -> Result<StateRoot> {
    Ok(StateRoot::new(StateRoot::default_base()?))
}

/// The instance name: `--name`, else the image's file name without `.iso`.
fn instance_name(q: &QemuArgs, image: &Path) -> Result<String> {
    if let Some(name) = &q.name {
        return Ok(name.clone());
    }
    let file = image
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .with_context(|| format!("cannot name a VM after {}: give --name", image.display()))?;
    Ok(file.strip_suffix(".iso").unwrap_or(&file).to_string())
}

/// The state dir: `--state DIR` (linked from the state root under the instance name, so that
/// `moby ps/stop/console` find it), else `ROOT/NAME`.
fn state_dir(root: &StateRoot, name: &str, explicit: Option<&Path>) -> Result<StateDir> {
    let default = root.instance(name)?;
    let Some(dir) = explicit else {
        return Ok(default);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create state dir {}", dir.display()))?;
    let dir = std::fs::canonicalize(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    let link = default.dir();
    match std::fs::read_link(link) {
        Ok(target) if target == dir => {}
        Ok(_) => {
            std::fs::remove_file(link).with_context(|| format!("cannot replace {}", link.display()))?;
            std::os::unix::fs::symlink(&dir, link).with_context(|| format!("cannot link {}", link.display()))?;
        }
        Err(_) if link.exists() => bail!(
            "instance name `{name}` is taken by {}: give another --name, or drop --state",
            link.display()
        ),
        Err(_) => {
            std::fs::create_dir_all(root.base()).with_context(|| format!("cannot create {}", root.base().display()))?;
            std::os::unix::fs::symlink(&dir, link).with_context(|| format!("cannot link {}", link.display()))?;
        }
    }
    Ok(StateDir::new(dir, name))
}

fn boot_kind(q: &QemuArgs) -> BootKind {
    match (q.kernel, q.iso, q.squashfs) {
        (true, _, _) => BootKind::Kernel,
        (_, true, _) => BootKind::Iso,
        (_, _, true) => BootKind::Squashfs,
        _ => BootKind::Detect,
    }
}

fn userdata(q: &QemuArgs) -> Result<Option<Vec<u8>>> {
    match (&q.data, &q.data_file) {
        (Some(d), _) => Ok(Some(d.as_bytes().to_vec())),
        (None, Some(f)) => std::fs::read(f)
            .map(Some)
            .with_context(|| format!("cannot read --data-file {}", f.display())),
        (None, None) => Ok(None),
    }
}

/// Picks the accelerator, saying once why it is not KVM when it was probed.
fn accelerator(q: &QemuArgs, arch: Arch, qemu: &Path, media: &BootMedia, root: &StateRoot) -> Result<accel::Accel> {
    let explicit = q.accel.as_deref().map(str::parse).transpose()?;
    let env = std::env::var(ACCEL_ENV)
        .ok()
        .or_else(|| std::env::var(LINUXKIT_ACCEL_ENV).ok());
    let kernel = match media {
        BootMedia::Kernel { kernel, .. } | BootMedia::Squashfs { kernel, .. } => Some(kernel.clone()),
        BootMedia::Iso(_) | BootMedia::Disk { .. } => None,
    };
    let probe = ProbeConfig {
        qemu: qemu.to_path_buf(),
        timeout: KVM_PROBE_TIMEOUT,
        kernel,
        cache: Some(root.base().join("accel-probe.json")),
    };
    let choice = accel::choose(explicit, env.as_deref(), arch, &probe)?;
    if let AccelChoice::TcgFallback(why) = &choice {
        tracing::warn!("not using KVM: {why}; running under TCG (slow). Choose with --accel or {ACCEL_ENV}");
    }
    Ok(choice.accel())
}

fn run_qemu(res: &VmResources, q: &QemuArgs) -> Result<()> {
    let Some(image) = q.image.as_deref() else {
        bail!("give the image to run: moby run [qemu] [flags] PREFIX|IMAGE.iso|DISK");
    };
    let arch = match &q.arch {
        Some(a) => a.parse()?,
        None => Arch::host().context("qemu does not run guests of this machine's architecture: give --arch")?,
    };
    let qemu_bin = qemu::find_qemu(arch, q.qemu.as_deref())?;
    let detected = machine::detect(image, boot_kind(q), None)?;
    let networking: Networking = q.networking.parse()?;
    let publish = q
        .publish
        .iter()
        .map(|p| p.parse::<PublishedPort>())
        .collect::<Result<Vec<_>, _>>()?;
    qemu::check_publish(&networking, &publish)?;
    let disks = res
        .disks
        .iter()
        .map(|d| d.parse::<DiskSpec>())
        .collect::<Result<Vec<_>, _>>()?;
    let userdata = userdata(q)?;
    let uefi = q.uefi.then(|| vmm::firmware::find(arch, q.fw.as_deref())).transpose()?;

    let root = state_root()?;
    let name = instance_name(q, &detected.prefix)?;
    let state = state_dir(&root, &name, q.state.as_deref())?;
    let accel = accelerator(q, arch, &qemu_bin, &detected.media, &root)?;

    let mut config = QemuConfig::new(qemu_bin, arch, accel, detected.media);
    config.cpus = res.cpus;
    config.memory_mib = res.mem;
    config.networking = networking;
    config.publish = publish;
    config.devices = q.devices.clone();
    config.gui = q.gui;
    let opts = LaunchOptions {
        image: image.to_path_buf(),
        config,
        disks,
        userdata,
        uefi,
        qemu_img: qemu::find_qemu_img(),
        detach: q.detached,
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let vm = launch(&state, opts)
            .await
            .map_err(|err| launch_error(err, q.state.is_some()))?;
        if q.detached {
            crate::print_text(format!("{name}\n"))?;
            tracing::info!(
                "VM `{name}` runs in the background (qemu pid {}): moby console {name}, moby stop {name}",
                vm.pid()
            );
            vm.detach().await?;
            return Ok(());
        }
        tracing::debug!(
            "VM `{name}` started (qemu pid {}, state {})",
            vm.pid(),
            state.dir().display()
        );
        let raw = RawTerminal::enter(true).context("cannot put the terminal in raw mode")?;
        let mut stdout = std::io::stdout();
        let end = vm
            .run_foreground(&mut stdout, Duration::from_secs(q.stop_timeout))
            .await;
        let _ = stdout.flush();
        drop(raw);
        let end = end?;
        let how = match (&end.stopped, &end.shutdown) {
            (Some(StopResult::PoweredDown), _) => "powered off after the ACPI power button".to_string(),
            (Some(StopResult::Quit), _) => format!(
                "did not power off within {}s of the ACPI power button; qemu was told to quit",
                q.stop_timeout
            ),
            (Some(StopResult::Killed), _) => "killed".to_string(),
            (None, Some(s)) if s.reason == ShutdownReason::GuestShutdown && end.power_button => {
                "powered off after the ACPI power button (pressed over QMP, e.g. by `moby stop`)".to_string()
            }
            (None, Some(s)) if s.reason == ShutdownReason::GuestShutdown => "powered off by the guest".to_string(),
            (None, Some(s)) if s.guest => format!("shut down by the guest ({})", s.reason),
            (None, Some(s)) => format!("stopped by the host ({})", s.reason),
            (None, None) => format!("exited ({})", end.status),
        };
        if let (Some(messages), false) = (&end.messages, end.stopped == Some(StopResult::Killed)) {
            bail!("VM `{name}` {how}; qemu failed ({}):\n{messages}", end.status);
        }
        tracing::info!("VM `{name}` {how}");
        Ok(())
    })
}

/// A launch error in the CLI's words where the fix is a flag or a variable.
fn launch_error(err: LaunchError, explicit_state: bool) -> anyhow::Error {
    match err {
        LaunchError::SocketPathTooLong { .. } if explicit_state => anyhow::anyhow!("{err}: give --state a shorter one"),
        LaunchError::SocketPathTooLong { .. } => {
            anyhow::anyhow!("{err}: set MOBY_STATE_HOME to a shorter directory, or give --state a short one")
        }
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_state_dir_is_linked_under_the_instance_name() {
        let tmp = tempfile::tempdir().unwrap();
        let root = StateRoot::new(tmp.path().join("root"));
        let dir = tmp.path().join("elsewhere/web-state");
        let state = state_dir(&root, "web", Some(&dir)).unwrap();
        assert_eq!(state.dir(), std::fs::canonicalize(&dir).unwrap());
        let link = tmp.path().join("root/web");
        assert_eq!(std::fs::read_link(&link).unwrap(), std::fs::canonicalize(&dir).unwrap());
        // Again with the same dir, then with another one: the link follows.
        state_dir(&root, "web", Some(&dir)).unwrap();
        let other = tmp.path().join("other");
        state_dir(&root, "web", Some(&other)).unwrap();
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            std::fs::canonicalize(&other).unwrap()
        );
        // Without --state: the directory under the root.
        assert_eq!(state_dir(&root, "db", None).unwrap().dir(), tmp.path().join("root/db"));
    }

    #[test]
    fn a_name_used_by_a_real_state_dir_is_not_taken_over() {
        let tmp = tempfile::tempdir().unwrap();
        let root = StateRoot::new(tmp.path().join("root"));
        std::fs::create_dir_all(tmp.path().join("root/web")).unwrap();
        let e = state_dir(&root, "web", Some(&tmp.path().join("x")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("instance name `web` is taken") && e.contains("--name"),
            "{e}"
        );
    }

    #[test]
    fn instance_names_come_from_the_image() {
        let q = |name: Option<&str>| QemuArgs {
            name: name.map(String::from),
            ..QemuArgs::default()
        };
        assert_eq!(instance_name(&q(None), Path::new("out/web")).unwrap(), "web");
        assert_eq!(instance_name(&q(None), Path::new("out/web.iso")).unwrap(), "web");
        assert_eq!(instance_name(&q(Some("db")), Path::new("out/web")).unwrap(), "db");
    }

    #[test]
    fn a_too_deep_state_dir_is_fixed_with_the_setting_that_made_it() {
        let err = || LaunchError::SocketPathTooLong {
            dir: "/deep".into(),
            path: "/deep/qmp.sock".into(),
            len: 200,
        };
        let explicit = launch_error(err(), true).to_string();
        assert!(explicit.ends_with("give --state a shorter one"), "{explicit}");
        let home = launch_error(err(), false).to_string();
        assert!(home.contains("set MOBY_STATE_HOME to a shorter directory"), "{home}");
    }
}
