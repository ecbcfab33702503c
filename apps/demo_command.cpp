// `backstop demo`: a bracket strategy on the simulated venue, with faults, for a bounded time,
// then a readable summary. Everything goes through the same OrderManager, journal and Broker
// interface as a live session.
#include <spdlog/spdlog.h>

#include <fmt/format.h>

#include <iostream>
#include <map>

#include "apps/cli.hpp"
#include "apps/commands.hpp"
#include "apps/order_report.hpp"
#include "brokers/sim/sim_broker.hpp"
#include "routing/order_manager.hpp"
#include "routing/strategies/bracket_breakout.hpp"
#include "routing/strategy_runner.hpp"

namespace backstop {

namespace {
constexpr const char* kUsage = R"(usage: backstop demo [--for DURATION] [--seed N] [--faults PROFILE]
                     [--journal PATH] [--verbose]

Runs a bracket-breakout strategy on the simulated venue (seeded random walk, AAPL, tick 0.01)
with injected faults, then prints every order with its lifecycle timestamps, the fills, the
position, and every fault the session met.

  --for DURATION    how long to trade (default 20s; examples: 5s, 1500ms, 2m)
  --seed N          seed of the price path and of the faults (default 42)
  --faults PROFILE  none | demo | ghost_stops | lossy_stream | chaos (default demo)
  --journal PATH    journal file to create (default backstop-demo-<time>.db); must not exist
  --verbose         log every event to stderr
)";

struct DemoOptions {
  Duration run_for{std::chrono::seconds(20)};
  std::uint64_t seed = 42;
  std::string faults = "demo";
  std::string journal;
  bool verbose = false;
};

std::string default_journal_path(Timestamp now) {
  const std::string iso = format_timestamp(now);  // 2026-11-24T02:10:58.123456Z
  std::string compact;
  for (char c : iso.substr(0, 19))
    if (c != '-' && c != ':') compact += c == 'T' ? '-' : c;
  return "backstop-demo-" + compact + ".db";
}
}  // namespace

int demo_main(cli::Args& args) {
  if (args.flag("--help") || args.flag("-h")) {
    std::cout << kUsage;
    return 0;
  }
  DemoOptions opt;
  if (auto v = args.value("--for")) opt.run_for = cli::parse_duration(*v);
  if (auto v = args.value("--seed")) {
    try {
      opt.seed = std::stoull(*v);
    } catch (const std::exception&) {
      throw cli::UsageError("--seed: not a number \"" + *v + "\"");
    }
  }
  if (auto v = args.value("--faults")) opt.faults = *v;
  if (auto v = args.value("--journal")) opt.journal = *v;
  opt.verbose = args.flag("--verbose");
  args.expect_no_more();

  spdlog::set_level(opt.verbose ? spdlog::level::info : spdlog::level::err);
  SystemClock clock;
  EventLoop loop(clock);
  const Timestamp origin = loop.now();
  if (opt.journal.empty()) opt.journal = default_journal_path(origin);
  if (std::FILE* f = std::fopen(opt.journal.c_str(), "r")) {
    std::fclose(f);
    throw cli::UsageError("--journal " + opt.journal + " already exists; the demo starts a fresh journal");
  }

  FaultInjector faults(FaultProfile::named(opt.faults), opt.seed);
  Venue venue(clock, faults);
  Instrument aapl;
  aapl.symbol = "AAPL";
  aapl.exchange = "SMART";
  venue.add_instrument(aapl.symbol, aapl.tick_size);

  Journal journal(opt.journal);
  ClientOrderIdGenerator ids(ClientOrderIdGenerator::time_prefix(origin));
  OrderManagerOptions om_opt;
  om_opt.resolve_retry_interval = std::chrono::milliseconds(200);
  OrderManager orders(loop, journal, ids, om_opt);

  SimBrokerOptions sim_opt;
  sim_opt.tick_interval = std::chrono::milliseconds(25);
  SimBroker sim(sim_opt, loop, venue);
  sim.add_price_path(std::make_unique<RandomWalkPath>(
      RandomWalkParams{"AAPL", Price::parse("232.86"), aapl.tick_size, 1, 2, 400}, opt.seed));
  orders.add_broker(sim);

  BracketBreakoutParams params;
  params.symbol = "AAPL";
  params.quantity = 100;
  BracketBreakout strategy(params);
  StrategyRunner runner(strategy, orders, loop, sim.name(), {{"AAPL", aapl}});

  std::cout << fmt::format("Backstop demo: {} on the simulated venue (seed {}, fault profile \"{}\")\n",
                           fmt::format("{:.1f}s", static_cast<double>(opt.run_for.count()) / 1e9), opt.seed,
                           opt.faults)
            << "journal: " << opt.journal << "\n\n";

  // Nothing new is sent before the journal's open orders are resolved (none, on a fresh one).
  orders.recover([](std::size_t, std::size_t) {});
  sim.start();
  runner.start();

  // Streams lose events (the fault profile drops some): read the broker back every second.
  std::function<void()> periodic_resync = [&] {
    orders.resync();
    loop.call_after(std::chrono::seconds(1), periodic_resync);
  };
  loop.call_after(std::chrono::seconds(1), periodic_resync);

  loop.run_until(origin + opt.run_for.count());

  // Wind down: stop the strategy, cancel what is working, flatten, and read everything back.
  runner.stop();
  for (const OrderRecord* o : orders.working_orders()) orders.cancel(o->spec.client_order_id);
  loop.run_until(loop.now() + std::chrono::milliseconds(300).count());
  orders.resync();
  loop.run_until(loop.now() + std::chrono::milliseconds(300).count());
  for (const auto& [key, pos] : orders.positions()) {
    if (pos.quantity == 0) continue;
    orders.submit(key.first, market_order(key.second, pos.quantity > 0 ? Side::sell : Side::buy,
                                          pos.quantity > 0 ? pos.quantity : -pos.quantity));
  }
  loop.run_until(loop.now() + std::chrono::milliseconds(500).count());
  orders.resync();
  loop.run_until(loop.now() + std::chrono::milliseconds(300).count());
  sim.stop();
  journal.flush();

  // Summary, from the journal: what is on disk is what counts.
  const auto recorded = journal.orders();
  std::map<std::string, int> by_state;
  for (const auto& o : recorded) by_state[to_string(o.state)]++;
  std::cout << "Orders (" << recorded.size() << "):";
  for (const auto& [state, n] : by_state) std::cout << " " << n << " " << state << ";";
  std::cout << "  times relative to start\n";
  print_order_table(std::cout, recorded, origin);

  const auto fills = journal.fills();
  std::cout << "\nFills (" << fills.size() << "):\n";
  print_fills(std::cout, fills, origin);

  std::cout << "\nPosition at the venue:";
  const auto venue_positions = venue.positions();
  if (venue_positions.empty()) std::cout << " flat";
  for (const auto& p : venue_positions) std::cout << " " << p.symbol << " " << p.quantity;
  std::cout << "   (Backstop's record:";
  bool flat = true;
  for (const auto& [key, pos] : orders.positions())
    if (pos.quantity != 0) std::cout << " " << key.second << " " << pos.quantity, flat = false;
  std::cout << (flat ? " flat)\n" : ")\n");

  const auto met = faults.log();
  std::map<std::string, int> fault_counts;
  for (const auto& f : met) fault_counts[f.kind]++;
  std::cout << "\nFaults injected (" << met.size() << "):";
  for (const auto& [kind, n] : fault_counts) std::cout << " " << n << " " << kind << ";";
  std::cout << "\n";
  for (const auto& f : met) {
    if (f.kind == "ack_delay") continue;  // frequent and benign; counted above
    std::cout << fmt::format("  {:>9} {:<18} {:<20} {}\n", fmt::format("+{:.3f}s", (f.at - origin) / 1e9), f.kind,
                             f.client_order_id, f.detail);
  }
  const auto stuck = orders.stuck_orders();
  if (!stuck.empty()) std::cout << "\nWARNING: " << stuck.size() << " orders still unresolved (pre_sent/pending)\n";
  std::cout << "\nRead it back: backstop orders --journal " << opt.journal << " [--json]\n";
  return 0;
}

}  // namespace backstop
