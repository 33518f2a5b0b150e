//! `moby run vmware [FLAGS] IMAGE`: boot an ISO or VMDK image under VMware Workstation or Fusion,
//! through `vmrun` (see `vmm::vmware`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use vmm::machine::DiskSpec;
use vmm::vmware::{self, Follow, Network, Product, RunConfig};

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

/// The runner's configuration for `args` and the common `run` resources (`--cpus`, `--mem` in
/// MiB, `--disk` values).
pub fn config(args: &VmwareArgs, cpus: u32, mem: u64, disks: &[String]) -> Result<RunConfig> {
    let disks = disks
        .iter()
        .map(|d| d.parse::<DiskSpec>().with_context(|| format!("invalid --disk {d:?}")))
        .collect::<Result<Vec<_>>>()?;
    Ok(RunConfig {
        image: args.image.clone(),
        state_dir: args.state.clone(),
        cpus,
        memory_mib: mem,
        disks,
        network: args.networking,
        gui: args.gui,
        detach: args.detached,
        vmrun: args.vmrun.clone(),
        product: args.product,
    })
}

/// Starts the VM and, unless `--detached`, copies its serial console to stdout until it stops.
pub fn run(args: &VmwareArgs, cpus: u32, mem: u64, disks: &[String]) -> Result<()> {
    let cfg = config(args, cpus, mem, disks)?;
    let started = vmware::start(&cfg)?;
    let stop = started
        .vmrun
        .command_line(&started.vmrun.stop_args(&started.vmx, false));
    if let Some(disk) = &started.created_disk {
        tracing::info!("created disk {}", disk.display());
    }
    tracing::info!(
        "started {} (state in {})",
        started.vmx.display(),
        started.state_dir.display()
    );
    if cfg.detach {
        tracing::info!("console: {}; to stop the VM: {stop}", started.console.display());
        return Ok(());
    }
    tracing::info!("following the serial console until the VM stops; to stop the VM: {stop}");
    let mut out = std::io::stdout().lock();
    vmware::follow(
        &started.vmrun,
        &started.vmx,
        &started.console,
        &mut out,
        &Follow::default(),
    )?;
    tracing::info!("the VM has stopped");
    Ok(())
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

    #[test]
    fn defaults() {
        let args = parse(&["lk"]).unwrap();
        let cfg = config(&args, 1, 1024, &[]).unwrap();
        assert_eq!(
            cfg,
            RunConfig {
                image: "lk".into(),
                state_dir: None,
                cpus: 1,
                memory_mib: 1024,
                disks: Vec::new(),
                network: Network::Nat,
                gui: false,
                detach: false,
                vmrun: None,
                product: None,
            }
        );
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
            "lk.iso",
        ])
        .unwrap();
        let cfg = config(&args, 2, 4096, &["size=2G".into()]).unwrap();
        assert_eq!(cfg.state_dir.as_deref(), Some(std::path::Path::new("/s")));
        assert_eq!(cfg.vmrun.as_deref(), Some(std::path::Path::new("/opt/vmrun")));
        assert_eq!(cfg.product, Some(Product::Fusion));
        assert_eq!(cfg.network, Network::Bridged);
        assert!(cfg.gui && cfg.detach);
        assert_eq!((cfg.cpus, cfg.memory_mib), (2, 4096));
        assert_eq!(cfg.disks, ["size=2G".parse::<DiskSpec>().unwrap()]);
        assert!(parse(&["--detach", "lk"]).unwrap().detached);
    }

    #[test]
    fn bad_values_are_refused() {
        let e = parse(&["--networking", "vmnet8", "lk"]).unwrap_err().to_string();
        assert!(e.contains("unknown VMware networking \"vmnet8\""), "{e}");
        let e = parse(&["--product", "esx", "lk"]).unwrap_err().to_string();
        assert!(e.contains("use ws (Workstation), fusion or player"), "{e}");
        assert!(parse(&[]).is_err(), "IMAGE is required");
        let args = parse(&["lk"]).unwrap();
        let e = config(&args, 1, 1024, &["size=x".into()]).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "invalid --disk \"size=x\": invalid disk size \"x\": use a number of GiB, or N G / N M (e.g. size=4G, size=512M)"
        );
    }
}
