//! `moby run vmware [FLAGS] IMAGE`: LinuxKit's flags mapped to a [`Request`] and the [`Vmware`]
//! backend's settings; the recipe (the image, LinuxKit's `PREFIX-state` state dir unless
//! `--state`, the `.vmx`, the extra disk) is the backend's. Flag hints are added to the backend's
//! errors here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use vmm::machine::DiskSpec;
use vmm::vmware::{Network, Product, Vmware, VmwareError};
use vmm::{Backend, Request, VmError};
use vmm::{StateError, StateRoot};

use crate::run_cmd::{runtime, state_root};

/// How long the guest gets to shut down after Ctrl-C (or SIGTERM) before it is powered off.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// `moby run vmware`: LinuxKit's `run vmware` (`--state`, and `--cpus`, `--mem`, `--disk` from
/// `run`), plus the choices LinuxKit hard-codes.
#[derive(Debug, Clone, clap::Args)]
pub struct VmwareArgs {
    /// Directory for the VM's state: linuxkit.vmx, console.log, disk.vmdk (default: PREFIX-state).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// The vmrun binary (default: vmrun from $PATH, else where VMware installs it).
    #[arg(long)]
    pub vmrun: Option<PathBuf>,
    /// The product vmrun drives (vmrun -T): ws, fusion or player (default: fusion on macOS, else ws).
    #[arg(long)]
    pub product: Option<Product>,
    /// Networking: nat (default), bridged, hostonly or none.
    #[arg(long, default_value = "nat")]
    pub networking: Network,
    /// Open the VMware window instead of running headless.
    #[arg(long)]
    pub gui: bool,
    /// Return once the VM is started; its serial console goes to STATE/console.log.
    #[arg(short = 'd', long = "detached", visible_alias = "detach")]
    pub detached: bool,
    /// What to boot: PREFIX (PREFIX.vmdk, else PREFIX.iso), or the path of a .vmdk or .iso.
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
}

/// The backend's settings and the request for `args` and the common `run` resources (`--cpus`,
/// `--mem` in MiB, `--disk` values).
fn setup(args: &VmwareArgs, cpus: u32, mem: u64, disks: &[String], root: StateRoot) -> Result<(Vmware, Request)> {
    let mut request = Request::new(instance_name(&args.image)?, args.image.clone());
    request.cpus = cpus;
    request.memory_mib = mem;
    request.disks = disks
        .iter()
        .map(|d| d.parse::<DiskSpec>().with_context(|| format!("invalid --disk {d:?}")))
        .collect::<Result<Vec<_>>>()?;
    request.networking = Some(args.networking.connection_type().unwrap_or("none").to_string());
    request.state_dir = args.state.clone();
    let mut backend = Vmware::new(root);
    backend.vmrun = args.vmrun.clone();
    backend.product = args.product;
    backend.gui = args.gui;
    Ok((backend, request))
}

/// LinuxKit's instance name: the image's file name without `.vmdk` or `.iso`.
fn instance_name(image: &Path) -> Result<String> {
    let file = image
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .with_context(|| format!("cannot name a VM after {}", image.display()))?;
    let lower = file.to_ascii_lowercase();
    let stem = [".vmdk", ".iso"]
        .iter()
        .find(|ext| lower.ends_with(*ext))
        .map_or(file.as_str(), |ext| &file[..file.len() - ext.len()]);
    Ok(stem.to_string())
}

/// Starts the VM and, unless `--detached`, copies its serial console to stdout until it stops.
pub fn run(args: &VmwareArgs, cpus: u32, mem: u64, disks: &[String]) -> Result<()> {
    let (backend, request) = setup(args, cpus, mem, disks, state_root()?)?;
    runtime()?.block_on(async {
        if args.detached {
            let record = backend.start(&request).await.map_err(with_flags)?;
            tracing::info!(
                "VM `{}` runs in the background (state in {}); console: {}/console.log; to stop it: moby stop {}",
                record.name,
                record.state_dir.display(),
                record.state_dir.display(),
                record.name
            );
            return Ok(());
        }
        tracing::info!(
            "following the serial console of VM `{}` until it stops; Ctrl-C stops it",
            request.name
        );
        let mut stdout = std::io::stdout();
        let end = backend
            .run(&request, &mut stdout, STOP_TIMEOUT)
            .await
            .map_err(with_flags)?;
        tracing::info!("the VM has stopped ({:?})", end.ending);
        Ok(())
    })
}

/// The flags that fix `err`, when some do.
fn flag_hint(err: &VmError) -> Option<&'static str> {
    use VmwareError as W;
    Some(match err {
        VmError::Vmware(W::VmrunNotFound { .. }) => "give vmrun's path with --vmrun",
        VmError::Vmware(W::VmrunPathMissing(_)) => "check --vmrun",
        VmError::Vmware(W::VdiskmanagerNotFound { .. }) => "or give an existing .vmdk with --disk",
        VmError::Vmware(W::KernelBoot(_) | W::UnsupportedImage(_) | W::ImageNotFound { .. }) => {
            "build one with `moby build --format iso-bios` or `--format vmdk`"
        }
        VmError::Vmware(W::BadCpus) => "check --cpus",
        VmError::Vmware(W::BadMemory(_)) => "check --mem",
        VmError::Vmware(W::TooManyDisks(_)) => "give one --disk",
        VmError::Vmware(W::DiskNotVmdk { .. }) => "e.g. --disk file=PATH.vmdk, or format=vmdk",
        VmError::Vmware(W::DiskMissingNoSize(_)) => "e.g. --disk file=PATH,size=1G",
        VmError::Vmware(W::AlreadyRunning { .. }) | VmError::State(StateError::Locked { .. }) => {
            "the state dir is --state DIR"
        }
        VmError::Unsupported { .. } => "VMware runs ISO and VMDK images without published ports or userdata",
        _ => return None,
    })
}

/// `err` with the flags that fix it, in the CLI's words.
fn with_flags(err: VmError) -> anyhow::Error {
    match flag_hint(&err) {
        Some(hint) => anyhow!("{err}; {hint}"),
        None => err.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        args: VmwareArgs,
    }

    fn parse(argv: &[&str]) -> Result<VmwareArgs, clap::Error> {
        Cmd::try_parse_from(std::iter::once("vmware").chain(argv.iter().copied())).map(|c| c.args)
    }

    fn root() -> StateRoot {
        StateRoot::new("/nonexistent/root")
    }

    #[test]
    fn defaults() {
        let args = parse(&["out/lk"]).unwrap();
        let (backend, request) = setup(&args, 1, 1024, &[], root()).unwrap();
        let mut expected = Request::new("lk", "out/lk");
        expected.networking = Some("nat".into());
        assert_eq!(request, expected);
        assert_eq!((backend.vmrun, backend.product, backend.gui), (None, None, false));
        assert!(!args.detached);
    }

    #[test]
    fn every_flag() {
        let args = parse(&[
            "--state",
            "/s",
            "--vmrun",
            "/opt/vmrun",
            "--product",
            "fusion",
            "--networking",
            "bridged",
            "--gui",
            "-d",
            "out/lk.iso",
        ])
        .unwrap();
        let (backend, request) = setup(&args, 2, 4096, &["size=2G".into()], root()).unwrap();
        assert_eq!(request.name, "lk");
        assert_eq!(request.image, Path::new("out/lk.iso"));
        assert_eq!(request.state_dir.as_deref(), Some(Path::new("/s")));
        assert_eq!(request.networking.as_deref(), Some("bridged"));
        assert_eq!((request.cpus, request.memory_mib), (2, 4096));
        assert_eq!(request.disks, ["size=2G".parse::<DiskSpec>().unwrap()]);
        assert_eq!(backend.vmrun.as_deref(), Some(Path::new("/opt/vmrun")));
        assert_eq!(backend.product, Some(Product::Fusion));
        assert!(backend.gui && args.detached);
        assert!(parse(&["--detach", "lk"]).unwrap().detached);
        assert_eq!(instance_name(Path::new("VM.VMDK")).unwrap(), "VM");
        assert_eq!(instance_name(Path::new("lk-1.2")).unwrap(), "lk-1.2");
    }

    #[test]
    fn bad_values_are_refused() {
        let e = parse(&["--networking", "vmnet8", "lk"]).unwrap_err().to_string();
        assert!(e.contains("unknown VMware networking \"vmnet8\""), "{e}");
        let e = parse(&["--product", "esx", "lk"]).unwrap_err().to_string();
        assert!(e.contains("use ws (Workstation), fusion or player"), "{e}");
        assert!(parse(&[]).is_err(), "IMAGE is required");
        let args = parse(&["lk"]).unwrap();
        let e = setup(&args, 1, 1024, &["size=x".into()], root()).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "invalid --disk \"size=x\": invalid disk size \"x\": use a number of GiB, or N G / N M (e.g. size=4G, size=512M)"
        );
    }

    #[test]
    fn backend_errors_get_their_flags() {
        let e = with_flags(VmError::Vmware(VmwareError::VmrunPathMissing("/opt/vmrun".into())));
        assert_eq!(
            e.to_string(),
            "vmrun /opt/vmrun does not exist: check its path; check --vmrun"
        );
        let e = with_flags(VmError::Vmware(VmwareError::BadMemory(1001)));
        assert!(e.to_string().ends_with("at least 4; check --mem"), "{e}");
        let e = with_flags(VmError::Vmware(VmwareError::BadList("x".into())));
        assert!(!e.to_string().contains("--"), "{e}");
    }
}
