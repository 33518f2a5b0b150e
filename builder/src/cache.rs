//! [`Cache`]: the image cache as the CLI and the plugin use it. Listing, removal, cleaning,
//! import and export of images; packages built into it and pushed from it.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::image::{self, PushOptions, Store};
use crate::output::{OutputFile, OutputWriter};
use crate::pkg::{self, BuildOutcome, Package, PkgBuildOptions};
use crate::{Error, Reference};

/// The local image cache: an OCI image layout, shared with LinuxKit (see [`crate::image`]).
#[derive(Debug, Clone)]
pub struct Cache {
    store: Store,
}

impl Cache {
    /// `$MOBY_CACHE`, else `~/.moby/cache`.
    pub fn default_dir() -> PathBuf {
        Store::default_dir()
    }

    /// Opens the cache in `dir` for reading and writing, creating it when missing.
    pub fn open(dir: &Path) -> Result<Cache, Error> {
        Ok(Cache {
            store: Store::open(dir)?,
        })
    }

    /// Every named image with the digest of its manifest or index, in cache order.
    pub fn list(&self) -> Result<Vec<(String, String)>, Error> {
        Ok(self.store.list()?)
    }

    /// Removes the image named `name` (as [`Cache::list`] shows it) and the blobs no other image
    /// uses; `false` when no image is named so.
    pub fn remove(&self, name: &str) -> Result<bool, Error> {
        Ok(self.store.remove(name)?)
    }

    /// Empties the cache.
    pub fn clean(&self) -> Result<(), Error> {
        Ok(self.store.clean()?)
    }

    /// Adds the images of an OCI layout tar (as [`Cache::export`] writes it); returns their names.
    pub fn import(&self, archive: impl Read) -> Result<Vec<String>, Error> {
        Ok(self.store.import(archive)?)
    }

    /// Writes the image named `name` as an OCI layout tar into `to`, which holds the whole
    /// archive or, when the export fails, what it held before.
    pub fn export(&self, name: &str, to: &OutputFile) -> Result<(), Error> {
        let mut out = OutputWriter::open(to)?;
        self.store.export(name, &mut out)?;
        out.commit()?;
        Ok(())
    }

    /// Builds the package in `dir` into the cache unless the cache has it already; returns its
    /// identity and what was done.
    pub fn build_package(&self, dir: &Path, options: &PkgBuildOptions) -> Result<(Package, BuildOutcome), Error> {
        Ok(pkg::build_package(dir, &self.store, options)?)
    }

    /// Pushes the image `local` of the cache (one platform) to a registry as `remote` (image
    /// references, expanded as LinuxKit does); returns the digest of its manifest.
    pub fn push(&self, local: &str, remote: &str, options: &PushOptions) -> Result<String, Error> {
        let (local, remote) = (Reference::parse(local)?, Reference::parse(remote)?);
        Ok(image::push_image(&self.store, &local, &remote, options)?)
    }
}
