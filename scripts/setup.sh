#!/usr/bin/env bash
# Installs what Backstop needs on Debian 12 (as root) and builds it into build/.
# Safe to run again: packages already present are not reinstalled, the build is incremental.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake pkg-config ccache git
  libboost-dev libboost-system-dev libssl-dev
  nlohmann-json3-dev libspdlog-dev libcpp-httplib-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libsqlite3-dev sqlite3
  clang libclang-rt-14-dev  # fuzz/: clang with the libFuzzer and sanitizer runtimes (Debian 12: LLVM 14)
  chromium
)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# Node.js may come from Debian or from another packaging that bundles npm (and conflicts with
# Debian's npm package): install Debian's only when no npm is present at all.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Prism judges adapters' and emulators' traffic against the official OpenAPI specs.
if [ ! -x tools/prism/node_modules/.bin/prism ]; then
  echo "setup: installing Prism (npm @stoplight/prism-cli) into tools/prism"
  mkdir -p tools/prism
  npm install --prefix tools/prism --no-audit --no-fund --loglevel=error @stoplight/prism-cli@5 >/dev/null
fi

# playwright-core drives Debian's chromium headless for the dashboard's browser test (CTest label
# "browser"); no browser is downloaded by npm.
if [ ! -d tools/playwright/node_modules/playwright-core ]; then
  echo "setup: installing playwright-core (npm) into tools/playwright"
  mkdir -p tools/playwright
  npm install --prefix tools/playwright --no-audit --no-fund --loglevel=error playwright-core@1 >/dev/null
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
