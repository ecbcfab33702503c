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
#include <filesystem>

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
    inner_.submit(order, std::move(done));
  }
  void cancel(const std::string& id, CommandCallback done) override { inner_.cancel(id, std::move(done)); }
  void subscribe_order_events(OrderEventHandler h) override { inner_.subscribe_order_events(std::move(h)); }
  BrokerHealthReport health() const override { return inner_.health(); }
  Steady::time_point handed_at;

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

void report(benchmark::State& state, std::vector<double>& us) {
  if (us.empty()) return;
  std::sort(us.begin(), us.end());
  state.counters["median_us"] = us[us.size() / 2];
  state.counters["p99_us"] = us[std::min(us.size() - 1, us.size() * 99 / 100)];
}

// Journal commit excluded: the time in Router::submit plus the time from the commit's
// continuation starting on the loop to the request reaching the broker.
void BM_RouterSubmitToTransport_JournalExcluded(benchmark::State& state) {
  Setup s("x");
  const OrderSpec o = limit_order("AAPL", Side::buy, 1, Price::parse("90.00"));
  std::vector<double> samples;
  for (auto _ : state) {
    const auto t0 = Steady::now();
    s.router.submit("s", o);
    const auto t1 = Steady::now();
    state.PauseTiming();
    s.journal.flush();  // the commit; its continuation is now posted to the loop
    state.ResumeTiming();
    const auto t2 = Steady::now();
    s.loop.run_ready();
    state.PauseTiming();
    samples.push_back(std::chrono::duration<double, std::micro>((t1 - t0) + (s.probe.handed_at - t2)).count());
    s.loop.run_until(s.clock.now() + 1);  // the acknowledgement
    state.ResumeTiming();
  }
  report(state, samples);
}
BENCHMARK(BM_RouterSubmitToTransport_JournalExcluded)->Iterations(20000);

// Journal included: from the strategy-side call to the request at the broker, the durable
// group commit (fsync) in between.
void BM_RouterSubmitToTransport_JournalIncluded(benchmark::State& state) {
  Setup s("i");
  const OrderSpec o = limit_order("AAPL", Side::buy, 1, Price::parse("90.00"));
  std::vector<double> samples;
  for (auto _ : state) {
    const auto t0 = Steady::now();
    s.probe.handed_at = {};
    s.router.submit("s", o);
    while (s.probe.handed_at == Steady::time_point{}) s.loop.run_until(s.clock.now() + 1);
    samples.push_back(std::chrono::duration<double, std::micro>(s.probe.handed_at - t0).count());
  }
  report(state, samples);
}
BENCHMARK(BM_RouterSubmitToTransport_JournalIncluded)->Iterations(300)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
