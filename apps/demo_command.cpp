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
#include "apps/demo_brokers.hpp"
#include "core/error.hpp"
#include "routing/order_manager.hpp"
#include "config/config.hpp"
#include "routing/reconciler.hpp"
#include "routing/stop_guard.hpp"
#include "routing/strategies/strategy_factory.hpp"
#include "routing/strategy_runner.hpp"

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
  const BrokerConfig* broker_config = route ? config.find_broker(route->brokers.front()) : nullptr;
  if (!broker_config) throw ConfigError("strategy " + strategy_config.name + " has no route to a broker");
  const Instrument* instrument = config.find_instrument(strategy_config.instrument);

  SystemClock clock;
  EventLoop loop(clock);
  const Timestamp origin = loop.now();
  if (opt.journal.empty()) opt.journal = default_journal_path(origin);
  if (std::FILE* f = std::fopen(opt.journal.c_str(), "r")) {
    std::fclose(f);
    throw cli::UsageError("--journal " + opt.journal + " already exists; the demo starts a fresh journal");
  }

  // The simulated broker's own settings give the defaults; an emulator gets the same profile.
  const std::uint64_t seed = opt.seed.value_or(broker_config->sim() ? broker_config->sim()->seed : 7);
  FaultProfile profile = opt.faults ? FaultProfile::named(*opt.faults)
                                    : (broker_config->sim() ? broker_config->sim()->faults : FaultProfile::named("demo"));
  std::map<std::string, Instrument> instruments;
  for (const auto& inst : config.instruments) instruments[inst.symbol] = inst;
  auto demo_broker = make_demo_broker(config, *broker_config, *instrument, loop, clock, profile, seed);
  Broker& broker = demo_broker->broker();

  Journal journal(opt.journal);
  ClientOrderIdGenerator ids(ClientOrderIdGenerator::time_prefix(origin));
  OrderManagerOptions om_opt;
  om_opt.resolve_retry_interval = std::chrono::milliseconds(200);
  om_opt.stuck_threshold = config.reconciliation.stuck_order_threshold;
  OrderManager orders(loop, journal, ids, om_opt);

  orders.add_broker(broker);

  StopGuardSettings guard_settings;
  guard_settings.policy = strategy_config.protection;
  guard_settings.verify_deadline = config.protection.verify_deadline;
  guard_settings.reverify_interval = config.protection.reverify_interval;
  guard_settings.ghost_grace = config.protection.ghost_grace;
  guard_settings.trigger = config.protection.trigger;
  guard_settings.lint.required_tif = config.protection.default_stop_tif;
  guard_settings.lint.outside_rth = config.protection.outside_rth;
  guard_settings.lint.allow_marketable = config.protection.allow_marketable_stops;
  StopGuard guard(loop, orders, journal, guard_settings, instruments);

  auto strategy = make_strategy(strategy_config);
  StrategyRunner runner(*strategy, orders, loop, broker.name(), instruments);

  std::cout << fmt::format("Backstop demo: {} of {} ({}) on broker \"{}\": {} (seed {}, fault profile \"{}\", "
                           "protection \"{}\")\n",
                           fmt::format("{:.1f}s", static_cast<double>(opt.run_for.count()) / 1e9), strategy_config.name,
                           strategy_config.kind, broker.name(), demo_broker->description(), seed, profile.name,
                           to_string(strategy_config.protection))
            << "config: " << (opt.config ? *opt.config : "embedded default (config/examples/sim.json)") << "\n"
            << "journal: " << opt.journal << "\n\n";

  Reconciler reconciler(loop, orders, journal,
                        {config.reconciliation.positions_interval, config.reconciliation.orders_interval});

  // Runs the loop for a while of real time (timers, network answers, journal commits).
  auto run_for = [&loop](Duration d) { loop.run_until(loop.now() + d.count()); };

  // Connect (an adapter logs in and opens its streams), then send nothing new before the
  // journal's open orders are resolved (none, on a fresh one) and the broker is reconciled.
  demo_broker->start();
  const Timestamp connect_deadline = loop.now() + to_ns(std::chrono::seconds(15));
  while (!demo_broker->ready() && loop.now() < connect_deadline) run_for(std::chrono::milliseconds(20));
  if (!demo_broker->ready())
    throw Error(broker.name() + " did not connect within 15 s: " + broker.health().detail);
  bool ready = false;
  orders.recover([&](std::size_t, std::size_t) { reconciler.start([&] { ready = true; }); });
  while (!ready) run_for(std::chrono::milliseconds(10));
  // The stop guard sees each tick before the strategy does.
  broker.subscribe_quotes({instrument->symbol}, [&](const Quote& q) {
    guard.on_quote(q);
    runner.on_quote(q);
  });
  runner.start();

  loop.run_until(origin + opt.run_for.count());

  // Wind down: stop the strategy, let the guard finish what it started, cancel what is
  // working, flatten, and read everything back.
  runner.stop();
  loop.run_until(loop.now() + (config.protection.ghost_grace + std::chrono::milliseconds(500)).count());
  for (const OrderRecord* o : orders.working_orders()) orders.cancel(o->spec.client_order_id);
  run_for(std::chrono::milliseconds(300));
  orders.resync();
  run_for(std::chrono::milliseconds(300));
  for (const auto& [key, pos] : orders.positions()) {
    if (pos.quantity == 0) continue;
    orders.submit(key.first, market_order(key.second, pos.quantity > 0 ? Side::sell : Side::buy,
                                          pos.quantity > 0 ? pos.quantity : -pos.quantity));
  }
  run_for(std::chrono::milliseconds(500));
  orders.resync();
  run_for(std::chrono::milliseconds(300));
  // The broker's own word on the final position, through its query.
  std::optional<PositionsResult> final_positions;
  broker.list_positions([&](PositionsResult r) { final_positions = std::move(r); });
  for (int i = 0; i < 250 && !final_positions; ++i) run_for(std::chrono::milliseconds(20));
  demo_broker->stop();
  reconciler.stop();
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

  std::cout << "\nPosition at the broker:";
  if (!final_positions || final_positions->outcome != Outcome::accepted) {
    std::cout << " unknown (" << (final_positions ? final_positions->message : "no answer") << ")";
  } else {
    bool any = false;
    for (const auto& p : final_positions->positions)
      if (p.quantity != 0) std::cout << " " << p.symbol << " " << p.quantity, any = true;
    if (!any) std::cout << " flat";
  }
  std::cout << "   (Backstop's record:";
  bool flat = true;
  for (const auto& [key, pos] : orders.positions())
    if (pos.quantity != 0) std::cout << " " << key.second << " " << pos.quantity, flat = false;
  std::cout << (flat ? " flat)\n" : ")\n");

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

  const auto met = demo_broker->faults();
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
