// `backstop run`: the configured strategies on their routes until stopped (SIGINT/SIGTERM) or for
// a set time. Unlike the demo it does not wind positions down on exit: working orders and the
// protective stops at the brokers stay in place, and the journal lets the next start resume them.
#include <spdlog/spdlog.h>

#include <fmt/format.h>

#include <atomic>
#include <csignal>
#include <iostream>

#include "api/api_server.hpp"
#include "apps/cli.hpp"
#include "apps/commands.hpp"
#include "apps/session.hpp"
#include "core/error.hpp"

namespace backstop {

namespace {
constexpr const char* kUsage = R"(usage: backstop run [--config FILE] [--for DURATION] [--journal PATH] [--emulate]
                    [--flatten-on-exit] [--verbose]

Runs every strategy of the config on its route (one broker, failover, or dual-run) until
SIGINT/SIGTERM or for DURATION: brokers connect, the journal's open orders are resolved and the
brokers reconciled before anything new is sent; health checks, the stop guard and
reconciliation run throughout. On exit working orders and positions stay at the brokers
(protected by their stops) unless --flatten-on-exit. A signal during start-up stops it there.

  --config FILE       config to run (default: the embedded config/examples/sim.json)
  --for DURATION      stop after this long (examples: 30s, 5m); default: until a signal
  --journal PATH      journal file (default: the config's journal.path); reused across runs
  --emulate           start each loopback adapter's protocol emulator in process
  --flatten-on-exit   cancel working orders and flatten positions before exiting; exit
                      code 1 when an order or a position is still open after it
  --verbose           log every event to stderr (default: warnings)
)";

std::atomic<bool> g_stop{false};
extern "C" void on_signal(int) { g_stop.store(true); }
}  // namespace

int run_main(cli::Args& args) {
  if (args.flag("--help") || args.flag("-h")) {
    std::cout << kUsage;
    return 0;
  }
  const auto config_path = args.value("--config");
  std::optional<Duration> run_for;
  if (auto v = args.value("--for")) run_for = cli::parse_duration(*v);
  const auto journal_arg = args.value("--journal");
  const bool emulate = args.flag("--emulate");
  const bool flatten = args.flag("--flatten-on-exit");
  const bool verbose = args.flag("--verbose");
  args.expect_no_more();
  spdlog::set_level(verbose ? spdlog::level::info : spdlog::level::warn);

  const Config config = config_path ? load_config_file(*config_path).value() : default_sim_config();
  SessionOptions so;
  so.journal_path = journal_arg.value_or(config.journal.path);
  if (so.journal_path.empty()) throw ConfigError("no journal: set journal.path in the config or pass --journal");
  so.start_emulators = emulate;  // recovery has its own, longer timeout (SessionOptions)
  so.stop_requested = [] { return g_stop.load(); };  // a signal during start-up ends it too

  SystemClock clock;
  EventLoop loop(clock);
  Session session(config, loop, clock, so);
  std::cout << "backstop run: config " << (config_path ? *config_path : "embedded default") << ", journal "
            << so.journal_path << "\n";
  for (const auto& b : session.brokers()) std::cout << "  broker \"" << b->broker().name() << "\": " << b->description() << "\n";
  session.health().on_change([](const HealthChange& c) {
    std::cout << fmt::format("{} broker {}: {} -> {} (circuit {}): {}\n", format_timestamp(c.at), c.broker,
                             to_string(c.from), to_string(c.to), to_string(c.circuit), c.reason)
              << std::flush;
  });

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  if (!session.start()) {
    // Stopped while connecting or resolving the journal's open orders: nothing new was sent, and
    // what recovery resolved is journaled; the next run resolves the rest.
    session.stop();
    std::cout << "stopped during start-up: no order was sent; the next run resolves what is still open\n";
    return 0;
  }
  // The local API and dashboard (api/), once the session is ready; the token is never printed.
  std::unique_ptr<ApiServer> api;
  if (session.config().api.enabled) {
    api = std::make_unique<ApiServer>(ApiContext{loop, session.orders(), session.router(), session.health(),
                                                 session.guard(), session.reconciler(), session.journal(),
                                                 session.config()});
    api->start();
    session.on_quote([a = api.get()](const Quote& q) { a->on_quote(q); });
    std::cout << "api: " << api->url() << " (dashboard: " << api->url() << "?token=<token>; token in "
              << api->token_file() << ")\n";
  }
  std::cout << "running; Ctrl-C to stop\n" << std::flush;
  const Timestamp end = run_for ? loop.now() + to_ns(*run_for) : std::numeric_limits<Timestamp>::max();
  while (!g_stop.load() && loop.now() < end) loop.run_until(std::min(end, loop.now() + to_ns(std::chrono::milliseconds(50))));

  if (api) api->stop();  // no new requests while winding down and stopping
  WindDownResult wound_down;
  if (flatten) wound_down = session.wind_down();
  session.stop();
  const auto working = session.orders().working_orders();
  std::cout << "stopped: " << session.orders().orders().size() << " orders this run, " << working.size()
            << " working at the brokers, " << session.guard().ghosts().size() << " ghost stops, "
            << session.reconciler().divergences().size() << " divergences\n";
  for (const auto& [key, pos] : session.orders().positions())
    if (pos.quantity != 0) std::cout << "  position " << key.first << " " << key.second << " " << pos.quantity << "\n";
  if (!wound_down.settled()) {
    // Asked to leave nothing open and could not: not a success. The journal has every order; the
    // next run resolves the ones that had not ended.
    std::cerr << "backstop run: --flatten-on-exit did not settle within its time: " << wound_down.describe() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace backstop
