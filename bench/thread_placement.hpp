#pragma once
// The placement `backstop run` takes from config `runtime` (core/cpu_affinity.hpp), for the
// benchmarks whose tails depend on it: BACKSTOP_BENCH_LOOP_CPU pins the thread running the loop,
// BACKSTOP_BENCH_WRITER_CPU the journal's writer. Unset: wherever the kernel places them. The
// placement used is reported as counters (-1: not pinned), so a JSON result says how it was run.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>

#include "core/cpu_affinity.hpp"
#include "core/journal.hpp"

namespace backstop::bench {

inline int cpu_from_env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : -1;
}

// Call on the loop's thread after the journal is open (its writer thread exists).
inline void place_threads(benchmark::State& state, Journal& journal) {
  const int loop_cpu = cpu_from_env("BACKSTOP_BENCH_LOOP_CPU");
  const int writer_cpu = cpu_from_env("BACKSTOP_BENCH_WRITER_CPU");
  std::string err;
  if (writer_cpu >= 0) err = journal.pin_writer(writer_cpu);
  if (err.empty() && loop_cpu >= 0) err = pin_this_thread(loop_cpu);
  if (!err.empty()) state.SkipWithError(("thread placement: " + err).c_str());
  state.counters["loop_cpu"] = loop_cpu;
  state.counters["writer_cpu"] = writer_cpu;
}

}  // namespace backstop::bench
