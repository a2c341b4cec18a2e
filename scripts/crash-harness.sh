#!/usr/bin/env bash
# Runs the crash harness by hand: `scripts/crash-harness.sh [KILLS]` (default 200).
# It starts a simulated fleet, runs a plan with quiesce and MB-sized files through the real
# binary, kills `dpplan run`/`dpplan resume` with SIGKILL at KILLS random instants (and at the
# chosen failpoints), resumes each time, and checks the invariants of DESIGN.md section 5.
# See tests/crash.rs for what is checked and docs/reliability.md for the last figures.
set -euo pipefail
cd "$(dirname "$0")/.."
DPPLAN_CRASH_KILLS="${1:-200}" cargo test --release crash:: -- --nocapture --test-threads 1
