// The in-process submit path through SimBroker: strategy-side call to the request handed to the
// broker, and on to the venue's acknowledgement, on a manual clock (no waiting, no network).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>

#include "brokers/sim/sim_broker.hpp"
#include "brokers/sim/state_file.hpp"
#include "routing/order_manager.hpp"

using namespace backstop;
namespace fs = std::filesystem;

namespace {

struct SimSetup {
  SimSetup() : faults(FaultProfile{}, 1), venue(clock, faults), loop(clock), sim(SimBrokerOptions{}, loop, venue) {
    venue.add_instrument("AAPL", TickSize(Price::parse("0.01")));
    Quote q;
    q.symbol = "AAPL";
    q.bid = Price::parse("100.00");
    q.ask = Price::parse("100.02");
    venue.on_quote(q);
  }
  ManualClock clock;
  FaultInjector faults;
  Venue venue;
  EventLoop loop;
  SimBroker sim;
};

// Broker interface to venue acknowledgement, journal excluded: SimBroker::submit, the venue's
// checks and book insertion, the ack callback through the event loop.
void BM_SimBrokerSubmitToAck(benchmark::State& state) {
  SimSetup s;
  std::int64_t i = 0;
  OrderSpec o = limit_order("AAPL", Side::buy, 1, Price::parse("90.00"));
  for (auto _ : state) {
    o.client_order_id = "S" + std::to_string(i++);
    bool acked = false;
    s.sim.submit(o, [&](CommandResult r) { acked = r.outcome == Outcome::accepted; });
    s.loop.run_ready();
    if (!acked) state.SkipWithError("not acknowledged");
  }
}
BENCHMARK(BM_SimBrokerSubmitToAck);

// The full path with the durable journal: OrderManager::submit, the group-committed journal
// write (fsync), then the send and the acknowledgement.
void BM_OrderManagerSubmitDurable(benchmark::State& state) {
  const std::string path = (fs::temp_directory_path() / ("backstop-bench-submit-" + std::to_string(::getpid()) + ".db")).string();
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(path + suffix);
  {
    SimSetup s;
    Journal journal(path);
    ClientOrderIdGenerator ids("BENCH");
    OrderManager om(s.loop, journal, ids);
    om.add_broker(s.sim);
    const OrderSpec o = limit_order("AAPL", Side::buy, 1, Price::parse("90.00"));
    for (auto _ : state) {
      bool acked = false;
      om.submit("sim", o, [&](const CommandResult& r) { acked = r.outcome == Outcome::accepted; });
      while (!acked) s.loop.run_until(s.clock.now() + 1);
    }
  }
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(path + suffix);
}
BENCHMARK(BM_OrderManagerSubmitDurable)->UseRealTime()->Unit(benchmark::kMicrosecond);

// What `backstop run` spends on its loop's thread writing the simulated venue's state file
// (apps/demo_brokers.cpp: at most every 100 ms, when the venue changed): the whole record as JSON
// text, one record at a time into a reused buffer (Venue::write_state_text), written beside the
// file and renamed over it, for a venue holding `orders` resting orders. /document:1 is the
// earlier way, through a document of the whole state (Venue::save_state, as the emulators do).
void BM_SimVenueStateSave(benchmark::State& state) {
  const bool document = state.range(1) != 0;
  const fs::path file = fs::temp_directory_path() / ("backstop-bench-venue-" + std::to_string(::getpid()) + ".json");
  {
    SimSetup s;
    OrderSpec o = limit_order("AAPL", Side::buy, 1, Price::parse("90.00"));
    for (std::int64_t i = 0; i < state.range(0); ++i) {
      o.client_order_id = "R" + std::to_string(i);
      if (!s.venue.submit(o).accepted) state.SkipWithError("refused");
    }
    std::string text;
    for (auto _ : state) {
      if (document) {
        write_state_file(file, s.venue.save_state());
      } else {
        s.venue.write_state_text(text);
        write_state_text(file, text);
      }
    }
    state.counters["bytes"] = static_cast<double>(fs::file_size(file));
  }
  fs::remove(file);
}
BENCHMARK(BM_SimVenueStateSave)
    ->ArgsProduct({{10, 100, 1000, 10000}, {0, 1}})
    ->ArgNames({"orders", "document"})
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
