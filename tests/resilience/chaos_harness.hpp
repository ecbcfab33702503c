#pragma once
// The chaos driver's machinery: child processes that are always reaped, a small loopback HTTP
// helper for the emulators' control APIs, and one seeded chaos run (emulators + FaultProxies +
// `backstop run`, killed and restarted, faults on and off) that ends with everything the
// invariant checks need: the emulators' own logs and positions, the journal read back, and the
// driver's timeline of what it did when.
#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace backstop::chaos {

using Nanos = std::int64_t;  // wall clock, ns since the epoch (the journal's and emulators' clock)
Nanos now_ns();

// A child process, SIGKILLed and reaped when it goes out of scope (also on a failed assertion or
// an exception). The child also dies with the driver (PR_SET_PDEATHSIG).
class Child {
 public:
  Child() = default;
  // stdout and stderr are appended to the given files.
  Child(std::vector<std::string> argv, const std::filesystem::path& out, const std::filesystem::path& err);
  ~Child();
  Child(Child&& o) noexcept;
  Child& operator=(Child&& o) noexcept;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  bool running();                // reaps it if it ended
  std::optional<int> exit_code() const { return exit_code_; }  // -signal when killed by one
  void kill9();                  // SIGKILL and reap
  // SIGTERM, then SIGKILL after `grace_ms`; reaps. Returns the exit code (-signal).
  int terminate(int grace_ms);
  // Waits up to `timeout_ms` for it to end by itself; nullopt if still running.
  std::optional<int> wait(int timeout_ms);

 private:
  void reap(int status);
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

// Blocking HTTP/1.1 on 127.0.0.1. Returns nullopt on a transport error.
struct HttpReply {
  int status = 0;
  std::string body;
};
std::optional<HttpReply> http(std::uint16_t port, const std::string& method, const std::string& path,
                              const std::string& body = {}, const std::string& content_type = "application/json",
                              const std::string& bearer = {}, int timeout_ms = 5000);

// ---- One run's record ----------------------------------------------------------------------

enum class Mode { failover, dual };

// One thing the driver did, from `start` to `end` (equal for instantaneous actions).
struct Episode {
  std::string kind;    // proxy_dead, proxy_stall, proxy_503, stream_stall, drop_fills, ghost_stops,
                       // http_429, ibkr_session_timeout, ibkr_gateway_restart, ts_token_expiry,
                       // ts_goaway, emulator_sigkill, lost_reply, router_sigkill
  std::string broker;  // "ib", "ts", or "" (the router)
  Nanos start = 0;
  Nanos end = 0;
  std::string detail;
};

// One `backstop run` process.
struct RouterLife {
  int index = 0;
  bool final_run = false;  // the last, fault-free run with --flatten-on-exit
  Nanos spawned = 0;
  Nanos ready = 0;  // printed "running": recovered and reconciled (0 = never)
  Nanos ended = 0;
  std::string how;  // "sigkill", "sigterm", "exit N"
  std::string last_stderr;
};

struct QuotePoint {
  Nanos at = 0;         // after it was posted to both emulators
  std::int64_t last = 0;  // price units (core Price)
};

struct RunSettings {
  std::uint64_t seed = 1;
  int chaos_seconds = 30;
  std::filesystem::path backstop;
  std::filesystem::path dir;  // the run's own temp dir
  // The TradeStation emulator places each replace as a new order (`--replace-new-order-id`):
  // exploratory, off in CI (whether TradeStation does that is undocumented).
  bool ts_replace_new_order_id = false;
};

struct RunRecord {
  RunSettings settings;
  Mode mode = Mode::failover;
  std::vector<std::string> route;  // broker order
  std::string base_profile;        // emulators' profile outside episodes
  Nanos started = 0, finished = 0;
  std::vector<Episode> episodes;
  std::vector<RouterLife> routers;
  std::vector<QuotePoint> quotes;
  std::int64_t ghost_grace_ms = 0;
  // Every third seed: protection `local` (a mean-reversion strategy whose stops Backstop holds and
  // sends as market orders when price goes through them); the others: a bracket breakout under
  // `guard` (broker stops, ghost stops caught and flattened).
  bool local_stops = false;
  // Seeds 1, 7, 13, ... (of the others): the mean-reversion strategy under `guard` instead of the
  // breakout, its stops at the brokers and trailing (replaced toward the market every few ticks),
  // so replaces meet the kills and faults too. Its `local` runs trail their held stops as well.
  bool trailing_broker_stops = false;
  nlohmann::json ts_log, ib_log;  // GET /__emulator/log
  std::optional<std::int64_t> ts_position, ib_position;  // AAPL, by each emulator's own query
  std::string position_error;
  nlohmann::json orders;  // `backstop orders --json`
  int orders_rc = -1;
  std::string orders_error;
  // Journal events of kind "ghost_stop": client order id -> declared at.
  std::vector<std::pair<std::string, Nanos>> ghost_events;
  // Journal events of kind "stop_crossed": Backstop itself saw price go through the stop.
  std::vector<std::pair<std::string, Nanos>> crossed_events;
  // Journal events of the `local` policy: held stops released ("local_stop_fired"), crossed while
  // a restarted router's recovery ran ("local_stop_crossed_during_recovery"), sent again after a
  // kill between release and send or after an exit failed ("local_stop_resent"), an exit that ended
  // unfilled ("local_stop_release_failed"), and of those the ones after which the guard gave up.
  std::map<std::string, std::vector<std::pair<std::string, Nanos>>> local_events;
  std::vector<std::pair<std::string, Nanos>> local_exits_given_up;
  std::string setup_error;  // the run could not be carried out (not an invariant finding)
};

// Carries out one seeded run. Never throws for a Backstop misbehaviour; fills setup_error when
// the harness itself could not run (emulator did not start, ...).
RunRecord run_chaos(const RunSettings& settings);

const char* to_string(Mode m);

}  // namespace backstop::chaos
