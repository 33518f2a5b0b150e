//! `moby cache`.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use builder::image::Store;

use crate::cli::{CacheArgs, CacheCommand};

pub fn run(args: CacheArgs) -> Result<()> {
    let dir = args.cache.unwrap_or_else(Store::default_dir);
    let store = Store::open(&dir).with_context(|| format!("opening the image cache {}", dir.display()))?;
    match args.command {
        CacheCommand::Ls => {
            let mut out = io::stdout().lock();
            for (name, digest) in store.list()? {
                writeln!(out, "{name}\t{digest}")?;
            }
        }
        CacheCommand::Rm { images } => {
            for image in images {
                store.remove(&image)?;
                tracing::info!("removed {image}");
            }
        }
        CacheCommand::Clean => store.clean()?,
        CacheCommand::Import { file } => {
            let imported = if file == "-" {
                store.import(io::stdin().lock())?
            } else {
                store.import(BufReader::new(
                    File::open(&file).with_context(|| format!("cannot open {file}"))?,
                ))?
            };
            for name in imported {
                tracing::info!("imported {name}");
            }
        }
        CacheCommand::Export { image, output } => {
            if output == "-" {
                store.export(&image, io::stdout().lock())?;
            } else {
                export_to_file(&store, &image, Path::new(&output))?;
            }
        }
    }
    Ok(())
}

/// Exports `image` to `path`. A regular file (or a new one) is written under a temporary name
/// beside it and renamed into place only once the export succeeded (blobs are verified while
/// they are written), so a failed export leaves the previous file, or none; anything else (a
/// device, a FIFO) is written directly.
fn export_to_file(store: &Store, image: &str, path: &Path) -> Result<()> {
    let regular_or_new = match std::fs::metadata(path) {
        Ok(meta) => meta.is_file(),
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    };
    if !regular_or_new {
        let file = File::create(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut writer = BufWriter::new(file);
        store.export(image, &mut writer)?;
        return Ok(writer.flush()?);
    }
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let prefix = format!(".{}.", path.file_name().unwrap_or_default().to_string_lossy());
    let staged = tempfile::Builder::new()
        .prefix(&prefix)
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let mut writer = BufWriter::new(staged);
    store.export(image, &mut writer)?;
    let staged = writer.into_inner().map_err(|e| e.into_error())?;
    staged
        .persist(path)
        .with_context(|| format!("cannot rename the export to {}", path.display()))?;
    Ok(())
}
