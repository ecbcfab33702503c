#!/usr/bin/env bash
# Sets up, builds, and runs every test (GoogleTest suites registered with CTest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The chaos test (label resilience) runs separately (README, "Long suites"). The 200-run
# failover suite is part of this run; its shards run one at a time (RUN_SERIAL).
ctest --test-dir build --output-on-failure -j2 --timeout 600 -LE "resilience"
