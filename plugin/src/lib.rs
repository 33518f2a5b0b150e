//! The InfraKit instance plugin: JSON-RPC over HTTP on a unix socket, building images on demand and
//! provisioning them through `vmm`.
//!
//! Nothing lives here yet: the plugin is the subject of its own issue. The crate exists so that the
//! dependency direction of `docs/architecture.md` is fixed from the start.
#![deny(missing_docs)]

pub mod instance;
