#!/usr/bin/env bash
# Sets up, builds, and runs `backstop demo` on the embedded default: the simulated venue with
# injected faults. Extra arguments go to the demo (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p demo-output
exec ./build/apps/backstop demo --journal "demo-output/backstop-demo-$(date -u +%Y%m%d-%H%M%S).db" "$@"
