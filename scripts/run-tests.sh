#!/usr/bin/env bash
# Sets up, builds, and runs every test (GoogleTest suites registered with CTest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ctest --test-dir build --output-on-failure -j2 --timeout 600
