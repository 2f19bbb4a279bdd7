#!/usr/bin/env bash
# Crash soak test: the SIGKILL crash test of agentmesh-core (tests/it/crash.rs) with 10,000
# iterations in release mode. Each iteration runs a workflow in a child process, kills it with
# SIGKILL at a random point, and checks that the log verifies, that no acknowledged completion
# was lost, and that resuming gives the canonical log of an uninterrupted run.
#
# Not run by CI (the default `cargo test` runs 200 iterations); run it after changing the log
# writer, the reader/repair or resume, and before a release:
#
#   .ci/crash-soak.sh
#   AGENTMESH_CRASH_ITERATIONS=50000 .ci/crash-soak.sh      # more iterations
#   AGENTMESH_CRASH_SEED=<base seed> .ci/crash-soak.sh      # replay a failure
#
# It prints a summary line (iterations, kills mid-run, repairs). On failure it prints the
# iteration, its seed and base seed, and the directory where the log was kept.
set -euo pipefail
cd "$(dirname "$0")/.."
export AGENTMESH_CRASH_ITERATIONS="${AGENTMESH_CRASH_ITERATIONS:-10000}"
exec cargo test --release -p agentmesh-core --test it crash:: -- --nocapture
