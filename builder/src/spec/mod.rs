//! The YAML spec: parsing, validation, merging and metadata serialisation.
//!
//! [`load()`] reads one or more spec files into a [`Spec`], the merged [`Moby`](model::Moby) model
//! with the [`HostPaths`] its relative paths lead to, reporting every problem with its file, line,
//! column and path; [`parse_label`] reads an image's `org.mobyproject.config` label;
//! [`Spec::metadata`] writes the merged spec the way LinuxKit's `files[].metadata` does.

mod error;
pub(crate) mod fields;
mod goscalar;
mod goyaml;
mod load;
mod loaded;
mod metadata;
pub mod model;
mod schema;
mod validate;
pub(crate) mod yaml;

pub(crate) use error::ReadError;
pub use error::{ErrorKind, SpecError, SpecErrors};
#[cfg(test)]
pub(crate) use load::load_moby;
pub use load::{load, parse_label, PkgResolver, Source, MAX_SPEC_BYTES};
pub use loaded::{HostPaths, Spec};
#[cfg(test)]
pub(crate) use metadata::metadata;
pub use metadata::MetadataFormat;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
