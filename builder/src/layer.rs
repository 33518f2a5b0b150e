//! Layer decompression and flattening (whiteouts, opaque directories, escape checks).
