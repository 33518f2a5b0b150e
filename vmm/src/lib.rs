//! VM backends (qemu via QMP, hyperkit, GCP) that boot the builder's outputs as instances.
//!
//! Nothing lives here yet: `moby run` is the subject of its own issue. The crate exists so that the
//! dependency direction of `docs/architecture.md` (`plugin` → {`builder`, `vmm`}) is fixed from the start.
#![deny(missing_docs)]
