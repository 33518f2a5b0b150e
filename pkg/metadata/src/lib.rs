//! LinuxKit's `metadata` package in Rust: find userdata (cloud metadata servers, a userdata CD,
//! QEMU's fw_cfg, a file) and write it to `/run/config`.

#[macro_use]
pub mod log;
pub mod http;
pub mod providers;
pub mod run;
pub mod userdata;
pub mod write;
