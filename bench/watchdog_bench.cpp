// Trigger watchdog throughput with 10,000 working stops over 1,000 instruments, and the
// latency from the tick that crosses a stop to the flatten order handed to the broker.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <random>

#include <spdlog/spdlog.h>

#include "bench/allocation_counter.hpp"
#include "bench/iteration_times.hpp"
#include "bench/thread_placement.hpp"
#include "brokers/sim/sim_broker.hpp"
#include "routing/stop_guard.hpp"
#include "routing/trigger_watchdog.hpp"

using namespace backstop;
namespace fs = std::filesystem;

namespace {

constexpr int kInstruments = 1000;
constexpr int kStops = 10000;

std::vector<std::string> symbols() {
  std::vector<std::string> s;
  for (int i = 0; i < kInstruments; ++i) s.push_back("SYM" + std::to_string(i));
  return s;
}

// Quotes that move around 100.00 without reaching any stop (stops sit at 90.00 and below): the
// steady state, where every tick must be checked and none crosses.
void BM_WatchdogQuotesNoCross(benchmark::State& state) {
  TriggerWatchdog w(TriggerMethod::bid_ask, std::chrono::seconds(2));
  const auto syms = symbols();
  for (int i = 0; i < kStops; ++i)
    w.watch({"S" + std::to_string(i), "ib", syms[i % kInstruments], i % 2 ? Side::sell : Side::buy,
             i % 2 ? Price::parse("90.00") - Price::parse("0.01") * (i / kInstruments)
                   : Price::parse("110.00") + Price::parse("0.01") * (i / kInstruments),
             100});
  std::vector<Quote> quotes;
  std::mt19937 rng(1);
  for (int i = 0; i < 4096; ++i) {
    Quote q;
    q.symbol = syms[rng() % kInstruments];
    q.bid = Price::parse("100.00") + Price::parse("0.01") * static_cast<int>(rng() % 50);
    q.ask = *q.bid + Price::parse("0.01");
    q.last = q.bid;
    quotes.push_back(q);
  }
  std::vector<CrossedStop> crossed;
  crossed.reserve(16);
  std::size_t i = 0;
  for (auto _ : state) {
    w.on_quote(quotes[i++ & 4095], crossed);
    benchmark::DoNotOptimize(crossed.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_WatchdogQuotesNoCross);

// From the tick that crosses a held stop (protection `local`) to its market order handed to the
// durable submit path (OrderManager::release: the held order turned into a market order and
// queued for the journal, which commits it before the request leaves; that commit is the journal
// benchmark's figure). Arg 0: the journal's writer is still committing the hold when the tick
// comes (the two contend for the journal's queue and the core); Arg 1: the hold is committed
// first (journal idle), as when a stop has been held for more than a few milliseconds: the
// realistic case for a protective stop.
void BM_TickToFlattenOrder(benchmark::State& state) {
  const fs::path dir = fs::temp_directory_path() / ("backstop-bench-watchdog-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  {
    ManualClock clock;
    FaultInjector faults(FaultProfile{}, 1);
    Venue venue(clock, faults);
    EventLoop loop(clock);
    Journal journal((dir / "j.db").string());
    bench::place_threads(state, journal);
    ClientOrderIdGenerator ids("B");
    OrderManager orders(loop, journal, ids);
    SimBroker sim(SimBrokerOptions{}, loop, venue);
    orders.add_broker(sim);
    Instrument inst;
    inst.symbol = "SYM0";
    venue.add_instrument("SYM0", inst.tick_size);
    StopGuardSettings settings;
    settings.policy = ProtectionPolicy::local;
    StopGuard guard(loop, orders, journal, settings, {{"SYM0", inst}});
    Quote above;
    above.symbol = "SYM0";
    above.bid = above.last = Price::parse("100.00");
    above.ask = Price::parse("100.01");
    Quote through = above;
    through.bid = through.last = Price::parse("98.99");
    through.ask = Price::parse("99.00");
    std::string held;
    spdlog::set_level(spdlog::level::off);
    // Per-tick samples (Google Benchmark's own figure is a mean): median and p99 as counters.
    std::vector<double> us;
    us.reserve(state.max_iterations);
    std::uint64_t allocations = 0, ticks_allocating = 0;
    std::uint64_t n = 0;
    for (auto _ : state) {
      state.PauseTiming();
      guard.on_quote(above);
      // 22 characters, TradeStation's longest client order id: every string on the path is
      // longer than the small-string buffer, so an allocation for one of them would show.
      OrderSpec stop = stop_order("SYM0", Side::sell, 1, Price::parse("99.00"));
      const std::string seq = std::to_string(++n);
      stop.client_order_id = "LOCALSTOPBENCH-" + std::string(7 - seq.size(), '0') + seq;
      held = orders.hold("sim", std::move(stop));
      if (state.range(0) == 1) journal.flush();
      state.ResumeTiming();
      // In a loop task, as quotes arrive in `backstop run`.
      std::chrono::steady_clock::time_point t0, t1;
      std::uint64_t allocated = 0;
      loop.post([&] {
        const std::uint64_t before = bench::allocations_counted();
        bench::CountAllocations count;
        t0 = std::chrono::steady_clock::now();
        guard.on_quote(through);  // crossing detected, the held order released and queued for the journal
        t1 = std::chrono::steady_clock::now();
        allocated = bench::allocations_counted() - before;
      });
      loop.run_ready();
      state.PauseTiming();
      us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      allocations += allocated;
      if (allocated > 0) ++ticks_allocating;
      // Released: pre_sent, or already sent on and acknowledged by the simulated broker
      // (submitted) if the journal's commit came back before run_ready() returned.
      if (orders.find(held)->state == OrderState::held) {
        state.SkipWithError("the held stop was not released");
        break;  // timing stays paused: a skipped benchmark must not resume it
      }
      loop.run_ready();
      state.ResumeTiming();
    }
    // Heap allocations on the loop's thread from the tick to the order queued: the mean per tick,
    // and how many ticks allocated at all (the first ones grow the reused buffers).
    state.counters["allocs_per_tick"] = n ? static_cast<double>(allocations) / static_cast<double>(n) : 0.0;
    state.counters["ticks_allocating"] = static_cast<double>(ticks_allocating);
    bench::report_percentiles(state, us);
  }
  fs::remove_all(dir);
}
BENCHMARK(BM_TickToFlattenOrder)->Arg(0)->Arg(1)->ArgName("journal_idle")->Iterations(2000);

}  // namespace

BENCHMARK_MAIN();
