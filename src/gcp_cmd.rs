//! `moby push gcp ARCHIVE` and `moby run gcp IMAGE`: LinuxKit's flags (and variables) mapped to
//! the [`Gcp`] backend's settings and a [`Request`]; flag hints are added to its errors here.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use builder::Progress;
use vmm::gcp::{self, CredentialsSource, Endpoints, Gcp, GcpError, Location, Machine, PushOptions, Settings};
use vmm::{Backend, Request, VmError};

use crate::progress::Bars;
use crate::run_cmd::{runtime, userdata};

/// Where and as whom: the flags `push gcp` and `run gcp` share.
#[derive(Debug, Clone, clap::Args)]
pub struct GcpConnection {
    /// Service-account key file (default: $CLOUDSDK_COMPUTE_KEYS, else application default
    /// credentials: $GOOGLE_APPLICATION_CREDENTIALS, gcloud's login, the metadata server).
    #[arg(long)]
    pub keys: Option<PathBuf>,
    /// Project (default: $CLOUDSDK_CORE_PROJECT).
    #[arg(long)]
    pub project: Option<String>,
    /// Compute Engine API endpoint (default: $CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE, else
    /// Google's).
    #[arg(long, value_name = "URL")]
    pub compute_endpoint: Option<String>,
    /// Cloud Storage endpoint (default: $CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE, else
    /// $STORAGE_EMULATOR_HOST, else Google's).
    #[arg(long, value_name = "URL")]
    pub storage_endpoint: Option<String>,
}

impl GcpConnection {
    fn settings(&self, zone: Option<String>) -> Result<Settings> {
        Ok(Settings {
            location: Location::resolve(self.project.clone(), zone).map_err(with_flags)?,
            endpoints: Endpoints::resolve(self.compute_endpoint.clone(), self.storage_endpoint.clone()),
            credentials: CredentialsSource::resolve(self.keys.clone()),
        })
    }
}

/// `moby push gcp`.
#[derive(Debug, Clone, clap::Args)]
pub struct PushGcpArgs {
    #[command(flatten)]
    pub connection: GcpConnection,
    /// Bucket the archive is uploaded to (default: $CLOUDSDK_IMAGE_BUCKET).
    #[arg(long)]
    pub bucket: Option<String>,
    /// Image family (default: $CLOUDSDK_IMAGE_FAMILY).
    #[arg(long)]
    pub family: Option<String>,
    /// Image name (default: $CLOUDSDK_IMAGE_NAME, else the file name without .img.tar.gz).
    #[arg(long = "img-name", visible_alias = "name")]
    pub name: Option<String>,
    /// Let instances of the image run nested VMs (the enable-vmx licence).
    #[arg(long)]
    pub nested_virt: bool,
    /// Mark the image UEFI-compatible (for images built as raw-efi/gcp with UEFI).
    #[arg(long)]
    pub uefi_compatible: bool,
    /// Replace an image of that name (else an existing one is an error).
    #[arg(long)]
    pub replace: bool,
    /// The GCE image archive (`moby build --format gcp` writes NAME.img.tar.gz).
    #[arg(value_name = "NAME.img.tar.gz")]
    pub path: PathBuf,
}

/// `moby run gcp`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunGcpArgs {
    #[command(flatten)]
    pub connection: GcpConnection,
    /// Instance name (default: the image name).
    #[arg(long)]
    pub name: Option<String>,
    /// Zone (default: $CLOUDSDK_COMPUTE_ZONE, else europe-west1-d).
    #[arg(long)]
    pub zone: Option<String>,
    /// Machine type (default: $CLOUDSDK_COMPUTE_MACHINE, else g1-small).
    #[arg(long)]
    pub machine: Option<String>,
    /// Boot disk size in GiB (default: the image's).
    #[arg(long, value_name = "GIB")]
    pub disk_size: Option<u64>,
    /// VPC network.
    #[arg(long, default_value = "default")]
    pub network: String,
    /// A preemptible instance.
    #[arg(long)]
    pub preemptible: bool,
    /// Let the instance run nested VMs (its image needs --nested-virt at push).
    #[arg(long)]
    pub nested_virt: bool,
    /// Leave the instance running when this command ends.
    #[arg(long)]
    pub skip_cleanup: bool,
    /// Userdata (metadata `user-data`, read in the guest into /run/config/userdata).
    #[arg(long, conflicts_with = "data_file")]
    pub data: Option<String>,
    /// File whose contents are the userdata.
    #[arg(long)]
    pub data_file: Option<PathBuf>,
    /// Label the instance KEY=VALUE (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = crate::cli::tag)]
    pub tags: Vec<(String, String)>,
    /// Bucket to upload IMAGE to when it is an archive (default: $CLOUDSDK_IMAGE_BUCKET).
    #[arg(long)]
    pub bucket: Option<String>,
    /// A GCE image name, or a NAME.img.tar.gz archive, pushed as image NAME (replacing it) first.
    #[arg(value_name = "IMAGE")]
    pub image: String,
}

pub fn push(args: PushGcpArgs, bars: Option<Arc<Bars>>) -> Result<()> {
    let settings = args.connection.settings(None)?;
    let name = args
        .name
        .clone()
        .or_else(|| env("CLOUDSDK_IMAGE_NAME"))
        .or_else(|| gcp::default_name(&args.path))
        .with_context(|| format!("cannot name an image after {}: give --img-name", args.path.display()))?;
    let options = PushOptions {
        name,
        bucket: gcp::resolve_bucket(args.bucket.clone()).map_err(with_flags)?,
        family: args.family.clone().or_else(|| env("CLOUDSDK_IMAGE_FAMILY")),
        nested_virt: args.nested_virt,
        uefi: args.uefi_compatible,
        replace: args.replace,
        labels: Default::default(),
    };
    runtime()?.block_on(async {
        let backend = Gcp::new(&settings, Machine::default()).map_err(with_flags)?;
        push_archive(&backend, &args.path, &options, bars.as_ref()).await
    })?;
    crate::print_text(format!("{}\n", options.name))
}

async fn push_archive(backend: &Gcp, path: &Path, options: &PushOptions, bars: Option<&Arc<Bars>>) -> Result<()> {
    let label = format!("gs://{}/{}{}", options.bucket, options.name, gcp::ARCHIVE_SUFFIX);
    let last = std::sync::Mutex::new(0u64);
    let progress = |sent: u64, total: u64| {
        let Some(bars) = bars else { return };
        let Ok(mut last) = last.lock() else { return };
        if sent == 0 {
            bars.pull_started(&label, total);
        }
        bars.pull_bytes(&label, sent.saturating_sub(*last));
        *last = sent;
        if sent == total {
            bars.pull_finished(&label);
        }
    };
    tracing::info!("uploading {} to {label}", path.display());
    backend.push(path, options, &progress).await.map_err(with_flags)?;
    tracing::info!(
        "image {} is ready in project {}",
        options.name,
        backend.location().project
    );
    Ok(())
}

pub fn run(args: &RunGcpArgs, disks: &[String], bars: Option<Arc<Bars>>) -> Result<()> {
    if !disks.is_empty() {
        bail!("moby run gcp takes no --disk: give the boot disk's size with --disk-size");
    }
    let settings = args.connection.settings(args.zone.clone())?;
    let machine = Machine {
        machine_type: args
            .machine
            .clone()
            .or_else(|| env("CLOUDSDK_COMPUTE_MACHINE"))
            .unwrap_or_else(|| gcp::DEFAULT_MACHINE.to_string()),
        disk_size_gb: args.disk_size,
        network: args.network.clone(),
        preemptible: args.preemptible,
        nested_virt: args.nested_virt,
        keep_after_run: args.skip_cleanup,
    };
    let archive = args.image.ends_with(gcp::ARCHIVE_SUFFIX) || Path::new(&args.image).is_file();
    let image = if archive {
        gcp::default_name(Path::new(&args.image)).context("cannot name an image after the archive")?
    } else {
        args.image.clone()
    };
    let mut request = Request::new(args.name.clone().unwrap_or_else(|| image.clone()), image.clone());
    request.userdata = userdata(args.data.as_deref(), args.data_file.as_deref())?;
    request.tags = args.tags.iter().cloned().collect();
    runtime()?.block_on(async {
        let backend = Gcp::new(&settings, machine).map_err(with_flags)?;
        if archive {
            let options = PushOptions {
                name: image,
                bucket: gcp::resolve_bucket(args.bucket.clone()).map_err(with_flags)?,
                replace: true,
                ..PushOptions::default()
            };
            push_archive(&backend, Path::new(&args.image), &options, bars.as_ref()).await?;
        }
        tracing::info!(
            "starting instance {} from image {} ({} in {}); Ctrl-C deletes it{}",
            request.name,
            request.image.display(),
            backend.machine.machine_type,
            backend.location().zone,
            if args.skip_cleanup {
                " (--skip-cleanup: no, it keeps it)"
            } else {
                ""
            }
        );
        let mut stdout = std::io::stdout();
        let end = backend
            .run(&request, &mut stdout, Duration::from_secs(30))
            .await
            .map_err(vm_error)?;
        tracing::info!(
            "instance {} {}",
            request.name,
            crate::run_cmd::describe_ending(&end.ending)
        );
        Ok(())
    })
}

fn env(variable: &str) -> Option<String> {
    std::env::var(variable).ok().filter(|v| !v.is_empty())
}

/// A GCP error with the flag that fixes it, where one does.
fn with_flags(err: GcpError) -> anyhow::Error {
    let hint = match &err {
        GcpError::Missing { what: "project", .. } => "give --project",
        GcpError::Missing { what: "bucket", .. } => "give --bucket",
        GcpError::Missing { .. } => "",
        GcpError::CredentialsFile { .. } | GcpError::Credentials(_) => {
            "give a service-account key with --keys, or set GOOGLE_APPLICATION_CREDENTIALS"
        }
        GcpError::ImageExists { .. } => "give --replace to replace it",
        _ => "",
    };
    if hint.is_empty() {
        err.into()
    } else {
        anyhow::anyhow!("{err} ({hint})")
    }
}

fn vm_error(err: VmError) -> anyhow::Error {
    match err {
        VmError::Gcp(e) => with_flags(e),
        e => e.into(),
    }
}
