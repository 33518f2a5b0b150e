//! moby-rs builder: from LinuxKit YAML specs to bootable image outputs.
//!
//! # Entry points
//!
//! A build is three calls, each returning the crate's one [`Error`]:
//!
//! 1. [`load()`] reads spec files ([`Source`]) into a checked [`Spec`]; relative host paths lead
//!    under the directory the caller names in [`HostPaths`], `@pkg:` templates resolve through
//!    [`Packages`].
//! 2. [`resolve()`] makes every image the spec names available in the cache (pulling what is
//!    missing) and pins it for the target platform: a [`ResolvedSpec`], whose
//!    [`digest`](ResolvedSpec::digest) tells whether an image was already built from the same
//!    inputs.
//! 3. [`build_outputs`] writes the image in several [`Format`]s at once into a directory under
//!    LinuxKit's names, or one format into a stream ([`Outputs`]); [`build()`] writes it into any
//!    [`EntrySink`].
//!
//! [`Cache`] lists, removes, imports and exports cached images and builds and pushes packages.
//!
//! # Inside
//!
//! The data flows one way, one module per stage:
//!
//! 1. [`spec`] parses and validates YAML (several files merge as LinuxKit merges them).
//! 2. [`image`] finds every referenced image in the local OCI-layout cache, pulling what is missing.
//! 3. [`layer`] decompresses and flattens an image's layers into one stream of tar entries.
//! 4. [`oci_config`] turns a container entry plus its image into `config.json` and `runtime.json`.
//! 5. `assemble` writes everything, in LinuxKit's order, as tar entries into an [`EntrySink`].
//! 6. [`output`] sinks turn that entry stream into the requested formats (tar, kernel+initrd, ...).
//!
//! The `tar` module reads layer tars and writes tars byte-compatible with LinuxKit's (Go's)
//! writer ([`TarReader`], [`TarWriter`]).
#![deny(missing_docs)]

mod assemble;
mod build;
mod cache;
mod digest;
mod error;
#[cfg(test)]
mod fuzzing;
mod gojson;
pub mod image;
pub mod layer;
pub mod oci_config;
pub mod output;
mod pkg;
mod progress;
mod reference;
mod resolve;
pub mod spec;
mod tar;

pub use build::{build, build_outputs};
pub use cache::Cache;
pub use error::Error;
pub use image::{Platform, PushOptions};
pub use output::{remove_partial_outputs, Format, OutputFile, Outputs};
pub use pkg::{static_rustflags, update_lock, BuildOutcome, LockUpdate, Package, Packages, PkgBuildOptions, LOCK_FILE};
pub use progress::Progress;
pub use reference::Reference;
pub use resolve::{resolve, BuildOptions, ResolvedSpec};
pub use spec::{load, HostPaths, MetadataFormat, Source, Spec};
pub use tar::{EntryKind, EntrySink, Header, TarReader, TarWriter};
