//! `moby plugin`: serve InfraKit's Instance SPI on a unix socket in InfraKit's plugin directory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use builder::{BuildOptions, Cache, HostPaths, Platform};
use plugin::instance::{self, Images, InstancePlugin, Store};
use plugin::{InfrakitEnv, Server, Service, SocketOptions};
use vmm::StateRoot;

use crate::cli::PluginArgs;

pub fn run(args: PluginArgs) -> Result<()> {
    let env = InfrakitEnv::from_process();
    let state_dir = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => env
            .home_dir()
            .context("cannot find InfraKit's home: set INFRAKIT_HOME or HOME, or give --state-dir")?
            .join("moby"),
    };
    let base_dir = std::env::current_dir().context("cannot find the current directory")?;
    let options = BuildOptions {
        cache_dir: args.cache.clone().unwrap_or_else(Cache::default_dir),
        always_pull: false,
        mirrors: Vec::new(),
        platform: Platform::host(),
        docker_config: None,
        progress: None,
    };
    let paths = HostPaths {
        base_dir: base_dir.clone(),
        home_dir: std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from),
    };
    let store = Store::open(state_dir.join("instances")).map_err(anyhow::Error::msg)?;
    let images = Images::new(state_dir.join("images"), options, paths);
    let root = StateRoot::new(state_dir.join("vm"));
    let mut plugin = InstancePlugin::new(store, images, root, base_dir, Duration::from_secs(args.stop_timeout));
    // With a project in the environment, the plugin also answers for moby's instances there
    // that it has no record of (its state was lost, or another plugin made them).
    if std::env::var_os(vmm::gcp::PROJECT_ENV).is_some_and(|p| !p.is_empty()) {
        let location = vmm::gcp::Location::resolve(None, None).with_context(|| {
            format!(
                "the Google Cloud project and zone of the environment ({})",
                vmm::gcp::PROJECT_ENV
            )
        })?;
        tracing::info!(
            "also describing moby's instances in project {} zone {}",
            location.project,
            location.zone
        );
        plugin = plugin.with_gcp_default(location);
    }
    let plugin = Arc::new(plugin);
    let mut service = Service::new([instance::interface()])?;
    instance::register(&mut service, Arc::clone(&plugin))?;
    let socket = SocketOptions::new(env.plugins_dir()?).name(&args.name);
    crate::run_cmd::runtime()?.block_on(async {
        let server = Server::bind(&socket, service)?;
        plugin.resume().map_err(anyhow::Error::msg)?;
        tracing::info!(
            "serving the Instance SPI on {} (state in {})",
            server.socket_path().display(),
            state_dir.display()
        );
        server.serve(stop_signal()).await?;
        if args.destroy_on_exit {
            tracing::info!("destroying every instance (--destroy-on-exit)");
            plugin.destroy_all().await;
        }
        Ok(())
    })
}

/// Resolves at SIGINT or SIGTERM (or at once if they cannot be watched).
pub async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
}
