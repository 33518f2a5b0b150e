//! The YAML spec: parsing, validation, merging and metadata serialisation.
//!
//! [`load`] reads one or more spec files into a [`Moby`](model::Moby), reporting every problem with
//! its file, line, column and path; [`parse_label`] reads an image's `org.mobyproject.config` label;
//! [`metadata`] writes the merged spec the way LinuxKit's `files[].metadata` does.

pub mod error;
pub mod fields;
mod goscalar;
mod goyaml;
mod load;
mod metadata;
pub mod model;
mod schema;
mod validate;
pub(crate) mod yaml;

pub use error::{ErrorKind, ReadError, SpecError, SpecErrors};
pub use load::{load, parse_label, PkgResolver, Source, MAX_SPEC_BYTES};
pub use metadata::{metadata, MetadataFormat};

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
