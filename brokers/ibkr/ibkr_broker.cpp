#include "brokers/ibkr/ibkr_broker.hpp"

#include <algorithm>
#include <charconv>
#include <cctype>
#include <map>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "brokers/net/http_client.hpp"
#include "brokers/net/websocket_client.hpp"
#include "core/utf8.hpp"

namespace backstop {

using nlohmann::json;
using namespace std::chrono_literals;
using ibkr::field;
using ibkr::json_price;
using ibkr::json_quantity;
using ibkr::json_text;

namespace {

__extension__ typedef __int128 Int128;  // exact price x quantity products (GCC/Clang builtin)

constexpr int kMaxReplyRounds = 20;  // IBIND handle_questions loops up to 20 (api-notes 1.5)

Timestamp ns(std::chrono::nanoseconds d) { return d.count(); }

net::TlsOptions to_tls(const TlsConfig& c, const std::string& name, const std::string& url) {
  net::TlsOptions t;
  t.ca_file = c.ca_file;
  t.pinned_cert_file = c.pinned_cert_file;
  if (!c.verifies_peer()) {
    t.insecure_skip_verify = true;
    spdlog::warn("{}: TLS CERTIFICATE VERIFICATION IS OFF for {} (insecure_skip_verify): anyone on the path "
                 "can read and change orders; pin the gateway certificate (tls.pinned_cert_file) instead",
                 name, url);
  }
  return t;
}

// A symbol key that is a conid ("265598"): its value, or nullopt for anything else, a digit string
// beyond int64 included (std::stoll threw out_of_range there, out of the submit's loop task).
std::optional<std::int64_t> conid_key(const std::string& s) {
  if (s.empty() || !std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
    return std::nullopt;
  std::int64_t v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size() || v <= 0) return std::nullopt;
  return v;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

json parse_body(const net::HttpResult& r) {
  if (!r.ok()) return json();
  return json::parse(r.response->body, nullptr, false);
}

std::string short_body(const net::HttpResult& r) {
  if (!r.ok()) return r.error.message;
  std::string b = r.response->body.substr(0, 300);
  std::replace(b.begin(), b.end(), '\n', ' ');
  // The gateway's (or a proxy's) raw body: the excerpt may cut a character or not be UTF-8 at all.
  make_valid_utf8(b);
  return "HTTP " + std::to_string(r.response->status) + " " + b;
}

const char* rules_name(OrderType t) {
  switch (t) {
    case OrderType::market: return "market";
    case OrderType::limit: return "limit";
    case OrderType::stop: return "stop";
    case OrderType::stop_limit: return "stop_limit";
  }
  return "?";
}

// Exchanges whose futures fall under CME Rule 536-B / need manualIndicator (api-notes 1.4).
bool us_futures_exchange(const std::string& ex) {
  static const std::set<std::string> us = {"CME", "CBOT", "NYMEX", "COMEX", "GLOBEX", "ECBOT", "CFE", "NYBOT", "ICEUS", "NYSELIFFE"};
  return us.count(ex) > 0;
}

}  // namespace

// ------------------------------------------------------------------------------------------------

IbkrBroker::IbkrBroker(IbkrBrokerOptions options, EventLoop& loop) : options_(std::move(options)), loop_(loop) {
  const std::string rest = options_.rest_base_url_override.empty() ? options_.settings.base_url
                                                                   : options_.rest_base_url_override;
  net::HttpClient::Options ho;
  ho.base_url = rest;
  ho.tls = to_tls(options_.settings.tls, options_.name, rest);
  ho.post = [&loop](std::function<void()> f) { loop.post(std::move(f)); };
  ho.loop_io = options_.loop_io;
  ho.name = options_.name;
  ho.default_timeout = options_.request_timeout;
  ho.max_connections = 4;
  http_ = std::make_unique<net::HttpClient>(std::move(ho));
  if (options_.ws_url.empty()) {
    const auto u = net::Url::parse(options_.settings.base_url);
    options_.ws_url = std::string(u.tls() ? "wss" : "ws") + "://" + u.host + ":" + u.port + u.target + "/ws";
  }
  net::Url::parse(options_.ws_url);  // throws ConfigError now rather than at connect time
  account_ = options_.account;
}

IbkrBroker::~IbkrBroker() {
  *alive_ = false;
  alive_.reset();
  stop();
  if (http_) http_->shutdown();  // completes outstanding requests (so the loop's external work ends)
}

BrokerCapabilities IbkrBroker::capabilities() const {
  BrokerCapabilities c;
  c.brackets = c.client_order_ids = c.query_by_client_id = c.order_query = c.fill_query = true;
  c.native_stops = c.replace = true;
  c.order_stream = c.quote_stream = options_.use_websocket;
  return c;
}

void IbkrBroker::start() {
  if (started_) return;
  started_ = true;
  session_ = Session::checking;
  check_auth();
}

void IbkrBroker::stop() {
  if (!started_) return;
  started_ = false;
  loop_.cancel(tickle_timer_);
  loop_.cancel(auth_timer_);
  loop_.cancel(pump_timer_);
  pump_timer_ = 0;
  ws_close();
}

// --- request scheduling -------------------------------------------------------------------------
// Pacing (api-notes 1.2): the gateway allows 10 req/s, and 1 per 5 s on the list endpoints;
// exceeding earns a 429 and a penalty box. Requests wait in a queue rather than exceed: a sliding
// window holds the global count (a token bucket refilled at the window's pace), per-endpoint
// lanes the 1-per-interval ones.

void IbkrBroker::get(std::string target, Lane lane, std::function<void(net::HttpResult)> done, bool needs_session) {
  Request r;
  r.method = "GET";
  r.target = std::move(target);
  r.lane = lane;
  r.needs_session = needs_session;
  r.done = std::move(done);
  enqueue(std::move(r));
}

void IbkrBroker::post(std::string target, std::string body, std::function<void(net::HttpResult)> done,
                      bool needs_session) {
  Request r;
  r.method = "POST";
  r.target = std::move(target);
  // Body-less POSTs (/tickle, /iserver/auth/status, positions/invalidate): the gateway wants a
  // Content-Length (411 otherwise, api-notes 1.0) and CAMPUS suggests "{}", but SPEC229 declares
  // no body and Prism refuses one (tests/ibkr/SPEC_DEFECTS.md). An empty body with
  // "Content-Length: 0" (Beast sets it for POST) satisfies both.
  r.body = std::move(body);
  r.needs_session = needs_session;
  if (r.target == "/tickle") r.lane = Lane::tickle;
  if (r.target == "/portfolio/accounts") r.lane = Lane::portfolio_accounts;
  r.done = std::move(done);
  enqueue(std::move(r));
}

void IbkrBroker::enqueue(Request r) {
  if (r.in_exclusive) queue_.push_front(std::move(r));  // a reply goes first, nothing in between
  else queue_.push_back(std::move(r));
  pump();
}

Timestamp IbkrBroker::lane_ready_at(Lane lane) const {
  auto it = lane_last_.find(lane);
  if (it == lane_last_.end()) return 0;
  const auto interval = lane == Lane::tickle ? std::chrono::milliseconds(1000) : options_.slow_endpoint_interval;
  return it->second + ns(interval + options_.pacing_guard);
}

bool IbkrBroker::lane_free(Lane lane, Timestamp now) const {
  return lane == Lane::none || lane_ready_at(lane) <= now;
}

void IbkrBroker::pump() {
  const Timestamp now = loop_.now();
  Timestamp wake = 0;
  auto want_wake = [&](Timestamp t) {
    if (wake == 0 || t < wake) wake = t;
  };
  const Timestamp window = ns(1000ms + options_.pacing_guard);
  // One request of headroom under the gateway's limit: the gateway counts arrivals, and arrival
  // jitter on a loaded host must not push an 11th request into its second.
  const std::size_t limit = static_cast<std::size_t>(std::max(1, options_.global_requests_per_second - 1));
  if (now < backoff_until_) {
    want_wake(backoff_until_);
  } else {
    while (!global_window_.empty() && global_window_.front() + window <= now) global_window_.pop_front();
    for (auto it = queue_.begin(); it != queue_.end();) {
      // While an order's reply loop runs, only its own replies may go (api-notes 1.5: any other
      // request in between cancels the order).
      if (exclusive_active_ && !it->in_exclusive) break;
      if (global_window_.size() >= limit) {
        ++stats_.requests_queued_for_pacing;
        want_wake(global_window_.front() + window);
        break;
      }
      // An order POST waits until everything before it has landed, and holds what follows.
      if (it->exclusive && in_flight_ > 0) break;
      if (!lane_free(it->lane, now)) {
        ++stats_.requests_queued_for_pacing;
        want_wake(lane_ready_at(it->lane));
        ++it;
        continue;
      }
      Request r = std::move(*it);
      it = queue_.erase(it);
      dispatch(std::move(r));
      it = queue_.begin();  // dispatch may have changed what may go next
    }
  }
  if (wake != 0 && started_) {
    if (pump_timer_ != 0 && pump_timer_at_ <= wake) return;
    if (pump_timer_ != 0) loop_.cancel(pump_timer_);
    pump_timer_at_ = wake;
    std::weak_ptr<bool> alive = alive_;
    pump_timer_ = loop_.call_at(wake, [this, alive] {
      if (alive.expired()) return;
      pump_timer_ = 0;
      pump();
    });
  }
}

void IbkrBroker::dispatch(Request r) {
  const Timestamp now = loop_.now();
  global_window_.push_back(now);
  if (r.lane != Lane::none) lane_last_[r.lane] = now;
  if (r.exclusive) exclusive_active_ = true;
  ++in_flight_;
  ++stats_.requests_sent;
  auto shared = std::make_shared<Request>(std::move(r));
  net::HttpRequest req;
  req.method = shared->method;
  req.target = shared->target;
  req.body = shared->body;
  req.timeout = options_.request_timeout;
  loop_.add_external_work();
  EventLoop* loop = &loop_;
  std::weak_ptr<bool> alive = alive_;
  http_->request(std::move(req), [this, loop, alive, shared](net::HttpResult res) {
    loop->finish_external_work();
    if (alive.expired()) return;
    --in_flight_;
    if (options_.on_response)
      options_.on_response(shared->method, shared->target, res.ok() ? res.response->status : 0,
                           res.ok() ? res.response->body : res.error.message);
    if (res.ok()) {
      touch();
      if (res.response->status == 429) {
        // Pacing violation despite the queue (another client of the same gateway, or a tighter
        // limit, or the pacing left by a process that ran just before this one): record it, back
        // off, and requeue what is safe to resend: every read (the live order list included:
        // answered "unknown", the router's queries resolving an order would each count one
        // unanswered and give up) and the session calls; not what places, changes or cancels
        // orders. A 429 means the request was refused unserved.
        ++stats_.http_429;
        backoff_until_ = loop_.now() + ns(options_.backoff_after_429);
        spdlog::warn("{}: 429 Too Many Requests on {} {} (total {}): backing off {} ms", options_.name,
                     shared->method, net::loggable_target(shared->target), stats_.http_429,
                     options_.backoff_after_429.count());
        const bool read = shared->method == "GET";
        const bool safe = !shared->exclusive && !shared->in_exclusive &&
                          (read || (shared->method != "DELETE" && shared->target.find("/order") == std::string::npos));
        if (safe) {
          queue_.push_front(std::move(*shared));
          pump();
          return;
        }
      } else if (res.response->status == 401 && shared->needs_session && session_ == Session::authenticated) {
        mark_not_authenticated("HTTP 401 on " + std::string(net::loggable_target(shared->target)));
        schedule_auth_poll();
      }
    }
    auto done = std::move(shared->done);
    if (done) done(std::move(res));
    pump();
  });
}

void IbkrBroker::release_exclusive() {
  exclusive_active_ = false;
  pump();
}

// --- session ------------------------------------------------------------------------------------

std::string IbkrBroker::gateway_root() const {
  const auto u = net::Url::parse(options_.settings.base_url);
  return u.origin();
}

std::string IbkrBroker::not_ready_message() const {
  if (!started_) return options_.name + ": not started";
  switch (session_) {
    case Session::not_authenticated:
      return options_.name + ": gateway session not authenticated: open " + gateway_root() + " and log in";
    case Session::unreachable: return options_.name + ": gateway unreachable: " + last_error_;
    case Session::authenticated:
      return options_.name + ": session authenticated but accounts not loaded" +
             (last_error_.empty() ? std::string() : ": " + last_error_);
    default: return options_.name + ": connecting to the gateway";
  }
}

void IbkrBroker::schedule_auth_poll() {
  if (!started_) return;
  loop_.cancel(auth_timer_);
  std::weak_ptr<bool> alive = alive_;
  auth_timer_ = loop_.call_after(options_.auth_poll_interval, [this, alive] {
    if (!alive.expired()) check_auth();
  });
}

void IbkrBroker::mark_not_authenticated(const std::string& why) {
  const bool was_ready = ready();
  session_ = Session::not_authenticated;
  accounts_loaded_ = false;
  portfolio_accounts_loaded_ = false;
  loop_.cancel(tickle_timer_);
  // Sockets that outlive a re-login keep heart-beating with every subscription dead (api-notes
  // 1.16 quirk b): drop it now, build a new one once the session is back.
  ws_close();
  if (!logged_not_authenticated_) {
    logged_not_authenticated_ = true;
    spdlog::warn("{}: gateway session not authenticated ({}): open {} in a browser and log in; "
                 "Backstop keeps its state and resumes by itself",
                 options_.name, why, gateway_root());
  } else if (was_ready) {
    spdlog::debug("{}: not authenticated: {}", options_.name, why);
  }
}

void IbkrBroker::mark_unreachable(const std::string& why) {
  if (session_ != Session::unreachable) spdlog::warn("{}: gateway unreachable: {}", options_.name, why);
  if (session_ == Session::authenticated) ws_close();
  session_ = Session::unreachable;
  accounts_loaded_ = false;
  last_error_ = why;
  ++consecutive_errors_;
  loop_.cancel(tickle_timer_);
}

void IbkrBroker::check_auth() {
  if (!started_ || auth_check_in_flight_) return;
  auth_check_in_flight_ = true;
  post("/iserver/auth/status", "", [this](net::HttpResult r) {
    auth_check_in_flight_ = false;
    if (!started_) return;
    if (!r.ok()) {
      mark_unreachable(r.error.message);
      schedule_auth_poll();
      return;
    }
    const int st = r.response->status;
    // Before login the real gateway answers with a 302, not the spec's 401 (api-notes 1.0, BEZANT).
    if (st == 302 || st == 401 || st == 403) {
      mark_not_authenticated("auth status HTTP " + std::to_string(st));
      schedule_auth_poll();
      return;
    }
    const json j = parse_body(r);
    if (st != 200 || !j.is_object()) {
      mark_unreachable("auth status: " + short_body(r));
      schedule_auth_poll();
      return;
    }
    on_auth_status(j);
  }, false);
}

void IbkrBroker::on_auth_status(const json& status) {
  const bool authenticated = ibkr::json_flag(status, "authenticated");
  const bool connected = ibkr::json_flag(status, "connected");
  if (authenticated) {
    recovery_attempts_ = 0;
    if (session_ != Session::authenticated || !accounts_loaded_) {
      session_ = Session::authenticated;
      last_error_.clear();
      load_accounts();
    }
    return;
  }
  mark_not_authenticated(connected ? "brokerage session timed out" : "gateway not connected to IBKR");
  if (connected && recovery_attempts_ < 3) {
    recover_session();  // timed out but connected: ssodh/init restores it (api-notes 1.1)
  } else {
    schedule_auth_poll();
  }
}

void IbkrBroker::recover_session() {
  ++recovery_attempts_;
  ++stats_.session_recoveries;
  spdlog::info("{}: brokerage session dropped; re-establishing with /iserver/auth/ssodh/init", options_.name);
  // publish must be true or the gateway answers 500 (api-notes 1.1, CAMPUS).
  post("/iserver/auth/ssodh/init", R"({"publish":true,"compete":true})", [this](net::HttpResult r) {
    if (!started_) return;
    if (!r.ok() || r.response->status != 200) spdlog::warn("{}: ssodh/init: {}", options_.name, short_body(r));
    std::weak_ptr<bool> alive = alive_;
    loop_.cancel(auth_timer_);
    auth_timer_ = loop_.call_after(std::min<std::chrono::milliseconds>(options_.auth_poll_interval, 500ms),
                                   [this, alive] {
                                     if (!alive.expired()) check_auth();
                                   });
  }, false);
}

void IbkrBroker::load_accounts() {
  // /iserver/accounts must precede orders, modify, cancel, live orders and snapshots, again after
  // every re-login (api-notes 1.1).
  get("/iserver/accounts", Lane::none, [this](net::HttpResult r) {
    if (!started_ || session_ != Session::authenticated) return;
    const json j = parse_body(r);
    if (!r.ok() || r.response->status != 200 || !j.is_object()) {
      last_error_ = "/iserver/accounts: " + short_body(r);
      ++consecutive_errors_;
      spdlog::warn("{}: {}", options_.name, last_error_);
      schedule_auth_poll();
      return;
    }
    std::vector<std::string> accounts;
    if (const json* a = field(j, "accounts"); a && a->is_array())
      for (const auto& x : *a) accounts.push_back(json_text(x));
    const std::string selected = j.contains("selectedAccount") ? json_text(j["selectedAccount"]) : "";
    std::string want = options_.account.empty() ? (selected.empty() && !accounts.empty() ? accounts.front() : selected)
                                                : options_.account;
    if (want.empty() || std::find(accounts.begin(), accounts.end(), want) == accounts.end()) {
      last_error_ = "account '" + want + "' is not among the gateway's accounts";
      spdlog::error("{}: {}", options_.name, last_error_);
      return;  // commands keep failing locally with this message
    }
    account_ = want;
    auto after_select = [this] {
      const auto& ids = options_.settings.suppress_message_ids;
      if (ids.empty()) {
        session_ready();
        return;
      }
      // Suppression is per brokerage session: set again after every login (api-notes 1.5).
      json body = {{"messageIds", ids}};
      post("/iserver/questions/suppress", body.dump(), [this](net::HttpResult rs) {
        if (!rs.ok() || rs.response->status != 200)
          spdlog::warn("{}: questions/suppress: {}", options_.name, short_body(rs));
        if (session_ == Session::authenticated) session_ready();
      });
    };
    if (!selected.empty() && selected == want) {
      after_select();
      return;
    }
    json body = {{"acctId", want}};
    post("/iserver/account", body.dump(), [this, after_select](net::HttpResult rs) {
      if (!rs.ok() || rs.response->status != 200) {
        last_error_ = "selecting account: " + short_body(rs);
        spdlog::warn("{}: {}", options_.name, last_error_);
        schedule_auth_poll();
        return;
      }
      after_select();
    });
  });
}

void IbkrBroker::session_ready() {
  accounts_loaded_ = true;
  consecutive_errors_ = 0;
  last_error_.clear();
  if (logged_not_authenticated_) spdlog::info("{}: gateway session authenticated again; resuming", options_.name);
  logged_not_authenticated_ = false;
  spdlog::info("{}: session ready, account {}", options_.name, account_);
  tickle();  // the WebSocket needs the tickle's session token
  pump();
}

void IbkrBroker::check_health(CommandCallback done) {
  if (!started_) return done(CommandResult::failed(options_.name + ": not started"));
  post("/iserver/auth/status", "", [done = std::move(done)](net::HttpResult r) {
    if (!r.ok()) return done(CommandResult::unknown_because("auth status: " + r.error.message));
    const int st = r.response->status;
    const json j = parse_body(r);
    CommandResult c = CommandResult::unknown_because("auth status: " + short_body(r));
    c.http_status = st;
    if (st != 200 || !j.is_object()) return done(c);
    if (!ibkr::json_flag(j, "authenticated") || !ibkr::json_flag(j, "connected")) {
      c.message = "auth status: brokerage session not authenticated";
      return done(c);
    }
    c.outcome = Outcome::accepted;
    c.message.clear();
    done(c);
  }, false);  // asked whatever the session state: the answer says what that state is
}

void IbkrBroker::tickle() {
  if (!started_) return;
  loop_.cancel(tickle_timer_);
  post("/tickle", "", [this](net::HttpResult r) {
    if (!started_) return;
    std::weak_ptr<bool> alive = alive_;
    auto again = [this, alive] {
      loop_.cancel(tickle_timer_);
      tickle_timer_ = loop_.call_after(options_.settings.tickle_interval, [this, alive] {
        if (!alive.expired()) tickle();
      });
    };
    if (!r.ok()) {
      ++consecutive_errors_;
      spdlog::warn("{}: tickle failed: {}", options_.name, r.error.message);
      check_auth();
      again();
      return;
    }
    const int st = r.response->status;
    const json j = parse_body(r);
    if (st == 302 || st == 401 || st == 403 || (j.is_object() && j.contains("error"))) {
      mark_not_authenticated("tickle: " + short_body(r));
      schedule_auth_poll();
      return;
    }
    if (st != 200 || !j.is_object()) {
      spdlog::warn("{}: tickle: {}", options_.name, short_body(r));
      again();
      return;
    }
    if (j.contains("session")) session_token_ = json_text(j["session"]);
    bool authenticated = true;
    if (const json* is = field(j, "iserver"))
      if (const json* as = field(*is, "authStatus"))
        authenticated = as->value("authenticated", true);
    if (!authenticated) {
      // Brokerage session dropped: recover with ssodh/init through the auth check (api-notes 1.1).
      check_auth();
      return;
    }
    if (options_.use_websocket && ready() && (!ws_ || ws_reconnect_wanted_)) ws_connect();
    again();
  }, false);
}

// --- contracts ----------------------------------------------------------------------------------

std::string IbkrBroker::lookup_key(const std::string& symbol) const {
  auto it = options_.symbols.find(symbol);
  return it == options_.symbols.end() ? symbol : it->second;
}

bool IbkrBroker::is_us_future_key(const std::string& key) const {
  const auto parts = split(key, ':');
  return parts.size() == 3 && us_futures_exchange(parts[1]);
}

void IbkrBroker::resolve_conid(const std::string& symbol, ConidCallback done) {
  with_contract(symbol, [done](const Contract* c, std::string err) {
    if (c) done(c->conid, {});
    else done(std::nullopt, std::move(err));
  });
}

void IbkrBroker::with_contract(const std::string& symbol, std::function<void(const Contract*, std::string)> done) {
  auto it = contracts_.find(symbol);
  if (it != contracts_.end() && it->second.conid != 0 && it->second.rules_loaded) {
    done(&it->second, {});
    return;
  }
  auto& waiters = contract_waiters_[symbol];
  waiters.push_back(std::move(done));
  if (waiters.size() > 1) return;  // a lookup is already running

  auto finish = [this, symbol](std::string err) {
    auto ws = std::move(contract_waiters_[symbol]);
    contract_waiters_.erase(symbol);
    auto c = contracts_.find(symbol);
    const Contract* ptr = (err.empty() && c != contracts_.end() && c->second.conid != 0) ? &c->second : nullptr;
    for (auto& w : ws) w(ptr, ptr ? std::string() : options_.name + ": cannot resolve " + symbol + ": " + err);
  };
  auto with_conid = [this, symbol, finish](std::int64_t conid) {
    Contract& c = contracts_[symbol];
    c.conid = conid;
    c.us_future = is_us_future_key(lookup_key(symbol));
    symbol_of_conid_[conid] = symbol;
    if (c.rules_loaded) {
      finish({});
      return;
    }
    // Contract rules: tick increment and permitted order types, to refuse bad orders locally
    // (api-notes 1.3).
    json body = {{"conid", conid}, {"isBuy", true}};
    post("/iserver/contract/rules", body.dump(), [this, symbol, finish](net::HttpResult r) {
      Contract& cc = contracts_[symbol];
      const json j = parse_body(r);
      if (r.ok() && r.response->status == 200 && j.is_object()) {
        if (const json* inc = field(j, "increment")) cc.increment = json_price(*inc);
        if (const json* rules = field(j, "incrementRules"); rules && rules->is_array())
          for (const auto& ir : *rules) {
            auto edge = ir.contains("lowerEdge") ? json_price(ir["lowerEdge"]) : std::nullopt;
            auto inc = ir.contains("increment") ? json_price(ir["increment"]) : std::nullopt;
            if (edge && inc && !inc->is_zero()) cc.increment_rules.emplace_back(*edge, *inc);
          }
        if (const json* types = field(j, "orderTypes"); types && types->is_array())
          for (const auto& t : *types) cc.order_types.insert(json_text(t));
        cc.rules_loaded = true;
      } else {
        spdlog::warn("{}: contract rules for {} unavailable ({}): tick/type checks skipped", options_.name, symbol,
                     short_body(r));
        cc.rules_loaded = true;  // do not ask again for every order
      }
      finish({});
    });
  };

  if (it != contracts_.end() && it->second.conid != 0) {
    with_conid(it->second.conid);
    return;
  }
  const std::string key = lookup_key(symbol);
  if (const auto conid = conid_key(key)) {
    with_conid(*conid);
    return;
  }
  const auto parts = split(key, ':');
  if (parts.size() == 3) {
    // Futures "SYM:EXCHANGE:YYYYMM": /iserver/secdef/search first (CAMPUS: needed before
    // derivative snapshots), then /trsrv/futures for the contract month (api-notes 1.3).
    const std::string sym = parts[0], exch = parts[1], month = parts[2];
    get("/iserver/secdef/search?symbol=" + sym, Lane::none, [this, sym, exch, month, finish, with_conid](net::HttpResult) {
      get("/trsrv/futures?symbols=" + sym + "&exchange=" + exch, Lane::none,
          [sym, month, finish, with_conid](net::HttpResult r) {
            const json j = parse_body(r);
            if (!r.ok() || r.response->status != 200 || !j.is_object()) return finish("/trsrv/futures: " + short_body(r));
            const json* rows = field(j, sym);
            if (rows && rows->is_array())
              for (const auto& row : *rows) {
                const std::string exp = row.contains("expirationDate") ? json_text(row["expirationDate"]) : "";
                if (exp.rfind(month, 0) == 0 && row.contains("conid"))
                  if (auto conid = json_quantity(row["conid"])) return with_conid(*conid);
              }
            finish("no " + sym + " future expiring " + month);
          });
    });
    return;
  }
  // Stocks: /trsrv/stocks (prefers the US listing), then /iserver/secdef/search (api-notes 1.3).
  get("/trsrv/stocks?symbols=" + key, Lane::none, [this, key, finish, with_conid](net::HttpResult r) {
    const json j = parse_body(r);
    if (r.ok() && r.response->status == 200 && j.is_object())
      if (const json* rows = field(j, key); rows && rows->is_array()) {
        std::optional<std::int64_t> first;
        for (const auto& row : *rows)
          if (const json* cs = field(row, "contracts"); cs && cs->is_array())
            for (const auto& c : *cs) {
              auto conid = c.contains("conid") ? json_quantity(c["conid"]) : std::nullopt;
              if (!conid) continue;
              if (ibkr::json_flag(c, "isUS")) return with_conid(*conid);
              if (!first) first = conid;
            }
        if (first) return with_conid(*first);
      }
    get("/iserver/secdef/search?symbol=" + key + "&secType=STK", Lane::none, [finish, with_conid](net::HttpResult s) {
      const json a = parse_body(s);
      if (s.ok() && s.response->status == 200 && a.is_array())
        for (const auto& row : a)
          if (row.contains("conid"))
            if (auto conid = json_quantity(row["conid"])) return with_conid(*conid);
      finish("no stock found: " + short_body(s));
    });
  });
}

std::string IbkrBroker::check_rules(const Contract& c, const OrderSpec& spec) const {
  if (!c.order_types.empty() && c.order_types.count(rules_name(spec.type)) == 0)
    return options_.name + ": order type " + rules_name(spec.type) + " is not allowed for " + spec.symbol +
           " (contract rules)";
  auto tick_for = [&](Price p) -> std::optional<Price> {
    std::optional<Price> inc = c.increment;
    for (const auto& [edge, i] : c.increment_rules)
      if (edge <= p) inc = i;
    return inc;
  };
  auto check = [&](const char* what, const std::optional<Price>& p) -> std::string {
    if (!p) return {};
    auto inc = tick_for(*p);
    if (!inc || inc->units() <= 0) return {};
    if (p->units() % inc->units() != 0)
      return options_.name + ": " + what + " " + p->to_string() + " is not a multiple of the tick " +
             inc->to_string() + " for " + spec.symbol;
    return {};
  };
  if (auto e = check("limit_price", spec.limit_price); !e.empty()) return e;
  return check("stop_price", spec.stop_price);
}

// --- orders -------------------------------------------------------------------------------------

std::optional<WireOrderView> IbkrBroker::preview(const OrderSpec& order) const {
  const std::string key = lookup_key(order.symbol);
  ibkr::TicketInput in;
  in.spec = &order;
  in.account = account_;
  auto it = contracts_.find(order.symbol);
  // The conid is 0 until the symbol has been resolved once; every other field is as sent.
  in.conid = it != contracts_.end() ? it->second.conid : conid_key(key).value_or(0);
  in.us_future = is_us_future_key(key);
  in.manual_indicator = options_.manual_indicator;
  in.ext_operator = options_.ext_operator;
  try {
    return ibkr::view_of_ticket(ibkr::build_ticket(in), in.us_future);
  } catch (const std::invalid_argument&) {
    return std::nullopt;
  }
}

void IbkrBroker::remember_order(const std::string& order_id, const std::string& symbol) {
  if (!order_id.empty()) order_symbol_[order_id] = symbol;
}

using SubmitDone = std::function<void(Outcome, std::vector<std::string>, std::string, int)>;

void IbkrBroker::run_submit(std::string target, std::string body, int round, SubmitDone done) {
  Request r;
  r.method = "POST";
  r.target = std::move(target);
  r.body = std::move(body);
  r.exclusive = round == 0;
  r.in_exclusive = round > 0;
  r.done = [this, round, done](net::HttpResult res) { handle_submit_answer(res, round, done); };
  enqueue(std::move(r));
}

void IbkrBroker::handle_submit_answer(const net::HttpResult& r, int round, SubmitDone done) {
  if (!r.ok()) {
    release_exclusive();
    // Written, then timeout/disconnect: the gateway may have acted. Never resent (broker.hpp).
    done(r.error.not_sent() ? Outcome::failed_locally : Outcome::unknown, {}, r.error.message, 0);
    return;
  }
  const int st = r.response->status;
  if (st >= 500) {
    release_exclusive();
    done(Outcome::unknown, {}, "gateway answered " + short_body(r) + " (outcome unknown)", st);
    return;
  }
  if (st == 429 || st == 401 || st == 403) {
    release_exclusive();
    // Refused unserved: for a first POST the order was not placed. A refused reply leaves the
    // order's question unanswered; call that unknown rather than guess.
    done(round == 0 ? Outcome::rejected : Outcome::unknown, {}, short_body(r), st);
    return;
  }
  const auto a = ibkr::parse_submit_answer(r.response->body);
  switch (a.kind) {
    case ibkr::SubmitAnswer::Kind::placed:
      release_exclusive();
      done(Outcome::accepted, a.order_ids, a.order_status, st);
      return;
    case ibkr::SubmitAnswer::Kind::error:
      release_exclusive();
      // {"error":...} with 200 is a reject; a stale reply id ("reply id not found", 400) means the
      // question expired and the order was discarded (api-notes 1.5).
      done(Outcome::rejected, {}, a.text, st);
      return;
    case ibkr::SubmitAnswer::Kind::garbled:
      release_exclusive();
      done(Outcome::unknown, {}, "garbled answer: " + a.text, st);
      return;
    case ibkr::SubmitAnswer::Kind::question: break;
  }
  const auto& confirm = options_.settings.confirm_message_ids;
  bool yes = !a.message_ids.empty() && round < kMaxReplyRounds;
  for (const auto& id : a.message_ids)
    if (std::find(confirm.begin(), confirm.end(), id) == confirm.end()) yes = false;
  std::string ids;
  for (const auto& id : a.message_ids) ids += (ids.empty() ? "" : ",") + id;
  if (yes) ++stats_.replies_confirmed;
  else ++stats_.replies_refused;
  spdlog::info("{}: order prompt {} {}: {}", options_.name, ids, yes ? "confirmed" : "refused", a.text);
  // Answered at once, nothing else in between (the exclusive hold keeps the queue shut): another
  // request would cancel the order (api-notes 1.5).
  Request reply;
  reply.method = "POST";
  reply.target = "/iserver/reply/" + a.reply_id;
  reply.body = yes ? R"({"confirmed":true})" : R"({"confirmed":false})";
  reply.in_exclusive = true;
  const std::string text = a.text;
  reply.done = [this, yes, round, done, ids, text](net::HttpResult res) {
    if (yes) {
      handle_submit_answer(res, round + 1, done);
      return;
    }
    release_exclusive();
    // Refused: the order is discarded whatever the reply's answer (an unanswered question
    // expires too).
    done(Outcome::rejected, {}, "IBKR prompt " + ids + " not in confirm list, refused: " + text,
         res.ok() ? res.response->status : 0);
  };
  enqueue(std::move(reply));
}

void IbkrBroker::submit(const OrderSpec& order, CommandCallback done) {
  if (!ready()) return done(CommandResult::failed(not_ready_message()));
  if (auto e = validate(order); !e.empty()) return done(CommandResult::failed(options_.name + ": " + e));
  if (order.tif == TimeInForce::fok) return done(CommandResult::failed(options_.name + ": IBKR Client Portal has no FOK"));
  if (order.client_order_id.empty()) return done(CommandResult::failed(options_.name + ": client order id required (cOID)"));
  with_contract(order.symbol, [this, order, done](const Contract* c, std::string err) {
    if (!c) return done(CommandResult::failed(err));
    if (!ready()) return done(CommandResult::failed(not_ready_message()));
    if (auto e = check_rules(*c, order); !e.empty()) return done(CommandResult::failed(e));
    ibkr::TicketInput in{&order, c->conid, account_, c->us_future, options_.manual_indicator, options_.ext_operator, true};
    json body;
    try {
      body = {{"orders", json::array({ibkr::build_ticket(in)})}};
    } catch (const std::invalid_argument& e) {
      return done(CommandResult::failed(options_.name + ": " + e.what()));
    }
    run_submit("/iserver/account/" + account_ + "/orders", body.dump(),
               0, [this, order, done](Outcome o, std::vector<std::string> ids, std::string msg, int st) {
                 CommandResult cr{o, {}, std::move(msg), st};
                 if (o == Outcome::accepted) {
                   if (ids.empty()) {
                     cr.outcome = Outcome::unknown;
                     cr.message = "accepted without an order id";
                   } else {
                     cr.broker_order_id = ids.front();
                     remember_order(ids.front(), order.symbol);
                   }
                 }
                 done(std::move(cr));
               });
  });
}

void IbkrBroker::submit_bracket(const BracketSpec& bracket, BracketCallback done) {
  auto fail = [&done](std::string why) { done({Outcome::failed_locally, std::move(why), {}, {}, {}}); };
  if (!ready()) return fail(not_ready_message());
  if (auto e = validate(bracket); !e.empty()) return fail(options_.name + ": " + e);
  BracketSpec b = bracket;
  if (b.entry.client_order_id.empty()) return fail(options_.name + ": bracket entry needs a client order id");
  // Children name their parent by the parent's cOID (api-notes 1.11).
  b.take_profit.parent_client_order_id = b.entry.client_order_id;
  b.protective_stop.parent_client_order_id = b.entry.client_order_id;
  for (const OrderSpec* s : {&b.entry, &b.take_profit, &b.protective_stop})
    if (s->tif == TimeInForce::fok) return fail(options_.name + ": IBKR Client Portal has no FOK");
  with_contract(b.entry.symbol, [this, b, done](const Contract* c, std::string err) {
    if (!c) return done({Outcome::failed_locally, err, {}, {}, {}});
    if (!ready()) return done({Outcome::failed_locally, not_ready_message(), {}, {}, {}});
    json orders = json::array();
    for (const OrderSpec* s : {&b.entry, &b.take_profit, &b.protective_stop}) {
      if (auto e = check_rules(*c, *s); !e.empty()) return done({Outcome::failed_locally, e, {}, {}, {}});
      ibkr::TicketInput in{s, c->conid, account_, c->us_future, options_.manual_indicator, options_.ext_operator, true};
      try {
        json t = ibkr::build_ticket(in);
        // The two exits cancel each other: OCA via isSingleGroup on every ticket of the group
        // (api-notes 1.11).
        if (s != &b.entry) t["isSingleGroup"] = true;
        orders.push_back(std::move(t));
      } catch (const std::invalid_argument& e) {
        return done({Outcome::failed_locally, options_.name + ": " + e.what(), {}, {}, {}});
      }
    }
    json body = {{"orders", orders}};
    run_submit("/iserver/account/" + account_ + "/orders", body.dump(), 0,
               [this, b, done](Outcome o, std::vector<std::string> ids, std::string msg, int) {
                 BracketResult br{o, std::move(msg), {}, {}, {}};
                 if (o == Outcome::accepted) {
                   if (ids.size() > 0) br.entry_id = ids[0];
                   if (ids.size() > 1) br.take_profit_id = ids[1];
                   if (ids.size() > 2) br.stop_id = ids[2];
                   for (const auto& id : ids) remember_order(id, b.entry.symbol);
                 }
                 done(std::move(br));
               });
  });
}

void IbkrBroker::replace(const std::string& broker_order_id, const OrderSpec& updated, CommandCallback done) {
  if (!ready()) return done(CommandResult::failed(not_ready_message()));
  if (auto e = validate(updated); !e.empty()) return done(CommandResult::failed(options_.name + ": " + e));
  with_contract(updated.symbol, [this, broker_order_id, updated, done](const Contract* c, std::string err) {
    if (!c) return done(CommandResult::failed(err));
    if (!ready()) return done(CommandResult::failed(not_ready_message()));
    if (auto e = check_rules(*c, updated); !e.empty()) return done(CommandResult::failed(e));
    // Modify repeats every field of the order, changing only what changes; the body is one ticket,
    // not wrapped in "orders" (api-notes 1.9). No cOID: the order keeps its own.
    ibkr::TicketInput in{&updated, c->conid, account_, c->us_future, options_.manual_indicator, options_.ext_operator, false};
    json ticket;
    try {
      ticket = ibkr::build_ticket(in);
    } catch (const std::invalid_argument& e) {
      return done(CommandResult::failed(options_.name + ": " + e.what()));
    }
    run_submit("/iserver/account/" + account_ + "/order/" + broker_order_id, ticket.dump(), 0,
               [broker_order_id, done](Outcome o, std::vector<std::string>, std::string msg, int st) {
                 CommandResult cr{o, {}, std::move(msg), st};
                 if (o == Outcome::accepted) cr.broker_order_id = broker_order_id;
                 done(std::move(cr));
               });
  });
}

void IbkrBroker::cancel(const std::string& broker_order_id, CommandCallback done) {
  if (!ready()) return done(CommandResult::failed(not_ready_message()));
  std::string target = "/iserver/account/" + account_ + "/order/" + broker_order_id;
  auto sym = order_symbol_.find(broker_order_id);
  if (sym != order_symbol_.end() && is_us_future_key(lookup_key(sym->second)))
    // US futures cancels carry manualIndicator too (api-notes 1.4/1.10).
    target += std::string("?manualIndicator=") + (options_.manual_indicator ? "true" : "false") +
              "&extOperator=" + options_.ext_operator;
  Request r;
  r.method = "DELETE";
  r.target = std::move(target);
  r.done = [broker_order_id, done](net::HttpResult res) {
    if (!res.ok()) {
      return done(res.error.not_sent() ? CommandResult::failed(res.error.message)
                                       : CommandResult::unknown_because(res.error.message));
    }
    const int st = res.response->status;
    const json j = parse_body(res);
    CommandResult cr;
    cr.http_status = st;
    if (st >= 500) {
      cr = CommandResult::unknown_because("cancel: " + short_body(res));
    } else if (j.is_object() && j.contains("error")) {
      cr = CommandResult::rejected_by_broker(json_text(j["error"]));
    } else if (st == 200 && j.is_object() && j.contains("msg")) {
      // "Request was submitted" acknowledges the request only: the cancel lands later and is seen
      // in order status / sor (api-notes 1.10).
      cr = CommandResult::accepted_as(broker_order_id);
      cr.message = json_text(j["msg"]);
    } else if (st >= 400) {
      cr = CommandResult::rejected_by_broker(short_body(res));
    } else {
      cr = CommandResult::unknown_because("cancel: unrecognised answer " + short_body(res));
    }
    cr.http_status = st;
    done(std::move(cr));
  };
  enqueue(std::move(r));
}

// --- reads --------------------------------------------------------------------------------------

void IbkrBroker::fetch_live_orders(std::function<void(Outcome, std::string, const std::vector<json>&)> done) {
  if (!ready()) {
    done(Outcome::failed_locally, not_ready_message(), {});
    return;
  }
  live_waiters_.push_back(std::move(done));
  if (live_fetch_queued_) return;  // one request serves everyone waiting (1 per 5 s)
  live_fetch_queued_ = true;
  // No `filters` (they stop order updates on `sor` and are case-sensitive) and no `force=true`
  // (it clears the cache and answers an empty list) (api-notes 1.7).
  get("/iserver/account/orders", Lane::orders_list, [this](net::HttpResult r) {
    live_fetch_queued_ = false;
    auto waiters = std::move(live_waiters_);
    live_waiters_.clear();
    Outcome o = Outcome::accepted;
    std::string msg;
    std::vector<json> rows;
    const json j = parse_body(r);
    if (!r.ok()) {
      o = r.error.not_sent() ? Outcome::failed_locally : Outcome::unknown;
      msg = r.error.message;
    } else if (r.response->status != 200 || j.is_discarded()) {
      o = Outcome::unknown;
      msg = "live orders: " + short_body(r);
    } else {
      // {"orders":[...]} or, from some gateways, a bare array (api-notes 1.7, BEZANT).
      const json* list = j.is_array() ? &j : field(j, "orders");
      if (list && list->is_array())
        for (const auto& row : *list) {
          rows.push_back(row);
          sor_.seed(row);
        }
    }
    for (auto& w : waiters) w(o, msg, rows);
  });
}

void IbkrBroker::query_by_client_id(const std::string& client_order_id, OrderQueryCallback done) {
  fetch_live_orders([this, client_order_id, done](Outcome o, std::string msg, const std::vector<json>& rows) {
    OrderQueryResult res{o, std::move(msg), std::nullopt};
    if (o == Outcome::accepted)
      for (const auto& row : rows) {
        // cOID comes back as order_ref (api-notes 1.4, 1.7).
        if (row.contains("order_ref") && json_text(row["order_ref"]) == client_order_id) {
          res.order = ibkr::order_from_json(row, symbol_of_conid_);
          break;
        }
      }
    done(std::move(res));
  });
}

void IbkrBroker::list_open_orders(OrdersCallback done) {
  fetch_live_orders([this, done](Outcome o, std::string msg, const std::vector<json>& rows) {
    OrdersResult res{o, std::move(msg), {}};
    for (const auto& row : rows) {
      auto b = ibkr::order_from_json(row, symbol_of_conid_);
      if (!is_terminal(b.state)) res.orders.push_back(std::move(b));
    }
    done(std::move(res));
  });
}

void IbkrBroker::query_order(const std::string& broker_order_id, OrderQueryCallback done) {
  if (!ready()) return done({Outcome::failed_locally, not_ready_message(), std::nullopt});
  get("/iserver/account/order/status/" + broker_order_id, Lane::none, [this, broker_order_id, done](net::HttpResult r) {
    if (!r.ok())
      return done({r.error.not_sent() ? Outcome::failed_locally : Outcome::unknown, r.error.message, std::nullopt});
    const json j = parse_body(r);
    if (r.response->status == 200 && j.is_object() && !j.contains("error") &&
        (j.contains("order_id") || j.contains("orderId"))) {
      auto b = ibkr::order_from_json(j, symbol_of_conid_);
      if (b.broker_order_id.empty()) b.broker_order_id = broker_order_id;
      return done({Outcome::accepted, {}, std::move(b)});
    }
    // Orders outside the status cache answer 503 (api-notes 1.8): ask the live orders list.
    const std::string why = short_body(r);
    fetch_live_orders([this, broker_order_id, why, done](Outcome o, std::string msg, const std::vector<json>& rows) {
      OrderQueryResult res{o, o == Outcome::accepted ? "order status: " + why : msg, std::nullopt};
      if (o == Outcome::accepted)
        for (const auto& row : rows)
          if (row.contains("orderId") && json_text(row["orderId"]) == broker_order_id) {
            res.order = ibkr::order_from_json(row, symbol_of_conid_);
            break;
          }
      done(std::move(res));
    });
  });
}

namespace {

// The WebSocket's order updates carry no execution id, only the order's cumulative filled
// quantity, so a fill seen there is named "<order id>:<cumulative quantity>". /trades names the
// same executions by the exchange's execution_id. Under two names one execution would be booked
// twice (a partial fill counted double). So the executions /trades lists are renamed the same
// way: per order, in time order, each one by the cumulative quantity after it. A stream update
// that covered several executions at once names only the last of them; OrderManager books a
// query's executions only up to the quantity it has not booked yet, which covers that case.
void name_fills_by_cumulative_quantity(std::vector<Fill>& fills) {
  std::map<std::string, std::vector<Fill*>> by_order;
  for (Fill& f : fills)
    if (!f.broker_order_id.empty()) by_order[f.broker_order_id].push_back(&f);
  for (auto& [order_id, list] : by_order) {
    std::stable_sort(list.begin(), list.end(), [](const Fill* a, const Fill* b) {
      return a->at != b->at ? a->at < b->at : a->execution_id < b->execution_id;
    });
    std::int64_t cumulative = 0;
    for (Fill* f : list) {
      cumulative += f->quantity;
      f->execution_id = order_id + ":" + std::to_string(cumulative);
      f->cumulative_quantity = cumulative;
    }
  }
}

}  // namespace

void IbkrBroker::list_fills(FillsCallback done) {
  if (!ready()) return done({Outcome::failed_locally, not_ready_message(), {}});
  get("/iserver/account/trades", Lane::trades, [this, done](net::HttpResult r) {
    if (!r.ok()) return done({r.error.not_sent() ? Outcome::failed_locally : Outcome::unknown, r.error.message, {}});
    const json j = parse_body(r);
    if (r.response->status != 200 || !j.is_array()) return done({Outcome::unknown, "trades: " + short_body(r), {}});
    FillsResult res{Outcome::accepted, {}, {}};
    for (const auto& t : j) {
      Fill f;
      f.broker = options_.name;
      if (const json* x = field(t, "execution_id")) f.execution_id = json_text(*x);
      if (const json* x = field(t, "order_ref")) f.client_order_id = json_text(*x);
      if (const json* x = field(t, "order_id")) f.broker_order_id = json_text(*x);
      if (const json* x = field(t, "conid"))
        if (auto c = json_quantity(*x); c && symbol_of_conid_.count(*c)) f.symbol = symbol_of_conid_[*c];
      if (f.symbol.empty())
        if (const json* x = field(t, "symbol")) f.symbol = json_text(*x);
      if (const json* x = field(t, "side")) f.side = ibkr::parse_side(json_text(*x)).value_or(Side::buy);
      if (const json* x = field(t, "size")) f.quantity = json_quantity(*x).value_or(0);
      if (const json* x = field(t, "price")) f.price = json_price(*x).value_or(Price());
      if (const json* x = field(t, "trade_time_r")) f.at = json_quantity(*x).value_or(0) * 1'000'000;
      res.fills.push_back(std::move(f));
    }
    name_fills_by_cumulative_quantity(res.fills);
    done(std::move(res));
  });
}

void IbkrBroker::list_positions(PositionsCallback done) {
  if (!ready()) return done({Outcome::failed_locally, not_ready_message(), {}});
  auto read_positions = [this, done] {
    // Positions are cached by the gateway: invalidate, then read, when reconciling (api-notes 1.12).
    post("/portfolio/" + account_ + "/positions/invalidate", "", [this, done](net::HttpResult inv) {
      if (!inv.ok() || inv.response->status != 200)
        spdlog::warn("{}: positions/invalidate: {}", options_.name, short_body(inv));
      get("/portfolio/" + account_ + "/positions/0", Lane::none, [this, done](net::HttpResult r) {
        if (!r.ok()) return done({r.error.not_sent() ? Outcome::failed_locally : Outcome::unknown, r.error.message, {}});
        const json j = parse_body(r);
        if (r.response->status != 200 || !j.is_array()) return done({Outcome::unknown, "positions: " + short_body(r), {}});
        PositionsResult res{Outcome::accepted, {}, {}};
        for (const auto& p : j) {
          Position pos;
          pos.broker = options_.name;
          if (const json* x = field(p, "conid"))
            if (auto c = json_quantity(*x); c && symbol_of_conid_.count(*c)) pos.symbol = symbol_of_conid_[*c];
          if (pos.symbol.empty()) {
            if (const json* x = field(p, "ticker")) pos.symbol = json_text(*x);
            else if (const json* y = field(p, "contractDesc")) pos.symbol = json_text(*y);
          }
          if (const json* x = field(p, "position")) pos.quantity = json_quantity(*x).value_or(0);
          if (const json* x = field(p, "avgPrice")) pos.average_price = json_price(*x).value_or(Price());
          else if (const json* y = field(p, "avgCost")) pos.average_price = json_price(*y).value_or(Price());
          if (pos.quantity != 0) res.positions.push_back(std::move(pos));
        }
        if (j.size() >= 100) res.message = "first page only (100 positions)";
        done(std::move(res));
      });
    });
  };
  if (portfolio_accounts_loaded_) return read_positions();
  // /portfolio/accounts must be called before other /portfolio endpoints (api-notes 1.12).
  // Its answer is not used: it primes the gateway's portfolio service. Any HTTP answer lets the
  // positions read go ahead (a failed priming shows up there); only a 200 counts as primed.
  get("/portfolio/accounts", Lane::portfolio_accounts, [this, done, read_positions](net::HttpResult r) {
    if (!r.ok())
      return done({r.error.not_sent() ? Outcome::failed_locally : Outcome::unknown,
                   "portfolio accounts: " + r.error.message, {}});
    if (r.response->status == 200) portfolio_accounts_loaded_ = true;
    else spdlog::warn("{}: /portfolio/accounts: {}", options_.name, short_body(r));
    read_positions();
  });
}

void IbkrBroker::snapshot(const std::string& symbol, SnapshotCallback done, int tries) {
  if (!ready()) return done(Outcome::failed_locally, std::nullopt, not_ready_message());
  with_contract(symbol, [this, symbol, done, tries](const Contract* c, std::string err) {
    if (!c) return done(Outcome::failed_locally, std::nullopt, err);
    const std::int64_t conid = c->conid;
    get("/iserver/marketdata/snapshot?conids=" + std::to_string(conid) + "&fields=" + ibkr::kQuoteFields, Lane::none,
        [this, symbol, conid, done, tries](net::HttpResult r) {
          if (!r.ok()) return done(r.error.not_sent() ? Outcome::failed_locally : Outcome::unknown, std::nullopt, r.error.message);
          const json j = parse_body(r);
          if (r.response->status != 200 || !j.is_array()) return done(Outcome::unknown, std::nullopt, short_body(r));
          for (const auto& el : j) {
            if (!el.contains("conid") || json_quantity(el["conid"]) != conid) continue;
            if (el.contains("31") || el.contains("84") || el.contains("86")) {
              Quote q = ibkr::quote_from_market_data(el, symbol);
              q.source = options_.name;
              if (q.at == 0) q.at = loop_.now();
              return done(Outcome::accepted, q, {});
            }
          }
          // First call per conid only starts the feed and answers {conid, conidEx} (api-notes 1.15).
          if (tries <= 1) return done(Outcome::accepted, std::nullopt, "no market data yet");
          std::weak_ptr<bool> alive = alive_;
          loop_.call_after(200ms, [this, alive, symbol, done, tries] {
            if (!alive.expired()) snapshot(symbol, done, tries - 1);
          });
        });
  });
}

// --- WebSocket ----------------------------------------------------------------------------------

void IbkrBroker::subscribe_order_events(OrderEventHandler handler) { order_handler_ = std::move(handler); }

void IbkrBroker::subscribe_quotes(const std::vector<std::string>& symbols, QuoteHandler handler) {
  quote_handler_ = std::move(handler);
  for (const auto& s : symbols) {
    quote_symbols_.insert(s);
    with_contract(s, [this, s](const Contract* c, std::string err) {
      if (!c) {
        spdlog::warn("{}: quotes for {}: {}", options_.name, s, err);
        return;
      }
      quote_conids_.insert(c->conid);
      if (ws_ready_) ws_send_smd(c->conid);
    });
  }
}

void IbkrBroker::ws_send_smd(std::int64_t conid) {
  if (ws_) ws_->send("smd+" + std::to_string(conid) + R"(+{"fields":["31","84","86","85","88","7059"]})");
}

void IbkrBroker::ws_connect() {
  if (!options_.use_websocket || !started_ || session_token_.empty()) return;
  ws_close();
  ws_reconnect_wanted_ = false;
  net::WebSocketClient::Options o;
  o.url = options_.ws_url;
  // Cookie auth with the tickle's session token (api-notes 1.16).
  o.headers = {{"Cookie", "api={\"session\":\"" + session_token_ + "\"}"}};
  o.tls = to_tls(options_.settings.tls, options_.name + "-ws", options_.ws_url);
  o.post = [&loop = loop_](std::function<void()> f) { loop.post(std::move(f)); };
  o.name = options_.name + "-ws";
  ws_ = std::make_unique<net::WebSocketClient>(std::move(o));
  const std::uint64_t gen = ++ws_generation_;
  ++stats_.ws_connects;
  std::weak_ptr<bool> alive = alive_;
  net::WebSocketHandlers h;
  h.on_open = [this, alive, gen] {
    if (alive.expired() || gen != ws_generation_) return;
    ws_open_ = true;
    ws_opened_at_ = loop_.now();
    touch();
    // Nothing is subscribed yet: subscriptions sent before the `system` ready frame are dropped
    // silently (api-notes 1.16 quirk a, BEZANT).
  };
  h.on_message = [this, alive, gen](std::string_view text) {
    if (alive.expired() || gen != ws_generation_) return;
    ws_on_message(text);
  };
  h.on_close = [this, alive, gen](const net::WebSocketClose& c) {
    if (alive.expired() || gen != ws_generation_) return;
    spdlog::warn("{}: WebSocket closed ({}): {}", options_.name, net::to_string(c.reason), c.message);
    ws_open_ = ws_ready_ = false;
    loop_.cancel(ws_reconnect_timer_);
    ws_reconnect_wanted_ = true;
    ws_reconnect_timer_ = loop_.call_after(1s, [this, alive] {
      if (!alive.expired() && ready()) tickle();  // fresh session token, then a new socket
    });
  };
  ws_->connect(std::move(h));
  ws_opened_at_ = loop_.now();
  last_sor_at_ = last_smd_at_ = probe_sent_at_ = 0;

  ws_tic();
  ws_watchdog();
}

void IbkrBroker::ws_tic() {
  std::weak_ptr<bool> alive = alive_;
  const std::uint64_t gen = ws_generation_;
  loop_.cancel(ws_tic_timer_);
  ws_tic_timer_ = loop_.call_after(options_.ws_tic_interval, [this, alive, gen] {
    if (alive.expired() || gen != ws_generation_) return;
    if (ws_ && ws_open_) ws_->send("tic");  // keeps the /iserver session alive (api-notes 1.16)
    ws_tic();
  });
}

void IbkrBroker::ws_close() {
  ++ws_generation_;
  loop_.cancel(ws_tic_timer_);
  loop_.cancel(ws_watch_timer_);
  loop_.cancel(ws_reconnect_timer_);
  ws_tic_timer_ = ws_watch_timer_ = ws_reconnect_timer_ = 0;
  if (ws_) ws_->close();
  ws_.reset();
  ws_open_ = ws_ready_ = false;
}

void IbkrBroker::ws_rebuild(const std::string& why) {
  ++stats_.ws_rebuilds;
  spdlog::warn("{}: rebuilding the WebSocket: {}", options_.name, why);
  ws_close();
  tickle();  // a fresh session token, then ws_connect()
}

void IbkrBroker::ws_subscribe_all() {
  // Live orders first, then `sor` (WS22/CAMPUS: query /iserver/account/orders, then subscribe).
  const std::uint64_t gen = ws_generation_;
  fetch_live_orders([this, gen](Outcome, std::string, const std::vector<json>&) {
    if (gen != ws_generation_ || !ws_ready_ || !ws_) return;
    ws_->send("sor+{}");
  });
  for (auto conid : quote_conids_) ws_send_smd(conid);
}

void IbkrBroker::ws_watchdog() {
  std::weak_ptr<bool> alive = alive_;
  const std::uint64_t gen = ws_generation_;
  const auto period = std::max<std::chrono::milliseconds>(
      20ms, std::min(options_.ws_silence_limit, options_.ws_probe_timeout) / 4);
  loop_.cancel(ws_watch_timer_);
  ws_watch_timer_ = loop_.call_after(period, [this, alive, gen] {
    if (alive.expired() || gen != ws_generation_ || !ws_) return;
    const Timestamp now = loop_.now();
    if (!ws_ready_) {
      if (now - ws_opened_at_ > ns(options_.ws_ready_timeout)) return ws_rebuild("no `system` ready frame");
      return ws_watchdog();
    }
    const bool watch_sor = sor_.any_working();
    const bool watch_smd = !quote_conids_.empty();
    const Timestamp limit = ns(options_.ws_silence_limit);
    const Timestamp since_sor = now - std::max(last_sor_at_, ws_opened_at_);
    const Timestamp since_smd = now - std::max(last_smd_at_, ws_opened_at_);
    if (probe_sent_at_ == 0) {
      if ((watch_sor && since_sor > limit) || (watch_smd && since_smd > limit)) {
        // Silence may be honest (nothing changed): re-subscribing makes a live subscription answer
        // at once (full `sor` list, fresh `smd` frame); a dead one stays silent (api-notes 1.16
        // quirk b).
        probe_sent_at_ = now;
        if (watch_sor) ws_->send("sor+{}");
        if (watch_smd)
          for (auto conid : quote_conids_) ws_send_smd(conid);
      }
    } else if (now - probe_sent_at_ > ns(options_.ws_probe_timeout)) {
      return ws_rebuild("socket alive but sor/smd silent after re-subscribing");
    }
    ws_watchdog();
  });
}

void IbkrBroker::ws_on_message(std::string_view text) {
  touch();
  const json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return;
  const std::string topic = j.contains("topic") ? json_text(j["topic"]) : "";
  if (topic == "system") {
    if (j.contains("success") && !ws_ready_) {
      ws_ready_ = true;
      spdlog::info("{}: WebSocket ready", options_.name);
      ws_subscribe_all();
    }
    return;
  }
  if (topic == "sts") {
    if (const json* a = field(j, "args"))
      if (a->is_object() && !a->value("authenticated", true)) check_auth();
    return;
  }
  if (topic == "sor") {
    ++stats_.sor_messages;
    last_sor_at_ = loop_.now();
    probe_sent_at_ = 0;
    if (const json* a = field(j, "args")) handle_sor(*a);
    return;
  }
  if (topic.rfind("smd+", 0) == 0) {
    ++stats_.smd_messages;
    last_smd_at_ = loop_.now();
    probe_sent_at_ = 0;
    std::int64_t conid = 0;
    if (const json* c = field(j, "conid")) conid = json_quantity(*c).value_or(0);
    if (conid == 0) conid = std::atoll(topic.c_str() + 4);
    auto s = symbol_of_conid_.find(conid);
    if (s == symbol_of_conid_.end() || !quote_handler_) return;
    Quote q = ibkr::quote_from_market_data(j, s->second);
    q.source = options_.name;
    if (q.at == 0) q.at = loop_.now();
    quote_handler_(q);
    return;
  }
  if (j.contains("error")) spdlog::debug("{}: WebSocket error frame: {}", options_.name, json_text(j["error"]));
}

void IbkrBroker::handle_sor(const json& args) {
  for (std::int64_t id : sor_.apply(args))
    if (const json* merged = sor_.find(id)) emit_order_update(id, *merged);
}

void IbkrBroker::emit_order_update(std::int64_t order_id, const json& merged) {
  BrokerOrder b = ibkr::order_from_json(merged, symbol_of_conid_);
  if (b.broker_order_id.empty()) b.broker_order_id = std::to_string(order_id);
  const auto mapped = ibkr::map_status(b.broker_status, ibkr::why_held_of(merged), b.filled_quantity);
  if (!mapped.known && warned_statuses_.insert(b.broker_status).second)
    spdlog::warn("{}: unknown order status '{}' (order {}): kept verbatim", options_.name, b.broker_status, order_id);
  auto prev_it = emitted_.find(order_id);
  const std::string prev_status = prev_it == emitted_.end() ? "" : prev_it->second.first;
  const std::int64_t prev_filled = prev_it == emitted_.end() ? 0 : prev_it->second.second;
  const std::optional<Price> prev_avg = emitted_avg_[order_id];
  if (prev_it != emitted_.end() && prev_status == b.broker_status && prev_filled == b.filled_quantity) return;
  emitted_[order_id] = {b.broker_status, b.filled_quantity};
  emitted_avg_[order_id] = b.average_fill_price;
  if (!order_handler_) return;
  const Timestamp now = loop_.now();
  if (b.filled_quantity > prev_filled && b.average_fill_price) {
    const std::int64_t delta = b.filled_quantity - prev_filled;
    // The fill's own price from the change of the average: exact in 128 bits.
    const Int128 total_new = static_cast<Int128>(b.average_fill_price->units()) * b.filled_quantity;
    const Int128 total_old = prev_avg ? static_cast<Int128>(prev_avg->units()) * prev_filled : 0;
    OrderEvent ev;
    ev.kind = OrderEvent::Kind::fill;
    ev.broker_order_id = b.broker_order_id;
    ev.client_order_id = b.client_order_id;
    ev.state = b.state;
    ev.broker_status = b.broker_status;
    ev.at = now;
    Fill f;
    f.execution_id = b.broker_order_id + ":" + std::to_string(b.filled_quantity);
    f.cumulative_quantity = b.filled_quantity;
    f.broker = options_.name;
    f.client_order_id = b.client_order_id;
    f.broker_order_id = b.broker_order_id;
    f.symbol = b.symbol;
    f.side = b.side;
    f.quantity = delta;
    f.price = Price::from_units(static_cast<std::int64_t>((total_new - total_old) / delta));
    f.at = now;
    ev.fill = f;
    order_handler_(ev);
  }
  if (b.broker_status == prev_status) return;
  OrderEvent ev;
  ev.broker_order_id = b.broker_order_id;
  ev.client_order_id = b.client_order_id;
  ev.state = mapped.state;
  ev.broker_status = b.broker_status;
  ev.at = now;
  if (const json* why = field(merged, "order_cancellation_by_system_reason")) ev.message = json_text(*why);
  else if (auto held = ibkr::why_held_of(merged); !held.empty()) ev.message = std::move(held);
  if (mapped.state == OrderState::cancelled) ev.kind = OrderEvent::Kind::cancelled;
  else if (mapped.state == OrderState::rejected) ev.kind = OrderEvent::Kind::rejected;
  else if (prev_status == "PreSubmitted" && b.broker_status == "Submitted" && b.stop_price)
    ev.kind = OrderEvent::Kind::triggered;  // an IB-held stop was elected and sent on
  else ev.kind = OrderEvent::Kind::status;
  order_handler_(ev);
}

BrokerHealthReport IbkrBroker::health() const {
  BrokerHealthReport r;
  r.last_message_at = last_message_at_;
  r.consecutive_errors = consecutive_errors_;
  if (!started_) {
    r.connectivity = Connectivity::disconnected;
    r.detail = options_.name + ": not started";
  } else if (ready()) {
    r.connectivity = Connectivity::connected;
    r.detail = "gateway session authenticated, account " + account_;
    if (options_.use_websocket && !ws_ready_) r.detail += "; WebSocket not ready";
  } else if (session_ == Session::not_authenticated) {
    r.connectivity = Connectivity::not_authenticated;
    r.detail = "gateway session not authenticated: open " + gateway_root() + " and log in";
  } else {
    r.connectivity = Connectivity::disconnected;
    r.detail = not_ready_message();
  }
  return r;
}

}  // namespace backstop
