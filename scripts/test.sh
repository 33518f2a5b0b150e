#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests (registry, conformance corpus).
set -euo pipefail
cd "$(dirname "$0")/.."
# pkg/init and pkg/metadata are cargo workspaces of their own (static binaries for the images);
# their unit tests run from tests/init.rs and tests/examples.rs. pkg/metadata/vmm-cd is a
# test-only workspace: the metadata package reading the userdata CD that vmm writes.
packages=(pkg/init pkg/metadata)
vmm_cd=pkg/metadata/vmm-cd/Cargo.toml
# Their builds share the root's target directory: what both sides build alike is built once.
target_dir=${CARGO_TARGET_DIR:-target}
cargo fmt --all -- --check
for p in "${packages[@]}"; do
  cargo fmt --manifest-path "$p/Cargo.toml" -- --check
done
cargo fmt --manifest-path "$vmm_cd" -- --check
cargo clippy --workspace --all-targets -- -D warnings
for p in "${packages[@]}"; do
  cargo clippy --locked --manifest-path "$p/Cargo.toml" --target-dir "$target_dir" --all-targets -- -D warnings
done
cargo test --workspace -- --nocapture
cargo test --locked --manifest-path "$vmm_cd" --target-dir "$target_dir"
