// Memory: resident size of a trading session holding 10,000 working orders, in the shape
// `backstop run` builds (journal, OrderManager, BrokerHealth, Router, StopGuard, SimBroker venue).
// Reported as counters read from /proc/self/status (VmRSS now, VmHWM peak), before and after.
// The event loop runs on a manual clock: nothing waits, only the memory is of interest.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "brokers/sim/sim_broker.hpp"
#include "routing/router.hpp"
#include "routing/stop_guard.hpp"

using namespace backstop;
namespace fs = std::filesystem;

namespace {

// kB of a /proc/self/status field ("VmRSS", "VmHWM").
double status_kib(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0) return std::stod(line.substr(field.size() + 1));
  return 0;
}

void BM_SessionResidentWithWorkingOrders(benchmark::State& state) {
  const auto working = static_cast<int>(state.range(0));
  for (auto _ : state) {
    const double before = status_kib("VmRSS");
    const std::string path =
        (fs::temp_directory_path() / ("backstop-bench-memory-" + std::to_string(::getpid()) + ".db")).string();
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(path + suffix);
    double after = 0;
    {
      ManualClock clock;
      FaultInjector faults(FaultProfile{}, 1);
      Venue venue(clock, faults);
      EventLoop loop(clock);
      SimBrokerOptions so;
      so.name = "sim";
      SimBroker sim(so, loop, venue);
      Journal journal(path);
      ClientOrderIdGenerator ids("MEM");
      OrderManager orders(loop, journal, ids);
      orders.add_broker(sim);
      BrokerHealth health(loop, journal);
      Instrument aapl;
      aapl.symbol = "AAPL";
      RiskConfig risk;
      risk.max_orders_per_second = 1e12;
      Router router(loop, orders, health, journal, risk, {{"AAPL", aapl}});
      RouteConfig r;
      r.strategy = "s";
      r.brokers = {"sim"};
      router.add_route(r);
      StopGuard guard(loop, orders, journal, {}, {{"AAPL", aapl}});
      venue.add_instrument("AAPL", TickSize(Price::parse("0.01")));
      Quote q;
      q.symbol = "AAPL";
      q.bid = Price::parse("100.00");
      q.ask = Price::parse("100.02");
      q.last = Price::parse("100.01");
      venue.on_quote(q);
      router.on_quote(q);
      // Half resting buys, half protective sell stops (each watched by the guard): both work.
      for (int i = 0; i < working; ++i) {
        const Price p = Price::parse("90.00") - Price::parse("0.01") * (i % 500);
        router.submit("s", i % 2 ? limit_order("AAPL", Side::buy, 1, p) : stop_order("AAPL", Side::sell, 1, p));
        if (i % 1000 == 999) {
          journal.flush();
          loop.run_until(clock.now() + 1);
        }
      }
      journal.flush();
      for (int i = 0; i < 10; ++i) loop.run_until(clock.now() + 1'000'000);
      if (orders.working_orders().size() != static_cast<std::size_t>(working))
        state.SkipWithError(("working orders: " + std::to_string(orders.working_orders().size())).c_str());
      after = status_kib("VmRSS");
    }
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(path + suffix);
    state.counters["rss_before_MiB"] = before / 1024;
    state.counters["rss_with_orders_MiB"] = after / 1024;
    state.counters["peak_MiB"] = status_kib("VmHWM") / 1024;
  }
}
BENCHMARK(BM_SessionResidentWithWorkingOrders)->Arg(10'000)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
