//! `moby pkg build|lock|show-tag|push`: packages (folders with a `build.yml`) into images.

use std::path::Path;

use anyhow::{Context, Result};
use builder::{update_lock, BuildOutcome, Cache, LockUpdate, Package, PkgBuildOptions, PushOptions, LOCK_FILE};

use crate::cli::{PkgArgs, PkgCommand};

pub fn run(args: PkgArgs) -> Result<()> {
    let cache_dir = args.cache.unwrap_or_else(Cache::default_dir);
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
        PkgCommand::Lock { dirs } => {
            for dir in dirs {
                let lock = dir.join(LOCK_FILE);
                match update_lock(&dir, &options)? {
                    LockUpdate::Written(n) => tracing::info!("{}: {n} packages pinned", lock.display()),
                    LockUpdate::Unchanged(n) => tracing::info!("{}: unchanged ({n} packages)", lock.display()),
                    LockUpdate::Removed => tracing::info!("{}: removed (no debs: steps)", lock.display()),
                    LockUpdate::NotNeeded => tracing::info!("{}: no debs: steps, no lock needed", dir.display()),
                }
            }
            Ok(())
        }
        PkgCommand::Build { force, dirs } => {
            options.force = force;
            let cache = Cache::open(&cache_dir)?;
            for dir in dirs {
                build(&dir, &cache, &options)?;
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
            let cache = Cache::open(&cache_dir)?;
            for dir in dirs {
                let package = build(&dir, &cache, &options)?;
                let remote_name = match &registry {
                    Some(host) => format!("{}/{}", host.trim_end_matches('/'), package.full_tag()),
                    None => package.full_tag(),
                };
                let options = PushOptions {
                    docker_config: docker_config.clone(),
                };
                let digest = cache
                    .push(&package.full_tag(), &remote_name, &options)
                    .with_context(|| format!("pushing package {}", dir.display()))?;
                crate::print_text(format!("{remote_name}@{digest}\n"))?;
            }
            Ok(())
        }
    }
}

/// Builds one package, saying what happened; returns its identity.
fn build(dir: &Path, cache: &Cache, options: &PkgBuildOptions) -> Result<Package> {
    let (package, outcome) = cache.build_package(dir, options).map_err(|e| {
        if e.is_package_lock() {
            anyhow::anyhow!(
                "{e}\n(`moby pkg lock {}` pins what apt offers now; review and commit the lock with the package)",
                dir.display()
            )
        } else {
            e.into()
        }
    })?;
    match outcome {
        BuildOutcome::Built(manifest) => tracing::info!("built {} ({})", package.full_tag(), manifest.digest),
        BuildOutcome::Cached => tracing::info!("{} is in the cache already", package.full_tag()),
    }
    Ok(package)
}
