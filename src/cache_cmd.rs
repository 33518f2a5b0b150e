//! `moby cache`.

use std::fs::File;
use std::io::{self, BufReader};

use anyhow::{bail, Context, Result};
use builder::Cache;

use crate::build_cmd::output_file;
use crate::cli::{CacheArgs, CacheCommand};

pub fn run(args: CacheArgs) -> Result<()> {
    let dir = args.cache.unwrap_or_else(Cache::default_dir);
    let cache = Cache::open(&dir).with_context(|| format!("opening the image cache {}", dir.display()))?;
    match args.command {
        CacheCommand::Ls => {
            let listing: String = cache
                .list()?
                .iter()
                .map(|(name, digest)| format!("{name}\t{digest}\n"))
                .collect();
            crate::print_text(listing)?;
        }
        CacheCommand::Rm { images } => {
            let mut missing = Vec::new();
            for image in images {
                if cache.remove(&image)? {
                    tracing::info!("removed {image}");
                } else {
                    missing.push(image);
                }
            }
            if !missing.is_empty() {
                bail!(
                    "not in the cache {}, nothing removed for: {}; `moby cache ls` lists the cached images by name",
                    dir.display(),
                    missing.join(", ")
                );
            }
        }
        CacheCommand::Clean => cache.clean()?,
        CacheCommand::Import { file } => {
            let imported = if file == "-" {
                cache.import(io::stdin().lock())?
            } else {
                cache.import(BufReader::new(
                    File::open(&file).with_context(|| format!("cannot open {file}"))?,
                ))?
            };
            for name in imported {
                tracing::info!("imported {name}");
            }
        }
        CacheCommand::Export { image, output } => {
            crate::remove_partial_outputs_on_signals()?;
            cache.export(&image, &output_file(&output))?;
        }
    }
    Ok(())
}
