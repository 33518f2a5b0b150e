//! Command-line definitions (flags only; the commands live in their own files).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Build minimal, immutable Linux images from LinuxKit YAML specs.
#[derive(Debug, Parser)]
#[command(name = "moby", version, about)]
pub struct Cli {
    /// More output (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands. (Parsed once per process: the size of a variant does not matter.)
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Build an image from one or more YAML files (merged in order).
    Build(BuildArgs),
    /// Inspect and manage the local image cache.
    Cache(CacheArgs),
    /// Build, name and push packages (folders with a build.yml), without a container engine.
    Pkg(PkgArgs),
    /// Boot an image in a VM (qemu by default on Linux).
    Run(RunArgs),
    /// List VMs started by `moby run`.
    Ps(PsArgs),
    /// Stop a VM: ACPI power button, then quit after a timeout.
    Stop(StopArgs),
    /// Attach to a running VM's serial console (Ctrl-] detaches).
    Console(ConsoleArgs),
    /// Remove VMs (stopping those that run) with their state and the disks made for them.
    Rm(RmArgs),
    /// Serve InfraKit's Instance SPI: build images on demand and run them as VMs.
    Plugin(PluginArgs),
    /// Push an image to a cloud (GCP: upload and create a Compute Engine image).
    Push(PushArgs),
    /// Run a cluster of VMs from one file: groups that converge and heal (docs/cluster.md).
    Cluster(ClusterArgs),
    /// Print the version.
    Version,
}

/// `moby build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Output format(s), repeat or comma-separate: tar, kernel+initrd, tar-kernel-initrd, docker,
    /// iso-bios, iso-efi, iso-efi-initrd, raw-bios, raw-efi, aws, gcp, qcow2-bios, qcow2-efi, vhd,
    /// dynamic-vhd, vmdk, kernel+iso, kernel+squashfs (docs/formats.md).
    #[arg(short, long = "format", value_delimiter = ',')]
    pub format: Vec<String>,
    /// Base name of the output files (default: the last YAML file's name without extension).
    #[arg(long)]
    pub name: Option<String>,
    /// Directory for the output files (default: the current directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Single output file, or '-' for stdout (streamable formats only: tar, docker).
    #[arg(short = 'o', long = "o", visible_alias = "output")]
    pub output: Option<String>,
    /// Image cache directory.
    #[arg(long, env = "MOBY_CACHE")]
    pub cache: Option<PathBuf>,
    /// Always look in the registry first, even for images in the cache.
    #[arg(long)]
    pub pull: bool,
    /// Use a mirror for a registry, e.g. docker.io=http://127.0.0.1:5000 (repeatable).
    #[arg(long = "mirror", value_name = "REGISTRY=URL")]
    pub mirrors: Vec<String>,
    /// Target architecture (amd64, arm64, ...; default: this machine's).
    #[arg(long)]
    pub arch: Option<String>,
    /// gzip level of the initrd, 1 (fastest, the default) to 9 (smallest).
    #[arg(long, value_name = "LEVEL", value_parser = clap::value_parser!(u32).range(1..=9))]
    pub compression_level: Option<u32>,
    /// Disk size of the disk formats (LinuxKit's default 1024M applies to aws and qcow2-bios; the
    /// others keep their own size unless this is given): MiB, or with a unit: 512M, 2G.
    #[arg(long, value_name = "SIZE")]
    pub size: Option<String>,
    /// Print the merged YAML (with @pkg references resolved) and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Accepted for LinuxKit compatibility: moby never adds an SBOM.
    #[arg(long, hide = true)]
    pub no_sbom: bool,
    /// Docker config.json with registry credentials (default: $DOCKER_CONFIG or ~/.docker).
    #[arg(long)]
    pub docker_config: Option<PathBuf>,
    /// YAML files ('-' for stdin).
    #[arg(required = true, value_name = "FILE.yml")]
    pub files: Vec<String>,
}

/// `moby cache`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Image cache directory.
    #[arg(long, env = "MOBY_CACHE", global = true)]
    pub cache: Option<PathBuf>,
    #[command(subcommand)]
    pub command: CacheCommand,
}

/// The cache subcommands.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List the images in the cache.
    Ls,
    /// Remove images from the cache by name.
    Rm {
        /// Image references as listed by `moby cache ls`.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove everything from the cache.
    Clean,
    /// Import images from an OCI-layout tar (as written by `moby cache export`).
    Import {
        /// Tar file, or '-' for stdin.
        file: String,
    },
    /// Export an image as an OCI-layout tar.
    Export {
        /// Image reference.
        image: String,
        /// Output file, or '-' for stdout.
        #[arg(short = 'o', long = "o", visible_alias = "output", default_value = "-")]
        output: String,
    },
}

/// `moby pkg`.
#[derive(Debug, Args)]
pub struct PkgArgs {
    /// Image cache directory.
    #[arg(long, env = "MOBY_CACHE", global = true)]
    pub cache: Option<PathBuf>,
    /// Where downloaded Debian packages are kept (default ~/.moby/debs).
    #[arg(long, env = "MOBY_DEB_CACHE", global = true)]
    pub deb_cache: Option<PathBuf>,
    #[command(subcommand)]
    pub command: PkgCommand,
}

/// The pkg subcommands.
#[derive(Debug, Subcommand)]
pub enum PkgCommand {
    /// Build packages into the image cache (skipped when the cache has the tag already).
    Build {
        /// Build even when the cache has the image.
        #[arg(long)]
        force: bool,
        /// Package folders.
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
    },
    /// Pin what apt offers now for the packages' debs: steps: write DIR/debs.lock (docs/pkg.md).
    Lock {
        /// Package folders.
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
    },
    /// Print each package's ORG/IMAGE:TAG.
    ShowTag {
        /// Package folders.
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
    },
    /// Build packages if needed and push them to a registry.
    Push {
        /// Build even when the cache has the image.
        #[arg(long)]
        force: bool,
        /// Push to this registry (HOST[:PORT]) instead of the one the image name says.
        #[arg(long)]
        registry: Option<String>,
        /// Docker config.json with registry credentials (default: $DOCKER_CONFIG or ~/.docker).
        #[arg(long)]
        docker_config: Option<PathBuf>,
        /// Package folders.
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
    },
}

/// `moby run`: `moby run [BACKEND] [FLAGS] IMAGE`; without a backend, qemu.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Resources every backend takes (also accepted before the backend name, as LinuxKit does).
    #[command(flatten)]
    pub resources: VmResources,
    /// The backend.
    #[command(subcommand)]
    pub backend: Option<RunBackend>,
    /// qemu flags, when no backend is named.
    #[command(flatten)]
    pub qemu: QemuArgs,
}

/// `--cpus`, `--mem`, `--disk`: LinuxKit's flags common to all `run` backends.
#[derive(Debug, Args, Clone)]
pub struct VmResources {
    /// Number of vCPUs.
    #[arg(long, global = true, default_value_t = 1, value_parser = at_least_one::<u32>)]
    pub cpus: u32,
    /// Memory in MiB.
    #[arg(long, global = true, default_value_t = 1024, value_parser = at_least_one::<u64>)]
    pub mem: u64,
    /// Disk: [file=]PATH[,size=1G][,format=qcow2|raw|vhd|vmdk] (repeatable); a missing file with a
    /// size is created.
    #[arg(long = "disk", global = true, value_name = "DISK", value_parser = valid_disk)]
    pub disks: Vec<String>,
}

/// The `moby run` backends.
#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)]
pub enum RunBackend {
    /// qemu (KVM when it works here, else TCG), driven over QMP.
    Qemu(QemuArgs),
    /// hyperkit (macOS), with vpnkit networking.
    Hyperkit(crate::run_hyperkit::HyperkitArgs),
    /// VMware Workstation/Fusion through vmrun (ISO or VMDK images).
    Vmware(crate::run_vmware::VmwareArgs),
    /// Google Compute Engine: start an instance of a pushed image, stream its serial console,
    /// delete it when this ends.
    Gcp(crate::gcp_cmd::RunGcpArgs),
}

/// `moby push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The cloud.
    #[command(subcommand)]
    pub target: PushTarget,
}

/// Where `moby push` pushes to.
#[derive(Debug, Subcommand)]
pub enum PushTarget {
    /// Google Cloud: upload NAME.img.tar.gz to Cloud Storage and create a Compute Engine image.
    Gcp(crate::gcp_cmd::PushGcpArgs),
}

/// `moby run qemu`.
#[derive(Debug, Args, Clone, PartialEq, Eq)]
pub struct QemuArgs {
    /// Instance name for `moby ps/stop/console` (default: the image's file name).
    #[arg(long)]
    pub name: Option<String>,
    /// Directory for the VM's state (default: ~/.moby/run/NAME, or $MOBY_STATE_HOME/NAME).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Userdata for the guest (on a `cidata` CD: user-data, meta-data, config).
    #[arg(long, conflicts_with = "data_file")]
    pub data: Option<String>,
    /// File whose contents are the userdata.
    #[arg(long)]
    pub data_file: Option<PathBuf>,
    /// Networking: user (default), tap,IFNAME, bridge,BRIDGE or none.
    #[arg(long, default_value = "user")]
    pub networking: String,
    /// Forward a host port to the guest: HOST:GUEST[/tcp|/udp] (repeatable; user networking).
    #[arg(long = "publish", short = 'p', value_name = "HOST:GUEST[/PROTO]")]
    pub publish: Vec<String>,
    /// Join a private network shared with the other VMs that join it, on a second NIC (made on
    /// first use, gone with its last member; DHCP and DNS by instance name). Options: subnet=CIDR
    /// (for a new network), ip=ADDRESS (a static address).
    #[arg(long, value_name = "NAME[,subnet=CIDR][,ip=ADDRESS]")]
    pub network: Option<String>,
    /// Accelerator: kvm, tcg or hvf (default: KVM if a probe boot works, else TCG; also $MOBY_QEMU_ACCEL).
    #[arg(long)]
    pub accel: Option<String>,
    /// Guest architecture: x86_64 or aarch64 (default: this machine's).
    #[arg(long)]
    pub arch: Option<String>,
    /// The qemu binary (default: qemu-system-ARCH from $PATH).
    #[arg(long)]
    pub qemu: Option<PathBuf>,
    /// Boot with UEFI firmware (OVMF); implied for the EFI outputs (NAME-efi.iso, NAME-efi.img, ...).
    #[arg(long)]
    pub uefi: bool,
    /// UEFI firmware file (default: OVMF from the usual places).
    #[arg(long)]
    pub fw: Option<PathBuf>,
    /// The image is PREFIX-kernel + PREFIX-initrd.img + PREFIX-cmdline.
    #[arg(long, conflicts_with_all = ["iso", "squashfs"])]
    pub kernel: bool,
    /// The image is an ISO.
    #[arg(long, conflicts_with = "squashfs")]
    pub iso: bool,
    /// The image is PREFIX-kernel + PREFIX-squashfs.img + PREFIX-cmdline.
    #[arg(long)]
    pub squashfs: bool,
    /// Show a graphical display instead of the serial console on the terminal.
    #[arg(long)]
    pub gui: bool,
    /// Extra qemu -device values (repeatable).
    #[arg(long = "device")]
    pub devices: Vec<String>,
    /// Run in the background; see `moby ps`, `moby console NAME`, `moby stop NAME`.
    #[arg(short = 'd', long = "detached", visible_alias = "detach")]
    pub detached: bool,
    /// Label the instance: KEY=VALUE (repeatable; `moby ps --filter KEY=VALUE` selects by it).
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = tag)]
    pub tags: Vec<(String, String)>,
    /// Seconds the guest gets to power off after Ctrl-C before qemu is told to quit.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub stop_timeout: u64,
    /// What to boot: PREFIX (PREFIX-kernel...), an ISO, or a disk image.
    #[arg(value_name = "IMAGE")]
    pub image: Option<PathBuf>,
}

impl Default for QemuArgs {
    /// The values of a `moby run` without qemu flags.
    fn default() -> Self {
        #[derive(Parser)]
        struct Defaults {
            #[command(flatten)]
            qemu: QemuArgs,
        }
        Defaults::parse_from(["moby"]).qemu
    }
}

impl QemuArgs {
    /// Whether no qemu flag was given (all defaults, no image).
    pub fn is_default(&self) -> bool {
        *self == QemuArgs::default()
    }
}

/// A count that zero would make meaningless (`--cpus`, `--mem`).
fn at_least_one<T: std::str::FromStr + PartialOrd + From<u8>>(text: &str) -> Result<T, String> {
    match text.parse::<T>() {
        Ok(n) if n >= T::from(1) => Ok(n),
        _ => Err("expected a whole number, at least 1".into()),
    }
}

/// A `KEY=VALUE` label.
pub fn tag(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err("expected KEY=VALUE".into()),
    }
}

/// A `--disk` value, checked when the flags are read (each backend parses it again).
fn valid_disk(text: &str) -> Result<String, vmm::machine::DiskSpecError> {
    text.parse::<vmm::machine::DiskSpec>()?;
    Ok(text.to_string())
}

/// `moby ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Also list VMs that are not running.
    #[arg(short, long)]
    pub all: bool,
    /// Only instances labelled KEY=VALUE (repeatable: all must match).
    #[arg(long = "filter", value_name = "KEY=VALUE", value_parser = tag)]
    pub filter: Vec<(String, String)>,
}

/// `moby plugin`.
#[derive(Debug, Args)]
pub struct PluginArgs {
    /// The plugin's name: its socket in InfraKit's plugin directory.
    #[arg(long, default_value = plugin::DEFAULT_NAME)]
    pub name: String,
    /// Where instance records, built images and VM state are kept (default: $INFRAKIT_HOME/moby,
    /// else ~/.infrakit/moby).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The image cache (default: ~/.moby/cache, as `moby build`).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Seconds a destroyed instance's guest gets to power off before it is stopped by force.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub stop_timeout: u64,
    /// Destroy every instance when the plugin exits (by default they keep running: they are the
    /// cluster).
    #[arg(long)]
    pub destroy_on_exit: bool,
}

/// `moby cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub command: ClusterCommand,
}

/// The cluster subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Build the specs and converge the cluster to its file (with --watch, keep it converged).
    Up(ClusterUpArgs),
    /// List the cluster's instances: group, state, address, whether they run their group's spec
    /// (exits 1 when the cluster is not converged).
    Status(ClusterStatusArgs),
    /// Destroy every instance of the cluster and remove its state.
    Down(ClusterDownArgs),
}

/// The cluster file and where clusters keep their state.
#[derive(Debug, Args)]
pub struct ClusterPlace {
    /// Where clusters keep their records and built images, one directory each (default:
    /// `clusters` under the VM state root: $MOBY_STATE_HOME, else ~/.moby/run).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The cluster file (docs/cluster.md).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// `moby cluster up`.
#[derive(Debug, Args)]
pub struct ClusterUpArgs {
    #[command(flatten)]
    pub place: ClusterPlace,
    /// Image cache directory.
    #[arg(long, env = "MOBY_CACHE")]
    pub cache: Option<PathBuf>,
    /// Keep converging until SIGINT or SIGTERM (replace dead instances, roll out changed specs);
    /// the VMs keep running afterwards.
    #[arg(long)]
    pub watch: bool,
    /// Seconds between looks at the cluster with --watch.
    #[arg(long, default_value_t = 5, value_name = "SECONDS", requires = "watch", value_parser = at_least_one::<u64>)]
    pub interval: u64,
    /// Seconds the instances started in one step get to come up (running, with their DHCP lease
    /// when on a network).
    #[arg(long, default_value_t = 300, value_name = "SECONDS", value_parser = at_least_one::<u64>)]
    pub timeout: u64,
    /// Seconds a destroyed instance's guest gets to power off before it is stopped by force.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub stop_timeout: u64,
}

/// `moby cluster status`.
#[derive(Debug, Args)]
pub struct ClusterStatusArgs {
    #[command(flatten)]
    pub place: ClusterPlace,
    /// Image cache directory (specs are resolved to tell whether instances are up to date).
    #[arg(long, env = "MOBY_CACHE")]
    pub cache: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `moby cluster down`.
#[derive(Debug, Args)]
pub struct ClusterDownArgs {
    #[command(flatten)]
    pub place: ClusterPlace,
    /// Seconds each guest gets to power off before it is stopped by force.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub stop_timeout: u64,
}

/// `moby rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Seconds a running guest gets to power off before it is stopped by force.
    #[arg(short, long, default_value_t = 30, value_name = "SECONDS")]
    pub timeout: u64,
    /// Instance names.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `moby stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds the guest gets to power off before qemu is told to quit.
    #[arg(short, long, default_value_t = 30, value_name = "SECONDS")]
    pub timeout: u64,
    /// Instance names.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `moby console`.
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// Do not print what the console showed before attaching.
    #[arg(long)]
    pub no_replay: bool,
    /// Instance name.
    pub name: String,
}

/// Long flags that LinuxKit users write with a single dash (`-format tar`).
const SINGLE_DASH_FLAGS: [&str; 60] = [
    "keys",
    "project",
    "zone",
    "bucket",
    "family",
    "img-name",
    "machine",
    "disk-size",
    "skip-cleanup",
    "nested-virt",
    "uefi-compatible",
    "replace",
    "preemptible",
    "network",
    "tag",
    "format",
    "size",
    "name",
    "dir",
    "o",
    "output",
    "cache",
    "pull",
    "mirror",
    "arch",
    "dry-run",
    "no-sbom",
    "docker-config",
    "compression-level",
    "verbose",
    "quiet",
    "cpus",
    "mem",
    "disk",
    "state",
    "data",
    "data-file",
    "networking",
    "publish",
    "accel",
    "qemu",
    "uefi",
    "fw",
    "kernel",
    "iso",
    "squashfs",
    "gui",
    "device",
    "detached",
    "detach",
    "stop-timeout",
    "vmrun",
    "product",
    "hyperkit",
    "vpnkit",
    "vpnkit-uuid",
    "uuid",
    "vsock-ports",
    "console-file",
    "ip",
];

/// Rewrites `-format`/`-format=x` style flags to `--format`, as LinuxKit's Go flag parsing accepted
/// them; everything after `--` is left alone.
pub fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut rest_is_positional = false;
    for arg in args {
        if rest_is_positional {
            out.push(arg);
            continue;
        }
        let text = arg.to_string_lossy();
        if text == "--" {
            rest_is_positional = true;
        } else if let Some(flag) = text.strip_prefix('-').filter(|f| !f.starts_with('-')) {
            let name = flag.split('=').next().unwrap_or(flag);
            if name.len() > 1 && SINGLE_DASH_FLAGS.contains(&name) {
                out.push(OsString::from(format!("-{text}")));
                continue;
            }
        }
        out.push(arg);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(args: &[&str]) -> Vec<String> {
        normalize_args(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn single_dash_long_flags_are_accepted() {
        assert_eq!(
            normalized(&["moby", "build", "-format", "tar", "-o=x.tar", "-v", "-", "--", "-name"]),
            ["moby", "build", "--format", "tar", "-o=x.tar", "-v", "-", "--", "-name"]
        );
        assert_eq!(
            normalized(&["moby", "-name=x", "-dry-run"]),
            ["moby", "--name=x", "--dry-run"]
        );
    }

    #[test]
    fn run_flags_parse_before_and_after_the_backend() {
        let parse = |args: &[&str]| Cli::try_parse_from(normalize_args(args.iter().map(OsString::from))).unwrap();
        let Command::Run(run) =
            parse(&["moby", "run", "-mem", "2048", "qemu", "-publish", "8080:80", "out/web"]).command
        else {
            panic!("not a run")
        };
        assert_eq!(run.resources.mem, 2048);
        let Some(RunBackend::Qemu(q)) = run.backend else {
            panic!("not qemu")
        };
        assert_eq!(q.publish, ["8080:80"]);
        assert_eq!(q.image.as_deref(), Some(std::path::Path::new("out/web")));

        let Command::Run(run) = parse(&["moby", "run", "--cpus", "2", "-d", "out/web"]).command else {
            panic!("not a run")
        };
        assert!(run.backend.is_none() && run.qemu.detached);
        assert_eq!(run.resources.cpus, 2);
        let Command::Run(run) = parse(&["moby", "run", "hyperkit", "--mem", "512", "-vpnkit-uuid", "x", "lk"]).command
        else {
            panic!("not a run")
        };
        assert_eq!(run.resources.mem, 512);
        assert!(matches!(run.backend, Some(RunBackend::Hyperkit(_))));
        assert!(run.qemu.is_default());

        // qemu flags before the backend name are noticed (run_cmd refuses them).
        let Command::Run(run) = parse(&["moby", "run", "--publish", "1:2", "qemu", "x"]).command else {
            panic!("not a run")
        };
        assert!(!run.qemu.is_default());
    }

    #[test]
    fn cpus_and_mem_must_be_positive() {
        for flag in ["--cpus", "--mem"] {
            for value in ["0", "-1", "x"] {
                let arg = format!("{flag}={value}");
                let e = Cli::try_parse_from(["moby", "run", &arg, "img"])
                    .unwrap_err()
                    .to_string();
                assert!(e.contains(flag) && e.contains("at least 1"), "{flag} {value}: {e}");
            }
            assert!(Cli::try_parse_from(["moby", "run", flag, "1", "img"]).is_ok());
        }
    }

    #[test]
    fn disks_are_checked_with_the_flags_for_every_backend() {
        for backend in [&["qemu"][..], &["hyperkit"], &["vmware"], &[]] {
            let args = [&["moby", "run"][..], backend, &["--disk", "/a,b.img,size=10M", "img"]].concat();
            let e = Cli::try_parse_from(args).unwrap_err().to_string();
            assert!(e.contains("--disk") && e.contains("\"b.img\""), "{backend:?}: {e}");
        }
    }

    #[test]
    fn build_flags_parse() {
        let cli = Cli::try_parse_from(normalize_args(
            [
                "moby",
                "build",
                "-format",
                "tar,kernel+initrd",
                "-format",
                "docker",
                "--mirror",
                "docker.io=http://x",
                "a.yml",
                "b.yml",
            ]
            .map(OsString::from),
        ))
        .unwrap();
        let Command::Build(args) = cli.command else {
            panic!("not a build")
        };
        assert_eq!(args.format, ["tar", "kernel+initrd", "docker"]);
        assert_eq!(args.mirrors, ["docker.io=http://x"]);
        assert_eq!(args.files, ["a.yml", "b.yml"]);
    }
}
