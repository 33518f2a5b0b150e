//! Layer decompression and flattening (whiteouts, opaque directories, escape checks).
//!
//! [`open_layer`] turns a layer blob into an uncompressed tar stream; [`flatten`] merges an image's
//! layers, newest first, into the single entry stream LinuxKit produces with go-containerregistry's
//! `mutate.Extract`, refusing entries that would escape the image root.

mod compression;
mod flatten;

pub use compression::{open_layer, Compression, OpenLayerError};
pub use flatten::{flatten, Flattener, LayerError, LayerSource};
