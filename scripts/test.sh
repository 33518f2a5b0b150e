#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests (registry, conformance corpus).
set -euo pipefail
cd "$(dirname "$0")/.."
# pkg/init and pkg/metadata are cargo workspaces of their own (static binaries for the images);
# their unit tests run from tests/init.rs and tests/examples.rs.
packages=(pkg/init pkg/metadata)
cargo fmt --all -- --check
for p in "${packages[@]}"; do
  cargo fmt --manifest-path "$p/Cargo.toml" -- --check
done
cargo clippy --workspace --all-targets -- -D warnings
# In the root's target directory: the dependencies both sides check alike are checked once.
for p in "${packages[@]}"; do
  cargo clippy --locked --manifest-path "$p/Cargo.toml" --target-dir "${CARGO_TARGET_DIR:-target}" --all-targets -- -D warnings
done
cargo test --workspace -- --nocapture
