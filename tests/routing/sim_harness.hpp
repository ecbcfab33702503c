#pragma once
// A simulated session on a manual clock for routing tests: venue, SimBroker driven by a scripted
// price path, journal in a temp dir, OrderManager.
#include <unistd.h>

#include <filesystem>

#include "brokers/sim/sim_broker.hpp"
#include "core/instrument.hpp"
#include "routing/order_manager.hpp"

namespace backstop::testing_support {

// Plays a list of last prices (bid = last - 1 tick, ask = last + 1 tick), one per tick, then
// holds the last one.
class ScriptedPath final : public PricePath {
 public:
  ScriptedPath(std::string symbol, std::vector<std::string> lasts) : symbol_(std::move(symbol)), lasts_(std::move(lasts)) {}
  std::optional<Quote> next(Timestamp now) override {
    const Price last = Price::parse(lasts_[std::min(i_++, lasts_.size() - 1)]);
    Quote q;
    q.symbol = symbol_;
    q.last = last;
    q.bid = last - Price::parse("0.01");
    q.ask = last + Price::parse("0.01");
    q.at = now;
    q.source = "script";
    return q;
  }
  void append(std::vector<std::string> more) { lasts_.insert(lasts_.end(), more.begin(), more.end()); }

 private:
  std::string symbol_;
  std::vector<std::string> lasts_;
  std::size_t i_ = 0;
};

struct SimSession {
  explicit SimSession(FaultProfile profile, std::vector<std::string> lasts, std::uint64_t seed = 1)
      : dir(std::filesystem::temp_directory_path() /
            ("backstop-routing-" + std::to_string(::getpid()) + "-" + std::to_string(++counter()))),
        faults(std::move(profile), seed),
        venue(clock, faults),
        loop(clock),
        journal((std::filesystem::create_directories(dir), (dir / "j.db").string())),
        ids("T"),
        orders(loop, journal, ids),
        sim(options(), loop, venue) {
    venue.add_instrument("AAPL", TickSize(Price::parse("0.01")));
    auto p = std::make_unique<ScriptedPath>("AAPL", std::move(lasts));
    path = p.get();
    sim.add_price_path(std::move(p));
    orders.add_broker(sim);
    instrument.symbol = "AAPL";
  }
  ~SimSession() { std::filesystem::remove_all(dir); }
  static SimBrokerOptions options() {
    SimBrokerOptions o;
    o.tick_interval = std::chrono::milliseconds(100);
    return o;
  }
  static int& counter() {
    static int n = 0;
    return n;
  }
  void run_for(Duration d) { loop.run_until(clock.now() + d.count()); }

  std::filesystem::path dir;
  ManualClock clock;
  FaultInjector faults;
  Venue venue;
  EventLoop loop;
  Journal journal;
  ClientOrderIdGenerator ids;
  OrderManager orders;
  SimBroker sim;
  ScriptedPath* path = nullptr;
  Instrument instrument;
};

}  // namespace backstop::testing_support
