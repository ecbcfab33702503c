#pragma once
// Per-order (or per-iteration) latencies reported as median and p99 counters beside Google
// Benchmark's own figure, which is a mean: on a shared machine a few preempted iterations move the
// mean far more than the typical case does, and the targets are percentiles.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

namespace backstop::bench {

// Counters `<prefix>median_us`, `<prefix>p99_us` and `<prefix>max_us` of the samples
// (microseconds). The maximum shows a stall the p99 hides (a thread waiting out another's time
// slice is milliseconds, in a handful of samples).
inline void report_percentiles(benchmark::State& state, std::vector<double> us, const std::string& prefix = {}) {
  if (us.empty()) return;
  std::sort(us.begin(), us.end());
  state.counters[prefix + "median_us"] = us[us.size() / 2];
  state.counters[prefix + "p99_us"] = us[std::min(us.size() - 1, us.size() * 99 / 100)];
  state.counters[prefix + "max_us"] = us.back();
}

// Wall time of each iteration of a round-trip benchmark, between start() and stop().
class IterationTimes {
 public:
  void start() { started_ = std::chrono::steady_clock::now(); }
  void stop() {
    micros_.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - started_).count());
  }
  void report(benchmark::State& state) const { report_percentiles(state, micros_); }

 private:
  std::chrono::steady_clock::time_point started_;
  std::vector<double> micros_;
};

}  // namespace backstop::bench
