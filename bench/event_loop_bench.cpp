// Wake-up latency of the event loop: from another thread's post() to the task starting on the
// loop, with the loop idle when the post arrives (as it is between market events, fills and
// commit results). /0: the idle loop sleeps (condition variable: futex wake-up, the loop's CPU
// brought back from idle). /1: it busy-polls (EventLoop::set_busy_poll, config
// `runtime.busy_poll_us`) and sees the post without a system call on either side.
// BACKSTOP_BENCH_LOOP_CPU pins the loop's thread, as config `runtime.loop_cpu` does; a busy-polling
// loop's CPU is then reserved (the poster kept off it), as `backstop run` does, unless
// BACKSTOP_BENCH_SHARE_LOOP_CPU=1 (the poster may be placed on it: the 4.8 ms tail of
// bench/PERFORMANCE.md, 2026-12-01).
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "bench/iteration_times.hpp"
#include "bench/thread_placement.hpp"
#include "core/event_loop.hpp"

using namespace backstop;

namespace {

using Steady = std::chrono::steady_clock;

void BM_PostToTaskStart(benchmark::State& state) {
  SystemClock clock;
  EventLoop loop(clock);
  if (state.range(0) != 0) loop.set_busy_poll(std::chrono::milliseconds(1));
  std::vector<double> us;
  us.reserve(state.max_iterations);
  std::atomic<std::int64_t> requested{0};
  std::atomic<bool> finished{false};
  const int loop_cpu = bench::cpu_from_env("BACKSTOP_BENCH_LOOP_CPU");
  const bool reserve = state.range(0) != 0 && bench::cpu_from_env("BACKSTOP_BENCH_SHARE_LOOP_CPU") != 1;
  if (loop_cpu >= 0) {
    if (auto err = reserve ? reserve_cpu_for_this_thread(loop_cpu) : pin_this_thread(loop_cpu); !err.empty())
      state.SkipWithError(err.c_str());
  }
  // The poster waits 50 us of idle loop before each post (spinning on the clock, so its own
  // wake-up is not in the figure); the loop's spin (1 ms) outlasts that gap. It starts on the
  // loop's CPU (inherited) and goes back to the process's, less a reserved one.
  std::thread poster([&] {
    unpin_this_thread();
    std::int64_t sent = 0;
    while (!finished.load(std::memory_order_acquire)) {
      if (requested.load(std::memory_order_acquire) == sent) continue;
      const auto idle_until = Steady::now() + std::chrono::microseconds(50);
      while (Steady::now() < idle_until) {
      }
      const auto posted_at = Steady::now();
      loop.post([&us, &loop, posted_at] {
        us.push_back(std::chrono::duration<double, std::micro>(Steady::now() - posted_at).count());
        loop.stop();
      });
      ++sent;
    }
  });
  for (auto _ : state) {
    loop.restart();
    requested.fetch_add(1, std::memory_order_release);
    loop.run_until(clock.now() + 10'000'000'000);  // ends with the posted task's stop()
  }
  finished.store(true, std::memory_order_release);
  poster.join();
  release_reserved_cpu();
  bench::report_percentiles(state, us);
  state.counters["loop_cpu"] = loop_cpu;
  state.counters["loop_cpu_reserved"] = loop_cpu >= 0 && reserve;
}
BENCHMARK(BM_PostToTaskStart)->Arg(0)->Arg(1)->Iterations(20000)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
