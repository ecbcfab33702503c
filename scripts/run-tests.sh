#!/usr/bin/env bash
# Sets up, builds, and runs every test (GoogleTest suites registered with CTest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Every suite, the two long ones included (README, "Long suites"): the 200-run failover suite,
# whose shards run one at a time (RUN_SERIAL), and the chaos test (label resilience).
ctest --test-dir build --output-on-failure -j2 --timeout 900
