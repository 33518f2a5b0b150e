//! Integration tests: one binary (see `[[test]]` in Cargo.toml), each module starting the real
//! processes it needs.

// Test helpers outside #[test] functions fail loudly too (clippy.toml covers only the tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cache;
mod cli;
mod cluster;
mod conformance;
mod examples;
mod formats;
mod gce_fake;
mod gcp;
mod guest;
mod init;
mod lifecycle;
mod network;
mod output;
mod pkg;
mod plugin;
mod plugin_gcp;
mod progress;
mod registry;
mod rootfs;
mod run;
mod support;
