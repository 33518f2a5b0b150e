//! Output formats: sinks that consume the assembled entry stream.

pub mod cpio;
pub mod pgzip;
