//! The YAML spec: parsing, validation, merging and metadata serialisation.

pub mod fields;
pub mod model;
