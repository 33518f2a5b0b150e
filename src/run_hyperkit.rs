//! `moby run hyperkit`: LinuxKit's hyperkit runner (macOS), on top of [`vmm::hyperkit`].
//!
//! The state dir is LinuxKit's `PREFIX-state` unless `--state` says otherwise. Boot: PREFIX-kernel
//! with PREFIX-initrd.img (default) or PREFIX-squashfs.img (`--squashfs`, also detected), or an ISO
//! with `--iso --uefi`.

use std::io::IsTerminal;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use vmm::hyperkit::vpnkit::find_vpnkit;
use vmm::hyperkit::{
    self, check_publish, find_hyperkit, new_uuid, parse_uuid, parse_vsock_ports, plan_network, resolve_raw_disks, Boot,
    Console, HyperkitConfig, HyperkitNetworking, HyperkitState, RunOutcome, RunPlan, VpnkitLaunch, VpnkitNic,
};
use vmm::machine::{detect, BootKind, DiskSpec, PublishedPort};

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
    let binary = find_hyperkit(args.hyperkit.as_deref())?;
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let stdout_is_terminal = std::io::stdout().is_terminal();
    let plan = plan(args, cpus, mem, disks, binary, home.as_deref(), stdout_is_terminal)?;
    match hyperkit::run(&plan)? {
        RunOutcome::Exited(status) if status.success() => Ok(()),
        RunOutcome::Exited(status) => bail!("hyperkit exited with {status}"),
        RunOutcome::Detached { pid } => {
            let state = plan.state.dir().display();
            crate::print_text(format!(
                "VM {} runs in the background (hyperkit pid {pid}); console: {state}/tty, log: {state}/console-ring\n",
                plan.state.name()
            ))
        }
    }
}

/// What to boot, following LinuxKit's flags (an ISO gets `.iso` appended when missing).
fn boot(args: &HyperkitArgs) -> Result<(Boot, PathBuf)> {
    let path = &args.prefix;
    let detected = if args.iso {
        let mut iso = path.clone().into_os_string();
        if !path.to_string_lossy().ends_with(".iso") {
            iso.push(".iso");
        }
        detect(Path::new(&iso), BootKind::Iso, None)?
    } else if args.squashfs {
        detect(path, BootKind::Squashfs, None)?
    } else if args.kernel {
        detect(path, BootKind::Kernel, None)?
    } else {
        detect(path, BootKind::Detect, None)?
    };
    let firmware = args.uefi.then_some(args.fw.as_path());
    let boot = Boot::from_media(&detected.media, firmware)?;
    Ok((boot, detected.prefix))
}

/// Everything `hyperkit::run` needs, decided from the flags (pure but for reading `--data-file`,
/// creating `vpnkit.uuid`, and finding vpnkit).
fn plan(
    args: &HyperkitArgs,
    cpus: u32,
    mem: u64,
    disks: &[String],
    binary: PathBuf,
    home: Option<&Path>,
    stdout_is_terminal: bool,
) -> Result<RunPlan> {
    let (boot, prefix) = boot(args)?;
    let state_dir = match &args.state {
        Some(dir) => dir.clone(),
        None => {
            let mut dir = prefix.clone().into_os_string();
            dir.push("-state");
            PathBuf::from(dir)
        }
    };
    let name = prefix
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "moby".into());
    let state = HyperkitState::new(&state_dir, name);

    let networking: HyperkitNetworking = args.networking.parse()?;
    let net = plan_network(&networking, &state_dir, home)?;
    let publish = args
        .publish
        .iter()
        .map(|p| p.parse::<PublishedPort>())
        .collect::<Result<Vec<_>, _>>()?;
    check_publish(&networking, &net, &publish)?;

    let specs = disks
        .iter()
        .map(|d| d.parse::<DiskSpec>())
        .collect::<Result<Vec<_>, _>>()?;
    let disks = resolve_raw_disks(&specs, &state_dir)?;
    let mut vsock_ports = parse_vsock_ports(&args.vsock_ports)?;
    vsock_ports.extend(&net.vsock_ports);

    let vpnkit_uuid = match &net.vpnkit_socket {
        Some(_) => Some(state.vpnkit_uuid(args.vpnkit_uuid.as_deref())?),
        None => None,
    };
    let uuid = match &args.uuid {
        Some(text) => parse_uuid(text).ok_or_else(|| hyperkit::HyperkitError::BadUuid {
            value: text.clone(),
            source_desc: "given with --uuid".into(),
        })?,
        None => new_uuid().context("cannot make a UUID for the VM from /dev/urandom")?,
    };
    let userdata = match (&args.data, &args.data_file) {
        (Some(data), _) => Some(data.clone().into_bytes()),
        (None, Some(file)) => {
            Some(std::fs::read(file).with_context(|| format!("cannot read userdata from {}", file.display()))?)
        }
        (None, None) => None,
    };
    let (console, copy_tty_to_stdout) = if args.console_file || args.detach {
        (Console::Tty, false)
    } else if stdout_is_terminal {
        (Console::Stdio, false)
    } else {
        (Console::Tty, true)
    };

    let mut config = HyperkitConfig::new(binary, state_dir.clone(), boot);
    config.cpus = cpus;
    config.memory_mib = mem;
    config.uuid = Some(uuid);
    config.vpnkit = net.vpnkit_socket.clone().map(|socket| VpnkitNic {
        socket,
        uuid: vpnkit_uuid.clone(),
        preferred_ipv4: args.ip,
    });
    config.vmnet = net.vmnet;
    config.disks = disks;
    if userdata.is_some() {
        config.cdroms.push(state.userdata_iso());
    }
    config.vsock_ports = vsock_ports;
    config.sockets_9p = net.sockets_9p.clone();
    config.console = console;

    let vpnkit_launch = match (net.launch_vpnkit, &net.vpnkit_socket, &net.port_socket) {
        (true, Some(ethernet), Some(port)) => Some(VpnkitLaunch {
            binary: find_vpnkit(args.vpnkit.as_deref(), std::env::var_os("PATH").as_deref())?,
            ethernet: ethernet.clone(),
            port: port.clone(),
            vsock: state_dir.join("connect"),
        }),
        _ => None,
    };
    let publish_via = match (&net.vpnkit_socket, &net.port_socket, vpnkit_uuid) {
        (Some(eth), Some(port), Some(uuid)) => Some((eth.clone(), port.clone(), uuid)),
        _ => None,
    };
    Ok(RunPlan {
        config,
        state,
        userdata,
        vpnkit_launch,
        publish_via,
        preferred_ipv4: args.ip,
        publish,
        copy_tty_to_stdout,
        detach: args.detach,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

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

    fn image(dir: &Path) -> PathBuf {
        for (name, content) in [
            ("lk-kernel", "k"),
            ("lk-initrd.img", "i"),
            ("lk-cmdline", "console=ttyS0\n"),
        ] {
            std::fs::write(dir.join(name), content).unwrap();
        }
        dir.join("lk")
    }

    fn plan_for(cli: &Cli, home: Option<&Path>, terminal: bool) -> Result<RunPlan> {
        plan(
            &cli.args,
            cli.res.cpus,
            cli.res.mem,
            &cli.res.disks,
            "/usr/local/bin/hyperkit".into(),
            home,
            terminal,
        )
    }

    fn strs(plan: &RunPlan) -> Vec<String> {
        plan.config
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
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
        let a = parse(&[
            "--cpus",
            "2",
            "--mem",
            "2048",
            "--disk",
            "size=1G",
            "--disk",
            "file=x.raw",
            "--publish",
            "2222:22",
            "--vsock-ports",
            "2374",
            "--ip",
            "192.168.65.10",
            "--console-file",
            "lk",
        ]);
        assert_eq!(a.res.disks, ["size=1G", "file=x.raw"]);
        assert_eq!(a.args.ip, Some(Ipv4Addr::new(192, 168, 65, 10)));
        assert!(a.args.console_file);
        assert!(Cli::try_parse_from(["hyperkit", "--data", "x", "--data-file", "f", "lk"]).is_err());
        assert!(Cli::try_parse_from(["hyperkit", "--iso", "--kernel", "lk"]).is_err());
        assert!(Cli::try_parse_from(["hyperkit"]).is_err(), "PREFIX is required");
    }

    #[test]
    fn own_vpnkit_with_publish_userdata_and_disk() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = image(dir.path());
        let p = prefix.to_str().unwrap();
        let a = parse(&[
            "--networking",
            "vpnkit",
            "--vpnkit",
            "/opt/vpnkit",
            "--publish",
            "2222:22",
            "--data",
            "{}",
            "--disk",
            "size=1G",
            "--uuid",
            "11111111-2222-4333-8444-555555555555",
            p,
        ]);
        let plan = plan_for(&a, None, true).unwrap();
        let st = format!("{p}-state");
        let uuid = std::fs::read_to_string(format!("{st}/vpnkit.uuid")).unwrap();
        let expected: Vec<String> = [
            "-A".to_string(),
            "-u".into(),
            "-F".into(),
            format!("{st}/hyperkit.pid"),
            "-c".into(),
            "1".into(),
            "-m".into(),
            "1024M".into(),
            "-s".into(),
            "0:0,hostbridge".into(),
            "-s".into(),
            "31,lpc".into(),
            "-s".into(),
            format!("1:0,virtio-vpnkit,path={st}/vpnkit_eth.sock,uuid={uuid}"),
            "-U".into(),
            "11111111-2222-4333-8444-555555555555".into(),
            "-s".into(),
            format!("2:0,ahci-hd,{st}/disk.raw"),
            "-s".into(),
            format!("3,virtio-sock,guest_cid=3,path={st},guest_forwards=62373"),
            "-s".into(),
            format!("4,ahci-cd,{st}/data.iso"),
            "-s".into(),
            "5,virtio-rnd".into(),
            "-s".into(),
            format!("6,virtio-9p,path={st}/vpnkit_port.sock,tag=port"),
            "-l".into(),
            format!("com1,stdio,log={st}/console-ring"),
            "-f".into(),
            format!("kexec,{p}-kernel,{p}-initrd.img,earlyprintk=serial console=ttyS0"),
        ]
        .to_vec();
        assert_eq!(strs(&plan), expected);
        assert_eq!(
            plan.vpnkit_launch,
            Some(VpnkitLaunch {
                binary: "/opt/vpnkit".into(),
                ethernet: format!("{st}/vpnkit_eth.sock").into(),
                port: format!("{st}/vpnkit_port.sock").into(),
                vsock: format!("{st}/connect").into(),
            })
        );
        assert_eq!(
            plan.publish_via,
            Some((
                format!("{st}/vpnkit_eth.sock").into(),
                format!("{st}/vpnkit_port.sock").into(),
                uuid.clone()
            ))
        );
        assert_eq!(plan.userdata.as_deref(), Some(&b"{}"[..]));
        assert_eq!(plan.state.name(), "lk");
        // The vpnkit UUID is kept for the next run, so the VM keeps its address.
        let again = plan_for(&a, None, true).unwrap();
        assert_eq!(again.publish_via.unwrap().2, uuid);
    }

    #[test]
    fn no_network_console_to_tty_when_stdout_is_not_a_terminal() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = image(dir.path());
        let state = dir.path().join("elsewhere");
        let a = parse(&[
            "--networking",
            "none",
            "--state",
            state.to_str().unwrap(),
            prefix.to_str().unwrap(),
        ]);
        let plan = plan_for(&a, None, false).unwrap();
        assert_eq!(plan.config.console, Console::Tty);
        assert!(plan.copy_tty_to_stdout);
        assert_eq!(plan.config.vpnkit, None);
        assert!(plan.config.vsock_ports.is_empty() && plan.config.cdroms.is_empty());
        assert!(!state.join("vpnkit.uuid").exists(), "no vpnkit, no UUID file");
        let args = strs(&plan);
        assert_eq!(args[12..14], ["-U".to_string(), plan.config.uuid.clone().unwrap()]);
        assert!(args.contains(&format!("com1,autopty={0}/tty,log={0}/console-ring", state.display())));
    }

    #[test]
    fn iso_needs_uefi_and_gets_iso_appended() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("lk-efi.iso"), "iso").unwrap();
        let fw = dir.path().join("UEFI.fd");
        std::fs::write(&fw, "fw").unwrap();
        let prefix = dir.path().join("lk-efi");
        let p = prefix.to_str().unwrap();
        let e = plan_for(&parse(&["--networking", "none", "--iso", p]), None, true).unwrap_err();
        assert!(e.to_string().contains("only through UEFI firmware: add --uefi"), "{e}");
        let a = parse(&[
            "--networking",
            "none",
            "--iso",
            "--uefi",
            "--fw",
            fw.to_str().unwrap(),
            p,
        ]);
        let plan = plan_for(&a, None, true).unwrap();
        let args = strs(&plan);
        assert!(args.contains(&format!("2,ahci-cd,{p}.iso")), "{args:?}");
        assert_eq!(args.last().unwrap(), &format!("bootrom,{},,", fw.display()));
        assert_eq!(plan.state.dir(), Path::new(&format!("{p}-state")));
    }

    #[test]
    fn clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = image(dir.path());
        let p = prefix.to_str().unwrap();
        let e = plan_for(&parse(&["--networking", "none", "--publish", "80:80", p]), None, true).unwrap_err();
        assert_eq!(
            e.to_string(),
            "port publishing requires \"docker-for-mac\" or \"vpnkit\" networking, not \"none\""
        );
        let e = plan_for(&parse(&["--networking", "none", "--disk", "d.qcow2", p]), None, true).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("disk d.qcow2: hyperkit runs raw disk images only, not qcow2"),
            "{e}"
        );
        let home = tempfile::tempdir().unwrap();
        let e = plan_for(&parse(&[p]), Some(home.path()), true).unwrap_err();
        assert!(
            e.to_string().starts_with("cannot find Docker Desktop's vpnkit sockets"),
            "{e}"
        );
        let e = plan_for(&parse(&["--networking", "slirp", p]), None, true).unwrap_err();
        assert!(e.to_string().starts_with("invalid networking mode \"slirp\""), "{e}");
        let e = plan_for(&parse(&["--networking", "none", "--uuid", "x", p]), None, true).unwrap_err();
        assert!(e.to_string().starts_with("invalid UUID \"x\" given with --uuid"), "{e}");
        let e = plan_for(&parse(&["--networking", "none", "--squashfs", p]), None, true).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("lk-squashfs.img not found (needed to boot a kernel+squashfs)"),
            "{e}"
        );
        let e = plan_for(&parse(&["--networking", "none", &format!("{p}-nothing")]), None, true).unwrap_err();
        assert!(e.to_string().starts_with("no "), "{e}");
    }
}
