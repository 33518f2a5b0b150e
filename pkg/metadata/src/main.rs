//! `metadata [-v] [PROVIDER...]`: LinuxKit's metadata program. Providers: `aws`, `gcp`, `openstack`, `qemu` (fw_cfg),
//! `cdrom`, `file=PATH` (LinuxKit's other names are accepted and skipped). Userdata goes to
//! /run/config (`METADATA_CONFIG_PATH` overrides it; `METADATA_GCP_URL`, `METADATA_AWS_URL`,
//! `METADATA_OPENSTACK_URL` the servers asked).

use std::path::PathBuf;
use std::process::ExitCode;

use metadata::providers::ec2::{Ec2, Flavor};
use metadata::providers::gcp::Gcp;
use metadata::run::{run, select, set_hostname, Environment, CONFIG_PATH};
use metadata::{info, log};

const USAGE: &str = "usage: metadata [-v] [PROVIDER...]
providers (tried in this order when none are given: LinuxKit's list, qemu before cdrom):
  aws          Amazon EC2's metadata server (IMDSv2 token when offered, else IMDSv1)
  gcp          Google Compute Engine's metadata server
  openstack    OpenStack's EC2-compatible metadata server
  qemu         QEMU fw_cfg entry opt/com.docker.linuxkit/userdata (needs the qemu_fw_cfg module)
  cdrom        CDs and disks labelled cidata/CIDATA/config-2: user-data or config
  file=PATH    a file
  hetzner scaleway vultr digitalocean equinixmetal metaldata vmware: not implemented, skipped
userdata goes to /run/config/userdata; JSON userdata is expanded into files under /run/config";

fn main() -> ExitCode {
    let mut verbose = false;
    let mut names = Vec::new();
    let mut args = std::env::args().skip(1);
    // Go's flag package: flags first, `-v`, `--v`, `-v=BOOL`; `--` ends them.
    for arg in args.by_ref() {
        match arg.as_str() {
            "-v" | "--v" | "-v=true" | "--v=true" | "-v=1" | "--v=1" => verbose = true,
            "-v=false" | "--v=false" | "-v=0" | "--v=0" => verbose = false,
            "-h" | "--h" | "-help" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--" => break,
            flag if flag.starts_with('-') && flag.len() > 1 => {
                eprintln!("metadata: unknown flag {flag}\n{USAGE}");
                return ExitCode::from(2);
            }
            _ => {
                names.push(arg);
                break;
            }
        }
    }
    names.extend(args);
    log::set_verbose(verbose);

    let mut env = Environment::default();
    if let Ok(url) = std::env::var("METADATA_GCP_URL") {
        env.gcp = Gcp::with_base(&url);
    }
    if let Ok(url) = std::env::var("METADATA_AWS_URL") {
        env.aws = Ec2::with_base(Flavor::Aws, &url);
    }
    if let Ok(url) = std::env::var("METADATA_OPENSTACK_URL") {
        env.openstack = Ec2::with_base(Flavor::OpenStack, &url);
    }
    let config = std::env::var_os("METADATA_CONFIG_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(CONFIG_PATH));

    let providers = match select(&names, &env) {
        Ok(providers) => providers,
        Err(e) => {
            eprintln!("metadata: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(providers, &config) {
        Ok(report) => {
            // Set early, so no other container is needed for it (as LinuxKit).
            if let Some(hostname) = report.hostname {
                set_hostname(&hostname);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            info!("metadata: {e}");
            ExitCode::FAILURE
        }
    }
}
