#!/usr/bin/env bash
# Sets up, builds, and runs every test (GoogleTest suites registered with CTest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The long suites have labels of their own and run separately (README, "Long suites"): the
# 200-run failover test (label failover) and the chaos test (label resilience).
ctest --test-dir build --output-on-failure -j2 --timeout 600 -LE "failover|resilience"
