//! Nothing here: see tests/vmm_cd.rs.
