#!/usr/bin/env bash
# Sets up, builds, and runs every test (GoogleTest suites registered with CTest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Every suite, the two long ones included (README, "Long suites"): the 200-run failover suite,
# whose shards run one at a time (RUN_SERIAL), and the chaos test (label resilience).
ctest --test-dir build --output-on-failure -j2 --timeout 900
# Then the bounded sanitizer stage (README, "Sanitizers and fuzzing"): ASan+UBSan over the
# product's logic without the network stack, TSan over the journal's writer and the event loop.
# The whole-tree sanitizer runs take about an hour each on two cores and are run by hand.
bash scripts/run-sanitizers.sh ci
