#include "chaos_harness.hpp"

#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <regex>
#include <sstream>
#include <thread>

#include "core/journal.hpp"
#include "core/price.hpp"
#include "fault_proxy.hpp"

namespace backstop::chaos {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing_support::FaultProxy;

Nanos now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const char* to_string(Mode m) { return m == Mode::failover ? "failover" : "dual"; }

namespace {
void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }
constexpr Nanos kMs = 1'000'000;
constexpr Nanos kSec = 1'000'000'000;
}  // namespace

// ---- Child ---------------------------------------------------------------------------------

Child::Child(std::vector<std::string> argv, const fs::path& out, const fs::path& err) {
  // Everything the child needs is prepared before fork: between fork and exec only
  // async-signal-safe calls are allowed (the driver has threads: price pump, proxies).
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  const std::string out_s = out.string(), err_s = err.string();
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ == 0) {
    // Dies with the driver even if the driver is SIGKILLed (no orphaned emulators or routers).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(126);
    const int o = ::open(out_s.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    const int e = ::open(err_s.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (o >= 0) ::dup2(o, 1);
    if (e >= 0) ::dup2(e, 2);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  if (pid_ < 0) throw std::runtime_error("fork failed");
}

Child::~Child() {
  if (pid_ > 0 && !exit_code_) kill9();
}

Child::Child(Child&& o) noexcept : pid_(o.pid_), exit_code_(o.exit_code_) { o.pid_ = -1; }

Child& Child::operator=(Child&& o) noexcept {
  if (this != &o) {
    if (pid_ > 0 && !exit_code_) kill9();
    pid_ = o.pid_;
    exit_code_ = o.exit_code_;
    o.pid_ = -1;
  }
  return *this;
}

void Child::reap(int status) {
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : (WIFSIGNALED(status) ? -WTERMSIG(status) : -1000);
}

bool Child::running() {
  if (pid_ <= 0 || exit_code_) return false;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    reap(status);
    return false;
  }
  return true;
}

void Child::kill9() {
  if (pid_ <= 0 || exit_code_) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  if (::waitpid(pid_, &status, 0) == pid_) reap(status);
}

std::optional<int> Child::wait(int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    sleep_ms(20);
  }
  return exit_code_;
}

int Child::terminate(int grace_ms) {
  if (pid_ <= 0) return -1000;
  if (running()) {
    ::kill(pid_, SIGTERM);
    if (!wait(grace_ms)) kill9();
  }
  return exit_code_.value_or(-1000);
}

// ---- HTTP ----------------------------------------------------------------------------------

std::optional<HttpReply> http(std::uint16_t port, const std::string& method, const std::string& path,
                              const std::string& body, const std::string& content_type, const std::string& bearer,
                              int timeout_ms) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_connection_timeout(std::chrono::milliseconds(timeout_ms));
  cli.set_read_timeout(std::chrono::milliseconds(timeout_ms));
  cli.set_write_timeout(std::chrono::milliseconds(timeout_ms));
  httplib::Headers headers;
  if (!bearer.empty()) headers.emplace("Authorization", "Bearer " + bearer);
  auto send = [&]() -> httplib::Result {
    if (method == "GET") return cli.Get(path, headers);
    if (method == "DELETE") return cli.Delete(path, headers);
    return cli.Post(path, headers, body, content_type);
  };
  const httplib::Result r = send();
  if (!r) return std::nullopt;
  return HttpReply{r->status, r->body};
}

namespace {

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string last_line(const fs::path& p) {
  std::string text = read_file(p), line, last;
  std::istringstream in(text);
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  return last;
}

// An emulator started as its own process; its port is read from its banner. It keeps the
// broker's back end in a state file (--state), so that it can be SIGKILLed and started again.
struct Emulator {
  std::string name;  // "ts" / "ib"
  std::vector<std::string> argv;  // without --port
  Child child;
  std::uint16_t port = 0;
  std::string base_profile;
  int lives = 0;

  // Starts (again) on an ephemeral port; returns false when no banner came within `timeout_ms`.
  bool start(const fs::path& dir, int timeout_ms);

  bool post_faults(const json& body) const {
    auto r = http(port, "POST", "/__emulator/faults", body.dump());
    return r && r->status == 200;
  }
  json log() const {
    auto r = http(port, "GET", "/__emulator/log", {}, "application/json", {}, 15000);
    if (!r || r->status != 200) return json();
    return json::parse(r->body, nullptr, false);
  }
};

std::uint16_t wait_for_port(Child& c, const fs::path& out, int timeout_ms) {
  static const std::regex kUrl(R"(http://127\.0\.0\.1:(\d+))");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    std::smatch m;
    const std::string text = read_file(out);
    if (std::regex_search(text, m, kUrl)) return static_cast<std::uint16_t>(std::stoi(m[1]));
    if (!c.running()) return 0;
    sleep_ms(20);
  }
  return 0;
}

bool Emulator::start(const fs::path& dir, int timeout_ms) {
  // A file per life: the banner of an earlier life names a port that is gone.
  const std::string life = lives == 0 ? "" : "-" + std::to_string(lives);
  const fs::path out = dir / (name + "-emulator" + life + ".out"), err = dir / (name + "-emulator" + life + ".err");
  auto args = argv;
  args.insert(args.end(), {"--port", "0"});
  child = Child(args, out, err);
  ++lives;
  port = wait_for_port(child, out, timeout_ms);
  return port != 0;
}

// The market: one seeded random walk posted to both emulators (started with --tick-ms 0), so
// both venues and Backstop's two quote feeds see the same prices. That is what lets the test say
// when a stop was crossed, whichever venue holds it. Regimes of drift make breakouts (entries)
// and runs through stops (ghost stops crossed) frequent.
class Market {
 public:
  Market(std::uint64_t seed, std::uint16_t ts_port, std::uint16_t ib_port)
      : rng_(seed * 7919 + 17), ts_port_(ts_port), ib_port_(ib_port) {}
  ~Market() { stop(); }

  void start() {
    post();  // an initial quote before anything connects
    thread_ = std::thread([this] {
      while (!stopping_.load()) {
        sleep_ms(100);
        step();
        post();
      }
    });
  }
  void stop() {
    stopping_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  std::vector<QuotePoint> history() {
    std::lock_guard lock(mutex_);
    return history_;
  }
  // An emulator came back on another port.
  void set_ports(std::uint16_t ts_port, std::uint16_t ib_port) {
    ts_port_.store(ts_port);
    ib_port_.store(ib_port);
  }

 private:
  static constexpr std::int64_t kTick = 1'000'000;  // 0.01 in Price units
  void step() {
    if (--regime_left_ <= 0) {
      regime_left_ = std::uniform_int_distribution<int>(8, 30)(rng_);
      drift_ = std::uniform_int_distribution<int>(-1, 1)(rng_);
    }
    // Noise of up to two ticks against the drift: pullbacks that fill breakout entries one tick
    // inside the touch, and reversals that run through 6-tick stops.
    const int noise = std::uniform_int_distribution<int>(-2, 2)(rng_);
    mid_ += (drift_ + noise) * kTick;
    // Keep it where the emulators' contracts make sense.
    if (mid_ < 170 * 100 * kTick) drift_ = 1;
    if (mid_ > 210 * 100 * kTick) drift_ = -1;
  }
  void post() {
    const std::string bid = Price::from_units(mid_ - kTick).to_string();
    const std::string ask = Price::from_units(mid_ + kTick).to_string();
    const std::string last = Price::from_units(mid_).to_string();
    // Sizes 0: unlimited liquidity, so market orders (guard flattens) always fill.
    json ts{{"symbol", "AAPL"}, {"bid", bid}, {"ask", ask}, {"last", last}};
    json ib{{"symbol", "AAPL"}, {"bid", bid}, {"ask", ask}, {"last", last}};
    http(ts_port_.load(), "POST", "/__emulator/quote", ts.dump(), "application/json", {}, 2000);
    http(ib_port_.load(), "POST", "/__emulator/quote", ib.dump(), "application/json", {}, 2000);
    std::lock_guard lock(mutex_);
    history_.push_back({now_ns(), mid_});
  }

  std::mt19937_64 rng_;
  std::atomic<std::uint16_t> ts_port_, ib_port_;
  std::int64_t mid_ = 190 * 100 * kTick;
  int drift_ = 0;
  int regime_left_ = 0;
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  std::vector<QuotePoint> history_;
  std::thread thread_;
};

constexpr const char* kTsAccount = "SIM2784990M";  // the emulator's default margin account
constexpr const char* kIbAccount = "DU1234567";
constexpr const char* kTsClientId = "backstop-emulator";
constexpr const char* kTsSecret = "backstop-emulator-secret";
constexpr const char* kTsRefreshToken = "backstop-emulator-refresh-token";
constexpr std::int64_t kIbAaplConid = 265598;

json make_config(const RunRecord& rec, std::uint16_t ib_proxy, std::uint16_t ts_proxy, const fs::path& dir) {
  // Everything goes through the FaultProxies, token URL included: a dead endpoint is dead for
  // auth too.
  json ib{{"name", "ib"}, {"kind", "ibkr"}, {"account", kIbAccount},
          {"base_url", "http://127.0.0.1:" + std::to_string(ib_proxy) + "/v1/api"}};
  json ts{{"name", "ts"},
          {"kind", "tradestation"},
          {"account", kTsAccount},
          {"base_url", "http://127.0.0.1:" + std::to_string(ts_proxy) + "/v3"},
          {"token_url", "http://127.0.0.1:" + std::to_string(ts_proxy) + "/oauth/token"},
          {"client_id", kTsClientId},
          {"client_secret", kTsSecret},
          {"refresh_token_file", (dir / "ts.refresh_token").string()},
          // The loader's minimum (TradeStation heart-beats every 5 s; the emulator here every 1 s).
          {"stream_inactivity_timeout_s", 10}};
  const bool fades = rec.local_stops || rec.trailing_broker_stops;
  const char* strategy = fades ? "fade" : "breakout";
  json route{{"strategy", strategy}, {"brokers", rec.route}, {"mode", to_string(rec.mode)}};
  // Short lookback, tight bracket: a bracket every few seconds and stops that get crossed.
  json breakout{{"name", strategy},
                {"kind", "bracket_breakout"},
                {"instrument", "AAPL"},
                {"quantity", 10},
                {"params", {{"lookback_ticks", 10}, {"stop_ticks", 6}, {"target_ticks", 14}}},
                {"protection", "guard"}};
  // Fades a 3-tick stretch from a 10-quote average; the market's drift regimes run through its
  // 6-tick stops often, and those stops (held by Backstop, or at the brokers under `guard`) trail
  // 4 ticks behind the mid once price moves its way.
  json fade{{"name", strategy},
            {"kind", "mean_reversion"},
            {"instrument", "AAPL"},
            {"quantity", 10},
            {"params",
             {{"lookback_ticks", 10}, {"entry_distance_ticks", 3}, {"stop_ticks", 6}, {"trail_ticks", 4}, {"cooldown_ms", 500}}},
            {"protection", rec.local_stops ? "local" : "guard"}};
  if (rec.mode == Mode::failover) route["return_to_primary"] = true;
  return json{
      {"journal", {{"path", (dir / "journal.db").string()}}},
      {"brokers", {ib, ts}},
      {"instruments", {{{"symbol", "AAPL"}, {"asset_class", "stock"}, {"tick_size", "0.01"}, {"exchange", "SMART"}}}},
      {"strategies", json::array({fades ? fade : breakout})},
      {"routes", {route}},
      {"health",
       {{"failure_threshold", 3},
        {"open_interval_s", 3},
        {"half_open_probes", 2},
        {"request_timeout_ms", 1000},
        {"latency_degraded_ms", 800},
        {"check_interval_ms", 500}}},
      {"protection", {{"ghost_grace_ms", rec.ghost_grace_ms}}},
      // As config/examples/failover-emulated.json. Shorter order reconciliation (10 s was tried)
      // saturates IBKR's /iserver/account/trades lane (1 per 5 s): every reconcile_orders runs a
      // full resync with a fill query per broker, queued without coalescing.
      {"reconciliation", {{"positions_interval_s", 5}, {"orders_interval_s", 30}, {"stuck_order_threshold_s", 5}}}};
}

// A fault the driver turns on and, at `end`, off again.
struct Planned {
  Episode e;
  bool applied = false, restored = false;
};

// Parses the signed AAPL position out of each emulator's own position query.
std::optional<std::int64_t> ts_position(std::uint16_t port, std::string& error) {
  const std::string form = std::string("grant_type=refresh_token&client_id=") + kTsClientId +
                           "&client_secret=" + kTsSecret + "&refresh_token=" + kTsRefreshToken;
  auto tok = http(port, "POST", "/oauth/token", form, "application/x-www-form-urlencoded");
  if (!tok || tok->status != 200) {
    error += "ts token refresh failed; ";
    return std::nullopt;
  }
  const std::string access = json::parse(tok->body).value("access_token", "");
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto r = http(port, "GET", std::string("/v3/brokerage/accounts/") + kTsAccount + "/positions", {},
                  "application/json", access);
    if (r && r->status == 200) {
      const json j = json::parse(r->body, nullptr, false);
      std::int64_t q = 0;
      for (const auto& p : j.value("Positions", json::array()))
        if (p.value("Symbol", "") == "AAPL") q += std::stoll(p.value("Quantity", "0"));
      return q;
    }
    sleep_ms(500);
  }
  error += "ts positions query failed; ";
  return std::nullopt;
}

std::optional<std::int64_t> ib_position(std::uint16_t port, std::string& error) {
  const std::string base = std::string("/v1/api/portfolio/") + kIbAccount;
  for (int attempt = 0; attempt < 8; ++attempt) {
    http(port, "POST", base + "/positions/invalidate", "{}");
    auto r = http(port, "GET", base + "/positions/0");
    if (r && r->status == 200) {
      const json j = json::parse(r->body, nullptr, false);
      std::int64_t q = 0;
      if (j.is_array())
        for (const auto& p : j)
          if (p.value("conid", std::int64_t{0}) == kIbAaplConid) q += p.value("position", std::int64_t{0});
      return q;
    }
    if (r && (r->status == 401 || r->status == 302)) {
      // A session the chaos timed out: restore it as a person would (this is after the run).
      http(port, "POST", "/v1/api/iserver/auth/ssodh/init", R"({"publish":true,"compete":true})");
    }
    sleep_ms(attempt < 2 ? 300 : 1200);  // pacing answers 429 for a while
  }
  error += "ib positions query failed; ";
  return std::nullopt;
}

}  // namespace

RunRecord run_chaos(const RunSettings& settings) {
  RunRecord rec;
  rec.settings = settings;
  rec.started = now_ns();
  const fs::path dir = settings.dir;
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string bs = settings.backstop.string();
  std::mt19937_64 rng(settings.seed);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };

  // Route shape by seed: odd seeds failover, even seeds dual; primary broker at random.
  rec.mode = settings.seed % 2 == 1 ? Mode::failover : Mode::dual;
  rec.route = chance(0.5) ? std::vector<std::string>{"ib", "ts"} : std::vector<std::string>{"ts", "ib"};
  static const char* kProfiles[] = {"none", "demo", "lossy_stream", "chaos"};
  rec.base_profile = kProfiles[uniform(0, 3)];
  rec.ghost_grace_ms = 1000;
  rec.local_stops = settings.seed % 3 == 0;  // not drawn: the other seeds' draws stay as they were
  rec.trailing_broker_stops = settings.seed % 6 == 1;

  // ---- emulators, each its own process so it keeps its record while the router dies
  Emulator ts{"ts", {bs, "emulate", "tradestation", "--tick-ms", "0", "--heartbeat-ms", "1000", "--faults",
                     rec.base_profile, "--seed", std::to_string(settings.seed), "--state",
                     (dir / "ts-emulator-state.json").string()},
              {}, 0, rec.base_profile};
  if (settings.ts_replace_new_order_id) ts.argv.push_back("--replace-new-order-id");
  Emulator ib{"ib", {bs, "emulate", "ibkr", "--no-tls", "--tick-ms", "0", "--faults", rec.base_profile, "--seed",
                     std::to_string(settings.seed + 1000), "--state", (dir / "ib-emulator-state.json").string()},
              {}, 0, rec.base_profile};
  if (!ts.start(dir, 20000) || !ib.start(dir, 20000)) {
    rec.setup_error = "emulator did not start: ts " + last_line(dir / "ts-emulator.err") + " / ib " +
                      last_line(dir / "ib-emulator.err");
    return rec;
  }
  FaultProxy ts_proxy(ts.port), ib_proxy(ib.port);
  auto proxy_of = [&](const std::string& b) -> FaultProxy& { return b == "ts" ? ts_proxy : ib_proxy; };
  auto emu_of = [&](const std::string& b) -> Emulator& { return b == "ts" ? ts : ib; };

  {
    std::ofstream(dir / "ts.refresh_token") << kTsRefreshToken << "\n";
    fs::permissions(dir / "ts.refresh_token", fs::perms::owner_read | fs::perms::owner_write);
    std::ofstream(dir / "config.json") << make_config(rec, ib_proxy.port(), ts_proxy.port(), dir).dump(2) << "\n";
  }
  const std::string config = (dir / "config.json").string();
  const std::string journal = (dir / "journal.db").string();

  Market market(settings.seed, ts.port, ib.port);
  market.start();

  // ---- the router, restarted on the same journal after every kill
  Child router;
  auto start_router = [&](bool final_run) {
    RouterLife life;
    life.index = static_cast<int>(rec.routers.size());
    life.final_run = final_run;
    const std::string n = std::to_string(life.index);
    std::vector<std::string> args{bs, "run", "--config", config, "--journal", journal};
    if (final_run) {
      args.insert(args.end(), {"--for", "12s", "--flatten-on-exit"});
    } else {
      args.insert(args.end(), {"--for", "600s"});
    }
    life.spawned = now_ns();
    router = Child(args, dir / ("router-" + n + ".out"), dir / ("router-" + n + ".err"));
    rec.routers.push_back(life);
  };
  auto poll_router = [&]() {
    RouterLife& life = rec.routers.back();
    if (!life.ready && read_file(dir / ("router-" + std::to_string(life.index) + ".out")).find("running; Ctrl-C") !=
                           std::string::npos)
      life.ready = now_ns();
    if (!life.ended && !router.running()) {
      life.ended = now_ns();
      const int code = router.exit_code().value_or(-1000);
      life.how = code < 0 ? "signal " + std::to_string(-code) : "exit " + std::to_string(code);
      life.last_stderr = last_line(dir / ("router-" + std::to_string(life.index) + ".err"));
    }
  };
  auto end_router = [&](bool sigkill) {
    RouterLife& life = rec.routers.back();
    poll_router();
    if (life.ended) return;
    if (sigkill) {
      router.kill9();
      life.how = "sigkill";
    } else {
      const int code = router.terminate(10000);
      life.how = code == -SIGKILL ? "sigterm ignored, sigkill" : "sigterm, exit " + std::to_string(code);
    }
    life.ended = now_ns();
    life.last_stderr = last_line(dir / ("router-" + std::to_string(life.index) + ".err"));
  };

  start_router(false);
  // Trading starts once the first router has recovered and reconciled (it needs both brokers).
  {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(40);
    while (std::chrono::steady_clock::now() < deadline) {
      poll_router();
      if (rec.routers.back().ready || rec.routers.back().ended) break;
      sleep_ms(20);
    }
    if (!rec.routers.back().ready) {
      end_router(true);
      market.stop();
      rec.setup_error = "the first `backstop run` never became ready: " + rec.routers.back().how + " " +
                        rec.routers.back().last_stderr;
      return rec;
    }
  }

  // ---- the schedule: chaos A, a calm stretch with ghost stops on both brokers (nothing else, so
  // every ghost crossed there must be caught), chaos B. Times relative to the chaos start.
  const Nanos t0 = now_ns();
  const Nanos total = static_cast<Nanos>(settings.chaos_seconds) * kSec;
  const Nanos a_end = total * 35 / 100, calm_end = total * 70 / 100;
  std::vector<Planned> plan;
  // `first`: the stretch's first episode, when it must happen in every run; `first_mid_order`:
  // if that is an emulator kill, whether it waits for an order request to be in flight.
  auto fill_chaos = [&](Nanos from, Nanos to, const std::string& first, bool first_mid_order) {
    static const std::vector<std::string> kKinds = {"proxy_dead",  "proxy_stall", "proxy_503",   "stream_stall",
                                                    "drop_fills",  "ghost_stops", "http_429",    "lost_reply",
                                                    "ibkr_session_timeout", "ts_token_expiry", "ts_goaway",
                                                    "ibkr_gateway_restart", "emulator_sigkill"};
    Nanos t = from + uniform(300, 1500) * kMs;
    for (bool opening = true;; opening = false) {
      const std::string drawn = kKinds[static_cast<std::size_t>(uniform(0, static_cast<int>(kKinds.size()) - 1))];
      const std::string kind = opening && !first.empty() ? first : drawn;
      // Half the emulator kills wait for an order request to be in flight (below).
      const bool mid_order = kind == "emulator_sigkill" && (opening && !first.empty() ? first_mid_order : chance(0.5));
      // Endpoint faults mostly hit the broker orders go to (a failover route's primary), long
      // enough to open its circuit (3 failed checks 500 ms apart, 1 s timeout) and fail over. A
      // mid-order kill always hits a broker orders go to (the primary; either of a dual route):
      // the other broker of a failover route gets none while the primary is healthy.
      const bool endpoint = kind.rfind("proxy_", 0) == 0 || kind == "ibkr_gateway_restart" || kind == "emulator_sigkill";
      const std::string broker = kind == "ibkr_session_timeout" || kind == "ibkr_gateway_restart" ? "ib"
                                 : kind == "ts_token_expiry" || kind == "ts_goaway" ? "ts"
                                 : mid_order && rec.mode == Mode::failover ? rec.route[0]
                                 : endpoint && rec.mode == Mode::failover ? (chance(0.75) ? rec.route[0] : rec.route[1])
                                 : (chance(0.5) ? "ib" : "ts");
      // A mid-order kill's episode is its wait for an order request (up to all but the last
      // kMidOrderDown of it) and then the emulator's time down.
      const Nanos len = (mid_order ? uniform(5000, 8000) : endpoint ? uniform(3000, 6000) : uniform(1500, 4000)) * kMs;
      if (t + len > to) break;
      // Half of them wait for the emulator's answer showing an order placed, drop it and kill it
      // then; the stretch's first alternates in pairs of seeds, so that any four seeds in a row
      // (CTest runs 1-4) open with each kind on each route shape.
      const bool drop_answer = opening && !first.empty() ? (settings.seed / 2) % 2 == 0 : chance(0.5);
      const std::string detail = !mid_order ? "" : drop_answer ? "mid-order, answer dropped: " : "mid-order: ";
      plan.push_back({{kind, broker, t, t + len, detail}});
      t += len + uniform(800, 2500) * kMs;
    }
  };
  // Every run kills an emulator process twice at least (router kills are below): in chaos A,
  // while the strategy is sending brackets, one that dies with an order request just delivered
  // to it (it may or may not have taken the order); in chaos B, often holding a position with
  // its protective stop at the broker, one killed at a random instant.
  fill_chaos(0, a_end, "emulator_sigkill", true);
  plan.push_back({{"ghost_stops", "ib", a_end, calm_end, "calm stretch"}});
  plan.push_back({{"ghost_stops", "ts", a_end, calm_end, "calm stretch"}});
  fill_chaos(calm_end, total, "emulator_sigkill", false);
  // Router kills: one in chaos A, and half the time one more in chaos B.
  std::vector<std::pair<Nanos, int>> kills;  // at, restart delay (ms)
  kills.push_back({uniform(static_cast<int>(a_end / kMs / 4), static_cast<int>(a_end / kMs) - 500) * kMs, uniform(200, 1500)});
  if (chance(0.5))
    kills.push_back({uniform(static_cast<int>(calm_end / kMs) + 500, static_cast<int>(total / kMs) - 2500) * kMs,
                     uniform(200, 1500)});

  std::map<std::string, int> lost_before;  // replies_lost() when a lost_reply episode began
  // A "mid-order" emulator kill: armed at the episode's start, done by the proxy right after the
  // next order request has gone to the emulator, or by the driver when the wait is over without
  // one (brackets are a few seconds apart while the strategy is flat). Killed at once, the
  // emulator has most likely not read the request (any request that changes orders); with
  // "answer dropped", the proxy waits for its answer showing an order placed, keeps it from the
  // router and kills it then: the emulator has taken the order and written it down (before
  // answering), and the router does not know. The emulator stays down kMidOrderDown, or to the
  // episode's planned end if sooner.
  constexpr Nanos kMidOrderDown = 1500 * kMs;
  struct KillShot {  // shared with the proxy's relay thread
    std::atomic<bool> done{false};  // claimed: by the proxy's hook or by the driver
    std::mutex mutex;
    std::string request_line;  // what was in flight, when the proxy's hook claimed it
    bool restarting = false;   // the driver has reaped the process (its pid may be reused)
  };
  struct PendingKill {
    std::shared_ptr<KillShot> shot = std::make_shared<KillShot>();
    Nanos armed = 0;
    bool restart_planned = false;  // the episode's end moved to kMidOrderDown after the kill
  };
  std::map<std::string, PendingKill> pending_kills;  // by broker
  auto kill_now = [&](Emulator& emu, PendingKill& k, Episode& e, const char* how) {
    if (k.shot->done.exchange(true)) return;  // the proxy's hook was first
    proxy_of(e.broker).clear_order_request_hook();
    emu.child.kill9();
    e.detail += how;
  };
  auto apply = [&](Episode& e, bool on) {
    Emulator& emu = emu_of(e.broker);
    const json base{{"profile", emu.base_profile}};
    auto with = [&](json extra) {
      json b = base;
      b.update(extra);
      return b;
    };
    if (e.kind == "emulator_sigkill") {
      // The broker's server process itself dies at any instant (SIGKILL) and is started again
      // on its state file: open connections are reset, new ones refused by the proxy's upstream,
      // sessions and streams gone; the orders, fills and positions stay, as at a real broker.
      if (on && e.detail.rfind("mid-order", 0) == 0) {
        PendingKill& k = pending_kills[e.broker] = PendingKill{};
        k.armed = now_ns();
        const bool drop_answer = e.detail.rfind("mid-order, answer dropped", 0) == 0;
        proxy_of(e.broker).on_next_order_request(
            [shot = k.shot, pid = emu.child.pid()](const std::string& line) {
              if (shot->done.exchange(true)) return;  // the driver killed it first
              std::lock_guard<std::mutex> lock(shot->mutex);
              shot->request_line = line;
              if (!shot->restarting) ::kill(pid, SIGKILL);  // reaped by the driver at the restart
            },
            /*when_placed=*/drop_answer);
        e.detail += "armed (life " + std::to_string(emu.lives) + "); ";
      } else if (on) {
        emu.child.kill9();
        e.detail += "killed (life " + std::to_string(emu.lives) + "); ";
      } else {
        if (auto k = pending_kills.find(e.broker); k != pending_kills.end()) {
          const bool by_proxy = k->second.shot->done.load() && e.detail.find("killed then") == std::string::npos;
          {
            // From here the process is reaped (below, or by the restart): the hook must not kill its pid.
            std::lock_guard<std::mutex> lock(k->second.shot->mutex);
            k->second.shot->restarting = true;
            if (by_proxy) e.detail += "killed with an order request in flight (" + k->second.shot->request_line + "); ";
          }
          // Never two emulators on one state file: the old one is dead before the new starts.
          kill_now(emu, k->second, e, "no order request by the end, killed then; ");
          pending_kills.erase(k);
        }
        if (!emu.start(dir, 20000)) {
          e.detail += "restart failed: " + last_line(dir / (emu.name + "-emulator-" + std::to_string(emu.lives - 1) + ".err")) + "; ";
        } else {
          proxy_of(e.broker).set_upstream(emu.port);
          market.set_ports(ts.port, ib.port);
          e.detail += "restarted on port " + std::to_string(emu.port) + "; ";
        }
      }
    } else if (e.kind == "ibkr_gateway_restart") {
      // The Client Portal Gateway is a process of its own in front of IBKR's servers: killed, its
      // connections are reset and refused and its sessions are gone, while the orders stay at
      // IBKR. Modelled by the proxy (the gateway's socket) going dead and the emulator logging
      // out (sessions and WebSockets dropped, pending confirmations forgotten); when it is back,
      // the person at the gateway logs in again, and the router must re-prime its brokerage
      // session, reopen its WebSocket and reconcile by itself.
      if (on) {
        proxy_of(e.broker).set_mode(FaultProxy::Mode::dead);
        if (!http(emu.port, "POST", "/__emulator/logout", "{}")) e.detail += "logout request failed; ";
      } else {
        if (!http(emu.port, "POST", "/__emulator/login", "{}")) e.detail += "login request failed; ";
        proxy_of(e.broker).set_mode(FaultProxy::Mode::pass);
      }
    } else if (e.kind == "proxy_dead") proxy_of(e.broker).set_mode(on ? FaultProxy::Mode::dead : FaultProxy::Mode::pass);
    else if (e.kind == "proxy_stall") proxy_of(e.broker).set_mode(on ? FaultProxy::Mode::stall : FaultProxy::Mode::pass);
    else if (e.kind == "proxy_503") proxy_of(e.broker).set_mode(on ? FaultProxy::Mode::http_503 : FaultProxy::Mode::pass);
    else if (e.kind == "lost_reply") {
      FaultProxy& proxy = proxy_of(e.broker);
      if (on) {
        lost_before[e.broker] = proxy.replies_lost();
        proxy.lose_next_order_reply();
      } else if (proxy.replies_lost() == lost_before[e.broker]) {
        // No order went out meanwhile: disarm, or the loss would leak into the fault-free final
        // run. The proxy takes any POST naming "/orders" for an order; the emulator answers
        // this one 404 and records nothing.
        http(proxy.port(), "POST", "/__emulator/orders-disarm", "{}");
        e.detail += proxy.replies_lost() > lost_before[e.broker] ? "disarmed unused; " : "disarm failed; ";
      } else {
        e.detail += "an order reply was lost; ";
      }
    } else {
      json body = base;
      if (on) {
        if (e.kind == "stream_stall")
          // TradeStation: streams go silent (no data, no heartbeat). IBKR has no stall: every
          // socket is dropped on the next tick and new ones are dead (tic answered, no sor/smd).
          body = e.broker == "ts" ? with({{"ts_stall", 1.0}}) : with({{"disconnect_rate", 1.0}, {"extra", {{"ibkr_dead_ws", 1.0}}}});
        else if (e.kind == "drop_fills")
          body = e.broker == "ts" ? with({{"drop_fill_event_rate", 1.0}, {"ts_drop_fill_frame", 1.0}})
                                  : with({{"drop_fill_event_rate", 1.0}});
        else if (e.kind == "ghost_stops")
          body = with({{"ghost_stop_rate", 1.0}});
        else if (e.kind == "http_429")
          body = e.broker == "ts" ? with({{"ts_429", 0.3}}) : with({{"extra", {{"ibkr_429", 0.3}}}});
        else if (e.kind == "ibkr_session_timeout")
          body = with({{"extra", {{"ibkr_session_timeout", 0.05}}}});
        else if (e.kind == "ts_token_expiry")
          // TradeStation's session: access tokens expire early (401 "Access token has expired")
          // on 5% of requests, and every token issued so far at the start (below). The adapter
          // refreshes and retries once; a second 401 in a row fails the request.
          body = with({{"ts_token_expiry", 0.05}});
        else if (e.kind == "ts_goaway")
          // The stream server asks to reconnect (a GoAway frame) at half of the idle streams' heartbeats.
          body = with({{"ts_goaway", 0.5}});
      } else if (e.broker == "ib") {
        // "extra" keys survive a profile reset on IBKR only if named: name them back to 0.
        body = with({{"disconnect_rate", 0.0},
                     {"extra", {{"ibkr_dead_ws", 0.0}, {"ibkr_429", 0.0}, {"ibkr_session_timeout", 0.0}}}});
      }
      if (!emu.post_faults(body)) e.detail += (on ? "fault on" : "fault off") + std::string(" request failed; ");
      if (on && e.kind == "ibkr_session_timeout") {
        http(emu.port, "POST", "/__emulator/session_timeout", "{}");
        e.detail += "session timed out at start; ";
      }
      if (on && e.kind == "ts_token_expiry") {
        const bool ok = http(emu.port, "POST", "/__emulator/expire-tokens", "{}").has_value();
        e.detail += ok ? "every access token expired at start; " : "expire-tokens request failed; ";
      }
    }
  };

  std::size_t next_kill = 0;
  bool kill_pending_restart = false;
  Nanos restart_at = 0;
  while (true) {
    const Nanos t = now_ns() - t0;
    if (t >= total) break;
    poll_router();
    for (auto& p : plan) {
      if (!p.applied && t >= p.e.start) {
        p.applied = true;
        p.e.start = now_ns();  // absolute from here on
        apply(p.e, true);
        p.e.end = t0 + p.e.end;  // planned absolute end, replaced by the real one below
      }
      if (p.applied && !p.restored && now_ns() >= p.e.end) {
        apply(p.e, false);
        p.restored = true;
        p.e.end = now_ns();
      }
    }
    for (auto& [broker, k] : pending_kills)
      for (auto& p : plan) {
        if (!p.applied || p.restored || p.e.kind != "emulator_sigkill" || p.e.broker != broker) continue;
        if (!k.shot->done.load() && now_ns() >= p.e.end - kMidOrderDown)
          kill_now(emu_of(broker), k, p.e,
                   ("no order request within " + std::to_string((now_ns() - k.armed) / kMs) + " ms, killed then; ")
                       .c_str());
        if (k.shot->done.load() && !k.restart_planned) {
          k.restart_planned = true;
          p.e.end = std::min(p.e.end, now_ns() + kMidOrderDown);
        }
      }
    if (next_kill < kills.size() && t >= kills[next_kill].first && !rec.routers.back().ended) {
      const Nanos at = now_ns();
      end_router(true);
      rec.episodes.push_back({"router_sigkill", "", at, at, "router " + std::to_string(rec.routers.back().index)});
      restart_at = now_ns() + kills[next_kill].second * kMs;
      kill_pending_restart = true;
      ++next_kill;
    }
    // Restart after a kill, or after the router ended by itself (noted in its life).
    if (rec.routers.back().ended) {
      if (!kill_pending_restart) {
        kill_pending_restart = true;
        restart_at = now_ns() + 1000 * kMs;
      }
      if (now_ns() >= restart_at) {
        kill_pending_restart = false;
        start_router(false);
      }
    }
    sleep_ms(20);
  }
  // A kill that did not happen (the router was down at its time) happens now: every run kills.
  while (next_kill < kills.size()) {
    for (int tries = 0; tries < 3 && rec.routers.back().ended; ++tries) {
      start_router(false);
      sleep_ms(1500);
      poll_router();
    }
    const Nanos at = now_ns();
    end_router(true);
    rec.episodes.push_back({"router_sigkill", "", at, at, "router " + std::to_string(rec.routers.back().index) + " (late)"});
    ++next_kill;
  }

  // ---- settle: no more faults, one last run that flattens on exit
  for (auto& p : plan)
    if (p.applied && !p.restored) {
      apply(p.e, false);
      p.restored = true;
      p.e.end = now_ns();
    }
  for (auto& p : plan)
    if (p.applied) rec.episodes.push_back(p.e);
  ts_proxy.set_mode(FaultProxy::Mode::pass);
  ib_proxy.set_mode(FaultProxy::Mode::pass);
  ts.post_faults({{"profile", "none"}});
  ib.post_faults({{"profile", "none"},
                  {"disconnect_rate", 0.0},
                  {"extra", {{"ibkr_dead_ws", 0.0}, {"ibkr_429", 0.0}, {"ibkr_session_timeout", 0.0}}}});
  // An IBKR session the chaos timed out is restored as the person at the gateway would.
  http(ib.port, "POST", "/__emulator/login", "{}");
  if (!rec.routers.back().ended) end_router(false);
  start_router(true);
  {
    // Polled, not just awaited: its "running" time bounds the windows where it watched stops.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(150);
    while (!rec.routers.back().ended && std::chrono::steady_clock::now() < deadline) {
      poll_router();
      sleep_ms(20);
    }
    if (!rec.routers.back().ended) {
      end_router(true);
      rec.routers.back().how = "did not finish within 150 s; sigkill";
    }
  }
  sleep_ms(300);
  market.stop();
  rec.quotes = market.history();

  // ---- what the emulators themselves recorded, and the journal
  rec.ts_log = ts.log();
  rec.ib_log = ib.log();
  std::ofstream(dir / "ts-emulator-log.json") << rec.ts_log.dump(1) << "\n";  // evidence for a report
  std::ofstream(dir / "ib-emulator-log.json") << rec.ib_log.dump(1) << "\n";
  rec.ts_position = ts_position(ts.port, rec.position_error);
  rec.ib_position = ib_position(ib.port, rec.position_error);
  {
    Child orders({bs, "orders", "--journal", journal, "--json"}, dir / "orders.json", dir / "orders.err");
    rec.orders_rc = orders.wait(60000).value_or(-1000);
    if (rec.orders_rc == 0) {
      rec.orders = json::parse(read_file(dir / "orders.json"), nullptr, false);
      if (rec.orders.is_discarded()) rec.orders_error = "`backstop orders --json` output is not JSON";
    } else {
      rec.orders_error = "`backstop orders --json` exit " + std::to_string(rec.orders_rc) + ": " +
                         last_line(dir / "orders.err");
    }
  }
  try {
    Journal j(journal, JournalMode::read_only);
    for (const auto& e : j.events("ghost_stop")) rec.ghost_events.push_back({e.client_order_id, e.at});
    for (const auto& e : j.events("stop_crossed")) rec.crossed_events.push_back({e.client_order_id, e.at});
    for (const auto& e : j.events_of_kinds({"local_stop_fired", "local_stop_crossed_during_recovery",
                                            "local_stop_not_sent", "local_stop_resent",
                                            "local_stop_release_failed", "replace_requested", "replace_accepted",
                                            "replace_rejected", "replace_unknown"})) {
      rec.local_events[e.kind].push_back({e.client_order_id, e.at});
      if (e.kind != "local_stop_release_failed") continue;
      const json detail = json::parse(e.detail, nullptr, false);
      if (detail.is_object() && !detail.value("will_retry", true)) rec.local_exits_given_up.push_back({e.client_order_id, e.at});
    }
  } catch (const std::exception& e) {
    rec.orders_error += std::string(" journal events unreadable: ") + e.what();
  }
  ts.child.terminate(5000);
  ib.child.terminate(5000);
  rec.finished = now_ns();
  {
    // What the driver did when, relative to the run's start (the report's "+N s" times).
    std::ofstream out(dir / "timeline.txt");
    auto rel = [&](Nanos t) { return t ? std::to_string(static_cast<double>(t - rec.started) / 1e9) : std::string("-"); };
    for (const auto& r : rec.routers)
      out << "router " << r.index << (r.final_run ? " (final)" : "") << ": spawned " << rel(r.spawned) << " ready "
          << rel(r.ready) << " ended " << rel(r.ended) << " " << r.how << "\n";
    for (const auto& e : rec.episodes)
      out << e.kind << "@" << e.broker << ": " << rel(e.start) << " .. " << rel(e.end) << " " << e.detail << "\n";
  }
  return rec;
}

}  // namespace backstop::chaos
