//! `moby cluster up|status|down FILE`: the flags become the cluster library's settings; what
//! converging does is printed on standard output, one line per action.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use builder::{BuildOptions, Cache, Platform};
use plugin::cluster::{self, Cluster, ClusterFile, Event, Settings, Status, UpOptions};

use crate::cli::{ClusterArgs, ClusterCommand, ClusterDownArgs, ClusterPlace, ClusterStatusArgs, ClusterUpArgs};
use crate::run_cmd::{runtime, state_root};

pub fn run(args: ClusterArgs) -> Result<()> {
    match args.command {
        ClusterCommand::Up(args) => up(args),
        ClusterCommand::Status(args) => status(args),
        ClusterCommand::Down(args) => down(args),
    }
}

/// Where clusters live and how they build: VMs under the state root `moby ps` lists, cluster
/// state under `--state-dir` (default `ROOT/clusters`), images from the cache `moby build` uses.
fn settings(place: &ClusterPlace, cache: Option<PathBuf>, stop_timeout: u64) -> Result<Settings> {
    let root = state_root()?;
    let clusters_dir = match &place.state_dir {
        Some(dir) => dir.clone(),
        None => root.base().join("clusters"),
    };
    Ok(Settings {
        clusters_dir,
        root,
        build: BuildOptions {
            cache_dir: cache.unwrap_or_else(Cache::default_dir),
            always_pull: false,
            mirrors: Vec::new(),
            platform: Platform::host(),
            docker_config: None,
            progress: None,
        },
        home_dir: std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from),
        stop_timeout: Duration::from_secs(stop_timeout),
    })
}

/// Prints an event as a line of standard output (a reader that went away misses the rest).
fn print_event(event: Event) {
    let _ = crate::print_text(format!("{event}\n"));
}

fn up(args: ClusterUpArgs) -> Result<()> {
    let file = ClusterFile::read(&args.place.file)?;
    let settings = settings(&args.place, args.cache.clone(), args.stop_timeout)?;
    let cluster = Cluster::new(file, settings);
    let options = UpOptions {
        timeout: Duration::from_secs(args.timeout),
        interval: Duration::from_secs(args.interval),
    };
    runtime()?.block_on(async {
        if args.watch {
            cluster
                .watch(&options, &print_event, crate::plugin_cmd::stop_signal())
                .await
        } else {
            cluster.up(&options, &print_event).await
        }
    })?;
    Ok(())
}

fn status(args: ClusterStatusArgs) -> Result<()> {
    let file = ClusterFile::read(&args.place.file)?;
    let settings = settings(&args.place, args.cache.clone(), 30)?;
    let cluster = Cluster::new(file, settings);
    let status = runtime()?.block_on(cluster.status())?;
    if args.json {
        crate::print_text(status.to_json())?;
    } else {
        crate::print_text(table(&status))?;
    }
    if !status.converged {
        bail!(
            "cluster {} is not converged: `moby cluster up {}` converges it",
            status.cluster,
            args.place.file.display()
        );
    }
    Ok(())
}

/// The status as a table: group, instance, state, address, spec.
fn table(status: &Status) -> String {
    let header = ["GROUP", "INSTANCE", "STATE", "ADDRESS", "SPEC"].map(String::from);
    let mut rows = vec![header.to_vec()];
    for i in &status.instances {
        let spec = match (i.member, i.up_to_date) {
            (false, _) => "extra",
            (true, Some(true)) => "up-to-date",
            (true, Some(false)) => "outdated",
            (true, None) if i.state == "missing" => "-",
            (true, None) => "?",
        };
        rows.push(vec![
            i.group.clone().unwrap_or_else(|| "-".into()),
            i.instance.clone(),
            i.state.clone(),
            i.address.clone().unwrap_or_else(|| "-".into()),
            spec.to_string(),
        ]);
    }
    let mut text = crate::format_table(&rows);
    for i in status.instances.iter().filter(|i| i.error.is_some()) {
        text.push_str(&format!("{}: {}\n", i.instance, i.error.as_deref().unwrap_or_default()));
    }
    text
}

fn down(args: ClusterDownArgs) -> Result<()> {
    let name = ClusterFile::read_name(&args.place.file)?;
    let settings = settings(&args.place, None, args.stop_timeout)?;
    runtime()?.block_on(cluster::down(&name, &settings, &print_event))?;
    Ok(())
}
