#include "emulators/ibkr/gateway_core.hpp"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <new>
#include <random>
#include <sstream>

#include <spdlog/spdlog.h>

#include "brokers/sim/state_file.hpp"
#include "core/error.hpp"
#include "emulators/ibkr/gateway_records.hpp"

// Source tags in comments ([CAMPUS], [SPEC229], [BEZANT], ...) are those of
// ../shared/api-notes/IBKR.md; "notes 1.x" names its section.

namespace backstop::ibkr_emulator {

using namespace std::chrono_literals;
using std::chrono::milliseconds;

// Held by every entry point that may change state or send frames. On leaving, the state is
// written (when it changed) and only then are the frames queued meanwhile sent: what a client sees
// is never ahead of what a restarted gateway would know. When the write fails the frames stay
// queued, behind any later ones, until a write succeeds (the state stays "changed", so every
// locked operation retries). HTTP answers leave after handle() returns, so after this too; but
// the destructor runs once handle()'s return value is built, too late to turn it into a 500, so
// handle() calls commit() itself and the destructor only commits what nobody committed.
class GatewayCore::Locked {
 public:
  explicit Locked(GatewayCore& core) : core_(core), lock_(core.mutex_) {}
  ~Locked() {
    if (!committed_) commit();  // failures are logged by persist_locked(); frames stay held
  }
  Locked(const Locked&) = delete;
  Locked& operator=(const Locked&) = delete;

  // The last thing an operation does: the write's failure (nullopt = written or nothing to write).
  std::optional<std::string> commit() {
    committed_ = true;
    auto failure = core_.persist_locked();
    if (!failure) core_.deliver_outbox_locked();
    return failure;
  }

 private:
  GatewayCore& core_;
  std::lock_guard<std::mutex> lock_;
  bool committed_ = false;
};

// ------------------------------------------------------------------------------------------------
// Helpers

namespace {

HttpResponse json_response(int status, const json& body) {
  HttpResponse r;
  r.status = status;
  r.body = body.dump();
  return r;
}
HttpResponse ok(const json& body) { return json_response(200, body); }
HttpResponse error_body(int status, const std::string& message) {
  return json_response(status, json{{"error", message}});
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cell;
  std::istringstream in(s);
  while (std::getline(in, cell, sep))
    if (!cell.empty()) out.push_back(cell);
  return out;
}

std::string url_decode(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// The number a JSON value carries, whether the client sent a number or a string ("157.30").
std::optional<Price> json_price(const json& j) {
  Price p;
  if (j.is_string() && Price::try_parse(j.get<std::string>(), p)) return p;
  if (j.is_number() && Price::try_parse(j.dump(), p)) return p;
  return std::nullopt;
}

std::optional<std::int64_t> json_int(const json& j) {
  if (j.is_number_integer()) return j.get<std::int64_t>();
  if (j.is_number_float()) {
    const double d = j.get<double>();
    if (d == static_cast<double>(static_cast<std::int64_t>(d))) return static_cast<std::int64_t>(d);
    return std::nullopt;
  }
  if (j.is_string()) {
    try {
      std::size_t used = 0;
      const auto v = std::stoll(j.get<std::string>(), &used);
      if (used == j.get<std::string>().size()) return v;
    } catch (const std::exception&) {
    }
  }
  return std::nullopt;
}

// A string field, "" when absent or of another type: for the WebSocket's frames and cookie, which
// are read outside the REST handler's catch (nlohmann's value() throws on a field of another type).
std::string json_string_field(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool json_bool(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end()) return false;
  if (it->is_boolean()) return it->get<bool>();
  if (it->is_string()) return lower(it->get<std::string>()) == "true";
  return false;
}

std::string utc(Timestamp t, const char* format) {
  const std::time_t secs = static_cast<std::time_t>(t / 1'000'000'000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

// "1,300": IBKR formats sizes in snapshots with thousands separators (notes 1.15 [DRAFT24]).
std::string grouped(std::int64_t n) {
  const std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out = n < 0 ? "-" : "";
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

const std::map<std::string, std::string>& prompt_texts() {
  // Texts: o354 and o10331/o0 verbatim from SPEC229 / CAMPUS examples (ibkr-examples/
  // cpapi_sample_payloads.json); o163 and o383 follow the TWS precautionary-setting wording
  // quoted by third-party clients (IBIND QuestionType) - the order description is ours.
  static const std::map<std::string, std::string> texts{
      {"o354",
       "You are submitting an order without market data. We strongly recommend against this as "
       "it may result in erroneous and unexpected trades.\nAre you sure you want to submit this "
       "order?"},
      {"o10331",
       "You are about to submit a stop order. Please be aware of the various stop order types "
       "available and the risks associated with each one.\nAre you sure you want to submit this "
       "order?"},
      {"o0",
       "You are about to submit a stop order. Please be aware of the various stop order types "
       "available and the risks associated with each one.\nAre you sure you want to submit this "
       "order?"},
      {"o163", "price exceeds the Percentage constraint of 3%.\nAre you sure you want to submit "
               "this order?"},
      {"o383", "size exceeds the Size Limit of 500.\nAre you sure you want to submit this order?"},
  };
  return texts;
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// Construction

GatewayCore::GatewayCore(IbkrEmulatorOptions options) : options_(std::move(options)) {
  faults_ = std::make_unique<FaultInjector>(options_.faults, options_.seed);
  venue_ = std::make_unique<Venue>(clock_, *faults_);
  venue_->set_listener([this](const VenueEvent& e) { on_venue_event(e); });
  std::uint64_t walk_seed = options_.seed * 7919 + 17;
  for (const auto& c : options_.contracts) {
    const TickSize tick(c.tick);
    venue_->add_instrument(c.venue_symbol, tick);
    walks_.push_back(std::make_unique<RandomWalkPath>(
        RandomWalkParams{c.venue_symbol, c.start_price, tick, 1, 2, 500}, walk_seed++));
    if (options_.initial_quotes) {
      Quote q;
      q.symbol = c.venue_symbol;
      q.bid = tick.round_down(c.start_price);
      q.ask = *q.bid + c.tick;
      q.last = q.bid;
      q.bid_size = q.ask_size = 1000;
      q.last_size = 100;
      q.at = clock_.now();
      q.source = "emulator";
      venue_->on_quote(q);
    }
  }
  if (!options_.accounts.empty()) selected_account_ = options_.accounts.front();
  // A gateway started afresh (no state file) must not repeat its previous life's order ids, and
  // IBKR's are int32 (the official spec's format, which the Prism contract test checks): not a
  // time, which would not fit, but a random start in [1e9, 2e9), so that two lives' ranges meet
  // with odds of about (their orders) / 1e9. A state file, when there is one, restores the count.
  next_ib_id_ = 1'000'000'000 + std::random_device{}() % 1'000'000'000;
  if (!options_.state_file.empty())
    if (auto state = read_state_file(options_.state_file)) restore_state_locked(*state);
  const auto now = Clock::now();
  next_heartbeat_ = now + options_.ws_heartbeat_interval;
  next_tick_ = now + options_.tick_interval;
  last_request_ = now;
  if (options_.start_logged_in) login_locked();
}

GatewayCore::~GatewayCore() = default;

std::int64_t GatewayCore::now_ms() const { return clock_.now() / 1'000'000; }

void GatewayCore::record(const std::string& kind, const std::string& order_id,
                         const std::string& coid, const std::string& detail) {
  faults_->record({clock_.now(), kind, order_id, coid, detail});
}

void GatewayCore::event(const std::string& kind, const std::string& detail) {
  event_log_.push_back({{"time", format_timestamp(clock_.now())}, {"kind", kind}, {"detail", detail}});
}

void GatewayCore::after(milliseconds delay, std::function<void()> fn) {
  timers_.emplace(Clock::now() + delay, std::move(fn));
}

// ------------------------------------------------------------------------------------------------
// Session

void GatewayCore::login_locked() {
  const bool relogin = session_token_.size() > 0;
  logged_in_ = true;
  authenticated_ = true;
  accounts_queried_ = false;  // a new brokerage session must be primed again (notes 1.1)
  std::mt19937_64 rng(options_.seed + login_generation_ * 131 + 7);
  static constexpr char kHex[] = "0123456789abcdef";
  session_token_.clear();
  for (int i = 0; i < 32; ++i) session_token_ += kHex[rng() % 16];
  if (relogin) ++login_generation_;  // older sockets keep beating but are dead [BEZANT]
  last_request_ = Clock::now();
  event("login", "browser login completed (emulated 2FA)");
  for (auto& [h, c] : sockets_)
    if (c->ready) ws_send(*c, json{{"topic", "sts"}, {"args", {{"authenticated", true}}}});
}

void GatewayCore::logout_locked() {
  logged_in_ = false;
  authenticated_ = false;
  accounts_queried_ = false;
  pending_.reset();
  event("logout", "session ended");
  kill_sockets("logout");
}

void GatewayCore::expire_session_locked(const std::string& why) {
  if (!authenticated_) return;
  authenticated_ = false;
  pending_.reset();
  record("session_timeout", "", "", why);
  // The socket stays open and says so; it becomes dead once the session is re-established.
  for (auto& [h, c] : sockets_)
    if (c->ready) ws_send(*c, json{{"topic", "sts"}, {"args", {{"authenticated", false}}}});
}

json GatewayCore::auth_status_json() const {
  return json{{"authenticated", authenticated_},
              {"competing", false},
              {"connected", logged_in_},
              {"established", authenticated_},
              {"message", ""},
              {"fail", ""},
              {"MAC", "02:00:00:00:1B:4E"},
              {"hardware_info", "00000000|02:00:00:00:1B:4E"},
              {"serverInfo",
               {{"serverName", "BackstopEmu"}, {"serverVersion", "Build 10.25.0p (emulated)"}}}};
}

HttpResponse GatewayCore::tickle() {
  json body{{"session", session_token_},
            {"ssoExpires", 460311},
            {"collission", false},
            {"userId", 123456789},
            {"hmds", {{"error", "no bridge"}}},
            {"iserver", {{"authStatus", auth_status_json()}}}};
  return ok(body);
}

// ------------------------------------------------------------------------------------------------
// Request dispatch

HttpResponse GatewayCore::handle(const HttpRequest& req) {
  Locked lock(*this);
  std::string path = req.target;
  std::map<std::string, std::string> query;
  if (auto q = path.find('?'); q != std::string::npos) {
    for (const auto& kv : split(path.substr(q + 1), '&')) {
      auto eq = kv.find('=');
      query[url_decode(kv.substr(0, eq))] = eq == std::string::npos ? "" : url_decode(kv.substr(eq + 1));
    }
    path.resize(q);
  }
  HttpResponse r;
  try {
    if (path.rfind("/__emulator/", 0) == 0) {
      r = control(req, path);
    } else if (path == "/" || path == "/sso/Login") {
      // Browser paths: the gateway's login page lives here (notes 1.0).
      if (path == "/") {
        r.status = 302;
        r.headers.emplace_back("Location", "/sso/Login?forwardTo=22&RL=1&ip2loc=on");
        r.content_type = "text/html";
      } else {
        r.content_type = "text/html";
        r.body = "<html><body><h1>Backstop IBKR emulator</h1><p>Emulated browser login: POST "
                 "/__emulator/login.</p></body></html>";
      }
    } else if (path.rfind("/v1/api/", 0) == 0) {
      path = path.substr(7);
      r = route(req, path, query);
    } else {
      r = json_response(404, json{{"error", "not found"}});
    }
  } catch (const json::exception& e) {
    r = error_body(400, std::string("Bad Request: ") + e.what());
  }
  flush_order_updates();
  // Written here rather than by the guard's destructor, which runs too late to change `r`. A
  // failed write replaces the answer, whatever it was: it may show this request's change (an order
  // id) or an earlier one that could not be written either (a fill on a timer), and the client
  // must treat the outcome as unknown, as after a gateway crash.
  if (auto failure = lock.commit()) {
    spdlog::error("IBKR emulator: {} {} answered 500: {}", req.method, path, *failure);
    r = error_body(500, *failure + "; the outcome of this request is unknown and its stream frames wait for a "
                                   "successful write");
  }
  return r;
}

std::optional<HttpResponse> GatewayCore::pace(const std::string& method, const std::string& path) {
  if (faults_->roll(faults_->profile().extra_rate("ibkr_429"))) {
    record("http_429", "", "", method + " " + path + ": injected 429");
    return HttpResponse{429, "text/plain", "Too Many Requests", {}, {}};
  }
  if (!options_.pacing) return std::nullopt;
  const auto now = Clock::now();
  // Per-endpoint limits [CAMPUS "Pacing Limitations"; DRAFT24], notes 1.2.
  static const std::map<std::string, milliseconds> kLimits{
      {"/iserver/account/orders", 5000ms},      {"/iserver/account/trades", 5000ms},
      {"/iserver/account/pnl/partitioned", 5000ms}, {"/portfolio/accounts", 5000ms},
      {"/portfolio/subaccounts", 5000ms},        {"/tickle", 1000ms},
      {"/sso/validate", 60000ms}};
  while (!global_window_.empty() && now - global_window_.front() >= 1s) global_window_.pop_front();
  std::string why;
  if (static_cast<int>(global_window_.size()) >= options_.global_requests_per_second) {
    why = "global limit of " + std::to_string(options_.global_requests_per_second) + " req/s";
  } else if (auto it = kLimits.find(path); it != kLimits.end()) {
    const auto window = std::chrono::duration_cast<milliseconds>(it->second * options_.pacing_window_scale);
    auto last = endpoint_last_.find(path);
    if (last != endpoint_last_.end() && now - last->second < window)
      why = "endpoint limit of 1 request per " + std::to_string(window.count()) + " ms";
    else
      endpoint_last_[path] = now;
  }
  if (!why.empty()) {
    record("http_429", "", "", method + " " + path + ": " + why);
    // The body of the real 429 is not documented; the status is what clients act on.
    return HttpResponse{429, "text/plain", "Too Many Requests", {}, {}};
  }
  global_window_.push_back(now);
  return std::nullopt;
}

std::optional<HttpResponse> GatewayCore::require_brokerage_session() {
  if (!authenticated_) return HttpResponse{401, "application/json", "", {}, {}};
  return std::nullopt;
}

std::optional<HttpResponse> GatewayCore::require_accounts(const std::string& account) {
  // "/iserver/accounts must be called before modify/cancel/live-orders/snapshot" (notes 1.1
  // [CAMPUS]); the gateway answers 500 "Please query /accounts first" (seen in third-party
  // client code handling exactly that text).
  if (!accounts_queried_) return error_body(500, "Please query /accounts first");
  if (!account.empty() &&
      std::find(options_.accounts.begin(), options_.accounts.end(), account) == options_.accounts.end())
    // Spec: 500 "can sometimes include ... wrong accountId" [SPEC229].
    return error_body(500, "Account " + account + " is not valid for this user");
  return std::nullopt;
}

HttpResponse GatewayCore::route(const HttpRequest& req, const std::string& path,
                                const std::map<std::string, std::string>& query) {
  const std::string& m = req.method;
  auto body_json = [&]() { return req.body.empty() ? json::object() : json::parse(req.body); };
  auto q = [&](const char* key) {
    auto it = query.find(key);
    return it == query.end() ? std::string() : it->second;
  };

  if (!logged_in_) {
    // Before the browser login the real gateway redirects /iserver/auth/status (302), not the
    // 401 the spec claims [BEZANT CHANGELOG]; other API calls get 401.
    if (path == "/iserver/auth/status") {
      HttpResponse r{302, "text/html", "", {}, {}};
      r.headers.emplace_back("Location", "/sso/Login?forwardTo=22&RL=1&ip2loc=on");
      return r;
    }
    return HttpResponse{401, "application/json", "", {}, {}};
  }

  if (auto paced = pace(m, path)) return *paced;

  const auto now = Clock::now();
  if (options_.session_idle_timeout.count() > 0 && authenticated_ &&
      now - last_request_ > options_.session_idle_timeout)
    expire_session_locked("no request for longer than the idle timeout (~6 min at IBKR [CAMPUS])");
  last_request_ = now;

  const bool auth_path = path == "/iserver/auth/status" || path == "/iserver/auth/ssodh/init" ||
                         path == "/iserver/reauthenticate";
  if (authenticated_ && !auth_path && path.rfind("/iserver/", 0) == 0 &&
      faults_->roll(faults_->profile().extra_rate("ibkr_session_timeout")))
    expire_session_locked("injected: brokerage session timed out before " + m + " " + path);

  // --- session
  if (path == "/iserver/auth/status" && m == "POST") return ok(auth_status_json());
  if (path == "/tickle" && m == "POST") return tickle();
  if (path == "/iserver/auth/ssodh/init" && m == "POST") {
    // publish must be true or 500 [CAMPUS].
    if (!json_bool(body_json(), "publish")) return error_body(500, "publish must be true");
    if (!authenticated_) {
      authenticated_ = true;
      accounts_queried_ = false;
      ++login_generation_;  // sockets opened before this re-login keep beating, dead [BEZANT]
      event("ssodh_init", "brokerage session re-established");
      for (auto& [h, c] : sockets_)
        if (c->ready) ws_send(*c, json{{"topic", "sts"}, {"args", {{"authenticated", true}}}});
    }
    return ok(auth_status_json());
  }
  if (path == "/iserver/reauthenticate" && m == "POST") {
    // Deprecated in favour of ssodh/init; answers "triggered" [CAMPUS; SW2021].
    if (!authenticated_) {
      authenticated_ = true;
      accounts_queried_ = false;
      ++login_generation_;
      event("reauthenticate", "brokerage session re-established");
    }
    return ok(json{{"message", "triggered"}});
  }
  if (path == "/logout" && m == "POST") {
    logged_in_ = false;
    authenticated_ = false;
    accounts_queried_ = false;
    pending_.reset();
    event("logout", "POST /logout");
    kill_sockets("logout");
    return ok(json{{"status", true}});
  }
  if (path == "/sso/validate" && m == "GET")
    return ok(json{{"USER_ID", 123456789}, {"USER_NAME", options_.user_name}, {"RESULT", true},
                   {"AUTH_TIME", now_ms()}, {"EXPIRES", 415890}, {"LOGIN_TYPE", 2},
                   {"PAPER_USER_NAME", options_.user_name}, {"IS_MASTER", false},
                   {"lastAccessed", now_ms()}, {"region", "NJ"}});

  // --- read-only session endpoints (work without the brokerage session [CAMPUS])
  if (path == "/trsrv/stocks" && m == "GET") return trsrv_stocks(q("symbols"));
  if (path == "/trsrv/futures" && m == "GET") return trsrv_futures(q("symbols"));
  if (path == "/portfolio/accounts" && m == "GET") return portfolio_accounts();
  if (path.rfind("/portfolio/", 0) == 0) {
    auto parts = split(path, '/');  // portfolio, acct, positions, page|invalidate
    if (parts.size() == 4 && parts[2] == "positions") {
      if (parts[3] == "invalidate" && m == "POST") return invalidate_positions(parts[1]);
      if (m == "GET") return positions(parts[1], parts[3]);
    }
  }

  // --- everything else needs the brokerage session
  if (path.rfind("/iserver/", 0) == 0) {
    if (auto denied = require_brokerage_session()) return *denied;
  }
  if (path == "/iserver/accounts" && m == "GET") return accounts();
  if (path == "/iserver/account" && m == "POST") return select_account(body_json());
  if (path == "/iserver/secdef/search") {
    if (m == "GET") return secdef_search(q("symbol"));
    if (m == "POST") return secdef_search(body_json().value("symbol", ""));
  }
  if (path == "/iserver/contract/rules" && m == "POST") return contract_rules(body_json());
  if (path.rfind("/iserver/contract/", 0) == 0 && m == "GET") {
    auto parts = split(path, '/');  // iserver, contract, conid, info|info-and-rules
    if (parts.size() == 4) {
      const auto conid = json_int(json(parts[2]));
      if (conid && parts[3] == "info-and-rules") return contract_info(*conid, true);
      if (conid && parts[3] == "info") return contract_info(*conid, false);
    }
  }
  if (path.rfind("/iserver/reply/", 0) == 0 && m == "POST")
    return reply(path.substr(std::string("/iserver/reply/").size()), req.body);
  if (path == "/iserver/questions/suppress" && m == "POST") return suppress(body_json());
  if (path == "/iserver/questions/suppress/reset" && m == "POST") {
    suppressed_.clear();
    return ok(json{{"status", "submitted"}});
  }
  if (path == "/iserver/account/orders" && m == "GET") return live_orders(query);
  if (path == "/iserver/account/trades" && m == "GET") return trades();
  if (path.rfind("/iserver/account/order/status/", 0) == 0 && m == "GET")
    return order_status(path.substr(std::string("/iserver/account/order/status/").size()));
  if (path == "/iserver/marketdata/snapshot" && m == "GET") return snapshot(query);
  if (path.rfind("/iserver/account/", 0) == 0) {
    auto parts = split(path, '/');  // iserver, account, acct, orders | order, id
    if (parts.size() == 4 && parts[3] == "orders" && m == "POST") return place_orders(parts[2], req.body);
    if (parts.size() == 5 && parts[3] == "order") {
      if (m == "POST") return modify_order(parts[2], parts[4], req.body);
      if (m == "DELETE") return cancel_order(parts[2], parts[4], query);
    }
  }
  return json_response(404, json{{"error", "emulator: no such endpoint " + m + " " + path}});
}

// ------------------------------------------------------------------------------------------------
// Accounts and contracts

HttpResponse GatewayCore::accounts() {
  accounts_queried_ = true;
  json props = json::object(), aliases = json::object();
  for (const auto& a : options_.accounts) {
    props[a] = {{"hasChildAccounts", false}, {"supportsCashQty", true}, {"supportsFractions", false},
                {"allowCustomerTime", false}, {"autoFx", false}, {"liteUnderPro", false},
                {"noFXConv", false}, {"isProp", false}};
    aliases[a] = a;
  }
  return ok(json{{"accounts", options_.accounts},
                 {"acctProps", props},
                 {"aliases", aliases},
                 {"allowFeatures", {{"allowCrypto", false}, {"allowFXConv", true}, {"allowTypeAhead", true},
                                    {"allowedAssetTypes", "STK,FUT"}, {"liteUser", false},
                                    {"snapshotRefreshTimeout", 30}}},
                 {"chartPeriods", {{"STK", {"*"}}, {"FUT", {"*"}}}},
                 {"groups", json::array()},
                 {"profiles", json::array()},
                 {"selectedAccount", selected_account_},
                 {"serverInfo", {{"serverName", "BackstopEmu"}, {"serverVersion", "Build 10.25.0p (emulated)"}}},
                 {"sessionId", session_token_.substr(0, 8) + ".00000001"},
                 {"isFt", false},
                 {"isPaper", true}});
}

HttpResponse GatewayCore::select_account(const json& body) {
  const std::string acct = body.value("acctId", "");
  if (std::find(options_.accounts.begin(), options_.accounts.end(), acct) == options_.accounts.end())
    return error_body(500, "Account " + acct + " is not valid for this user");
  selected_account_ = acct;
  return ok(json{{"acctId", acct}, {"set", true}});
}

const IbkrEmulatorContract* GatewayCore::contract_by_conid(std::int64_t conid) const {
  for (const auto& c : options_.contracts)
    if (c.conid == conid) return &c;
  return nullptr;
}

const IbkrEmulatorContract* GatewayCore::contract_by_symbol(const std::string& symbol) const {
  for (const auto& c : options_.contracts)
    if (upper(c.symbol) == upper(symbol) || c.venue_symbol == symbol) return &c;
  return nullptr;
}

HttpResponse GatewayCore::secdef_search(const std::string& symbol) {
  json out = json::array();
  std::set<std::int64_t> seen;
  for (const auto& c : options_.contracts) {
    if (upper(c.symbol) != upper(symbol)) continue;
    if (c.sec_type == "STK") {
      // conid is a string here, unlike most endpoints (notes 1.3 [SPEC229]).
      out.push_back({{"conid", std::to_string(c.conid)}, {"companyHeader", c.company_name + " - " + c.exchange},
                     {"companyName", c.company_name}, {"symbol", c.symbol}, {"description", c.exchange},
                     {"restricted", nullptr}, {"fop", nullptr}, {"opt", nullptr}, {"war", nullptr},
                     {"sections", json::array({{{"secType", "STK"}}})}});
    } else if (seen.insert(c.underlying_conid).second) {
      // Futures are found through their underlying index, with the months listed [SPEC229].
      std::string months;
      for (const auto& f : options_.contracts) {
        if (f.symbol != c.symbol || f.sec_type != "FUT" || f.expiry.size() < 6) continue;
        static const char* kMonths[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                        "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
        if (!months.empty()) months += ";";
        months += std::string(kMonths[std::stoi(f.expiry.substr(4, 2)) - 1]) + f.expiry.substr(2, 2);
      }
      out.push_back({{"conid", std::to_string(c.underlying_conid)}, {"companyHeader", c.company_name + " - " + c.exchange},
                     {"companyName", c.company_name}, {"symbol", c.symbol}, {"description", c.exchange},
                     {"restricted", nullptr}, {"fop", nullptr}, {"opt", nullptr}, {"war", nullptr},
                     {"sections", json::array({{{"secType", "IND"}, {"exchange", c.exchange}},
                                               {{"secType", "FUT"}, {"months", months}, {"exchange", c.exchange}}})}});
    }
  }
  return ok(out);
}

HttpResponse GatewayCore::trsrv_stocks(const std::string& symbols) {
  json out = json::object();
  for (const auto& sym : split(symbols, ',')) {
    json list = json::array();
    for (const auto& c : options_.contracts)
      if (c.sec_type == "STK" && upper(c.symbol) == upper(sym))
        list.push_back({{"name", c.company_name}, {"chineseName", ""}, {"assetClass", "STK"},
                        {"contracts", json::array({{{"conid", c.conid}, {"exchange", c.exchange}, {"isUS", c.currency == "USD"}}})}});
    out[sym] = list;
  }
  return ok(out);
}

HttpResponse GatewayCore::trsrv_futures(const std::string& symbols) {
  json out = json::object();
  for (const auto& sym : split(symbols, ',')) {
    json list = json::array();
    for (const auto& c : options_.contracts) {
      if (c.sec_type != "FUT" || upper(c.symbol) != upper(sym)) continue;
      const auto exp = std::stoll(c.expiry);
      list.push_back({{"symbol", c.symbol}, {"conid", c.conid}, {"underlyingConid", c.underlying_conid},
                      {"expirationDate", exp}, {"ltd", exp - 1}, {"shortFuturesCutOff", exp - 1},
                      {"longFuturesCutOff", exp - 1}});
    }
    if (list.empty()) continue;  // unknown symbols are simply absent
    out[sym] = list;
  }
  return ok(out);
}

namespace {
json rules_json(const IbkrEmulatorContract& c, const std::vector<std::string>& accounts) {
  const double inc = c.tick.to_double();
  return json{{"algoEligible", false}, {"allOrNoneEligible", true}, {"canTradeAcctIds", accounts},
              {"cashCcy", c.currency}, {"costReport", false},
              {"defaultSize", c.sec_type == "FUT" ? 1 : 100}, {"displaySize", nullptr}, {"error", nullptr},
              {"forceOrderPreview", false}, {"increment", inc}, {"incrementDigits", c.price_decimals},
              {"incrementRules", json::array({{{"increment", inc}, {"lowerEdge", 0.0}}})},
              {"incrementType", 1}, {"negativeCapable", false},
              {"orderTypes", {"limit", "market", "stop", "stop_limit"}},
              {"orderTypesOutside", {"limit", "stop_limit"}}, {"preview", true}, {"sizeIncrement", 1},
              {"tifTypes", {"IOC/MARKET,LIMIT,a", "GTC/o,a", "DAY/o,a"}}};
}
}  // namespace

HttpResponse GatewayCore::contract_info(std::int64_t conid, bool with_rules) {
  const auto* c = contract_by_conid(conid);
  if (!c) return error_body(500, "Contract info is not available for conid " + std::to_string(conid));
  json info{{"con_id", c->conid}, {"symbol", c->symbol}, {"company_name", c->company_name},
            {"instrument_type", c->sec_type}, {"exchange", c->sec_type == "STK" ? "SMART" : c->exchange},
            {"valid_exchanges", c->sec_type == "STK" ? "SMART," + c->exchange : c->exchange},
            {"currency", c->currency}, {"local_symbol", c->symbol}, {"trading_class", c->symbol},
            {"multiplier", c->sec_type == "FUT" ? std::to_string(c->multiplier) : ""},
            {"r_t_h", c->sec_type == "STK"}, {"smart_available", c->sec_type == "STK"},
            {"allow_sell_long", false}, {"is_zero_commission_security", false},
            {"underlying_con_id", c->underlying_conid}};
  if (c->sec_type == "FUT") {
    info["maturity_date"] = c->expiry;
    info["expiry_full"] = c->expiry.substr(0, 6);
    info["contract_month"] = c->expiry.substr(0, 6);
  }
  if (with_rules) info["rules"] = rules_json(*c, options_.accounts);
  return ok(info);
}

HttpResponse GatewayCore::contract_rules(const json& body) {
  const auto conid = body.contains("conid") ? json_int(body["conid"]) : std::nullopt;
  const auto* c = conid ? contract_by_conid(*conid) : nullptr;
  if (!c) return error_body(500, "Contract rules are not available");
  return ok(rules_json(*c, options_.accounts));
}

// ------------------------------------------------------------------------------------------------
// Orders

std::string GatewayCore::parse_ticket(const json& j, const std::string& account, Ticket& t) const {
  if (!j.is_object()) return "order ticket must be an object";
  t.raw = j;
  t.account = j.contains("acctId") && j["acctId"].is_string() ? j["acctId"].get<std::string>() : account;
  if (t.account != account) return "acctId " + t.account + " does not match the account in the path";
  // conid may be a number or a string (IBIND sends strings) [SPEC229; IBIND].
  const auto conid = j.contains("conid") ? json_int(j["conid"]) : std::nullopt;
  if (!conid) return "conid is required";
  t.contract = contract_by_conid(*conid);
  if (!t.contract) return "Invalid contract id " + std::to_string(*conid);
  t.coid = j.value("cOID", "");
  t.parent_coid = j.value("parentId", "");
  t.single_group = json_bool(j, "isSingleGroup");
  t.outside_rth = json_bool(j, "outsideRTH");
  const std::string side = upper(j.value("side", ""));
  if (side != "BUY" && side != "SELL") return "side must be BUY or SELL";
  const auto qty = j.contains("quantity") ? json_int(j["quantity"]) : std::nullopt;
  if (!qty || *qty <= 0) return "quantity must be a positive whole number";
  t.order_type = upper(j.value("orderType", ""));
  t.tif = upper(j.value("tif", ""));
  if (t.tif.empty()) return "tif is required";  // required in ordersSubmissionRequest [SPEC229]
  static const std::map<std::string, TimeInForce> kTifs{
      {"DAY", TimeInForce::day}, {"GTC", TimeInForce::gtc}, {"IOC", TimeInForce::ioc}};
  auto tif = kTifs.find(t.tif);
  if (tif == kTifs.end()) return "tif " + t.tif + " is not supported by the emulator (DAY, GTC, IOC)";

  OrderSpec& s = t.spec;
  s.symbol = t.contract->venue_symbol;
  s.side = side == "BUY" ? Side::buy : Side::sell;
  s.quantity = *qty;
  s.tif = tif->second;
  s.outside_rth = t.outside_rth;
  const auto price = j.contains("price") ? json_price(j["price"]) : std::nullopt;
  const auto aux = j.contains("auxPrice") ? json_price(j["auxPrice"]) : std::nullopt;
  // CP Web API price fields (notes 1.4 [CAMPUS]): STP takes its stop in `price`; STOP_LIMIT
  // takes the limit in `price` and the stop in `auxPrice`. STP_LIMIT is not an IBKR type.
  if (t.order_type == "MKT") {
    s.type = OrderType::market;
  } else if (t.order_type == "LMT") {
    if (!price) return "price is required for a LMT order";
    s.type = OrderType::limit;
    s.limit_price = price;
  } else if (t.order_type == "STP") {
    if (!price) return "price (the stop price) is required for a STP order";
    s.type = OrderType::stop;
    s.stop_price = price;
  } else if (t.order_type == "STOP_LIMIT") {
    if (!price || !aux) return "price (limit) and auxPrice (stop) are required for a STOP_LIMIT order";
    s.type = OrderType::stop_limit;
    s.limit_price = price;
    s.stop_price = aux;
  } else {
    return "orderType " + t.order_type + " is not supported by the emulator (MKT, LMT, STP, STOP_LIMIT)";
  }
  // US futures need manualIndicator and extOperator (CME Rule 536-B) [CAMPUS], notes 1.4.
  if (t.contract->sec_type == "FUT" && t.contract->currency == "USD") {
    if (!j.contains("manualIndicator") || !j["manualIndicator"].is_boolean())
      return "Order rejected: manualIndicator is required for US futures orders (CME Rule 536-B)";
    if (!j.contains("extOperator") || !j["extOperator"].is_string() || j["extOperator"].get<std::string>().empty())
      return "Order rejected: extOperator is required for US futures orders (CME Rule 536-B)";
  }
  return {};
}

std::vector<std::string> GatewayCore::prompts_for(const std::vector<Ticket>& tickets, bool modify) const {
  std::vector<std::string> out;
  auto want = [&](const std::string& id) {
    if (options_.prompts.count(id) && !suppressed_.count(id) &&
        std::find(out.begin(), out.end(), id) == out.end())
      out.push_back(id);
  };
  for (const auto& t : tickets) {
    const auto q = venue_->last_quote(t.spec.symbol);
    if (!snapshot_started_.count(t.contract->conid)) want("o354");
    if (t.spec.limit_price && q) {
      const auto ref = q->last ? q->last : q->bid;
      if (ref && ref->units() > 0) {
        const auto diff = t.spec.limit_price->units() - ref->units();
        // The price cap: more than 3 % from the market [IBIND QuestionType].
        if ((diff < 0 ? -diff : diff) * 100 > ref->units() * 3) want("o163");
      }
    }
    if (t.spec.quantity > 500) want("o383");
    if (t.spec.is_stop()) want(modify ? "o0" : "o10331");
  }
  return out;
}

void GatewayCore::log_order_request(const std::string& stage, const Ticket& t, const std::string& order_id,
                                    bool duplicate, const std::string& outcome) {
  order_log_.push_back({{"time", format_timestamp(clock_.now())}, {"stage", stage}, {"cOID", t.coid},
                        {"parentId", t.parent_coid}, {"order_id", order_id}, {"duplicate", duplicate},
                        {"conid", t.contract ? t.contract->conid : 0}, {"orderType", t.order_type},
                        {"outcome", outcome}});
}

HttpResponse GatewayCore::place_orders(const std::string& account, const std::string& body) {
  if (auto denied = require_accounts(account)) return *denied;
  const json j = json::parse(body);
  // {"orders":[...]}; DRAFT24's bare array is a doc error (notes 1.4).
  if (!j.is_object() || !j.contains("orders") || !j["orders"].is_array() || j["orders"].empty())
    return error_body(400, "Bad Request: body must be {\"orders\":[...]}");
  if (pending_) {
    // "Submitting other orders ... will cancel the order" awaiting a reply [CAMPUS].
    event("reply_invalidated", "reply " + pending_->id + " dropped: another order was submitted");
    pending_.reset();
  }
  std::vector<Ticket> tickets;
  std::set<std::string> coids;
  for (const auto& tj : j["orders"]) {
    Ticket t;
    if (auto why = parse_ticket(tj, account, t); !why.empty()) {
      log_order_request("received", t, "", false, "rejected: " + why);
      return ok(json{{"error", why}});
    }
    if (!t.coid.empty() && (used_coids_.count(t.coid) || !coids.insert(t.coid).second)) {
      // cOID is unique for 24 h [CAMPUS]; the gateway refuses the resend.
      log_order_request("received", t, "", true, "duplicate cOID");
      return ok(json{{"error", "Order couldn't be submitted: Local order ID=" + t.coid + " is already registered."}});
    }
    tickets.push_back(std::move(t));
  }
  // Shapes: one ticket; an OCA pair (isSingleGroup on both); a bracket of a parent with cOID and
  // two children whose parentId is that cOID (notes 1.11).
  const std::size_t n = tickets.size();
  bool shape_ok = false;
  if (n == 1) shape_ok = tickets[0].parent_coid.empty();
  if (n == 2) shape_ok = tickets[0].single_group && tickets[1].single_group &&
                         tickets[0].parent_coid.empty() && tickets[1].parent_coid.empty();
  if (n == 3)
    shape_ok = !tickets[0].coid.empty() && tickets[0].parent_coid.empty() &&
               tickets[1].parent_coid == tickets[0].coid && tickets[2].parent_coid == tickets[0].coid;
  for (const auto& t : tickets) log_order_request("received", t, "", false, shape_ok ? "received" : "rejected: shape");
  if (!shape_ok)
    return ok(json{{"error", "emulator supports one order, an OCA pair (isSingleGroup), or a bracket of "
                             "parent + two children (parentId = parent cOID)"}});

  auto p = std::make_unique<PendingReply>();
  p->account = account;
  p->tickets = std::move(tickets);
  const auto prompts = prompts_for(p->tickets, false);
  p->prompts.assign(prompts.begin(), prompts.end());
  return ask_or_execute(std::move(p));
}

HttpResponse GatewayCore::ask_or_execute(std::unique_ptr<PendingReply> p) {
  if (p->prompts.empty()) return execute(*p);
  // Each answer gets a fresh reply id; only the newest is valid (notes 1.5).
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 32; ++i) {
    if (i == 8 || i == 12 || i == 16 || i == 20) id += '-';
    id += kHex[faults_->uniform(0, 15)];
  }
  p->id = id;
  p->expires = Clock::now() + options_.reply_ttl;
  const std::string mid = p->prompts.front();
  std::string text = prompt_texts().at(mid);
  if (mid == "o163" || mid == "o383") {
    const auto& t = p->tickets.front();
    text = "The following order \"" + upper(to_string(t.spec.side)) + " " + std::to_string(t.spec.quantity) +
           " " + t.contract->symbol + " " + t.contract->listing_exchange + "\" " + text;
  }
  pending_ = std::move(p);
  return ok(json::array({{{"id", id}, {"message", {text}}, {"isSuppressed", false}, {"messageIds", {mid}}}}));
}

HttpResponse GatewayCore::reply(const std::string& reply_id, const std::string& body) {
  if (!pending_ || pending_->id != reply_id || Clock::now() > pending_->expires) {
    // Stale or unknown id [SPEC229 orderReplyNotFound; HTTP 400 in Voyz/ibind #35, #103].
    event("reply_not_found", reply_id);
    return error_body(400, "reply id not found: '" + reply_id + "'");
  }
  const json j = body.empty() ? json::object() : json::parse(body);
  auto p = std::move(pending_);
  if (!json_bool(j, "confirmed")) {
    // confirmed:false discards the order [CAMPUS]; answer as SPEC229's orderSubmitErrorExample.
    for (const auto& t : p->tickets) log_order_request("reply", t, "", false, "not confirmed");
    return ok(json{{"error", "Order not confirmed "}});
  }
  p->prompts.pop_front();
  return ask_or_execute(std::move(p));
}

HttpResponse GatewayCore::suppress(const json& body) {
  if (!body.contains("messageIds") || !body["messageIds"].is_array() || body["messageIds"].size() > 51)
    return error_body(400, "messageIds must be an array of at most 51 ids");  // [CAMPUS]
  for (const auto& id : body["messageIds"])
    if (id.is_string()) suppressed_.insert(id.get<std::string>());
  return ok(json{{"status", "submitted"}});
}

HttpResponse GatewayCore::execute(PendingReply& p) {
  HttpResponse r = p.modify ? execute_modify(p) : execute_place(p);
  const auto& prof = faults_->profile();
  if (prof.ack_delay.count() > 0 || prof.ack_delay_jitter.count() > 0) {
    auto delay = std::chrono::duration_cast<milliseconds>(prof.ack_delay);
    const auto jitter = std::chrono::duration_cast<milliseconds>(prof.ack_delay_jitter).count();
    if (jitter > 0) delay += milliseconds(faults_->uniform(0, jitter));
    if (delay.count() > 0) {
      r.delay = delay;
      record("ack_delay", "", p.tickets.empty() ? "" : p.tickets.front().coid,
             "answer held " + std::to_string(delay.count()) + " ms");
    }
  }
  return r;
}

GatewayCore::OrderMeta& GatewayCore::remember(const Ticket& t, const std::string& venue_id,
                                              const std::string& account) {
  auto m = std::make_unique<OrderMeta>();
  m->ib_id = std::to_string(next_ib_id_++);
  m->venue_id = venue_id;
  m->coid = t.coid;
  m->account = account;
  m->contract = t.contract;
  m->order_type = t.order_type;
  m->tif = t.tif;
  m->outside_rth = t.outside_rth;
  if (!venue_id.empty()) venue_to_ib_[venue_id] = m->ib_id;
  if (!t.coid.empty()) used_coids_.insert(t.coid);
  order_sequence_.push_back(m->ib_id);
  auto& ref = *m;
  orders_[m->ib_id] = std::move(m);
  return ref;
}

HttpResponse GatewayCore::execute_place(PendingReply& p) {
  auto& tickets = p.tickets;
  for (auto& t : tickets) t.spec.client_order_id = "IBE" + std::to_string(next_internal_coid_++);
  const auto& prof = faults_->profile();
  json result = json::array();
  auto entry = [&](const OrderMeta& m) {
    const VenueOrder* v = m.venue_id.empty() ? nullptr : venue_->find(m.venue_id);
    std::string status = v ? ib_status(m, *v) : (m.order_type == "STP" || m.order_type == "STOP_LIMIT" ? "PreSubmitted" : "Submitted");
    // order_id is a string here, an integer elsewhere (notes 1.0 [SPEC229]).
    result.push_back({{"order_id", m.ib_id}, {"order_status", status}, {"encrypt_message", "1"}});
  };

  if (faults_->roll(prof.extra_rate("ibkr_lost_order"))) {
    // Accepted, then gone: no sor, not listed, status unknown (notes 4 #9, #15).
    for (const auto& t : tickets) {
      auto& m = remember(t, "", p.account);
      m.lost = true;
      record("lost_order", m.ib_id, t.coid, "acknowledged to the client, never reaches the venue");
      log_order_request("executed", t, m.ib_id, false, "lost");
      entry(m);
    }
    return ok(result);
  }

  std::vector<std::string> venue_ids;
  std::string why;
  if (tickets.size() == 1) {
    auto r = venue_->submit(tickets[0].spec, p.account);
    if (r.accepted) venue_ids.push_back(r.order_id); else why = r.reason;
  } else if (tickets.size() == 2) {
    auto r = venue_->submit_oco(tickets[0].spec, tickets[1].spec, p.account);
    if (r.accepted) venue_ids = {r.take_profit_id, r.stop_id}; else why = r.reason;
  } else {
    // Map the children onto the venue's take-profit (limit) and protective stop.
    const int stop_child = tickets[1].spec.is_stop() ? 1 : (tickets[2].spec.is_stop() ? 2 : 0);
    const int tp_child = 3 - stop_child;
    if (stop_child == 0 || tickets[static_cast<std::size_t>(tp_child)].spec.type != OrderType::limit) {
      why = "emulator brackets need one LMT take-profit child and one STP/STOP_LIMIT child";
    } else {
      BracketSpec b{tickets[0].spec, tickets[static_cast<std::size_t>(tp_child)].spec,
                    tickets[static_cast<std::size_t>(stop_child)].spec};
      auto r = venue_->submit_bracket(b, p.account);
      if (r.accepted) {
        venue_ids.resize(3);
        venue_ids[0] = r.entry_id;
        venue_ids[static_cast<std::size_t>(tp_child)] = r.take_profit_id;
        venue_ids[static_cast<std::size_t>(stop_child)] = r.stop_id;
      } else {
        why = r.reason;
      }
    }
  }
  if (!why.empty()) {
    for (const auto& t : tickets) log_order_request("executed", t, "", false, "rejected: " + why);
    return ok(json{{"error", why}});  // reject: HTTP 200 with error (notes 1.4)
  }
  std::string parent_ib;
  for (std::size_t i = 0; i < tickets.size(); ++i) {
    auto& m = remember(tickets[i], venue_ids[i], p.account);
    if (tickets.size() == 3) {
      if (i == 0) parent_ib = m.ib_id; else m.parent_ib_id = parent_ib;
    }
    if (tickets[i].spec.stop_price && faults_->roll(prof.extra_rate("ibkr_alter_stop_readback"))) {
      // The venue holds the stop as sent; every read (live orders, status, sor) shows it one tick
      // higher: the read-back differs in exactly one field.
      m.readback_stop = *tickets[i].spec.stop_price + m.contract->tick;
      record("alter_stop_readback", m.ib_id, m.coid,
             "stop reads back as " + m.readback_stop->to_string() + ", venue holds " +
                 tickets[i].spec.stop_price->to_string());
    }
    entry(m);
    log_order_request("executed", tickets[i], m.ib_id, false, "accepted");
    if (faults_->roll(prof.extra_rate("ibkr_inactive"))) {
      // Acknowledged normally, then Inactive (notes 4 #7, #12).
      m.inactive = true;
      venue_->cancel(m.venue_id, "Inactive (emulated IBKR reject after acknowledgement)");
      record("inactive", m.ib_id, m.coid, "order acknowledged, then set Inactive");
    }
  }
  return ok(result);
}

HttpResponse GatewayCore::modify_order(const std::string& account, const std::string& order_id,
                                       const std::string& body) {
  if (auto denied = require_accounts(account)) return *denied;
  const json j = json::parse(body);
  // Modify takes one ticket, not wrapped, repeating all fields (notes 1.9 [DRAFT24; CAMPUS]).
  if (!j.is_object() || j.contains("orders"))
    return error_body(400, "Bad Request: modify takes a single order ticket object");
  const OrderMeta* m = meta_by_ib_id(order_id);
  const VenueOrder* v = m && !m->lost ? venue_->find(m->venue_id) : nullptr;
  if (!v) return ok(json{{"error", "OrderID " + order_id + " doesn't exist"}});  // [SPEC229]
  if (pending_) {
    event("reply_invalidated", "reply " + pending_->id + " dropped: a modify was submitted");
    pending_.reset();
  }
  Ticket t;
  if (auto why = parse_ticket(j, account, t); !why.empty()) return ok(json{{"error", why}});
  if (t.contract != m->contract || t.order_type != m->order_type || t.spec.side != v->side)
    return ok(json{{"error", "modify must repeat the original conid, side and orderType"}});
  t.coid = m->coid;
  log_order_request("modify", t, order_id, false, "received");
  auto p = std::make_unique<PendingReply>();
  p->modify = true;
  p->account = account;
  p->target_ib_id = order_id;
  p->tickets.push_back(std::move(t));
  const auto prompts = prompts_for(p->tickets, true);
  p->prompts.assign(prompts.begin(), prompts.end());
  return ask_or_execute(std::move(p));
}

HttpResponse GatewayCore::execute_modify(PendingReply& p) {
  auto it = orders_.find(p.target_ib_id);
  if (it == orders_.end() || it->second->lost)
    return ok(json{{"error", "OrderID " + p.target_ib_id + " doesn't exist"}});
  OrderMeta& m = *it->second;
  const Ticket& t = p.tickets.front();
  if (auto why = venue_->replace(m.venue_id, t.spec.quantity, t.spec.limit_price, t.spec.stop_price, t.spec.tif);
      !why.empty()) {
    log_order_request("modify", t, m.ib_id, false, "rejected: " + why);
    return ok(json{{"error", why}});
  }
  m.tif = t.tif;
  m.outside_rth = t.outside_rth;
  log_order_request("modify", t, m.ib_id, false, "modified");
  const VenueOrder* v = venue_->find(m.venue_id);
  return ok(json::array({{{"order_id", m.ib_id}, {"order_status", ib_status(m, *v)}, {"encrypt_message", "1"}}}));
}

HttpResponse GatewayCore::cancel_order(const std::string& account, const std::string& order_id,
                                       const std::map<std::string, std::string>& query) {
  if (auto denied = require_accounts(account)) return *denied;
  std::vector<std::string> ids;
  if (order_id == "-1") {  // cancels all open orders [CAMPUS]
    for (const auto& id : order_sequence_) {
      const auto& m = *orders_.at(id);
      if (!m.lost) ids.push_back(id);
    }
  } else {
    const OrderMeta* m = meta_by_ib_id(order_id);
    if (!m || m->lost) return ok(json{{"error", "OrderID " + order_id + " doesn't exist"}});
    if (m->contract->sec_type == "FUT" && m->contract->currency == "USD" && !query.count("manualIndicator"))
      // manualIndicator also rides on the DELETE for US futures (notes 1.4, 1.10).
      return ok(json{{"error", "Order rejected: manualIndicator is required for US futures orders (CME Rule 536-B)"}});
    ids.push_back(order_id);
  }
  for (const auto& id : ids) {
    OrderMeta& m = *orders_.at(id);
    const VenueOrder* v = venue_->find(m.venue_id);
    if (!v || !is_open(v->status) || m.pending_cancel) continue;
    // The answer only says the request was received; the cancel lands later (notes 1.10).
    m.pending_cancel = true;
    tables_changed_ = true;
    dirty_.insert(m.venue_id);
    after(options_.cancel_delay, [this, id] { land_cancel(id); });
  }
  const OrderMeta* m = meta_by_ib_id(order_id);
  return ok(json{{"msg", "Request was submitted"}, {"order_id", order_id},
                 {"conid", m ? std::to_string(m->contract->conid) : "-1"}, {"account", account}});
}

void GatewayCore::land_cancel(const std::string& ib_id) {
  auto it = orders_.find(ib_id);
  if (it == orders_.end()) return;
  OrderMeta& m = *it->second;
  m.pending_cancel = false;
  tables_changed_ = true;
  dirty_.insert(m.venue_id);
  const VenueOrder* v = venue_->find(m.venue_id);
  if (!v || !is_open(v->status)) return;  // filled meanwhile: the cancel simply fails
  const std::string group = v->oco_group;
  venue_->cancel(m.venue_id, "cancelled by user");
  // Cancelling one bracket child or OCA member cancels its sibling (notes 1.10 [SW2021]).
  if (!group.empty())
    for (const auto& o : venue_->open_orders())
      if (o.oco_group == group) venue_->cancel(o.id, "OCA sibling cancelled");
}

const GatewayCore::OrderMeta* GatewayCore::meta_by_ib_id(const std::string& ib_id) const {
  auto it = orders_.find(ib_id);
  return it == orders_.end() ? nullptr : it->second.get();
}

std::string GatewayCore::ib_status(const OrderMeta& m, const VenueOrder& v) const {
  if (m.inactive || v.status == VenueStatus::rejected) return "Inactive";
  if (m.pending_cancel && is_open(v.status)) return "PendingCancel";
  switch (v.status) {
    // Bracket exits wait for the entry; IB lists them PreSubmitted.
    case VenueStatus::held: return "PreSubmitted";
    // An IB-simulated stop stays PreSubmitted until elected (notes 1.7 [SW2021]); a ghost stop
    // therefore keeps looking exactly like a healthy one.
    case VenueStatus::working: return v.stop_price ? "PreSubmitted" : "Submitted";
    case VenueStatus::triggered: return "Submitted";
    case VenueStatus::filled: return "Filled";
    case VenueStatus::cancelled: return "Cancelled";
    case VenueStatus::rejected: return "Inactive";
  }
  return "Inactive";
}

std::string GatewayCore::money(Price p, const IbkrEmulatorContract& c) const {
  // Fixed decimals like the gateway ("457.00"), computed from the exact integer.
  const std::int64_t units = p.units();
  const bool neg = units < 0;
  const std::int64_t a = neg ? -units : units;
  std::string frac = std::to_string(a % Price::kScale);
  frac.insert(0, static_cast<std::size_t>(Price::kDecimals) - frac.size(), '0');
  std::size_t keep = static_cast<std::size_t>(c.price_decimals);
  while (frac.size() > keep && frac.back() == '0') frac.pop_back();
  if (frac.size() < keep) frac.append(keep - frac.size(), '0');
  std::string out = (neg ? "-" : "") + std::to_string(a / Price::kScale);
  if (!frac.empty()) out += "." + frac;
  return out;
}

namespace {
const char* display_type(const std::string& t) {
  if (t == "MKT") return "Market";
  if (t == "LMT") return "Limit";
  if (t == "STP") return "Stop";
  return "Stop Limit";
}
const char* orig_type(const std::string& t) {
  if (t == "MKT") return "MARKET";
  if (t == "LMT") return "LIMIT";
  if (t == "STP") return "STOP";
  return "STOP_LIMIT";
}
std::string tif_display(const std::string& tif) {
  return tif == "GTC" ? "GTC" : tif == "IOC" ? "IOC" : "Day";
}
}  // namespace

json GatewayCore::order_row(const OrderMeta& m, const VenueOrder& v) const {
  const auto& c = *m.contract;
  const std::string status = ib_status(m, v);
  const bool buy = v.side == Side::buy;
  const std::optional<Price> stop = m.readback_stop ? m.readback_stop : v.stop_price;
  // Live-order rows: field names and number/string mix as in the IBIND capture and the WS
  // samples (notes 1.7, ibkr-examples); SPEC229 types some of these as strings, see SPEC_DEFECTS.md.
  std::string desc = std::string(status == "Filled" ? (buy ? "Bought " : "Sold ") : (buy ? "Buy " : "Sell ")) +
                     std::to_string(v.quantity) + " " + display_type(m.order_type);
  std::optional<Price> price_field = m.order_type == "STP" ? stop : v.limit_price;
  if (price_field) desc += " " + money(*price_field, c);
  if (m.order_type == "STOP_LIMIT" && stop) desc += ", Stop " + money(*stop, c);
  desc += ", " + tif_display(m.tif);
  json row{{"acct", m.account}, {"account", m.account}, {"conid", c.conid}, {"conidex", std::to_string(c.conid)},
           {"orderId", std::stoll(m.ib_id)}, {"cashCcy", c.currency},
           {"sizeAndFills", status == "Filled" ? std::to_string(v.filled_quantity)
                                               : std::to_string(v.filled_quantity) + "/" + std::to_string(v.quantity)},
           {"orderDesc", desc}, {"description1", c.symbol}, {"ticker", c.symbol}, {"secType", c.sec_type},
           {"listingExchange", c.listing_exchange},
           {"remainingQuantity", static_cast<double>(v.quantity - v.filled_quantity)},
           {"filledQuantity", static_cast<double>(v.filled_quantity)}, {"totalSize", static_cast<double>(v.quantity)},
           {"companyName", c.company_name}, {"status", status}, {"order_ccp_status", status},
           {"origOrderType", orig_type(m.order_type)}, {"orderType", display_type(m.order_type)},
           {"side", buy ? "BUY" : "SELL"}, {"timeInForce", m.tif}, {"outsideRTH", m.outside_rth},
           {"lastExecutionTime", utc(v.updated_at, "%y%m%d%H%M%S")}, {"lastExecutionTime_r", v.updated_at / 1'000'000},
           {"supportsTaxOpt", "1"}, {"isEventTrading", "0"},
           {"bgColor", status == "Submitted" ? "#000000" : "#FFFFFF"},
           {"fgColor", status == "Submitted" ? "#00F000" : "#0000CC"}};
  if (price_field) row["price"] = money(*price_field, c);
  if (m.order_type == "STOP_LIMIT" && stop) row["auxPrice"] = money(*stop, c);
  if (v.filled_quantity > 0) row["avgPrice"] = money(v.average_fill_price, c);
  if (!m.coid.empty()) row["order_ref"] = m.coid;  // cOID echoes as order_ref (notes 1.4)
  // Children carry the parent's IBKR order id, not its cOID (notes 1.7, unverified capture).
  if (!m.parent_ib_id.empty()) row["parentId"] = std::stoll(m.parent_ib_id);
  if (status == "Cancelled" && v.reason != "cancelled by user")
    row["order_cancellation_by_system_reason"] = v.reason;
  return row;
}

json GatewayCore::status_json(const OrderMeta& m, const VenueOrder& v) const {
  const auto& c = *m.contract;
  const std::string status = ib_status(m, v);
  json s{{"order_id", std::stoll(m.ib_id)}, {"conid", c.conid}, {"conidex", std::to_string(c.conid)},
         {"symbol", c.symbol}, {"contract_description_1", c.symbol},
         {"side", v.side == Side::buy ? "B" : "S"},  // "B"/"S" as in SPEC229's example (notes 1.8)
         {"order_type", orig_type(m.order_type)}, {"order_status", status}, {"order_ccp_status", status},
         {"order_status_description", status == "Filled" ? "Order Filled" : status == "Cancelled" ? "Order Cancelled" : "Order " + status},
         {"size", std::to_string(v.quantity - v.filled_quantity) + ".0"}, {"total_size", std::to_string(v.quantity) + ".0"},
         {"cum_fill", std::to_string(v.filled_quantity) + ".0"}, {"tif", m.tif}, {"outside_rth", m.outside_rth},
         {"order_time", utc(v.created_at, "%y%m%d%H%M%S")}, {"order_not_editable", !is_open(v.status)},
         {"cannot_cancel_order", !is_open(v.status)}, {"editable_fields", ""}, {"deactivate_order", false},
         {"child_order_type", "0"}, {"account", m.account}, {"currency", c.currency}, {"sec_type", c.sec_type},
         {"listing_exchange", c.listing_exchange}, {"company_name", c.company_name},
         {"size_and_fills", std::to_string(v.filled_quantity)}, {"server_id", "0"}, {"request_id", "1"},
         {"alert_active", 1}, {"allowed_duplicate_opposite", true}};
  if (v.filled_quantity > 0) s["average_price"] = money(v.average_fill_price, c);
  if (v.limit_price) s["limit_price"] = money(*v.limit_price, c);
  if (m.readback_stop ? m.readback_stop : v.stop_price)
    s["stop_price"] = money(*(m.readback_stop ? m.readback_stop : v.stop_price), c);
  if (!v.oco_group.empty()) s["oca_group_id"] = v.oco_group;
  return s;
}

HttpResponse GatewayCore::live_orders(const std::map<std::string, std::string>& query) {
  if (auto denied = require_accounts("")) return *denied;
  auto fit = query.find("force");
  if (fit != query.end() && lower(fit->second) == "true") {
    // force=true clears the cache and returns nothing; call again for data (notes 1.7,
    // Voyz/ibind #90). It also restores sor after a filtered call [CAMPUS "Live Orders"].
    if (sor_stopped_by_filters_) event("sor_restored", "force=true after a filtered call");
    sor_stopped_by_filters_ = false;
    return ok(json{{"orders", json::array()}, {"snapshot", false}});
  }
  static const std::map<std::string, std::string> kFilters{
      {"inactive", "Inactive"}, {"pending_submit", "PendingSubmit"}, {"pre_submitted", "PreSubmitted"},
      {"submitted", "Submitted"}, {"filled", "Filled"}, {"pending_cancel", "PendingCancel"},
      {"cancelled", "Cancelled"}, {"warn_state", "WarnState"}, {"sort_by_time", ""}};
  std::set<std::string> wanted;
  auto filt = query.find("filters");
  if (filt != query.end() && !filt->second.empty()) {
    for (const auto& f : split(filt->second, ',')) {
      auto k = kFilters.find(f);
      // Capitalised values give HTTP 500 (notes 1.7, Voyz/ibind #119).
      if (k == kFilters.end()) return error_body(500, "invalid filter value: " + f);
      if (!k->second.empty()) wanted.insert(k->second);
    }
    if (!wanted.empty() && !sor_stopped_by_filters_) {
      // A filtered call stops order details flowing on sor until a force=true call [CAMPUS].
      sor_stopped_by_filters_ = true;
      event("sor_stopped_by_filters", "GET /iserver/account/orders?filters=" + filt->second);
    }
  }
  json rows = json::array();
  for (const auto& id : order_sequence_) {
    const auto& m = *orders_.at(id);
    if (m.lost) continue;
    const VenueOrder* v = venue_->find(m.venue_id);
    if (!v) continue;
    json row = order_row(m, *v);
    if (!wanted.empty() && !wanted.count(row["status"].get<std::string>())) continue;
    rows.push_back(std::move(row));
  }
  return ok(json{{"orders", rows}, {"snapshot", true}});
}

HttpResponse GatewayCore::order_status(const std::string& order_id) {
  const OrderMeta* m = meta_by_ib_id(order_id);
  const VenueOrder* v = m && !m->lost ? venue_->find(m->venue_id) : nullptr;
  // Orders the gateway has no record of answer 503 (notes 1.8 [CAMPUS; SPEC229]).
  if (!v) return HttpResponse{503, "application/json", json{{"error", "Service Unavailable"}}.dump(), {}, {}};
  return ok(status_json(*m, *v));
}

HttpResponse GatewayCore::trades() {
  json rows = json::array();
  for (const auto& f : venue_->fills()) {
    auto ib = venue_to_ib_.find(f.order_id);
    if (ib == venue_to_ib_.end()) continue;
    const auto& m = *orders_.at(ib->second);
    const VenueOrder* v = venue_->find(m.venue_id);
    const auto& c = *m.contract;
    const bool buy = v->side == Side::buy;
    const std::string px = money(f.price, c);
    rows.push_back({{"execution_id", "0000e0d5." + f.execution_id + ".01.01"}, {"symbol", c.symbol},
                    {"side", buy ? "B" : "S"},
                    {"order_description", std::string(buy ? "Bot " : "Sold ") + std::to_string(f.quantity) + " @ " + px + " on " + c.exchange},
                    {"trade_time", utc(f.at, "%Y%m%d-%H:%M:%S")}, {"trade_time_r", f.at / 1'000'000},
                    {"size", static_cast<double>(f.quantity)}, {"price", px}, {"order_ref", m.coid},
                    {"submitter", options_.user_name}, {"exchange", c.exchange}, {"commission", "0.00"},
                    {"net_amount", f.price.to_double() * static_cast<double>(f.quantity * c.multiplier)},
                    {"account", m.account}, {"accountCode", m.account}, {"conid", std::to_string(c.conid)},
                    {"conidEx", std::to_string(c.conid)}, {"sec_type", c.sec_type}, {"listing_exchange", c.listing_exchange},
                    {"company_name", c.company_name}, {"contract_description_1", c.symbol}, {"clearing_id", "IB"},
                    {"clearing_name", "IB"}, {"liquidation_trade", "0"}, {"is_event_trading", "0"},
                    {"order_id", std::stoll(m.ib_id)}});
  }
  return ok(rows);
}

HttpResponse GatewayCore::portfolio_accounts() {
  json rows = json::array();
  for (const auto& a : options_.accounts)
    rows.push_back({{"id", a}, {"accountId", a}, {"accountVan", a}, {"accountTitle", "Backstop emulator"},
                    {"displayName", a}, {"accountAlias", nullptr}, {"accountStatus", 1644814800000LL},
                    {"currency", "USD"}, {"type", "DEMO"}, {"tradingType", "STKNOPT"}, {"businessType", "IB_PROSERVE"},
                    {"ibEntity", "IBLLC-US"}, {"faclient", false}, {"clearingStatus", "O"}, {"covestor", false},
                    {"noClientTrading", false}, {"trackVirtualFXPortfolio", false}, {"acctCustType", "INDIVIDUAL"},
                    {"parent", {{"mmc", json::array()}, {"accountId", ""}, {"isMParent", false}, {"isMChild", false}, {"isMultiplex", false}}},
                    {"desc", a}});
  return ok(rows);
}

HttpResponse GatewayCore::positions(const std::string& account, const std::string& page) {
  if (std::find(options_.accounts.begin(), options_.accounts.end(), account) == options_.accounts.end())
    return error_body(400, "Account " + account + " is not valid");
  if (page != "0") return ok(json::array());  // everything fits on page 0 (pageSize 100)
  const auto now = Clock::now();
  // Positions are cached by the gateway until invalidated (notes 1.12 [SPEC229; CAMPUS]).
  auto cached = positions_cache_.find(account);
  if (cached != positions_cache_.end() && now - cached->second.first < options_.positions_cache_ttl)
    return ok(cached->second.second);
  json rows = json::array();
  for (const auto& p : venue_->positions()) {
    const auto* c = contract_by_symbol(p.symbol);
    if (!c) continue;
    const auto q = venue_->last_quote(p.symbol);
    const Price mark = q && q->last ? *q->last : p.average_price;
    const double qty = static_cast<double>(p.quantity);
    const double mult = static_cast<double>(c->multiplier);
    rows.push_back({{"acctId", account}, {"conid", c->conid}, {"contractDesc", c->symbol}, {"position", qty},
                    {"mktPrice", mark.to_double()}, {"mktValue", mark.to_double() * qty * mult}, {"currency", c->currency},
                    {"avgCost", p.average_price.to_double() * mult}, {"avgPrice", p.average_price.to_double()},
                    {"realizedPnl", 0.0}, {"unrealizedPnl", (mark.to_double() - p.average_price.to_double()) * qty * mult},
                    {"assetClass", c->sec_type}, {"ticker", c->symbol}, {"listingExchange", c->listing_exchange},
                    {"multiplier", c->sec_type == "FUT" ? mult : 0.0}, {"undConid", c->underlying_conid},
                    {"expiry", c->expiry.empty() ? json(nullptr) : json(c->expiry)}, {"strike", "0"}, {"pageSize", 100},
                    {"incrementRules", json::array({{{"increment", c->tick.to_double()}, {"lowerEdge", 0.0}}})},
                    {"isUS", c->currency == "USD"}, {"name", c->company_name}, {"fullName", c->symbol}});
  }
  positions_cache_[account] = {now, rows};
  return ok(rows);
}

HttpResponse GatewayCore::invalidate_positions(const std::string& account) {
  if (faults_->roll(faults_->profile().stale_position_rate)) {
    // The typed stale_position_rate: the invalidate is acknowledged but the cache survives.
    record("stale_positions", "", "", "invalidate acknowledged for " + account + " but cached positions kept");
  } else {
    positions_cache_.erase(account);
  }
  return ok(json{{"message", "success"}});
}

// ------------------------------------------------------------------------------------------------
// Market data

json GatewayCore::quote_fields(const IbkrEmulatorContract& c, const std::vector<std::string>& fields) const {
  json out = json::object();
  const auto q = venue_->last_quote(c.venue_symbol);
  for (const auto& f : fields) {
    if (f == "55") out[f] = c.symbol;
    else if (f == "6008") out[f] = c.conid;
    else if (f == "6070") out[f] = c.sec_type;
    else if (f == "6509") out[f] = "RpB";
    else if (!q) continue;
    else if (f == "31" && q->last) out[f] = money(*q->last, c);
    else if (f == "84" && q->bid) out[f] = money(*q->bid, c);
    else if (f == "86" && q->ask) out[f] = money(*q->ask, c);
    else if (f == "88") out[f] = grouped(q->bid_size);
    else if (f == "85") out[f] = grouped(q->ask_size);
    else if (f == "7059") out[f] = grouped(q->last_size);
  }
  return out;
}

HttpResponse GatewayCore::snapshot(const std::map<std::string, std::string>& query) {
  if (auto denied = require_accounts("")) return *denied;
  auto cit = query.find("conids");
  if (cit == query.end() || cit->second.empty()) return error_body(400, "conids is required");
  auto fit = query.find("fields");
  const std::vector<std::string> fields = fit == query.end() ? std::vector<std::string>{} : split(fit->second, ',');
  json out = json::array();
  for (const auto& s : split(cit->second, ',')) {
    const auto conid = json_int(json(s));
    const auto* c = conid ? contract_by_conid(*conid) : nullptr;
    if (!c) continue;
    if (!fields.empty()) snapshot_fields_[c->conid] = fields;
    json row = json::object();
    // The first call per conid is a pre-flight: it starts the stream and returns only conid
    // and conidEx (notes 1.15 [DRAFT24; SW2021]).
    if (snapshot_started_.insert(c->conid).second) {
      row = {{"conid", c->conid}, {"conidEx", std::to_string(c->conid)}};
    } else {
      row = quote_fields(*c, snapshot_fields_[c->conid]);
      row["conid"] = c->conid;
      row["conidEx"] = std::to_string(c->conid);
      row["_updated"] = now_ms();
      row["server_id"] = "q0";
      row["6119"] = "q0";
      row["6509"] = "RpB";
    }
    out.push_back(row);
  }
  return ok(out);
}

std::string GatewayCore::set_quote_locked(std::int64_t conid, std::optional<Price> bid, std::optional<Price> ask,
                                          std::optional<Price> last, std::int64_t size) {
  const auto* c = contract_by_conid(conid);
  if (!c) return "unknown conid " + std::to_string(conid);
  const TickSize tick(c->tick);
  for (const auto& p : {bid, ask, last})
    if (p && !tick.is_on_tick(*p)) return "price " + p->to_string() + " is not on tick " + c->tick.to_string();
  Quote q;
  q.symbol = c->venue_symbol;
  q.bid = bid;
  q.ask = ask;
  q.last = last;
  q.bid_size = q.ask_size = size > 0 ? size : 1000;
  q.last_size = size > 0 ? size : 100;
  q.at = clock_.now();
  q.source = "emulator";
  venue_->on_quote(q);
  push_quote(*c);
  flush_order_updates();
  return {};
}

// ------------------------------------------------------------------------------------------------
// Streams

void GatewayCore::on_venue_event(const VenueEvent& e) { dirty_.insert(e.order.id); }

void GatewayCore::ws_send(WsClient& c, const json& frame) { outbox_.push_back({c.peer, frame.dump()}); }

void GatewayCore::flush_order_updates() {
  if (dirty_.empty()) return;
  const auto dirty = std::move(dirty_);
  dirty_.clear();
  const auto& prof = faults_->profile();
  for (const auto& vid : dirty) {
    auto ib = venue_to_ib_.find(vid);
    if (ib == venue_to_ib_.end()) continue;
    const auto& m = *orders_.at(ib->second);
    const VenueOrder* v = venue_->find(vid);
    if (m.lost || !v) continue;
    const json row = order_row(m, *v);
    for (auto& [h, c] : sockets_) {
      if (!c->ready || !c->sor || c->dead || c->generation != login_generation_ || !authenticated_) continue;
      if (sor_stopped_by_filters_) continue;
      // Deltas carry only changed fields plus orderId and acct (notes 1.16 [WS22; CAMPUS]).
      json& base = c->sor_base[m.ib_id];
      json delta{{"acct", m.account}, {"orderId", row["orderId"]}};
      for (const auto& [k, val] : row.items())
        if (!base.contains(k) || base[k] != val) delta[k] = val;
      base = row;
      if (delta.size() <= 2) continue;
      const bool fill_change = delta.contains("filledQuantity");
      const double rate = std::max(fill_change ? prof.drop_fill_event_rate : prof.drop_order_event_rate,
                                   prof.extra_rate("ibkr_drop_sor"));
      if (faults_->roll(rate)) {
        record("drop_sor", m.ib_id, m.coid, "sor delta not delivered: " + delta.dump());
        continue;
      }
      ws_send(*c, json{{"topic", "sor"}, {"args", json::array({delta})}});
    }
  }
}

void GatewayCore::push_quote(const IbkrEmulatorContract& contract) {
  for (auto& [h, c] : sockets_) {
    if (!c->ready || c->dead || c->generation != login_generation_ || !authenticated_) continue;
    auto it = c->smd.find(contract.conid);
    if (it == c->smd.end()) continue;
    json frame = quote_fields(contract, it->second);
    frame["conid"] = contract.conid;
    frame["conidEx"] = std::to_string(contract.conid);
    frame["_updated"] = now_ms();
    frame["server_id"] = "q0";
    frame["6119"] = "q0";
    frame["topic"] = "smd+" + std::to_string(contract.conid);
    ws_send(*c, frame);
  }
}

std::uint64_t GatewayCore::ws_open(std::shared_ptr<WsPeer> peer, const std::string& cookie) {
  Locked lock(*this);
  if (!logged_in_) return 0;
  auto c = std::make_unique<WsClient>();
  c->peer = std::move(peer);
  c->generation = login_generation_;
  // Cookie api={"session":"<tickle session>"} (CAMPUS python, BEZANT) or api=<session> (CAMPUS
  // curl), notes 1.16.
  std::string session;
  if (auto pos = cookie.find("api="); pos != std::string::npos) {
    std::string value = cookie.substr(pos + 4);
    if (auto semi = value.find(';'); semi != std::string::npos && value.front() != '{') value.resize(semi);
    if (!value.empty() && value.front() == '{') {
      auto end = value.find('}');
      const auto parsed = json::parse(value.substr(0, end + 1), nullptr, false);
      if (parsed.is_object()) session = json_string_field(parsed, "session");
    } else {
      session = url_decode(value);
    }
  }
  const std::uint64_t handle = next_socket_++;
  if (faults_->roll(faults_->profile().extra_rate("ibkr_dead_ws"))) {
    c->dead = true;
    record("dead_ws", "", "", "socket " + std::to_string(handle) + " answers tic and heartbeats, delivers nothing");
  }
  const bool ok_session = !session.empty() && session == session_token_;
  sockets_[handle] = std::move(c);
  if (ok_session) {
    sockets_[handle]->session_ok = true;
    after(options_.ws_ready_delay, [this, handle] { ws_make_ready(handle); });
  } else {
    // Older docs: send {"session":"..."} after connecting (notes 1.16 [WS22]).
    ws_send(*sockets_[handle], json{{"message", "waiting for session"}});
  }
  return handle;
}

void GatewayCore::ws_make_ready(std::uint64_t handle) {
  auto it = sockets_.find(handle);
  if (it == sockets_.end()) return;
  WsClient& c = *it->second;
  c.ready = true;
  ws_send(c, json{{"topic", "system"}, {"success", options_.user_name}, {"isFT", false}, {"isPaper", true}});
  ws_send(c, json{{"topic", "sts"}, {"args", {{"authenticated", authenticated_}}}});
}

void GatewayCore::ws_text(std::uint64_t handle, const std::string& raw) {
  Locked lock(*this);
  auto it = sockets_.find(handle);
  if (it == sockets_.end()) return;
  WsClient& c = *it->second;
  std::string text = raw;
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  if (text == "tic") {
    // Keeps the /iserver session alive (notes 1.16 [CAMPUS]); answered even on a dead socket.
    last_request_ = Clock::now();
    ws_send(c, json{{"topic", "tic"}, {"alive", true}, {"id", options_.user_name}, {"lastAccessed", now_ms()}});
    return;
  }
  if (text == "ech+hb") return;  // older keepalive [WS22]: nothing to answer
  if (!text.empty() && text.front() == '{') {
    const auto j = json::parse(text, nullptr, false);
    if (j.is_object() && json_string_field(j, "session") == session_token_ && !c.session_ok) {
      c.session_ok = true;
      after(options_.ws_ready_delay, [this, handle] { ws_make_ready(handle); });
    }
    return;
  }
  if (!c.session_ok) return;
  if (!c.ready) {
    // Subscriptions sent before the system ready frame are silently discarded [BEZANT
    // CHANGELOG "CPAPI subscribe-pre-ready quirk"].
    event("ws_subscription_discarded", "socket " + std::to_string(handle) + " sent '" + text + "' before ready");
    return;
  }
  const auto parts_end = text.find('{');
  const std::string head = text.substr(0, parts_end);
  const json args = parts_end == std::string::npos ? json::object() : json::parse(text.substr(parts_end), nullptr, false);
  const auto fields = split(head, '+');
  if (fields.empty()) return;
  const std::string& topic = fields[0];
  const bool live = !c.dead && c.generation == login_generation_;
  if (topic == "sor") {
    c.sor = true;
    if (!live || !authenticated_ || sor_stopped_by_filters_) return;  // silently nothing [BEZANT]
    json rows = json::array();
    for (const auto& id : order_sequence_) {
      const auto& m = *orders_.at(id);
      const VenueOrder* v = m.lost ? nullptr : venue_->find(m.venue_id);
      if (!v) continue;
      json row = order_row(m, *v);
      c.sor_base[m.ib_id] = row;
      rows.push_back(std::move(row));
    }
    // The first message lists current orders; honoured silently when there are none [BEZANT].
    if (!rows.empty()) ws_send(c, json{{"topic", "sor"}, {"args", rows}});
  } else if (topic == "uor") {
    c.sor = false;
    c.sor_base.clear();
  } else if (topic == "smd" && fields.size() >= 2) {
    const auto conid = json_int(json(fields[1].substr(0, fields[1].find('@'))));
    const auto* k = conid ? contract_by_conid(*conid) : nullptr;
    if (!k) {
      ws_send(c, json{{"error", "unknown conid " + fields[1]}});
      return;
    }
    std::vector<std::string> wanted;
    if (args.is_object() && args.contains("fields") && args["fields"].is_array())
      for (const auto& f : args["fields"]) wanted.push_back(f.is_string() ? f.get<std::string>() : f.dump());
    if (wanted.empty()) wanted = {"31", "84", "86"};
    c.smd[k->conid] = wanted;
    snapshot_started_.insert(k->conid);  // market data is now requested for it (o354)
    if (live) push_quote(*k);
  } else if (topic == "umd" && fields.size() >= 2) {
    const auto conid = json_int(json(fields[1]));
    if (conid) c.smd.erase(*conid);
  }
}

void GatewayCore::ws_closed(std::uint64_t handle) {
  Locked lock(*this);
  sockets_.erase(handle);
}

void GatewayCore::kill_sockets(const std::string& why) {
  for (auto& [h, c] : sockets_) outbox_.push_back({c->peer, {}, true});
  if (!sockets_.empty()) event("ws_closed", why + ": " + std::to_string(sockets_.size()) + " socket(s)");
  sockets_.clear();
}

void GatewayCore::heartbeat() {
  // {"topic":"system","hb":<ms>} about every 10 s (notes 1.16 [WS22; IBIND]); dead sockets too.
  for (auto& [h, c] : sockets_)
    if (c->ready) ws_send(*c, json{{"topic", "system"}, {"hb", now_ms()}});
}

void GatewayCore::market_tick() {
  for (std::size_t i = 0; i < options_.contracts.size(); ++i) {
    auto q = walks_[i]->next(clock_.now());
    if (!q) continue;
    q->source = "emulator";
    venue_->on_quote(*q);
    push_quote(options_.contracts[i]);
  }
  if (!sockets_.empty() && faults_->roll(faults_->profile().disconnect_rate)) {
    record("disconnect", "", "", "WebSocket connections dropped");
    kill_sockets("injected disconnect");
  }
}

void GatewayCore::poll() {
  Locked lock(*this);
  const auto now = Clock::now();
  while (!timers_.empty() && timers_.begin()->first <= now) {
    auto fn = std::move(timers_.begin()->second);
    timers_.erase(timers_.begin());
    fn();
  }
  if (options_.ws_heartbeat_interval.count() > 0 && now >= next_heartbeat_) {
    next_heartbeat_ = now + options_.ws_heartbeat_interval;
    heartbeat();
  }
  if (options_.tick_interval.count() > 0 && now >= next_tick_) {
    next_tick_ = now + options_.tick_interval;
    market_tick();
  }
  flush_order_updates();
}

// ------------------------------------------------------------------------------------------------
// Faults and the control API

void GatewayCore::set_fault_profile_locked(const FaultProfile& profile) {
  // The venue reads the profile only under mutex_, held here; earlier records stay in the log.
  faults_->set_profile(profile);
  event("fault_profile", profile.name);
}

std::vector<FaultRecord> GatewayCore::fault_log() const {
  std::lock_guard lock(mutex_);
  return faults_->log();
}

json GatewayCore::log_locked() const {
  json faults = json::array();
  auto add = [&](const FaultRecord& r) {
    faults.push_back({{"time", format_timestamp(r.at)}, {"kind", r.kind}, {"order_id", venue_to_ib_.count(r.order_id) ? venue_to_ib_.at(r.order_id) : r.order_id},
                      {"client_order_id", r.client_order_id}, {"detail", r.detail}});
  };
  for (const auto& r : faults_->log()) add(r);
  json arrivals = json::array();
  for (const auto& a : venue_->arrivals())
    arrivals.push_back({{"time", format_timestamp(a.at)}, {"venue_client_order_id", a.client_order_id},
                        {"order_id", venue_to_ib_.count(a.order_id) ? venue_to_ib_.at(a.order_id) : a.order_id},
                        {"duplicate", a.duplicate}});
  return json{{"orders", order_log_}, {"faults", faults}, {"events", event_log_}, {"venue_arrivals", arrivals},
              {"fault_profile", faults_->profile().name}};
}

HttpResponse GatewayCore::control_quote(const json& body) {
  std::int64_t conid = 0;
  if (body.contains("conid")) {
    conid = json_int(body["conid"]).value_or(0);
  } else if (body.contains("symbol") && body["symbol"].is_string()) {
    const auto* c = contract_by_symbol(body["symbol"].get<std::string>());
    conid = c ? c->conid : 0;
  }
  auto price = [&](const char* key) -> std::optional<Price> {
    return body.contains(key) ? json_price(body[key]) : std::nullopt;
  };
  const auto size = body.contains("size") ? json_int(body["size"]).value_or(0) : 0;
  const std::string why = set_quote_locked(conid, price("bid"), price("ask"), price("last"), size);
  if (!why.empty()) return error_body(400, why);
  return ok(json{{"ok", true}});
}

HttpResponse GatewayCore::control_faults(const json& body) {
  FaultProfile p = faults_->profile();
  try {
    if (body.contains("profile")) p = FaultProfile::named(body["profile"].get<std::string>());
  } catch (const ConfigError& e) {
    return error_body(400, e.what());
  }
  auto rate = [&](const char* key, double& field) {
    if (body.contains(key) && body[key].is_number()) field = body[key].get<double>();
  };
  rate("ghost_stop_rate", p.ghost_stop_rate);
  rate("reject_rate", p.reject_rate);
  rate("drop_order_event_rate", p.drop_order_event_rate);
  rate("drop_fill_event_rate", p.drop_fill_event_rate);
  rate("disconnect_rate", p.disconnect_rate);
  rate("stale_position_rate", p.stale_position_rate);
  if (body.contains("ack_delay_ms")) p.ack_delay = milliseconds(body["ack_delay_ms"].get<std::int64_t>());
  if (body.contains("ack_delay_jitter_ms")) p.ack_delay_jitter = milliseconds(body["ack_delay_jitter_ms"].get<std::int64_t>());
  if (body.contains("extra") && body["extra"].is_object())
    for (const auto& [k, v] : body["extra"].items())
      if (v.is_number()) p.extra[k] = v.get<double>();
  if (!body.contains("profile") && body.contains("name")) p.name = body["name"].get<std::string>();
  set_fault_profile_locked(p);
  return ok(json{{"profile", p.name}});
}

HttpResponse GatewayCore::control(const HttpRequest& req, const std::string& path) {
  const json body = req.body.empty() ? json::object() : json::parse(req.body);
  if (path == "/__emulator/log" && req.method == "GET") {
    return ok(log_locked());
  }
  if (req.method != "POST") return error_body(405, "use POST");
  if (path == "/__emulator/login") {
    login_locked();
    return ok(json{{"logged_in", true}, {"session", session_token_}});
  }
  if (path == "/__emulator/logout") {
    logout_locked();
    return ok(json{{"logged_in", false}});
  }
  if (path == "/__emulator/session_timeout") {
    expire_session_locked("control: POST /__emulator/session_timeout");
    return ok(json{{"authenticated", false}});
  }
  if (path == "/__emulator/quote") return control_quote(body);
  if (path == "/__emulator/faults") return control_faults(body);
  if (path == "/__emulator/tick") {
    market_tick();
    return ok(json{{"ok", true}});
  }
  return error_body(404, "no such control endpoint " + path);
}

// ------------------------------------------------------------------------------------------------
// Thread-safe entry points for in-process control

void GatewayCore::login() {
  Locked lock(*this);
  login_locked();
}
void GatewayCore::logout() {
  Locked lock(*this);
  logout_locked();
}
void GatewayCore::expire_session(const std::string& why) {
  Locked lock(*this);
  expire_session_locked(why);
}
std::string GatewayCore::set_quote(std::int64_t conid, std::optional<Price> bid, std::optional<Price> ask,
                                   std::optional<Price> last, std::int64_t size) {
  Locked lock(*this);
  return set_quote_locked(conid, bid, ask, last, size);
}
void GatewayCore::set_fault_profile(const FaultProfile& profile) {
  Locked lock(*this);
  set_fault_profile_locked(profile);
}
json GatewayCore::log() const {
  std::lock_guard lock(mutex_);
  return log_locked();
}

}  // namespace backstop::ibkr_emulator
