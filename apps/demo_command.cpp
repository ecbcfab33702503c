// `backstop demo`: the configured strategy on its broker (the simulated venue, or an adapter
// against its protocol emulator), with faults, for a bounded time, then a readable summary.
// Everything goes through the same OrderManager, journal and Broker interface as a live session.
#include <spdlog/spdlog.h>

#include <fmt/format.h>

#include <iostream>
#include <map>

#include "apps/cli.hpp"
#include "apps/commands.hpp"
#include "apps/order_report.hpp"
#include "apps/session.hpp"
#include "core/error.hpp"
#include "routing/order_manager.hpp"
#include "config/config.hpp"
#include "routing/reconciler.hpp"
#include "routing/stop_guard.hpp"

namespace backstop {

namespace {
constexpr const char* kUsage = R"(usage: backstop demo [--config FILE] [--for DURATION] [--seed N] [--faults PROFILE]
                     [--journal PATH] [--verbose]

Runs the configured strategy on its broker, with injected faults, under the configured
protection policy: on the simulated venue in process (the default), or, for a TradeStation or
IBKR broker with a loopback base_url (config/examples/*-emulated.json), through the real adapter
against that broker's protocol emulator, started here on the configured port. It then prints
every order with its lifecycle timestamps, the fills, every stop's verification, every ghost
stop caught (when price crossed, when it was declared, what was done), the position, and every
fault the session met.

  --config FILE     config to run (default: the embedded config/examples/sim.json)
  --for DURATION    how long to trade (default 20s; examples: 5s, 1500ms, 2m)
  --seed N          seed of the price path and of the faults (default: the config's)
  --faults PROFILE  none | demo | ghost_stops | lossy_stream | chaos (default: the config's)
  --journal PATH    journal file to create (default backstop-demo-<time>.db); must not exist
  --verbose         log every event to stderr
)";

struct DemoOptions {
  std::optional<std::string> config;
  Duration run_for{std::chrono::seconds(20)};
  std::optional<std::uint64_t> seed;
  std::optional<std::string> faults;
  std::string journal;
  bool verbose = false;
};

std::string relative(Timestamp t, Timestamp origin) { return fmt::format("+{:.3f}s", (t - origin) / 1e9); }

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
  opt.config = args.value("--config");
  if (auto v = args.value("--for")) opt.run_for = cli::parse_duration(*v);
  if (auto v = args.value("--seed")) {
    try {
      opt.seed = std::stoull(*v);
    } catch (const std::exception&) {
      throw cli::UsageError("--seed: not a number \"" + *v + "\"");
    }
  }
  opt.faults = args.value("--faults");
  if (auto v = args.value("--journal")) opt.journal = *v;
  opt.verbose = args.flag("--verbose");
  args.expect_no_more();

  spdlog::set_level(opt.verbose ? spdlog::level::info : spdlog::level::err);
  const Config config = opt.config ? load_config_file(*opt.config).value() : default_sim_config();
  if (config.strategies.empty()) throw ConfigError("the config defines no strategy to run");
  const StrategyConfig& strategy_config = config.strategies.front();
  const RouteConfig* route = config.route_for(strategy_config.name);
  if (!route) throw ConfigError("strategy " + strategy_config.name + " has no route to a broker");

  SystemClock clock;
  EventLoop loop(clock);
  const Timestamp origin = loop.now();
  if (opt.journal.empty()) opt.journal = default_journal_path(origin);
  if (std::FILE* f = std::fopen(opt.journal.c_str(), "r")) {
    std::fclose(f);
    throw cli::UsageError("--journal " + opt.journal + " already exists; the demo starts a fresh journal");
  }

  SessionOptions so;
  so.journal_path = opt.journal;
  so.seed = opt.seed;
  so.fault_profile = opt.faults;
  so.start_emulators = true;
  Session session(config, loop, clock, so);

  std::string route_text;
  for (const auto& b : route->brokers)
    route_text += (route_text.empty() ? "" : route->mode == RouteMode::dual ? " + " : " -> ") + b;
  std::cout << fmt::format("Backstop demo: {} of {} ({}) on route {} ({}) (seed {}, fault profile \"{}\", "
                           "protection \"{}\")\n",
                           fmt::format("{:.1f}s", static_cast<double>(opt.run_for.count()) / 1e9), strategy_config.name,
                           strategy_config.kind, route_text, to_string(route->mode), session.seed(),
                           session.fault_profile_name(), to_string(strategy_config.protection));
  for (const auto& b : session.brokers())
    std::cout << "  broker \"" << b->broker().name() << "\": " << b->description() << "\n";
  std::cout << "config: " << (opt.config ? *opt.config : "embedded default (config/examples/sim.json)") << "\n"
            << "journal: " << opt.journal << "\n\n";

  session.start();
  loop.run_until(origin + opt.run_for.count());
  const WindDownResult wound_down = session.wind_down();
  session.stop();

  Journal& journal = session.journal();
  OrderManager& orders = session.orders();
  StopGuard& guard = session.guard();
  Reconciler& reconciler = session.reconciler();

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

  std::cout << "\nPosition at the broker:";
  for (const auto& [name, r] : session.final_positions()) {
    std::cout << " " << name << ":";
    if (r.outcome != Outcome::accepted) {
      std::cout << " unknown (" << r.message << ")";
      continue;
    }
    bool any = false;
    for (const auto& p : r.positions)
      if (p.quantity != 0) std::cout << " " << p.symbol << " " << p.quantity, any = true;
    if (!any) std::cout << " flat";
  }
  std::cout << "   (Backstop's record:";
  bool flat = true;
  for (const auto& [key, pos] : orders.positions())
    if (pos.quantity != 0) std::cout << " " << key.first << ": " << key.second << " " << pos.quantity, flat = false;
  std::cout << (flat ? " flat)\n" : ")\n");
  if (!wound_down.settled()) std::cout << "Wind-down did not settle within its time: " << wound_down.describe() << "\n";

  std::map<std::string, int> verification_counts;
  for (const auto& [coid, rec] : guard.stops()) verification_counts[to_string(rec.verification)]++;
  std::cout << "\nStops verified by read-back (" << guard.stops().size() << "):";
  for (const auto& [outcome, n] : verification_counts) std::cout << " " << n << " " << outcome << ";";
  std::cout << "\n";
  for (const auto& [coid, rec] : guard.stops())
    if (rec.verification != Verification::verified)
      std::cout << fmt::format("  {:<20} {:<9} {}\n", coid, to_string(rec.verification), rec.detail);

  std::cout << "\nGhost stops caught (" << guard.ghosts().size() << "):\n";
  for (const auto& g : guard.ghosts())
    std::cout << fmt::format("  {:<20} {} stop {} : price {} crossed at {}, declared ghost at {} ({} ms later)\n      -> {}\n",
                             g.client_order_id, to_string(g.side), g.stop_price.to_string(), g.crossing_price.to_string(),
                             relative(g.crossed_at, origin), relative(g.declared_at, origin),
                             (g.declared_at - g.crossed_at) / 1'000'000, g.action);

  std::map<std::string, int> divergence_counts;
  for (const auto& d : reconciler.divergences()) divergence_counts[d.kind]++;
  std::cout << "\nDivergences found by reconciliation (" << reconciler.divergences().size() << "):";
  for (const auto& [kind, n] : divergence_counts) std::cout << " " << n << " " << kind << ";";
  std::cout << "\n";

  const auto health_changes = journal.events("health_change");
  std::cout << "\nBroker health changes (" << health_changes.size() << "):\n";
  for (const auto& ev : health_changes)
    std::cout << fmt::format("  {:>9} {:<6} {}\n", relative(ev.at, origin), ev.broker, ev.detail);
  std::cout << "Route switches (" << session.router().switches().size() << "):\n";
  for (const auto& sw : session.router().switches())
    std::cout << fmt::format("  {:>9} {}: new orders {} -> {}: {}\n", relative(sw.at, origin), sw.strategy, sw.from,
                             sw.to, sw.reason);
  if (route->mode == RouteMode::dual)
    std::cout << "Dual-run order pairs journaled: " << journal.events("dual_pair").size()
              << " (compare them: backstop compare --journal " << opt.journal << ")\n";

  std::vector<FaultRecord> met;
  for (const auto& b : session.brokers())
    for (auto& f : b->faults()) met.push_back(std::move(f));
  std::map<std::string, int> fault_counts;
  for (const auto& f : met) fault_counts[f.kind]++;
  std::cout << "\nFaults injected (" << met.size() << "):";
  for (const auto& [kind, n] : fault_counts) std::cout << " " << n << " " << kind << ";";
  std::cout << "\n";
  for (const auto& f : met) {
    if (f.kind == "ack_delay") continue;  // frequent and benign; counted above
    std::cout << fmt::format("  {:>9} {:<18} {:<20} {}\n", relative(f.at, origin), f.kind,
                             f.client_order_id, f.detail.size() > 110 ? f.detail.substr(0, 107) + "..." : f.detail);
  }
  const auto stuck = orders.stuck_orders();
  if (!stuck.empty()) std::cout << "\nWARNING: " << stuck.size() << " orders still unresolved (pre_sent/pending)\n";
  std::cout << "\nRead it back: backstop orders --journal " << opt.journal << " [--json]\n";
  return 0;
}

}  // namespace backstop
