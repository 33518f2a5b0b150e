//! The YAML spec: parsing, validation, merging and metadata serialisation.

pub mod model;
