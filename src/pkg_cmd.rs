//! `moby pkg build|show-tag|push`: packages (folders with a `build.yml`) into images.

use std::path::Path;

use anyhow::{Context, Result};
use builder::image::{push_image, PushOptions, Store};
use builder::pkg::{build_package, BuildOutcome, Package, PkgBuildOptions};
use builder::Reference;

use crate::cli::{PkgArgs, PkgCommand};

pub fn run(args: PkgArgs) -> Result<()> {
    let cache = args.cache.unwrap_or_else(Store::default_dir);
    let mut options = PkgBuildOptions::new();
    if let Some(dir) = args.deb_cache {
        options.deb_cache = dir;
    }
    match args.command {
        PkgCommand::ShowTag { dirs } => {
            for dir in dirs {
                crate::print_text(format!("{}\n", Package::load(&dir)?.full_tag()))?;
            }
            Ok(())
        }
        PkgCommand::Build { force, dirs } => {
            options.force = force;
            let store = Store::open(&cache)?;
            for dir in dirs {
                build(&dir, &store, &options)?;
            }
            Ok(())
        }
        PkgCommand::Push {
            force,
            registry,
            docker_config,
            dirs,
        } => {
            options.force = force;
            let store = Store::open(&cache)?;
            for dir in dirs {
                let package = build(&dir, &store, &options)?;
                let local = Reference::parse(&package.full_tag())?;
                let remote_name = match &registry {
                    Some(host) => format!("{}/{}", host.trim_end_matches('/'), package.full_tag()),
                    None => package.full_tag(),
                };
                let remote = Reference::parse(&remote_name)?;
                let options = PushOptions {
                    docker_config: docker_config.clone(),
                };
                let digest = push_image(&store, &local, &remote, &options)
                    .with_context(|| format!("pushing package {}", dir.display()))?;
                crate::print_text(format!("{remote_name}@{digest}\n"))?;
            }
            Ok(())
        }
    }
}

/// Builds one package, saying what happened; returns its identity.
fn build(dir: &Path, store: &Store, options: &PkgBuildOptions) -> Result<Package> {
    let (package, outcome) = build_package(dir, store, options)?;
    match outcome {
        BuildOutcome::Built(manifest) => tracing::info!("built {} ({})", package.full_tag(), manifest.digest),
        BuildOutcome::Cached => tracing::info!("{} is in the cache already", package.full_tag()),
    }
    Ok(package)
}
