// Wake-up latency of the event loop: from another thread's post() to the task starting on the
// loop, with the loop idle when the post arrives (as it is between market events, fills and
// commit results). /0: the idle loop sleeps (condition variable: futex wake-up, the loop's CPU
// brought back from idle). /1: it busy-polls (EventLoop::set_busy_poll, config
// `runtime.busy_poll_us`) and sees the post without a system call on either side.
// BACKSTOP_BENCH_LOOP_CPU pins the loop's thread, as config `runtime.loop_cpu` does.
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
  // The poster waits 50 us of idle loop before each post (spinning on the clock, so its own
  // wake-up is not in the figure); the loop's spin (1 ms) outlasts that gap.
  std::thread poster([&] {
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
  // Pinned after the poster started (a thread inherits its creator's CPUs): a busy-polling loop
  // sharing its one CPU with the poster would hold it for the whole spin.
  if (const int cpu = bench::cpu_from_env("BACKSTOP_BENCH_LOOP_CPU"); cpu >= 0) {
    if (auto err = pin_this_thread(cpu); !err.empty()) state.SkipWithError(err.c_str());
  }
  for (auto _ : state) {
    loop.restart();
    requested.fetch_add(1, std::memory_order_release);
    loop.run_until(clock.now() + 10'000'000'000);  // ends with the posted task's stop()
  }
  finished.store(true, std::memory_order_release);
  poster.join();
  bench::report_percentiles(state, us);
  state.counters["loop_cpu"] = bench::cpu_from_env("BACKSTOP_BENCH_LOOP_CPU");
}
BENCHMARK(BM_PostToTaskStart)->Arg(0)->Arg(1)->Iterations(20000)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
