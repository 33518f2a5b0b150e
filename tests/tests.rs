//! Integration tests: one binary (see `[[test]]` in Cargo.toml), each module starting the real
//! processes it needs.

mod cli;
mod conformance;
mod guest;
mod init;
mod registry;
mod run;
mod support;
