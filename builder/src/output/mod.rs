//! Output formats: sinks that consume the assembled entry stream.
