//! Choosing providers from the command line and running them, as LinuxKit's `main.go`.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::providers::cdrom::{self, Cdrom};
use crate::providers::ec2::{Ec2, Flavor};
use crate::providers::file::File;
use crate::providers::fwcfg::{self, FwCfg};
use crate::providers::gcp::Gcp;
use crate::providers::{Provider, Round};
use crate::userdata::{process_userdata, Expansion};
use crate::write::write_file_atomic;

/// Where the userdata goes.
pub const CONFIG_PATH: &str = "/run/config";

/// LinuxKit's default provider order, with `qemu` (fw_cfg, a moby-rs addition) before `cdrom`.
pub const DEFAULT_PROVIDERS: [&str; 12] = [
    "aws",
    "gcp",
    "hetzner",
    "openstack",
    "scaleway",
    "vultr",
    "digitalocean",
    "equinixmetal",
    "metaldata",
    "vmware",
    "qemu",
    "cdrom",
];

/// LinuxKit providers this implementation does not have (yet): named, they are skipped with a
/// message instead of stopping the program.
pub const NOT_IMPLEMENTED: [&str; 7] = [
    "hetzner",
    "scaleway",
    "vultr",
    "digitalocean",
    "equinixmetal",
    "metaldata",
    "vmware",
];

/// Where providers look; tests point these at fakes.
#[derive(Debug, Clone)]
pub struct Environment {
    /// Device and sysfs paths for `cdrom`.
    pub cdrom: cdrom::Paths,
    /// fw_cfg's sysfs directory for `qemu`.
    pub fw_cfg_root: PathBuf,
    /// The `gcp` provider's settings.
    pub gcp: Gcp,
    /// The `aws` provider's settings.
    pub aws: Ec2,
    /// The `openstack` provider's settings.
    pub openstack: Ec2,
}

impl Default for Environment {
    fn default() -> Self {
        Environment {
            cdrom: cdrom::Paths::default(),
            fw_cfg_root: fwcfg::DEFAULT_ROOT.into(),
            gcp: Gcp::default(),
            aws: Ec2::new(Flavor::Aws),
            openstack: Ec2::new(Flavor::OpenStack),
        }
    }
}

/// A provider and the round it is tried in.
pub struct Selected {
    /// The round.
    pub round: Round,
    /// The provider.
    pub provider: Box<dyn Provider>,
}

/// The providers named on the command line (LinuxKit's default list when none are), in the order
/// they will be tried. An unknown name is an error, as in LinuxKit.
pub fn select(names: &[String], env: &Environment) -> Result<Vec<Selected>, String> {
    let explicit = !names.is_empty();
    let names: Vec<String> = if explicit {
        names.to_vec()
    } else {
        DEFAULT_PROVIDERS.iter().map(|s| s.to_string()).collect()
    };
    let mut selected = Vec::new();
    for name in &names {
        match name.as_str() {
            "aws" => selected.push(Selected {
                round: Round::Network,
                provider: Box::new(env.aws.clone()),
            }),
            "openstack" => selected.push(Selected {
                round: Round::Network,
                provider: Box::new(env.openstack.clone()),
            }),
            "gcp" => selected.push(Selected {
                round: Round::Network,
                provider: Box::new(env.gcp.clone()),
            }),
            "qemu" => selected.push(Selected {
                round: Round::Local,
                provider: Box::new(FwCfg::with_root(&env.fw_cfg_root)),
            }),
            "cdrom" => {
                for device in cdrom::list_devices(&env.cdrom) {
                    selected.push(Selected {
                        round: Round::Local,
                        provider: Box::new(Cdrom::new(device, &env.cdrom.mount_root)),
                    });
                }
            }
            other if other.starts_with("file=") => selected.push(Selected {
                round: Round::File,
                provider: Box::new(File::new(&other["file=".len()..])),
            }),
            other if NOT_IMPLEMENTED.contains(&other) => {
                if explicit {
                    info!("Metadata provider {other} is not implemented by this metadata yet: skipped");
                }
            }
            other => {
                return Err(format!(
                    "Unrecognised metadata provider: {other} (known: aws, gcp, openstack, qemu, cdrom, file=PATH; \
                     not implemented yet: {})",
                    NOT_IMPLEMENTED.join(", ")
                ))
            }
        }
    }
    // Network providers first, then local devices, then files; stable within a round.
    selected.sort_by_key(|s| s.round);
    Ok(selected)
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Report {
    /// The provider whose probe succeeded.
    pub provider: Option<String>,
    /// Whether it had userdata.
    pub userdata: bool,
    /// What the JSON expansion wrote and skipped.
    pub expansion: Expansion,
    /// The hostname found in `CONFIG/hostname`, trimmed.
    pub hostname: Option<String>,
}

/// Tries `providers` in order and writes what the first one that is there has into `config`.
/// Only failing to create `config` is an error: everything else is logged.
pub fn run(providers: Vec<Selected>, config: &Path) -> Result<Report, String> {
    create_config_dir(config).map_err(|e| format!("Could not create {}: {e}", config.display()))?;
    let mut report = Report::default();
    let mut found = None;
    for Selected { round, mut provider } in providers {
        match round {
            Round::Network => {}
            Round::Local => info!("Trying {}", provider.name()),
            Round::File => info!("Trying file {}", provider.name()),
        }
        if provider.probe() {
            info!("{}: Probe succeeded", provider.name());
            found = Some(provider);
            break;
        }
    }
    let Some(mut provider) = found else {
        info!("No metadata/userdata found. Bye");
        return Ok(report);
    };
    let name = provider.name();
    let userdata = provider.extract(config).unwrap_or_else(|e| {
        info!("Error during metadata probe: {e}");
        None
    });
    let provider_file = config.join("provider");
    if let Err(e) = write_file_atomic(&provider_file, name.as_bytes(), 0o644) {
        info!("Error writing metadata provider to {}: {e}", provider_file.display());
    }
    report.provider = Some(name);
    if let Some(userdata) = userdata {
        report.userdata = true;
        match process_userdata(config, &userdata) {
            Ok(expansion) => report.expansion = expansion,
            Err(e) => info!("Could not extract user data: {e}"),
        }
    }
    report.hostname = read_hostname(config);
    Ok(report)
}

/// The hostname a provider or the userdata left in `CONFIG/hostname`, without surrounding
/// whitespace (LinuxKit uses the bytes as they are, so a trailing newline ended up in the name).
fn read_hostname(config: &Path) -> Option<String> {
    let path = config.join("hostname");
    match fs::read(&path) {
        Ok(bytes) => {
            let name = String::from_utf8_lossy(&bytes).trim().to_string();
            if name.is_empty() {
                info!("{} is empty: hostname not set", path.display());
                None
            } else {
                Some(name)
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            info!("Cannot read {}: {e}", path.display());
            None
        }
    }
}

fn create_config_dir(config: &Path) -> io::Result<()> {
    if config.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new().recursive(true).mode(0o755).create(config)?;
    fs::set_permissions(config, fs::Permissions::from_mode(0o755))
}

/// Sets the hostname (the kernel's, in this UTS namespace).
pub fn set_hostname(name: &str) {
    match rustix::system::sethostname(name.as_bytes()) {
        Ok(()) => info!("Set hostname to: {name}"),
        Err(e) => info!("Failed to set hostname to {name:?}: {}", io::Error::from(e)),
    }
}
