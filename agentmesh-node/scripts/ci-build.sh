#!/usr/bin/env bash
# Debug build of the Node addon for the tests, sharing target/debug with `cargo test` and
# clippy (no `napi build`, which compiles everything again for an explicit --target):
# `cargo build -p agentmesh-node`, then the library is copied next to native.js under the
# name the generated loader requires (agentmesh.<platform>-<arch>-<abi>.node).
#
# Usage: bash agentmesh-node/scripts/ci-build.sh [--locked]
# The typings/loader check is separate and opt-in: scripts/check-typings.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
node scripts/install.js --profile debug --force "$@"
