//! `moby run [qemu] [FLAGS] IMAGE`: the flags become a [`Request`] for the qemu backend, booted on
//! the terminal or detached.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use vmm::console::RawTerminal;
use vmm::machine::{BootError, BootKind, DiskSpec, PublishedPort};
use vmm::qemu::{LaunchError, Qemu, QemuError};
use vmm::{AnyBackend, Backend, Ending, Request, StateError, StateRoot, VmError};

use crate::cli::{QemuArgs, RunArgs, RunBackend, VmResources};

pub fn run(args: RunArgs, bars: Option<std::sync::Arc<crate::progress::Bars>>) -> Result<()> {
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
        Some(RunBackend::Gcp(g)) => crate::gcp_cmd::run(&g, &args.resources.disks, bars),
        None => run_qemu(&args.resources, &args.qemu),
    }
}

/// The state root for instances: `$MOBY_STATE_HOME` or `~/.moby/run`.
pub fn state_root() -> Result<StateRoot> {
    Ok(StateRoot::new(StateRoot::default_base()?))
}

/// A single-threaded async runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
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

fn boot_kind(q: &QemuArgs) -> BootKind {
    match (q.kernel, q.iso, q.squashfs) {
        (true, _, _) => BootKind::Kernel,
        (_, true, _) => BootKind::Iso,
        (_, _, true) => BootKind::Squashfs,
        _ => BootKind::Detect,
    }
}

/// `--data` or the contents of `--data-file`.
pub fn userdata(data: Option<&str>, file: Option<&Path>) -> Result<Option<Vec<u8>>> {
    match (data, file) {
        (Some(d), _) => Ok(Some(d.as_bytes().to_vec())),
        (None, Some(f)) => std::fs::read(f)
            .map(Some)
            .with_context(|| format!("cannot read --data-file {}", f.display())),
        (None, None) => Ok(None),
    }
}

/// `--disk` values (checked when the flags were read).
pub fn disks(values: &[String]) -> Result<Vec<DiskSpec>> {
    values
        .iter()
        .map(|d| d.parse::<DiskSpec>().with_context(|| format!("invalid --disk {d:?}")))
        .collect()
}

/// `--publish` values.
pub fn published(values: &[String]) -> Result<Vec<PublishedPort>> {
    values
        .iter()
        .map(|p| {
            p.parse::<PublishedPort>()
                .with_context(|| format!("invalid --publish {p:?}"))
        })
        .collect()
}

/// The request the qemu flags describe.
fn request(res: &VmResources, q: &QemuArgs, image: &Path) -> Result<Request> {
    let mut request = Request::new(instance_name(q, image)?, image);
    request.boot = boot_kind(q);
    request.arch = q.arch.as_deref().map(str::parse).transpose()?;
    request.cpus = res.cpus;
    request.memory_mib = res.mem;
    request.disks = disks(&res.disks)?;
    request.userdata = userdata(q.data.as_deref(), q.data_file.as_deref())?;
    request.publish = published(&q.publish)?;
    request.networking = Some(q.networking.clone());
    request.network = q
        .network
        .as_deref()
        .map(|n| n.parse().with_context(|| format!("invalid --network {n:?}")))
        .transpose()?;
    request.accel = q.accel.clone();
    request.uefi = q.uefi;
    request.firmware = q.fw.clone();
    request.state_dir = q.state.clone();
    request.tags = q.tags.iter().cloned().collect();
    Ok(request)
}

fn run_qemu(res: &VmResources, q: &QemuArgs) -> Result<()> {
    let Some(image) = q.image.as_deref() else {
        bail!("give the image to run: moby run [qemu] [flags] PREFIX|IMAGE.iso|DISK");
    };
    let request = request(res, q, image)?;
    let mut qemu = Qemu::new(state_root()?);
    qemu.binary = q.qemu.clone();
    qemu.devices = q.devices.clone();
    qemu.gui = q.gui;
    let backend = AnyBackend::Qemu(qemu);
    let name = &request.name;
    let flag_hint = |err| run_error(err, q.state.is_some());
    runtime()?.block_on(async {
        if q.detached {
            let record = backend.start(&request).await.map_err(flag_hint)?;
            crate::print_text(format!("{name}\n"))?;
            let pid = record.pid.map_or_else(|| "-".to_string(), |pid| pid.to_string());
            tracing::info!(
                "VM `{name}` runs in the background (qemu pid {pid}): moby console {name}, moby stop {name}"
            );
            return Ok(());
        }
        let raw = RawTerminal::enter(true).context("cannot put the terminal in raw mode")?;
        let mut stdout = std::io::stdout();
        let end = backend
            .run(&request, &mut stdout, Duration::from_secs(q.stop_timeout))
            .await;
        let _ = stdout.flush();
        drop(raw);
        let end = end.map_err(flag_hint)?;
        let how = describe_ending(&end.ending);
        if let Some(messages) = &end.failure {
            bail!("VM `{name}` {how}; qemu failed:\n{messages}");
        }
        tracing::info!("VM `{name}` {how}");
        Ok(())
    })
}

/// How a foreground run ended, in words.
pub fn describe_ending(ending: &Ending) -> String {
    match ending {
        Ending::PoweredDown => "powered off after the ACPI power button".to_string(),
        Ending::Quit { after } => format!(
            "did not power off within {}s of the ACPI power button; it was told to quit",
            after.as_secs()
        ),
        Ending::Killed => "killed".to_string(),
        Ending::GuestPoweredOff { power_button: true } => {
            "powered off after the ACPI power button (pressed from outside, e.g. by `moby stop`)".to_string()
        }
        Ending::GuestPoweredOff { power_button: false } => "powered off by the guest".to_string(),
        Ending::GuestShutdown(reason) => format!("shut down by the guest ({reason})"),
        Ending::HostStopped(reason) => format!("stopped by the host ({reason})"),
        Ending::Exited(status) => format!("exited ({status})"),
    }
}

/// A library error with the CLI's words added where the fix is a flag, a variable or a command.
pub fn run_error(err: VmError, explicit_state: bool) -> anyhow::Error {
    match &err {
        VmError::Launch(LaunchError::SocketPathTooLong { .. }) if explicit_state => {
            anyhow::anyhow!("{err}: give --state a shorter one")
        }
        VmError::Launch(LaunchError::SocketPathTooLong { .. }) => {
            anyhow::anyhow!("{err}: set MOBY_STATE_HOME to a shorter directory, or give --state a short one")
        }
        VmError::Boot(BootError::NotFound { .. }) => anyhow::anyhow!("{err} (moby build makes one)"),
        VmError::Firmware(_) => anyhow::anyhow!("{err} (--fw PATH)"),
        VmError::Qemu(QemuError::QemuNotFound { .. } | QemuError::QemuPathMissing(_)) => {
            anyhow::anyhow!("{err} (--qemu PATH)")
        }
        VmError::State(StateError::Running { name, .. }) | VmError::State(StateError::Locked { name, .. }) => {
            anyhow::anyhow!("{err} (moby stop {name}, or --state DIR)")
        }
        VmError::State(StateError::NameTaken { .. }) => {
            anyhow::anyhow!("{err} (give another --name, or drop --state)")
        }
        _ => err.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let err = || {
            VmError::Launch(LaunchError::SocketPathTooLong {
                dir: "/deep".into(),
                path: "/deep/qmp.sock".into(),
                len: 200,
            })
        };
        let explicit = run_error(err(), true).to_string();
        assert!(explicit.ends_with("give --state a shorter one"), "{explicit}");
        let home = run_error(err(), false).to_string();
        assert!(home.contains("set MOBY_STATE_HOME to a shorter directory"), "{home}");
    }

    #[test]
    fn flags_become_the_request() {
        let res = VmResources {
            cpus: 2,
            mem: 512,
            disks: vec!["size=1G".into()],
        };
        let q = QemuArgs {
            publish: vec!["8080:80".into()],
            tags: vec![("role".into(), "web".into())],
            accel: Some("tcg".into()),
            data: Some("{}".into()),
            ..QemuArgs::default()
        };
        let r = request(&res, &q, Path::new("out/web")).unwrap();
        assert_eq!((r.name.as_str(), r.cpus, r.memory_mib), ("web", 2, 512));
        assert_eq!(r.disks, ["size=1G".parse::<DiskSpec>().unwrap()]);
        assert_eq!(r.publish, ["8080:80".parse::<PublishedPort>().unwrap()]);
        assert_eq!(r.tags.get("role").map(String::as_str), Some("web"));
        assert_eq!(r.networking.as_deref(), Some("user"));
        assert_eq!(r.userdata.as_deref(), Some(&b"{}"[..]));
        let e = published(&["80".into()]).unwrap_err();
        assert!(
            format!("{e:#}").starts_with("invalid --publish \"80\": cannot parse"),
            "{e:#}"
        );
    }
}
