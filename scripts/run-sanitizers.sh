#!/usr/bin/env bash
# Builds Backstop with sanitizers and runs its tests (see fuzz/README.md, "Sanitizer runs").
#
#   bash scripts/run-sanitizers.sh [asan|tsan|all|ci] [-j N]
#
#   asan  BACKSTOP_SANITIZE=ON (ASan + UBSan) into build-asan, then the whole CTest suite except
#         the fuzz label (the fuzz targets carry their own ASan/UBSan build).
#   tsan  BACKSTOP_TSAN=ON (ThreadSanitizer) into build-tsan, only the concurrent parts: the
#         journal's writer thread and the event loop (core_test), the net client against its
#         loopback servers (backstop_net_tests), the two protocol emulators (their own tests),
#         both adapters (their network threads or the loop's, their streams) and the local API
#         (cpp-httplib's threads handing requests to the loop).
#   all   both (default).
#   ci    the bounded run CI makes on every landing (scripts/run-tests.sh runs it after the suite):
#         ASan+UBSan over the product's logic without the network stack (core: prices, lifecycle,
#         journal, event loop; the config loader; routing: order manager, router, stop guard,
#         watchdog; the simulated venue; cross-broker protection on it; the reliability report),
#         and TSan over core's threads (the journal's writer, the event loop). It leaves out the
#         Beast/OpenSSL translation units, whose sanitized build alone takes most of an hour on
#         two cores; `asan` and `tsan` cover them and are run by hand (fuzz/README.md).
#
# Sanitizer findings abort the test that hit them (halt_on_error), so a finding is a failed test
# with the report in its output (ctest --output-on-failure). Slow: the ASan build of the whole
# tree takes a long time on two cores; -j defaults to 2 (shared machines: do not raise it).
# Extra configure arguments go in BACKSTOP_CMAKE_ARGS, e.g.
#   BACKSTOP_CMAKE_ARGS="-DBACKSTOP_SKIP=tests/resilience" bash scripts/run-sanitizers.sh asan
set -euo pipefail
cd "$(dirname "$0")/.."

what=all
jobs=2
while [ $# -gt 0 ]; do
  case "$1" in
    asan|tsan|all|ci) what="$1" ;;
    -j) jobs="$2"; shift ;;
    -j*) jobs="${1#-j}" ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "run-sanitizers: unknown argument '$1' (asan|tsan|all|ci, -j N)" >&2; exit 2 ;;
  esac
  shift
done

status=0

# detect_leaks: LeakSanitizer runs at exit of every test process. halt_on_error makes UBSan's
# (otherwise recoverable) reports fail the test.
asan_env=(ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
          UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")

configure_asan() {
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBACKSTOP_SANITIZE=ON ${BACKSTOP_CMAKE_ARGS:-} >/dev/null
}

run_asan() {
  echo "== ASan+UBSan: configuring and building build-asan (-j$jobs)"
  configure_asan
  cmake --build build-asan -j"$jobs"
  echo "== ASan+UBSan: running the test suite (without the fuzz label)"
  env "${asan_env[@]}" ctest --test-dir build-asan -LE fuzz --output-on-failure -j"$jobs" --timeout 900 || status=1
}

# The concurrent parts. Test names: core_test's JournalTest.*, EventLoop.*, BusyPoll.* and
# CpuAffinity.* (the writer thread, the loop, its busy-poll signal), net.* (client, HTTP stream
# and WebSocket against threaded loopback servers), tradestation_emulator.* and ibkr.* (the
# emulators serve on their own threads), tradestation_adapter.* and ibkr_adapter.* (the adapters'
# network threads, streams and LoopIo), ApiServer.* (HTTP threads waiting on loop tasks).
tsan_targets=(core_test backstop_net_tests tradestation_emulator_test ibkr_emulator_test
              tradestation_adapter_test ibkr_adapter_test api_test)
tsan_tests='^(JournalTest|EventLoop|BusyPoll|CpuAffinity)\.|^net\.|^tradestation_emulator\.|^ibkr\.|^tradestation_adapter\.|^ibkr_adapter\.|^ApiServer\.'

configure_tsan() {
  cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBACKSTOP_TSAN=ON ${BACKSTOP_CMAKE_ARGS:-} >/dev/null
}

run_tsan() {
  echo "== TSan: configuring and building build-tsan (-j$jobs): ${tsan_targets[*]}"
  configure_tsan
  cmake --build build-tsan -j"$jobs" --target "${tsan_targets[@]}"
  echo "== TSan: running $tsan_tests"
  # scripts/tsan.supp: interceptors called from inside the uninstrumented cpp-httplib library.
  TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:history_size=4:suppressions=$PWD/scripts/tsan.supp" \
    ctest --test-dir build-tsan -R "$tsan_tests" --output-on-failure -j"$jobs" --timeout 900 || status=1
}

# ci: GoogleTest programs run directly (each its whole suite in one process, so LeakSanitizer
# judges the whole run at exit), one after the other; the first failure does not stop the rest.
ci_asan_programs=(tests/core/core_test tests/config/config_test tests/routing/routing_test tests/sim/sim_test
                  tests/protection/protection_sim_test tests/reliability/reliability_test)
ci_tsan_filter='JournalTest.*:EventLoop.*:BusyPoll.*:CpuAffinity.*'

run_program() {  # build-dir program [gtest arguments...]: in the program's own folder, as CTest runs it
  local dir="$1/$(dirname "$2")" exe="./$(basename "$2")"
  shift 2
  echo "-- $dir/${exe#./} $*"
  (cd "$dir" && "$exe" --gtest_brief=1 "$@") || { echo "run-sanitizers: FAILED: $dir/${exe#./}"; return 1; }
}

run_ci() {
  local start=$SECONDS names=() p
  for p in "${ci_asan_programs[@]}"; do names+=("$(basename "$p")"); done
  echo "== ci: ASan+UBSan: building ${names[*]} in build-asan (-j$jobs)"
  configure_asan
  cmake --build build-asan -j"$jobs" --target "${names[@]}"
  for p in "${ci_asan_programs[@]}"; do
    (export "${asan_env[@]}"; run_program build-asan "$p") || status=1
  done
  echo "== ci: TSan: building core_test in build-tsan (-j$jobs), running $ci_tsan_filter"
  configure_tsan
  cmake --build build-tsan -j"$jobs" --target core_test
  (export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:history_size=4:suppressions=$PWD/scripts/tsan.supp"
   run_program build-tsan tests/core/core_test --gtest_filter="$ci_tsan_filter") || status=1
  echo "== ci: sanitizer stage took $((SECONDS - start)) s"
}

case "$what" in
  asan) run_asan ;;
  tsan) run_tsan ;;
  all) run_asan; run_tsan ;;
  ci) run_ci ;;
esac

if [ $status -eq 0 ]; then echo "run-sanitizers: $what: all selected tests passed"; else echo "run-sanitizers: $what: FAILURES (see above)"; fi
exit $status
