//! moby-rs builder: from LinuxKit YAML specs to bootable image outputs.
//!
//! # Brief overview
//!
//! The data flows one way, one module per stage:
//!
//! 1. [`spec`] parses and validates YAML (several files merge as LinuxKit merges them) into a [`Moby`].
//! 2. [`image`] finds every referenced image in the local OCI-layout cache, pulling what is missing.
//! 3. [`layer`] decompresses and flattens an image's layers into one stream of tar entries.
//! 4. [`oci_config`] turns a container entry plus its image into `config.json` and `runtime.json`.
//! 5. [`assemble`] writes everything, in LinuxKit's order, as tar entries into an [`EntrySink`].
//! 6. [`output`] sinks turn that entry stream into the requested formats (tar, kernel+initrd, ...).
//!
//! The [`tar`] module reads layer tars and writes tars byte-compatible with LinuxKit's (Go's) writer.
#![deny(missing_docs)]

pub mod assemble;
pub mod build;
#[cfg(test)]
mod fuzzing;
mod gojson;
pub mod image;
pub mod layer;
pub mod oci_config;
pub mod output;
pub mod pkg;
pub mod progress;
pub mod reference;
pub mod spec;
pub mod tar;

pub use reference::Reference;
pub use spec::model::Moby;
pub use tar::EntrySink;
