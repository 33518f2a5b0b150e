//! `moby run hyperkit`: LinuxKit's flags mapped to a [`Request`] and the [`Hyperkit`] backend's
//! settings; the recipe (boot media, LinuxKit's `PREFIX-state` state dir unless `--state`,
//! networking, disks, vpnkit) is the backend's. Flag hints are added to the backend's errors here.

use std::io::IsTerminal;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use vmm::hyperkit::VpnkitError;
use vmm::hyperkit::{self, parse_vsock_ports, ForegroundConsole, Hyperkit, HyperkitError, UuidOrigin};
use vmm::machine::{BootKind, DiskSpec, PublishedPort};
use vmm::{Backend, Request, VmError};
use vmm::{StateError, StateRoot};

use crate::run_cmd::{runtime, state_root};

/// How long the guest gets to power off after Ctrl-C (or SIGTERM) before hyperkit is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// `moby run hyperkit`: LinuxKit's flags, same names and defaults.
#[derive(Debug, Clone, clap::Args)]
pub struct HyperkitArgs {
    /// Path to the hyperkit binary (default: hyperkit or com.docker.hyperkit in $PATH, /usr/local/bin,
    /// or Docker Desktop's).
    #[arg(long, value_name = "PATH")]
    pub hyperkit: Option<PathBuf>,
    /// Userdata for the guest (on a `cidata` CD).
    #[arg(long, conflicts_with = "data_file")]
    pub data: Option<String>,
    /// File whose contents are the userdata.
    #[arg(long, value_name = "PATH")]
    pub data_file: Option<PathBuf>,
    /// Preferred IPv4 address for the VM (vpnkit networking).
    #[arg(long)]
    pub ip: Option<Ipv4Addr>,
    /// Directory for the VM's state (default: PREFIX-state).
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Guest vsock ports to forward to unix sockets STATE/guest.PORT (comma separated).
    #[arg(long, default_value = "", value_name = "PORTS")]
    pub vsock_ports: String,
    /// Networking: default (= docker-for-mac), docker-for-mac, vpnkit[,ETH-SOCKET[,PORT-SOCKET]]
    /// (no sockets: start a vpnkit for this VM), vmnet (needs root) or none.
    #[arg(long, default_value = "docker-for-mac")]
    pub networking: String,
    /// UUID vpnkit knows the VM by (default: kept in STATE/vpnkit.uuid).
    #[arg(long, value_name = "UUID")]
    pub vpnkit_uuid: Option<String>,
    /// Path to the vpnkit binary (for `--networking vpnkit` without sockets; default: $PATH).
    #[arg(long, value_name = "PATH")]
    pub vpnkit: Option<PathBuf>,
    /// Publish a guest port on localhost: HOST:GUEST[/tcp|/udp] (repeatable; vpnkit networking).
    #[arg(long = "publish", value_name = "HOST:GUEST[/PROTO]")]
    pub publish: Vec<String>,
    /// The VM's DMI UUID (default: a new one each run).
    #[arg(long, value_name = "UUID")]
    pub uuid: Option<String>,
    /// Boot through UEFI firmware (needed to boot an ISO).
    #[arg(long)]
    pub uefi: bool,
    /// The image is an ISO (PREFIX.iso or PREFIX); needs --uefi.
    #[arg(long, conflicts_with_all = ["kernel", "squashfs"])]
    pub iso: bool,
    /// The image is PREFIX-kernel + PREFIX-squashfs.img + PREFIX-cmdline.
    #[arg(long, conflicts_with = "kernel")]
    pub squashfs: bool,
    /// The image is PREFIX-kernel + PREFIX-initrd.img + PREFIX-cmdline.
    #[arg(long)]
    pub kernel: bool,
    /// UEFI firmware for --uefi.
    #[arg(long, value_name = "PATH", default_value = hyperkit::DEFAULT_FIRMWARE)]
    pub fw: PathBuf,
    /// Console to a pty (STATE/tty) and STATE/console-ring instead of stdio.
    #[arg(long)]
    pub console_file: bool,
    /// Leave the VM running in the background (console in STATE/tty and STATE/console-ring).
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// The image: PREFIX of PREFIX-kernel etc., or an ISO.
    #[arg(value_name = "PREFIX")]
    pub prefix: PathBuf,
}

/// Runs `moby run hyperkit` with `--cpus/--mem/--disk` (the flags all backends share; raw disks
/// only here: a size without a path is STATE/disk.raw, STATE/disk1.raw, ..., created sparse).
pub fn run(args: &HyperkitArgs, cpus: u32, mem: u64, disks: &[String]) -> Result<()> {
    let (backend, request) = setup(args, cpus, mem, disks, state_root()?, std::io::stdout().is_terminal())?;
    runtime()?.block_on(async {
        if args.detach {
            let record = backend.start(&request).await.map_err(with_flags)?;
            let state = record.state_dir.display();
            return crate::print_text(format!(
                "VM {} runs in the background (hyperkit pid {}); console: {state}/tty, log: {state}/console-ring\n",
                record.name,
                record.pid.unwrap_or_default()
            ));
        }
        let mut stdout = std::io::stdout();
        let end = backend
            .run(&request, &mut stdout, STOP_TIMEOUT)
            .await
            .map_err(with_flags)?;
        match end.failure {
            Some(failure) => bail!("{failure}"),
            None => Ok(()),
        }
    })
}

/// The image path: PREFIX, or with `--iso` PREFIX.iso (`.iso` appended when missing).
fn image(args: &HyperkitArgs) -> PathBuf {
    let path = &args.prefix;
    if args.iso && !path.to_string_lossy().ends_with(".iso") {
        let mut iso = path.clone().into_os_string();
        iso.push(".iso");
        return iso.into();
    }
    path.clone()
}

/// LinuxKit's instance name: the prefix's file name (an ISO's without `.iso`).
fn instance_name(image: &Path) -> Result<String> {
    let file = image
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .with_context(|| format!("cannot name a VM after {}", image.display()))?;
    Ok(file.strip_suffix(".iso").unwrap_or(&file).to_string())
}

/// The backend's settings and the request for the flags. `stdout_is_terminal` decides where the
/// console of a foreground run goes (hyperkit's stdio, else its pty copied to stdout), as LinuxKit.
fn setup(
    args: &HyperkitArgs,
    cpus: u32,
    mem: u64,
    disks: &[String],
    root: StateRoot,
    stdout_is_terminal: bool,
) -> Result<(Hyperkit, Request)> {
    let image = image(args);
    let mut request = Request::new(instance_name(&image)?, image);
    request.boot = match (args.iso, args.squashfs, args.kernel) {
        (true, _, _) => BootKind::Iso,
        (_, true, _) => BootKind::Squashfs,
        (_, _, true) => BootKind::Kernel,
        _ => BootKind::Detect,
    };
    request.cpus = cpus;
    request.memory_mib = mem;
    request.disks = disks
        .iter()
        .map(|d| d.parse::<DiskSpec>())
        .collect::<Result<Vec<_>, _>>()?;
    request.userdata = match (&args.data, &args.data_file) {
        (Some(data), _) => Some(data.clone().into_bytes()),
        (None, Some(file)) => {
            Some(std::fs::read(file).with_context(|| format!("cannot read userdata from {}", file.display()))?)
        }
        (None, None) => None,
    };
    request.publish = args
        .publish
        .iter()
        .map(|p| p.parse::<PublishedPort>())
        .collect::<Result<Vec<_>, _>>()?;
    request.networking = Some(args.networking.clone());
    request.uefi = args.uefi;
    request.firmware = Some(args.fw.clone());
    request.state_dir = args.state.clone();

    let mut backend = Hyperkit::new(root);
    backend.binary = args.hyperkit.clone();
    backend.vpnkit = args.vpnkit.clone();
    backend.preferred_ipv4 = args.ip;
    backend.vsock_ports = parse_vsock_ports(&args.vsock_ports).with_context(|| "check --vsock-ports")?;
    backend.vpnkit_uuid = args.vpnkit_uuid.clone();
    backend.uuid = args.uuid.clone();
    backend.console = if args.console_file || args.detach {
        ForegroundConsole::File
    } else if stdout_is_terminal {
        ForegroundConsole::Stdio
    } else {
        ForegroundConsole::Relay
    };
    Ok((backend, request))
}

/// The flags that fix `err`, when some do.
fn flag_hint(err: &VmError) -> Option<&'static str> {
    use HyperkitError as H;
    Some(match err {
        VmError::Hyperkit(H::NotFound) => "give its path with --hyperkit; on Linux use `moby run qemu`",
        VmError::Hyperkit(H::PathMissing(_)) => "check --hyperkit",
        VmError::Hyperkit(H::DiskFormat { .. }) => "or use `moby run qemu`",
        VmError::Hyperkit(H::DiskEmpty | H::DiskMissingNoSize(_)) => "e.g. --disk file=PATH,size=1G",
        VmError::Hyperkit(H::Unbootable(_) | H::IsoNeedsUefi(_)) => "an ISO needs --iso --uefi (and --fw PATH)",
        VmError::Hyperkit(H::FirmwareMissing(_)) => "give its path with --fw",
        VmError::Hyperkit(H::NoDockerForMac(_)) => "or use --networking vpnkit, vmnet or none",
        VmError::Hyperkit(H::PublishNeedsVpnkit(_)) => "drop --publish or change --networking",
        VmError::Hyperkit(H::PublishNeedsPortSocket) => {
            "use --networking vpnkit,ETH-SOCKET,PORT-SOCKET or plain --networking vpnkit"
        }
        VmError::Hyperkit(H::BadUuid {
            origin: UuidOrigin::Vm, ..
        }) => "check --uuid",
        VmError::Hyperkit(H::BadUuid {
            origin: UuidOrigin::Vpnkit,
            ..
        }) => "check --vpnkit-uuid",
        VmError::Hyperkit(H::DetachUnsupported) => {
            "drop --detach, or drop --publish and use --networking docker-for-mac, vpnkit,ETH-SOCKET, vmnet or none"
        }
        VmError::Hyperkit(H::Vpnkit(VpnkitError::NotFound)) => {
            "give its path with --vpnkit, or use --networking docker-for-mac"
        }
        VmError::Hyperkit(H::Vpnkit(VpnkitError::Io { .. })) => "check --networking",
        VmError::Hyperkit(H::Vpnkit(VpnkitError::Refused { .. })) => "pick another --ip or --vpnkit-uuid",
        VmError::Hyperkit(H::Vpnkit(VpnkitError::NoDhcpOffer { .. })) => "give the VM an address with --ip",
        VmError::State(StateError::Running { .. } | StateError::Locked { .. }) => "the state dir is --state DIR",
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
    use vmm::LocalBackend;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        res: crate::cli::VmResources,
        #[command(flatten)]
        args: HyperkitArgs,
    }

    fn parse(argv: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("hyperkit").chain(argv.iter().copied())).unwrap()
    }

    fn setup_for(cli: &Cli, terminal: bool) -> Result<(Hyperkit, Request)> {
        setup(
            &cli.args,
            cli.res.cpus,
            cli.res.mem,
            &cli.res.disks,
            StateRoot::new("/nonexistent/root"),
            terminal,
        )
    }

    #[test]
    fn linuxkit_flags_and_defaults() {
        let a = parse(&["lk"]);
        assert_eq!((a.res.cpus, a.res.mem), (1, 1024));
        assert_eq!(a.args.networking, "docker-for-mac");
        assert_eq!(
            a.args.fw,
            Path::new("/Applications/Docker.app/Contents/Resources/uefi/UEFI.fd")
        );
        assert!(Cli::try_parse_from(["hyperkit", "--data", "x", "--data-file", "f", "lk"]).is_err());
        assert!(Cli::try_parse_from(["hyperkit", "--iso", "--kernel", "lk"]).is_err());
        assert!(Cli::try_parse_from(["hyperkit"]).is_err(), "PREFIX is required");
    }

    #[test]
    fn defaults_map_to_linuxkits_request() {
        let (backend, request) = setup_for(&parse(&["out/lk"]), true).unwrap();
        let mut expected = Request::new("lk", "out/lk");
        expected.networking = Some("docker-for-mac".into());
        expected.firmware = Some(hyperkit::DEFAULT_FIRMWARE.into());
        assert_eq!(request, expected);
        assert_eq!(backend.binary, None);
        assert_eq!(backend.vpnkit, None);
        assert_eq!(backend.preferred_ipv4, None);
        assert!(backend.vsock_ports.is_empty());
        assert_eq!((&backend.uuid, &backend.vpnkit_uuid), (&None, &None));
        assert_eq!(backend.console, ForegroundConsole::Stdio);
        assert_eq!(backend.root().base(), Path::new("/nonexistent/root"));
    }

    #[test]
    fn every_flag_maps_to_the_request_or_the_backend() {
        let cli = parse(&[
            "--cpus",
            "2",
            "--mem",
            "2048",
            "--disk",
            "size=1G",
            "--disk",
            "file=x.raw",
            "--hyperkit",
            "/opt/hyperkit",
            "--data",
            "{}",
            "--ip",
            "192.168.65.10",
            "--state",
            "/s",
            "--vsock-ports",
            "2374,2375",
            "--networking",
            "vpnkit",
            "--vpnkit-uuid",
            "0123abcd-89ab-cdef-0123-456789abcdef",
            "--vpnkit",
            "/opt/vpnkit",
            "--publish",
            "2222:22",
            "--uuid",
            "11111111-2222-4333-8444-555555555555",
            "--uefi",
            "--fw",
            "/fw.fd",
            "--iso",
            "out/lk-efi",
        ]);
        let (backend, request) = setup_for(&cli, false).unwrap();
        assert_eq!(request.name, "lk-efi");
        assert_eq!(request.image, Path::new("out/lk-efi.iso"));
        assert_eq!(request.boot, BootKind::Iso);
        assert_eq!((request.cpus, request.memory_mib), (2, 2048));
        let disks: Vec<DiskSpec> = ["size=1G", "file=x.raw"].map(|d| d.parse().unwrap()).into();
        assert_eq!(request.disks, disks);
        assert_eq!(request.userdata.as_deref(), Some(&b"{}"[..]));
        assert_eq!(request.publish, ["2222:22".parse::<PublishedPort>().unwrap()]);
        assert_eq!(request.networking.as_deref(), Some("vpnkit"));
        assert!(request.uefi);
        assert_eq!(request.firmware.as_deref(), Some(Path::new("/fw.fd")));
        assert_eq!(request.state_dir.as_deref(), Some(Path::new("/s")));
        assert_eq!(backend.binary.as_deref(), Some(Path::new("/opt/hyperkit")));
        assert_eq!(backend.vpnkit.as_deref(), Some(Path::new("/opt/vpnkit")));
        assert_eq!(backend.preferred_ipv4, Some(Ipv4Addr::new(192, 168, 65, 10)));
        assert_eq!(backend.vsock_ports, [2374, 2375]);
        assert_eq!(
            backend.vpnkit_uuid.as_deref(),
            Some("0123abcd-89ab-cdef-0123-456789abcdef")
        );
        assert_eq!(backend.uuid.as_deref(), Some("11111111-2222-4333-8444-555555555555"));
        assert_eq!(backend.console, ForegroundConsole::Relay, "stdout is not a terminal");
        let (backend, _) = setup_for(&parse(&["--console-file", "lk"]), true).unwrap();
        assert_eq!(backend.console, ForegroundConsole::File);
        let (_, request) = setup_for(&parse(&["--squashfs", "lk.iso"]), true).unwrap();
        assert_eq!((request.boot, request.name.as_str()), (BootKind::Squashfs, "lk"));
    }

    #[test]
    fn bad_values_name_their_flag() {
        let e = setup_for(&parse(&["--vsock-ports", "2374,x", "lk"]), true).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "check --vsock-ports: invalid vsock port list \"2374,x\": use comma separated port numbers, e.g. 2374,2375"
        );
        let e = setup_for(&parse(&["--data-file", "/nonexistent/data", "lk"]), true).unwrap_err();
        assert!(
            format!("{e:#}").starts_with("cannot read userdata from /nonexistent/data: "),
            "{e:#}"
        );
    }

    /// The error of starting `cli` through the backend, with its flags.
    fn start_error(cli: &Cli, root: &Path) -> String {
        let (backend, request) = setup(&cli.args, 1, 1024, &[], StateRoot::new(root), true).unwrap();
        let e = runtime().unwrap().block_on(backend.start(&request)).unwrap_err();
        with_flags(e).to_string()
    }

    #[test]
    fn backend_errors_get_their_flags() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("lk.iso"), "iso").unwrap();
        std::fs::write(dir.path().join("lk-kernel"), "k").unwrap();
        let binary = dir.path().join("hyperkit");
        std::fs::write(&binary, "").unwrap();
        let root = dir.path().join("root");
        let prefix = dir.path().join("lk");
        let hk = binary.to_str().unwrap();
        let p = prefix.to_str().unwrap();
        let e = start_error(&parse(&["--hyperkit", hk, "--networking", "none", "--iso", p]), &root);
        assert!(
            e.starts_with("hyperkit boots an ISO (") && e.ends_with("; an ISO needs --iso --uefi (and --fw PATH)"),
            "{e}"
        );
        let cli = parse(&["--hyperkit", hk, "--networking", "none", "--kernel", "--uuid", "x", p]);
        let e = start_error(&cli, &root);
        assert!(
            e.starts_with("invalid UUID \"x\" given for the VM") && e.ends_with("; check --uuid"),
            "{e}"
        );
        let missing = dir.path().join("none/hyperkit");
        let e = start_error(&parse(&["--hyperkit", missing.to_str().unwrap(), p]), &root);
        assert_eq!(
            e,
            format!(
                "hyperkit binary {} does not exist: check its path; check --hyperkit",
                missing.display()
            )
        );
        // Errors without a flag to fix them are passed on as they are.
        let e = VmError::Hyperkit(HyperkitError::BadVsockPorts("x".into()));
        assert_eq!(
            with_flags(e).to_string(),
            "invalid vsock port list \"x\": use comma separated port numbers, e.g. 2374,2375"
        );
    }
}
