#pragma once
// Backstop's configuration: one JSON file (comments allowed) read into these structs.
//
// Switching brokers is meant to be a config edit, not a code change, so the loader is strict:
// every error is reported at once with its exact path ("routes[0].brokers[1]: unknown broker
// "tss" (did you mean "ts"?)"), unknown keys are refused (a misspelt "protecton" would
// otherwise silently leave a strategy on the default policy), and values are checked against
// each other (routes, strategies, instruments and brokers must all refer to defined names).
//
// Strings may contain ${NAME} references, expanded from the environment; credentials belong
// there, not in the file. "$${" writes a literal "${". File paths may start with "~/" (HOME);
// relative paths are relative to the working directory, like any command-line tool's.
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "brokers/sim/fault_injector.hpp"
#include "core/clock.hpp"
#include "core/error.hpp"
#include "core/instrument.hpp"
#include "core/protection.hpp"
#include "core/order.hpp"
#include "core/price.hpp"

namespace backstop {

struct JournalConfig {
  std::string path;  // SQLite file; created on first use
};

// How a broker's certificate is checked. IBKR's local gateway presents a self-signed
// certificate: pin it rather than switching verification off.
struct TlsConfig {
  bool verify = true;
  std::string ca_file;           // empty: the system trust store
  std::string pinned_cert_file;  // when set, the peer must present exactly this certificate
  bool insecure_skip_verify = false;  // accepted only for loopback hosts

  bool verifies_peer() const { return verify && !insecure_skip_verify; }
};

struct SimBrokerSettings {
  FaultProfile faults;  // FaultProfile::named("none") unless configured
  std::uint64_t seed = 7;
  Duration tick{std::chrono::milliseconds(100)};  // simulated market tick period
};

struct TradeStationSettings {
  std::string base_url;  // required: live and simulation are different hosts, never defaulted
  std::string token_url = "https://signin.tradestation.com/oauth/token";
  std::string client_id;
  std::string client_secret;  // empty: PKCE flow (the token endpoint takes no secret)
  std::string refresh_token_file;  // "~" expanded; may not exist yet (first authorization)
  std::string redirect_uri = "http://127.0.0.1:31022/callback";
  TlsConfig tls;
  Duration stream_inactivity_timeout{std::chrono::seconds(30)};
};

// Reply-confirmation message ids Backstop answers "yes" to by default: price-percentage
// constraint, no market data, size limit, total value limit, and the stop-order notice.
std::vector<std::string> default_ibkr_confirm_message_ids();

struct IbkrSettings {
  std::string base_url = "https://localhost:5000/v1/api";
  TlsConfig tls;
  std::vector<std::string> confirm_message_ids = default_ibkr_confirm_message_ids();
  std::vector<std::string> suppress_message_ids;  // sent to /iserver/questions/suppress (<= 51)
  Duration tickle_interval{std::chrono::seconds(60)};
};

enum class BrokerKind { sim, tradestation, ibkr };

struct BrokerConfig {
  std::string name;  // unique; what routes, broker_symbols and reports call this broker
  BrokerKind kind = BrokerKind::sim;
  std::string account;
  // Holds the alternative matching `kind`.
  std::variant<SimBrokerSettings, TradeStationSettings, IbkrSettings> settings;

  const SimBrokerSettings* sim() const { return std::get_if<SimBrokerSettings>(&settings); }
  const TradeStationSettings* tradestation() const {
    return std::get_if<TradeStationSettings>(&settings);
  }
  const IbkrSettings* ibkr() const { return std::get_if<IbkrSettings>(&settings); }
};


struct StrategyConfig {
  std::string name;
  std::string kind;        // one of strategy_kinds()
  std::string instrument;  // an Instrument::symbol
  std::int64_t quantity = 0;
  nlohmann::json params = nlohmann::json::object();  // passed to the strategy as written
  ProtectionPolicy protection = ProtectionPolicy::verify;
};

enum class RouteMode {
  failover,  // new orders go to the first healthy broker in order
  dual,      // the strategy runs on both brokers at once, for comparison
};

struct RouteConfig {
  std::string strategy;
  std::vector<std::string> brokers;  // in priority order; exactly two for dual
  RouteMode mode = RouteMode::failover;
  bool return_to_primary = true;  // failover: go back once the primary is healthy again
};

struct RiskConfig {
  std::int64_t max_order_quantity = 1000;
  Price max_notional = Price::from_integer(1'000'000);
  double max_orders_per_second = 5;
};


struct ProtectionConfig {
  Duration verify_deadline{std::chrono::milliseconds(5000)};
  Duration reverify_interval{std::chrono::seconds(60)};
  Duration ghost_grace{std::chrono::milliseconds(2000)};
  TriggerMethod trigger = TriggerMethod::last;
  bool allow_marketable_stops = false;
  TimeInForce default_stop_tif = TimeInForce::gtc;
  bool outside_rth = false;
  // Broker whose quotes the trigger watchdog uses; unset: each stop's own broker. A different
  // broker is better: a venue that loses a stop may also be the one with bad prices.
  std::optional<std::string> market_data_source;
};

struct ReconciliationConfig {
  Duration positions_interval{std::chrono::seconds(30)};
  Duration orders_interval{std::chrono::seconds(300)};
  Duration stuck_order_threshold{std::chrono::seconds(10)};
};

struct HealthConfig {
  int failure_threshold = 3;  // consecutive failures that open the circuit
  Duration open_interval{std::chrono::seconds(10)};
  int half_open_probes = 1;
  Duration request_timeout{std::chrono::milliseconds(3000)};
  Duration latency_degraded{std::chrono::milliseconds(1000)};
  // How often each broker gets a health check. New orders leave a failed broker within one
  // interval plus one request timeout. TradeStation's 250 requests / 5 min per category and
  // IBKR's 1/s tickle bound how low it may go against live brokers.
  Duration check_interval{std::chrono::milliseconds(2000)};
};

struct ApiConfig {
  bool enabled = false;
  std::string bind = "127.0.0.1";
  int port = 8787;
  std::string token_file = "backstop-api.token";  // bearer token; must be mode 0600
  bool allow_non_loopback = false;
};

// Where the threads run (core/cpu_affinity.hpp), and how the loop's thread waits. Unset: wherever
// the kernel places them, and the idle loop sleeps. Keeping
// the event loop's thread off the CPU that takes the journal disk's interrupts is what brought the
// router's p99 under 10 us on the CI VM (bench/PERFORMANCE.md, 2026-12-01).
struct RuntimeConfig {
  std::optional<int> loop_cpu;            // the thread that runs the event loop (`backstop run`'s main thread)
  std::optional<int> journal_writer_cpu;  // the journal's group-commit writer
  // How long the idle event loop spins before it sleeps (EventLoop::set_busy_poll): 0, the
  // default, never spins. Worth it on a machine with a CPU to spare for the loop.
  std::chrono::microseconds busy_poll{0};
};

struct Config {
  std::string origin;  // where it came from: a file path, or "<default sim config>"
  JournalConfig journal;
  std::vector<BrokerConfig> brokers;
  std::vector<Instrument> instruments;
  std::vector<StrategyConfig> strategies;
  std::vector<RouteConfig> routes;
  RiskConfig risk;
  ProtectionConfig protection;
  ReconciliationConfig reconciliation;
  HealthConfig health;
  ApiConfig api;
  RuntimeConfig runtime;

  // nullptr when not defined (a loaded Config has every cross-reference resolved).
  const BrokerConfig* find_broker(std::string_view name) const;
  const Instrument* find_instrument(std::string_view symbol) const;
  const StrategyConfig* find_strategy(std::string_view name) const;
  const RouteConfig* route_for(std::string_view strategy) const;
};

// One problem, at one place: path is "brokers[1].base_url" (empty for whole-file problems
// such as a JSON syntax error or an unreadable file).
struct ConfigIssue {
  std::string path;
  std::string message;

  std::string to_string() const { return path.empty() ? message : path + ": " + message; }
  bool operator==(const ConfigIssue&) const = default;
};

struct LoadResult {
  std::string origin;
  std::optional<Config> config;    // set exactly when issues is empty
  std::vector<ConfigIssue> issues;  // every problem found, in file order where possible

  bool ok() const { return config.has_value(); }
  // The config, or throws ConfigError whose message lists every issue, one per line, as
  // "origin: path: reason".
  const Config& value() const&;
  Config value() &&;
};

// Lets tests (and embedders) supply the environment; the default reads the process's.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

struct LoadOptions {
  EnvLookup env;  // empty: std::getenv
};

LoadResult load_config_text(std::string_view text, const std::string& origin,
                            const LoadOptions& options = {});
LoadResult load_config_file(const std::string& path, const LoadOptions& options = {});

// The embedded default the demo runs: config/examples/sim.json, compiled in at build time so
// that the two can never drift apart.
std::string_view default_sim_config_text();
Config default_sim_config();

// Strategy kinds Backstop ships; a config naming another is refused rather than failing later.
const std::vector<std::string>& strategy_kinds();

const char* to_string(BrokerKind k);
const char* to_string(RouteMode m);
std::optional<BrokerKind> broker_kind_from_string(std::string_view s);
std::optional<RouteMode> route_mode_from_string(std::string_view s);

}  // namespace backstop
