// The routing core's own cost per order: strategy-side call (Router::submit: route choice,
// pre-trade checks, client order id, order record, journal hand-off) plus, after the journal
// commit, the continuation up to the request handed to the broker's transport. The broker here
// is SimBroker, the in-process venue, as issue 8 asks. The durable commit itself is excluded
// from the first figure (paused) and included in the second.
//
// Per-order samples are collected with a steady clock and reported as counters: median and p99
// (Google Benchmark's own statistics are means over repetitions, not per-order percentiles).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <utility>
#include <vector>

#include "bench/allocation_counter.hpp"
#include "bench/iteration_times.hpp"
#include "bench/thread_placement.hpp"
#include "brokers/sim/sim_broker.hpp"
#include "routing/router.hpp"

using namespace backstop;
namespace fs = std::filesystem;

namespace {

using Steady = std::chrono::steady_clock;

// SimBroker wrapped so that the moment the request reaches the broker is visible.
class HandoffProbe final : public Broker {
 public:
  explicit HandoffProbe(SimBroker& inner) : inner_(inner) {}
  const std::string& name() const override { return inner_.name(); }
  void submit(const OrderSpec& order, CommandCallback done) override {
    handed_at = Steady::now();
    allocations_at_handoff = bench::allocations_counted();
    if (hold) {  // measured in a burst: the venue's work is kept out of the next order's span
      held.emplace_back(order, std::move(done));
      handed.push_back(handed_at);
      return;
    }
    inner_.submit(order, std::move(done));
  }
  // Hands the held requests to the venue.
  void release() {
    for (auto& [order, done] : held) inner_.submit(order, std::move(done));
    held.clear();
    handed.clear();
  }
  void cancel(const std::string& id, CommandCallback done) override { inner_.cancel(id, std::move(done)); }
  void subscribe_order_events(OrderEventHandler h) override { inner_.subscribe_order_events(std::move(h)); }
  BrokerHealthReport health() const override { return inner_.health(); }
  Steady::time_point handed_at;
  std::uint64_t allocations_at_handoff = 0;  // this thread's count when the request arrived
  bool hold = false;
  std::vector<std::pair<OrderSpec, CommandCallback>> held;
  std::vector<Steady::time_point> handed;

 private:
  SimBroker& inner_;
};

struct Setup {
  explicit Setup(const std::string& tag)
      : path((fs::temp_directory_path() / ("backstop-bench-router-" + tag + std::to_string(::getpid()) + ".db")).string()),
        faults(FaultProfile{}, 1),
        venue(clock, faults),
        loop(clock),
        sim(options(), loop, venue),
        probe(sim),
        journal((clean(path), path)),
        ids("BENCH"),
        orders(loop, journal, ids),
        health(loop, journal),
        router(loop, orders, health, journal, risk(), instruments()) {
    venue.add_instrument("AAPL", TickSize(Price::parse("0.01")));
    Quote q;
    q.symbol = "AAPL";
    q.bid = Price::parse("100.00");
    q.ask = Price::parse("100.02");
    q.last = Price::parse("100.01");
    venue.on_quote(q);
    router.on_quote(q);
    orders.add_broker(probe);
    RouteConfig r;
    r.strategy = "s";
    r.brokers = {"sim"};
    router.add_route(r);
  }
  ~Setup() { clean(path); }
  static void clean(const std::string& p) {
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(p + suffix);
  }
  static SimBrokerOptions options() {
    SimBrokerOptions o;
    o.name = "sim";
    return o;
  }
  static RiskConfig risk() {
    RiskConfig r;
    r.max_orders_per_second = 1e12;  // the budget is checked, never exhausted
    return r;
  }
  static std::map<std::string, Instrument> instruments() {
    Instrument i;
    i.symbol = "AAPL";
    return {{"AAPL", i}};
  }
  std::string path;
  ManualClock clock;
  FaultInjector faults;
  Venue venue;
  EventLoop loop;
  SimBroker sim;
  HandoffProbe probe;
  Journal journal;
  ClientOrderIdGenerator ids;
  OrderManager orders;
  BrokerHealth health;
  Router router;
};

// Journal commit excluded: the time in Router::submit plus the time from the commit's
// continuation starting on the loop to the request reaching the broker, one order at a time.
// While the commit runs the loop's thread either sleeps (in flush(), as an idle loop sleeps) or,
// with `busy_poll`, never sleeps: it watches the loop's signal counter, as EventLoop's spin does
// (config `runtime.busy_poll_us`), until the commit's continuation is posted.
// With `journal_idle`, the previous order's later records (its "sent" and "acknowledged"
// transitions) are committed before the next order is submitted, as they are when orders are
// further apart than one commit (~0.3 ms here); without it, that commit (SQLite's work and its
// fsync's completion interrupt) runs on the other CPU while the next order is submitted.
void single_orders(benchmark::State& state, bool busy_poll, bool journal_idle = false) {
  Setup s(busy_poll ? "p" : journal_idle ? "q" : "x");
  bench::place_threads(state, s.journal);
  const OrderSpec o = limit_order("AAPL", Side::buy, 1, Price::parse("90.00"));
  std::vector<double> samples, call, continuation;
  // Heap allocations on the loop's thread in each part (bench/allocation_counter.hpp).
  std::uint64_t call_allocations = 0, continuation_allocations = 0;
  samples.reserve(state.max_iterations);
  call.reserve(state.max_iterations);
  continuation.reserve(state.max_iterations);
  for (auto _ : state) {
    // Submitted from a loop task, as a strategy's callbacks are (the journal wakes its writer
    // after the task: see Journal::defer_wake_to_task_end).
    Steady::time_point t0, t1;
    s.loop.post([&] {
      const std::uint64_t before = bench::allocations_counted();
      bench::CountAllocations count;
      t0 = Steady::now();
      s.router.submit("s", o);
      t1 = Steady::now();
      call_allocations += bench::allocations_counted() - before;
    });
    // The writer is woken at the end of the task below, so its post comes after this read.
    const std::uint64_t seen = s.loop.signals();
    s.loop.run_ready();
    state.PauseTiming();
    if (busy_poll) {
      while (s.loop.signals() == seen) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      }
    } else {
      s.journal.flush();  // the commit; its continuation is now posted to the loop
    }
    state.ResumeTiming();
    const std::uint64_t before_continuation = bench::allocations_counted();
    const auto t2 = Steady::now();
    {
      bench::CountAllocations count;
      s.loop.run_ready();
    }
    state.PauseTiming();
    continuation_allocations += s.probe.allocations_at_handoff - before_continuation;
    samples.push_back(std::chrono::duration<double, std::micro>((t1 - t0) + (s.probe.handed_at - t2)).count());
    call.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    continuation.push_back(std::chrono::duration<double, std::micro>(s.probe.handed_at - t2).count());
    s.loop.run_until(s.clock.now() + 1);  // the acknowledgement
    if (journal_idle) s.journal.flush();
    state.ResumeTiming();
  }
  bench::report_percentiles(state, samples);
  // How often the journal's writer was woken (a futex wake-up: microseconds on a VM), per order:
  // after the submitting task, outside the measured span.
  state.counters["writer_wakeups_per_order"] =
      static_cast<double>(s.journal.wakeups()) / static_cast<double>(state.iterations());
  // The two parts: Router::submit up to the journal hand-off, and the continuation after the
  // commit up to the broker's transport.
  bench::report_percentiles(state, call, "call_");
  bench::report_percentiles(state, continuation, "cont_");
  const auto per_order = [&](std::uint64_t n) { return static_cast<double>(n) / static_cast<double>(state.iterations()); };
  state.counters["call_allocs_per_order"] = per_order(call_allocations);
  state.counters["cont_allocs_per_order"] = per_order(continuation_allocations);
}

void BM_RouterSubmitToTransport_JournalExcluded(benchmark::State& state) { single_orders(state, false); }
BENCHMARK(BM_RouterSubmitToTransport_JournalExcluded)->Iterations(20000);

void BM_RouterSubmitToTransport_JournalExcluded_BusyPoll(benchmark::State& state) { single_orders(state, true); }
BENCHMARK(BM_RouterSubmitToTransport_JournalExcluded_BusyPoll)->Iterations(20000);

void BM_RouterSubmitToTransport_JournalExcluded_JournalIdle(benchmark::State& state) {
  single_orders(state, false, true);
}
BENCHMARK(BM_RouterSubmitToTransport_JournalExcluded_JournalIdle)->Iterations(20000);

// Orders in bursts of 16 between commits, as a strategy reacting to one event sends several
// (and as group commit batches them): per order, its Router::submit call plus its continuation
// (from the previous order's hand-off, or the start of the loop's turn, to its own hand-off).
// The commit is excluded as above; the caches are warm after the first order of a burst, so
// this is the routing core's cost under flow, where the figure above is its cost from cold.
void BM_RouterSubmitToTransport_JournalExcluded_Burst(benchmark::State& state) {
  constexpr std::size_t kBurst = 16;
  Setup s("b");
  bench::place_threads(state, s.journal);
  const OrderSpec o = limit_order("AAPL", Side::buy, 1, Price::parse("90.00"));
  std::vector<double> samples, call(kBurst);
  samples.reserve(state.max_iterations * kBurst);
  s.probe.held.reserve(kBurst);
  s.probe.handed.reserve(kBurst);
  for (auto _ : state) {
    s.loop.post([&] {  // one strategy callback sending the burst
      for (std::size_t k = 0; k < kBurst; ++k) {
        const auto t0 = Steady::now();
        s.router.submit("s", o);
        call[k] = std::chrono::duration<double, std::micro>(Steady::now() - t0).count();
      }
    });
    s.loop.run_ready();
    state.PauseTiming();
    s.journal.flush();
    s.probe.hold = true;
    state.ResumeTiming();
    const auto t2 = Steady::now();
    s.loop.run_ready();
    state.PauseTiming();
    s.probe.hold = false;
    if (s.probe.handed.size() != kBurst) state.SkipWithError("not every order of the burst was handed over");
    for (std::size_t k = 0; k < s.probe.handed.size(); ++k) {
      const auto from = k == 0 ? t2 : s.probe.handed[k - 1];
      samples.push_back(call[k] + std::chrono::duration<double, std::micro>(s.probe.handed[k] - from).count());
    }
    s.probe.release();
    s.loop.run_until(s.clock.now() + 1);  // the acknowledgements
    state.ResumeTiming();
  }
  bench::report_percentiles(state, samples);
}
BENCHMARK(BM_RouterSubmitToTransport_JournalExcluded_Burst)->Iterations(2000);

// Journal included: from the strategy-side call to the request at the broker, the durable
// group commit (fsync) in between.
void BM_RouterSubmitToTransport_JournalIncluded(benchmark::State& state) {
  Setup s("i");
  bench::place_threads(state, s.journal);
  const OrderSpec o = limit_order("AAPL", Side::buy, 1, Price::parse("90.00"));
  std::vector<double> samples;
  for (auto _ : state) {
    const auto t0 = Steady::now();
    s.probe.handed_at = {};
    s.router.submit("s", o);
    while (s.probe.handed_at == Steady::time_point{}) s.loop.run_until(s.clock.now() + 1);
    samples.push_back(std::chrono::duration<double, std::micro>(s.probe.handed_at - t0).count());
  }
  bench::report_percentiles(state, samples);
}
BENCHMARK(BM_RouterSubmitToTransport_JournalIncluded)->Iterations(300)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
