#include "brokers/tradestation/tradestation_broker.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "brokers/net/http_client.hpp"
#include "brokers/net/http_stream.hpp"
#include "brokers/net/json_object_splitter.hpp"
#include "brokers/tradestation/ts_auth.hpp"

namespace backstop::tradestation {

using nlohmann::json;
using namespace std::chrono_literals;

std::map<std::string, RateQuota> default_quotas() {
  // [DOC-RL] (api-notes section 6), the older table with fixed windows.
  return {
      {"accounts", {250, 5min}},      {"order_details", {250, 5min}}, {"balances", {250, 5min}},
      {"positions", {250, 5min}},     {"quotes", {30, 1min}},         {"stream_open", {500, 5min}},
      {"order_execution", {0, 5min}},
  };
}

TradeStationOptions options_from_config(const BrokerConfig& b, std::map<std::string, std::string> symbols) {
  TradeStationOptions o;
  o.name = b.name;
  o.account = b.account;
  if (const auto* s = b.tradestation()) o.settings = *s;
  o.symbols = std::move(symbols);
  return o;
}

struct TradeStationBroker::ApiResult {
  enum class Kind { not_sent, unknown, answered } kind = Kind::unknown;
  int status = 0;
  std::string body;
  std::string message;
};

struct TradeStationBroker::Bucket {
  RateQuota quota;
  std::deque<Timestamp> sent;
  Timestamp blocked_until = 0;  // after a 429
  Duration backoff{1s};
  std::deque<std::function<void()>> waiting;
  EventLoop::TimerId timer = 0;
};

struct TradeStationBroker::StreamState {
  std::string what;  // "orders" / "quotes", for log lines
  std::unique_ptr<net::HttpStream> stream;
  net::JsonObjectSplitter splitter;
  std::uint64_t generation = 0;  // handlers of older runs are ignored
  bool up = false;               // status 200 seen
  bool snapshot_done = false;
  Duration backoff{0};
  EventLoop::TimerId reconnect_timer = 0;
  std::string last_end;
};

namespace {
net::TlsOptions tls_options(const TlsConfig& t) {
  net::TlsOptions o;
  o.ca_file = t.ca_file;
  o.pinned_cert_file = t.pinned_cert_file;
  o.insecure_skip_verify = !t.verifies_peer();
  return o;
}

std::string body_message(const std::string& body) {
  try {
    const json j = json::parse(body);
    if (j.is_object()) {
      std::string m = json_string(j, "Message");
      const std::string e = json_string(j, "Error");
      if (m.empty()) return e;
      return e.empty() ? m : e + ": " + m;
    }
  } catch (const std::exception&) {
  }
  return {};
}

// How much earlier than our send TradeStation may say an order of unknown outcome opened and it
// still be that order: its OpenedDateTime is cut to the second, and two NTP-kept clocks differ by
// well under a second; a minute is generous, and still tells an order placed earlier apart.
constexpr Duration kOpenedBeforeSentTolerance = std::chrono::seconds(60);

// An order's OpenedDateTime is at or after `not_before`; true when absent or unreadable (a hint
// for finding an order, never a reason to miss it).
bool opened_since(const WireOrder& w, Timestamp not_before) {
  if (w.opened_at.empty()) return true;
  try {
    return parse_timestamp(w.opened_at) >= not_before;
  } catch (const std::exception&) {
    return true;
  }
}

bool same_order(const BrokerOrder& b, const OrderSpec& s) {
  auto eq = [](const std::optional<Price>& a, const std::optional<Price>& c) { return a.value_or(Price()) == c.value_or(Price()); };
  return b.symbol == s.symbol && b.side == s.side && b.quantity == s.quantity && b.type == s.type &&
         (s.type == OrderType::market || s.type == OrderType::stop || eq(b.limit_price, s.limit_price)) &&
         (!s.is_stop() || eq(b.stop_price, s.stop_price));
}
}  // namespace

TradeStationBroker::TradeStationBroker(TradeStationOptions options, EventLoop& loop)
    : options_(std::move(options)),
      loop_(loop),
      symbols_(options_.symbols),
      mapper_(options_.name, symbols_) {
  const net::PostFn post = [&loop](std::function<void()> f) { loop.post(std::move(f)); };
  net::HttpClient::Options api;
  api.base_url = options_.settings.base_url;
  api.tls = tls_options(options_.settings.tls);
  api.post = post;
  api.loop_io = options_.loop_io;
  api.name = options_.name;
  api.default_timeout = options_.read_timeout;
  api_ = std::make_unique<net::HttpClient>(std::move(api));

  const net::Url token_url = net::Url::parse(options_.settings.token_url);
  net::HttpClient::Options tok;
  tok.base_url = token_url.origin();
  tok.tls = tls_options(options_.settings.tls);
  tok.post = post;
  tok.loop_io = options_.loop_io;
  tok.name = options_.name + "-auth";
  tok.max_connections = 1;
  token_http_ = std::make_unique<net::HttpClient>(std::move(tok));
  token_target_ = token_url.target;

  auto make_stream = [&](const char* what) {
    auto s = std::make_unique<StreamState>();
    s->what = what;
    net::HttpStream::Options so;
    so.base_url = options_.settings.base_url;
    so.tls = tls_options(options_.settings.tls);
    so.post = post;
    so.name = options_.name + "-" + what;
    so.inactivity_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(options_.settings.stream_inactivity_timeout);
    s->stream = std::make_unique<net::HttpStream>(std::move(so));
    return s;
  };
  orders_stream_ = make_stream("orders");
  quotes_stream_ = make_stream("quotes");

  for (const auto& [group, q] : options_.quotas) {
    auto b = std::make_unique<Bucket>();
    b->quota = q;
    if (q.limit > 0) b->quota.limit = std::max(1, static_cast<int>(q.limit * options_.quota_use));
    buckets_[group] = std::move(b);
  }
  mapper_.on_unknown_status = [this](const std::string& code) {
    ++stats_.unknown_status_frames;
    spdlog::warn("{}: unknown order status code '{}': kept as broker_status, state unchanged", options_.name, code);
  };
}

TradeStationBroker::~TradeStationBroker() {
  stop();
  *alive_ = false;
  orders_stream_->stream->close();
  quotes_stream_->stream->close();
}

BrokerCapabilities TradeStationBroker::capabilities() const {
  BrokerCapabilities c;
  c.brackets = true;
  c.client_order_ids = true;     // OrderConfirmID: "used to prevent duplicates"
  c.query_by_client_id = true;   // in-process map + fingerprint (see header)
  c.order_query = true;
  c.fill_query = true;
  c.native_stops = true;
  c.order_stream = true;
  c.quote_stream = true;
  c.replace = true;
  return c;
}

void TradeStationBroker::start() {
  if (running_) return;
  running_ = true;
  // Fresh token, then check the account exists, then the order stream.
  with_token([this](const std::string& err) {
    if (!err.empty()) spdlog::error("{}: {}", options_.name, err);
  });
  list_accounts([this](Outcome o, std::vector<std::string> ids, std::string msg) {
    if (o != Outcome::accepted) return;
    if (std::find(ids.begin(), ids.end(), options_.account) == ids.end()) {
      account_error_ = "account " + options_.account + " is not among this login's accounts";
      spdlog::error("{}: {}", options_.name, account_error_);
    }
    (void)msg;
  });
  if (options_.order_stream) open_order_stream();
  if (quote_handler_ && !quote_symbols_.empty()) open_quote_stream();
}

void TradeStationBroker::stop() {
  running_ = false;
  for (auto* s : {orders_stream_.get(), quotes_stream_.get()}) {
    ++s->generation;
    s->stream->close();
    loop_.cancel(s->reconnect_timer);
    s->up = s->snapshot_done = false;
  }
  loop_.cancel(refresh_timer_);
  for (auto& [g, b] : buckets_) loop_.cancel(b->timer);
}

// ---------------------------------------------------------------------------------------------
// Auth

void TradeStationBroker::with_token(std::function<void(const std::string&)> then) {
  // Valid until a few seconds before expiry; the refresh timer normally renews it well before.
  if (!access_token_.empty() && loop_.now() < access_expires_at_ - to_ns(5s)) {
    then({});
    return;
  }
  token_waiters_.push_back(std::move(then));
  refresh_token();
}

void TradeStationBroker::schedule_refresh(Duration in) {
  loop_.cancel(refresh_timer_);
  std::weak_ptr<bool> alive = alive_;
  refresh_timer_ = loop_.call_after(in, [this, alive] {
    if (!alive.lock() || !*alive.lock() || !running_) return;
    refresh_token();
  });
}

void TradeStationBroker::refresh_token() {
  if (refreshing_) return;
  auto fail_waiters = [this](const std::string& why) {
    auto waiters = std::move(token_waiters_);
    token_waiters_.clear();
    for (auto& w : waiters) w(why);
  };
  if (refresh_token_.empty()) {
    if (auto t = read_refresh_token(options_.settings.refresh_token_file)) refresh_token_ = *t;
  }
  if (refresh_token_.empty()) {
    auth_refused_ = true;
    auth_error_ = "no refresh token in '" + options_.settings.refresh_token_file +
                  "': run `backstop auth tradestation --config FILE`";
    fail_waiters("not authenticated: " + auth_error_);
    return;
  }
  refreshing_ = true;
  std::string body = "grant_type=refresh_token&client_id=" + form_encode(options_.settings.client_id) +
                     "&refresh_token=" + form_encode(refresh_token_);
  // client_secret: required for the standard flow, omitted for PKCE (api-notes section 1).
  if (!options_.settings.client_secret.empty()) body += "&client_secret=" + form_encode(options_.settings.client_secret);
  std::weak_ptr<bool> alive = alive_;
  token_http_->request(
      {"POST", token_target_, {{"Content-Type", "application/x-www-form-urlencoded"}}, std::move(body),
       options_.read_timeout},
      [this, alive, fail_waiters](net::HttpResult r) {
        if (!alive.lock() || !*alive.lock()) return;
        refreshing_ = false;
        std::string why;
        if (!r.ok()) {
          why = "token endpoint unreachable: " + r.error.message;
        } else if (r.response->status != 200) {
          // The OAuth error code is safe to show; the body is not echoed whole.
          std::string code;
          try {
            code = json_string(json::parse(r.response->body), "error");
          } catch (const std::exception&) {
          }
          why = "token refresh refused: HTTP " + std::to_string(r.response->status) + (code.empty() ? "" : " " + code);
          if (r.response->status == 400 || r.response->status == 401 || r.response->status == 403) auth_refused_ = true;
        } else {
          try {
            TokenResponse t = parse_token_response(r.response->body);
            if (!t.refresh_token.empty() && t.refresh_token != refresh_token_) {
              // Rotation (api-notes section 1): the old token is dead from now on. Persist the new
              // one before using it, so a crash cannot leave us holding only a revoked token.
              try {
                write_refresh_token(options_.settings.refresh_token_file, t.refresh_token);
              } catch (const std::exception& e) {
                spdlog::error("{}: rotated refresh token NOT persisted: {}", options_.name, e.what());
                auth_error_ = std::string("rotated refresh token not persisted: ") + e.what();
              }
              refresh_token_ = t.refresh_token;
              ++stats_.refresh_tokens_rotated;
            }
            access_token_ = t.access_token;
            const Duration life = std::chrono::seconds(t.expires_in);
            access_expires_at_ = loop_.now() + to_ns(life);
            ++stats_.token_refreshes;
            auth_refused_ = false;
            if (auth_error_.rfind("rotated", 0) != 0) auth_error_.clear();
            last_message_at_ = loop_.now();
            // Refresh near expiry, not per request ([DOC-REFRESH]).
            const Duration margin = std::min<Duration>(options_.refresh_margin, life / 5);
            schedule_refresh(life - margin);
            spdlog::info("{}: access token refreshed (valid {} s)", options_.name, t.expires_in);
            auto waiters = std::move(token_waiters_);
            token_waiters_.clear();
            for (auto& w : waiters) w({});
            return;
          } catch (const std::exception& e) {
            why = std::string("token refresh: ") + e.what();
          }
        }
        auth_error_ = why;
        spdlog::error("{}: {}", options_.name, why);
        if (!auth_refused_ && running_) schedule_refresh(5s);  // network trouble: try again
        fail_waiters(why);
      });
}

// ---------------------------------------------------------------------------------------------
// Requests, rate budget, 401 and 429

void TradeStationBroker::acquire(const std::string& group, std::function<void()> go) {
  auto it = buckets_.find(group);
  if (it == buckets_.end()) {
    go();
    return;
  }
  it->second->waiting.push_back(std::move(go));
  drain(group);
}

void TradeStationBroker::drain(const std::string& group) {
  Bucket& b = *buckets_.at(group);
  while (!b.waiting.empty()) {
    const Timestamp now = loop_.now();
    while (!b.sent.empty() && b.sent.front() <= now - to_ns(b.quota.window)) b.sent.pop_front();
    Timestamp ready = b.blocked_until;
    if (b.quota.limit > 0 && static_cast<int>(b.sent.size()) >= b.quota.limit)
      ready = std::max(ready, b.sent.front() + to_ns(b.quota.window));
    if (ready > now) {
      loop_.cancel(b.timer);
      std::weak_ptr<bool> alive = alive_;
      b.timer = loop_.call_at(ready, [this, alive, group] {
        if (auto a = alive.lock(); a && *a) drain(group);
      });
      return;
    }
    if (b.quota.limit > 0) b.sent.push_back(now);
    auto go = std::move(b.waiting.front());
    b.waiting.pop_front();
    go();
  }
}

void TradeStationBroker::call(const std::string& group, std::string method, std::string target, std::string body,
                              bool write, ApiCallback done, int attempt) {
  acquire(group, [this, group, method = std::move(method), target = std::move(target), body = std::move(body), write,
                  done = std::move(done), attempt]() mutable {
    send(group, std::move(method), std::move(target), std::move(body), write, std::move(done), attempt);
  });
}

void TradeStationBroker::send(const std::string& group, std::string method, std::string target, std::string body,
                              bool write, ApiCallback done, int attempt) {
  std::weak_ptr<bool> alive = alive_;
  // Each of these lambdas runs once (with_token calls its continuation once, the client its
  // callback once), so the request's parts move along instead of being copied at each step;
  // only the HttpRequest takes copies, for the 401 retry.
  with_token([this, alive, group, method = std::move(method), target = std::move(target), body = std::move(body), write,
              attempt, done = std::move(done)](const std::string& err) mutable {
    if (!err.empty()) {
      done({ApiResult::Kind::not_sent, 0, {}, err});
      return;
    }
    net::HttpRequest req;
    req.method = method;
    req.target = target;
    req.headers.reserve(2);
    req.headers.push_back({"Authorization", "Bearer " + access_token_});
    if (!body.empty()) req.headers.push_back({"Content-Type", "application/json"});
    req.body = body;
    req.timeout = write ? options_.order_timeout : options_.read_timeout;
    api_->request(std::move(req), [this, alive, group = std::move(group), method = std::move(method),
                                   target = std::move(target), body = std::move(body), write, attempt,
                                   done = std::move(done)](net::HttpResult r) mutable {
      if (auto a = alive.lock(); !a || !*a) return;
      if (!r.ok()) {
        ++consecutive_errors_;
        done({r.error.not_sent() ? ApiResult::Kind::not_sent : ApiResult::Kind::unknown, 0, {}, r.error.message});
        return;
      }
      last_message_at_ = loop_.now();
      const int status = r.response->status;
      if (options_.on_response) {
        std::vector<std::pair<std::string, std::string>> hs;
        for (const auto& h : r.response->headers) hs.emplace_back(h.name, h.value);
        options_.on_response(method, target, status, hs, r.response->body);
      }
      if (status == 401 && attempt == 0) {
        // Expired or revoked access token: the server did not act. One refresh, one retry.
        ++stats_.unauthorized_retries;
        spdlog::info("{}: 401 on {} {}: refreshing the access token once", options_.name, method,
                     net::loggable_target(target));
        access_token_.clear();
        send(group, std::move(method), std::move(target), std::move(body), write, std::move(done), 1);
        return;
      }
      if (status == 429) {
        // Over quota: the server did not act. Back the group off and record it.
        ++stats_.http_429;
        Bucket* b = buckets_.count(group) ? buckets_.at(group).get() : nullptr;
        Duration wait = b ? b->backoff : Duration(1s);
        if (const auto* ra = r.response->header("Retry-After"))
          if (const auto secs = retry_after_seconds(*ra)) wait = std::chrono::seconds(*secs);
        if (b) {
          b->blocked_until = loop_.now() + to_ns(wait);
          b->backoff = std::min<Duration>(b->backoff * 2, 60s);
        }
        spdlog::warn("{}: HTTP 429 on {} {} (quota group {}), backing off {} ms", options_.name, method,
                     net::loggable_target(target), group, std::chrono::duration_cast<std::chrono::milliseconds>(wait).count());
        if (!write && attempt < 3) {  // reads are safe to repeat; writes answer "rejected"
          call(group, std::move(method), std::move(target), std::move(body), write, std::move(done), attempt + 1);
          return;
        }
      } else if (buckets_.count(group)) {
        buckets_.at(group)->backoff = 1s;
      }
      if (status < 500) consecutive_errors_ = 0;
      else ++consecutive_errors_;
      done({ApiResult::Kind::answered, status, std::move(r.response->body), {}});
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Orders

CommandResult TradeStationBroker::place_result(const ApiResult& r, std::vector<std::string>& ids) const {
  using K = ApiResult::Kind;
  if (r.kind == K::not_sent) return CommandResult::failed(r.message);
  if (r.kind == K::unknown)
    return CommandResult::unknown_because(r.message + "; the order may be live: resolve by client order id");
  CommandResult res;
  res.http_status = r.status;
  if (r.status >= 500 || r.status == 408) {
    res = CommandResult::unknown_because("HTTP " + std::to_string(r.status) + " " + body_message(r.body) +
                                         "; the order may be live: resolve by client order id");
    res.http_status = r.status;
    return res;
  }
  if (r.status == 401) {
    res = CommandResult::rejected_by_broker("unauthorized after a token refresh: " + body_message(r.body));
  } else if (r.status == 429) {
    res = CommandResult::rejected_by_broker("rate limited (HTTP 429): " + body_message(r.body));
  } else if (r.status < 200 || r.status >= 300) {
    res = CommandResult::rejected_by_broker(body_message(r.body).empty() ? "HTTP " + std::to_string(r.status)
                                                                         : body_message(r.body));
  } else {
    // 200 is the object {Orders, Errors} (emulators/tradestation/SPEC_DEFECTS.md #1: the spec
    // says array). An Errors entry or Orders[i].Error is a rejection ([LEAN], api-notes section 3).
    // Read without a document (read_place_answer): this runs on every order's answer.
    PlaceAnswer a = read_place_answer(r.body);
    if (!a.parsed) return CommandResult::unknown_because("garbled reply (not JSON); the order may be live");
    ids = std::move(a.order_ids);
    if (!a.errors.empty()) res = CommandResult::rejected_by_broker(std::move(a.errors));
    else if (ids.empty()) return CommandResult::unknown_because("reply names no order; the order may be live");
    else res = CommandResult::accepted_as(ids.front());
  }
  res.http_status = r.status;
  return res;
}

void TradeStationBroker::adopt(const std::string& coid, const std::string& id) {
  if (coid.empty() || id.empty()) return;
  coid_to_id_[coid] = id;
  id_to_coid_[id] = coid;
  mapper_.set_client_order_id(id, coid);
  unresolved_.erase(coid);
}

void TradeStationBroker::submit(const OrderSpec& order, CommandCallback done) {
  if (auto why = validate(order); !why.empty()) return done(CommandResult::failed(why));
  if (order.client_order_id.empty() || order.client_order_id.size() > kMaxClientOrderIdLength)
    return done(CommandResult::failed("OrderConfirmID must be 1-22 characters: '" + order.client_order_id + "'"));
  // A field that cannot be sent as it is fails here, before anything is recorded or sent.
  RequestBody body = order_request(order, options_.account, symbols_);
  if (!body.ok()) return done(CommandResult::failed(std::move(body.error)));
  unresolved_[order.client_order_id] = {order, loop_.now()};
  // The answer needs only the client order id (the spec stays in unresolved_ until resolved).
  call("order_execution", "POST", "/orderexecution/orders", std::move(body.text), true,
       [this, coid = order.client_order_id, done = std::move(done)](ApiResult r) {
         std::vector<std::string> ids;
         CommandResult res = place_result(r, ids);
         if (res.outcome == Outcome::accepted) adopt(coid, ids.front());
         else if (res.outcome != Outcome::unknown) unresolved_.erase(coid);
         if (res.outcome == Outcome::unknown)
           spdlog::warn("{}: submit {} outcome unknown: {}", options_.name, coid, res.message);
         done(std::move(res));
       });
}

void TradeStationBroker::submit_bracket(const BracketSpec& bracket, BracketCallback done) {
  if (auto why = validate(bracket); !why.empty()) return done({Outcome::failed_locally, why, {}, {}, {}});
  for (const auto* o : {&bracket.entry, &bracket.take_profit, &bracket.protective_stop})
    if (o->client_order_id.empty() || o->client_order_id.size() > kMaxClientOrderIdLength)
      return done({Outcome::failed_locally, "OrderConfirmID must be 1-22 characters", {}, {}, {}});
  // Entry with exit bracket: OSOs [{Type BRK, Orders [...]}] ("Long Entry with Exit Bracket").
  RequestBody body = bracket_request(bracket, options_.account, symbols_);
  if (!body.ok()) return done({Outcome::failed_locally, std::move(body.error), {}, {}, {}});
  const Timestamp now = loop_.now();
  for (const auto* o : {&bracket.entry, &bracket.take_profit, &bracket.protective_stop})
    unresolved_[o->client_order_id] = {*o, now};
  call("order_execution", "POST", "/orderexecution/orders", std::move(body.text), true,
       [this, bracket, done = std::move(done)](ApiResult r) {
         std::vector<std::string> ids;
         CommandResult res = place_result(r, ids);
         BracketResult out{res.outcome, res.message, {}, {}, {}};
         if (res.outcome == Outcome::accepted) {
           if (ids.size() < 3) {
             out.outcome = Outcome::unknown;
             out.message = "bracket reply names " + std::to_string(ids.size()) + " orders, expected 3";
           } else {
             // Orders come back in request order: entry, then the OSO children.
             out.entry_id = ids[0];
             out.take_profit_id = ids[1];
             out.stop_id = ids[2];
             adopt(bracket.entry.client_order_id, ids[0]);
             adopt(bracket.take_profit.client_order_id, ids[1]);
             adopt(bracket.protective_stop.client_order_id, ids[2]);
           }
         } else if (res.outcome != Outcome::unknown) {
           for (const auto* o : {&bracket.entry, &bracket.take_profit, &bracket.protective_stop})
             unresolved_.erase(o->client_order_id);
         }
         done(std::move(out));
       });
}

void TradeStationBroker::submit_group(const std::string& type, const std::vector<OrderSpec>& orders,
                                      std::function<void(GroupResult)> done) {
  if (type != "OCO" && type != "BRK" && type != "NORMAL")
    return done({Outcome::failed_locally, "group type must be OCO, BRK or NORMAL", {}});
  for (const auto& o : orders) {
    if (auto why = validate(o); !why.empty()) return done({Outcome::failed_locally, why, {}});
    if (o.client_order_id.empty() || o.client_order_id.size() > kMaxClientOrderIdLength)
      return done({Outcome::failed_locally, "OrderConfirmID must be 1-22 characters", {}});
  }
  RequestBody body = group_request(type, orders, options_.account, symbols_);
  if (!body.ok()) return done({Outcome::failed_locally, std::move(body.error), {}});
  for (const auto& o : orders) unresolved_[o.client_order_id] = {o, loop_.now()};
  call("order_execution", "POST", "/orderexecution/ordergroups", std::move(body.text), true,
       [this, orders, done = std::move(done)](ApiResult r) {
         std::vector<std::string> ids;
         CommandResult res = place_result(r, ids);
         GroupResult g{res.outcome, res.message, {}};
         if (res.outcome == Outcome::accepted) {
           g.order_ids = ids;
           for (std::size_t i = 0; i < ids.size() && i < orders.size(); ++i) adopt(orders[i].client_order_id, ids[i]);
         } else if (res.outcome != Outcome::unknown) {
           for (const auto& o : orders) unresolved_.erase(o.client_order_id);
         }
         done(std::move(g));
       });
}

namespace {
// ReplaceOrder/CancelOrder answer {"Message","OrderID"}; an error answer {"Error","Message"}.
CommandResult modify_result(const TradeStationBroker::ApiResult& r, const std::string& id, const char* what) {
  using K = TradeStationBroker::ApiResult::Kind;
  if (r.kind == K::not_sent) return CommandResult::failed(r.message);
  if (r.kind == K::unknown) return CommandResult::unknown_because(std::string(what) + ": " + r.message);
  CommandResult res;
  if (r.status >= 500 || r.status == 408) {
    res = CommandResult::unknown_because(std::string(what) + ": HTTP " + std::to_string(r.status));
  } else if (r.status >= 200 && r.status < 300) {
    std::string oid = id;
    try {
      const json j = json::parse(r.body);
      if (!json_string(j, "Error").empty()) {
        res = CommandResult::rejected_by_broker(body_message(r.body));
        res.http_status = r.status;
        return res;
      }
      if (!json_string(j, "OrderID").empty()) oid = json_string(j, "OrderID");
    } catch (const std::exception&) {
      return CommandResult::unknown_because(std::string(what) + ": garbled reply");
    }
    res = CommandResult::accepted_as(oid);
  } else {
    const std::string m = body_message(r.body);
    res = CommandResult::rejected_by_broker(m.empty() ? "HTTP " + std::to_string(r.status) : m);
  }
  res.http_status = r.status;
  return res;
}
}  // namespace

void TradeStationBroker::cancel(const std::string& id, CommandCallback done) {
  // "The order ID must have no dashes" (api-notes section 3).
  if (id.empty() || id.find('-') != std::string::npos) return done(CommandResult::failed("invalid order id '" + id + "'"));
  call("order_execution", "DELETE", "/orderexecution/orders/" + id, {}, true,
       [id, done = std::move(done)](ApiResult r) { done(modify_result(r, id, "cancel")); });
}

void TradeStationBroker::replace(const std::string& id, const OrderSpec& updated, CommandCallback done) {
  if (id.empty() || id.find('-') != std::string::npos) return done(CommandResult::failed("invalid order id '" + id + "'"));
  if (auto why = validate(updated); !why.empty()) return done(CommandResult::failed(why));
  replacing_[id];  // a second replace of the same id in flight shares the entry
  call("order_execution", "PUT", "/orderexecution/orders/" + id, replace_request(updated), true,
       [this, id, done = std::move(done)](ApiResult r) {
         CommandResult res = modify_result(r, id, "replace");
         if (res.outcome == Outcome::accepted && res.broker_order_id != id) {
           // The replacement is a new order at TradeStation: its frames belong to the same client order.
           if (auto c = id_to_coid_.find(id); c != id_to_coid_.end()) adopt(std::string(c->second), res.broker_order_id);
         }
         std::vector<OrderEvent> held;
         if (auto it = replacing_.find(id); it != replacing_.end()) {
           held = std::move(it->second);
           replacing_.erase(it);
         }
         done(std::move(res));
         emit(held);
       });
}

std::optional<WireOrderView> TradeStationBroker::preview(const OrderSpec& order) const {
  // Off the hot path: the text as it would be sent, parsed back. An order that cannot be sent
  // (a field outside printable ASCII) has no wire form: submit() refuses it.
  const RequestBody body = order_request(order, options_.account, symbols_);
  if (!body.ok()) return std::nullopt;
  return wire_view(json::parse(body.text));
}

// ---------------------------------------------------------------------------------------------
// Reads

namespace {
template <class R>
bool read_failed(const TradeStationBroker::ApiResult& r, R& out) {
  using K = TradeStationBroker::ApiResult::Kind;
  if (r.kind == K::not_sent) {
    out.outcome = Outcome::failed_locally;
    out.message = r.message;
    return true;
  }
  if (r.kind == K::unknown) {
    out.outcome = Outcome::unknown;
    out.message = r.message;
    return true;
  }
  if (r.status < 200 || r.status >= 300) {
    out.outcome = r.status >= 500 ? Outcome::unknown : Outcome::rejected;
    out.message = "HTTP " + std::to_string(r.status) + " " + body_message(r.body);
    return true;
  }
  return false;
}
}  // namespace

void TradeStationBroker::list_accounts(std::function<void(Outcome, std::vector<std::string>, std::string)> done) {
  call("accounts", "GET", "/brokerage/accounts", {}, false, [done = std::move(done)](ApiResult r) {
    OrdersResult tmp;
    if (read_failed(r, tmp)) return done(tmp.outcome, {}, tmp.message);
    std::vector<std::string> ids;
    try {
      const json j = json::parse(r.body);
      for (const auto& a : j.value("Accounts", json::array())) ids.push_back(json_string(a, "AccountID"));
    } catch (const std::exception& e) {
      return done(Outcome::unknown, {}, std::string("accounts: ") + e.what());
    }
    done(Outcome::accepted, std::move(ids), {});
  });
}

void TradeStationBroker::fetch_orders(std::string next_token, std::shared_ptr<std::vector<BrokerOrder>> acc,
                                      std::shared_ptr<std::vector<WireOrder>> raw,
                                      std::function<void(Outcome, std::string)> done) {
  std::string target = "/brokerage/accounts/" + options_.account + "/orders?pageSize=600";
  if (!next_token.empty()) target += "&nextToken=" + form_encode(next_token);
  call("order_details", "GET", target, {}, false, [this, acc, raw, done = std::move(done)](ApiResult r) mutable {
    OrdersResult tmp;
    if (read_failed(r, tmp)) return done(tmp.outcome, tmp.message);
    std::string next;
    try {
      const json j = json::parse(r.body);
      for (const auto& o : j.value("Orders", json::array())) {
        WireOrder w = parse_order(o, symbols_);
        if (auto it = id_to_coid_.find(w.order.broker_order_id); it != id_to_coid_.end())
          w.order.client_order_id = it->second;
        acc->push_back(w.order);
        raw->push_back(std::move(w));
      }
      for (const auto& e : j.value("Errors", json::array()))
        spdlog::warn("{}: orders read: {} {}", options_.name, json_string(e, "Error"), json_string(e, "Message"));
      next = json_string(j, "NextToken");
    } catch (const std::exception& e) {
      return done(Outcome::unknown, std::string("orders: garbled reply: ") + e.what());
    }
    if (!next.empty()) return fetch_orders(std::move(next), acc, raw, std::move(done));
    done(Outcome::accepted, {});
  });
}

void TradeStationBroker::list_orders(OrdersCallback done) {
  auto acc = std::make_shared<std::vector<BrokerOrder>>();
  auto raw = std::make_shared<std::vector<WireOrder>>();
  fetch_orders({}, acc, raw, [acc, done = std::move(done)](Outcome o, std::string msg) {
    done({o, std::move(msg), o == Outcome::accepted ? std::move(*acc) : std::vector<BrokerOrder>{}});
  });
}

void TradeStationBroker::list_open_orders(OrdersCallback done) {
  list_orders([done = std::move(done)](OrdersResult r) {
    std::erase_if(r.orders, [](const BrokerOrder& o) { return is_terminal(o.state); });
    done(std::move(r));
  });
}

void TradeStationBroker::query_order(const std::string& id, OrderQueryCallback done) {
  if (id.empty() || id.find_first_of("-,/?&") != std::string::npos)
    return done({Outcome::failed_locally, "invalid order id '" + id + "'", std::nullopt});
  call("order_details", "GET", "/brokerage/accounts/" + options_.account + "/orders/" + id, {}, false,
       [this, id, done = std::move(done)](ApiResult r) {
         OrderQueryResult out;
         if (r.kind == ApiResult::Kind::answered && r.status == 404) {
           out.outcome = Outcome::accepted;  // the broker says it has no such order
           out.message = body_message(r.body);
           return done(out);
         }
         if (read_failed(r, out)) return done(out);
         try {
           const json j = json::parse(r.body);
           for (const auto& o : j.value("Orders", json::array())) {
             if (json_string(o, "OrderID") != id) continue;
             WireOrder w = parse_order(o, symbols_);
             if (auto it = id_to_coid_.find(id); it != id_to_coid_.end()) w.order.client_order_id = it->second;
             out.order = w.order;
           }
           // Unknown ids come back under Errors (NotFound): an answer, not a failure.
           for (const auto& e : j.value("Errors", json::array())) out.message = json_string(e, "Message");
           out.outcome = Outcome::accepted;
         } catch (const std::exception& e) {
           out.outcome = Outcome::unknown;
           out.message = std::string("garbled reply: ") + e.what();
         }
         done(out);
       });
}

void TradeStationBroker::expect_unknown(const OrderSpec& order, Timestamp sent_at) {
  if (!coid_to_id_.count(order.client_order_id)) unresolved_[order.client_order_id] = {order, sent_at};
}

void TradeStationBroker::remember_order(const std::string& client_order_id, const std::string& broker_order_id) {
  adopt(client_order_id, broker_order_id);  // claimed: query_by_client_id's matching skips it
}

void TradeStationBroker::query_by_client_id(const std::string& coid, OrderQueryCallback done) {
  if (auto it = coid_to_id_.find(coid); it != coid_to_id_.end()) return query_order(it->second, std::move(done));
  auto un = unresolved_.find(coid);
  if (un == unresolved_.end())
    return done({Outcome::failed_locally,
                 "TradeStation order reads do not carry OrderConfirmID and client order id '" + coid +
                     "' was not sent by this process: query by broker order id",
                 std::nullopt});
  // The submit's outcome was unknown: look for the order among today's by its details, among the
  // orders no other client order id has claimed, opened no earlier than it was sent (TradeStation
  // gives the time to the second; its clock and ours may differ a little): an order of the same
  // details placed before it, by hand or by another program on the account, is not it.
  const OrderSpec spec = un->second.spec;
  const Timestamp not_before = un->second.sent_at - to_ns(kOpenedBeforeSentTolerance);
  auto acc = std::make_shared<std::vector<BrokerOrder>>();
  auto raw = std::make_shared<std::vector<WireOrder>>();
  fetch_orders({}, acc, raw, [this, coid, spec, not_before, raw, done = std::move(done)](Outcome outcome, std::string msg) {
    OrderQueryResult out{outcome, std::move(msg), std::nullopt};
    if (outcome != Outcome::accepted) return done(out);
    std::vector<const BrokerOrder*> matches;
    for (const auto& w : *raw)
      if (!id_to_coid_.count(w.order.broker_order_id) && same_order(w.order, spec) && opened_since(w, not_before))
        matches.push_back(&w.order);
    if (matches.size() > 1) {
      out.outcome = Outcome::unknown;
      out.message = std::to_string(matches.size()) + " unclaimed orders match client order id '" + coid + "'";
      return done(out);
    }
    if (matches.size() == 1) {
      adopt(coid, matches.front()->broker_order_id);
      out.order = *matches.front();
      out.order->client_order_id = coid;
    }
    done(out);
  });
}

void TradeStationBroker::list_fills(FillsCallback done) {
  auto acc = std::make_shared<std::vector<BrokerOrder>>();
  auto raw = std::make_shared<std::vector<WireOrder>>();
  fetch_orders({}, acc, raw, [this, raw, done = std::move(done)](Outcome o, std::string msg) {
    FillsResult out{o, std::move(msg), {}};
    if (o == Outcome::accepted)
      for (const auto& w : *raw) {
        if (w.exec_quantity <= 0) continue;
        if (auto it = id_to_coid_.find(w.order.broker_order_id); it != id_to_coid_.end())
          mapper_.set_client_order_id(it->first, it->second);
        for (auto f : mapper_.reconcile_fills(w, loop_.now())) out.fills.push_back(std::move(f));
      }
    done(std::move(out));
  });
}

void TradeStationBroker::list_positions(PositionsCallback done) {
  call("positions", "GET", "/brokerage/accounts/" + options_.account + "/positions", {}, false,
       [this, done = std::move(done)](ApiResult r) {
         PositionsResult out;
         if (read_failed(r, out)) return done(out);
         try {
           const json j = json::parse(r.body);
           for (const auto& p : j.value("Positions", json::array())) {
             Position pos;
             pos.broker = options_.name;
             pos.symbol = symbols_.to_backstop(json_string(p, "Symbol"));
             pos.quantity = json_int(p, "Quantity");
             // Quantity is negative when short (api-notes section 4); LongShort confirms it.
             if (json_string(p, "LongShort") == "Short" && pos.quantity > 0) pos.quantity = -pos.quantity;
             pos.average_price = json_price(p, "AveragePrice").value_or(Price());
             out.positions.push_back(std::move(pos));
           }
           out.outcome = Outcome::accepted;
         } catch (const std::exception& e) {
           out.outcome = Outcome::unknown;
           out.message = std::string("garbled reply: ") + e.what();
         }
         done(out);
       });
}

// ---------------------------------------------------------------------------------------------
// Streams

void TradeStationBroker::stream_ended(StreamState& s, const std::string& why, bool immediately) {
  ++s.generation;  // ignore anything still queued from this run
  s.stream->close();
  s.up = s.snapshot_done = false;
  s.last_end = why;
  if (!running_) return;
  // Backoff doubles while runs fail before EndSnapshot; a GoAway reconnects at once.
  Duration wait = immediately ? Duration(0) : std::max(options_.reconnect_min, s.backoff);
  if (!immediately) s.backoff = std::min<Duration>(std::max(options_.reconnect_min, s.backoff * 2), options_.reconnect_max);
  spdlog::warn("{}: {} stream ended ({}); reconnecting in {} ms", options_.name, s.what, why,
               std::chrono::duration_cast<std::chrono::milliseconds>(wait).count());
  loop_.cancel(s.reconnect_timer);
  std::weak_ptr<bool> alive = alive_;
  StreamState* sp = &s;
  s.reconnect_timer = loop_.call_after(wait, [this, alive, sp] {
    if (auto a = alive.lock(); !a || !*a || !running_) return;
    if (sp == orders_stream_.get()) open_order_stream();
    else open_quote_stream();
  });
}

void TradeStationBroker::open_order_stream() {
  StreamState& s = *orders_stream_;
  const std::uint64_t gen = ++s.generation;
  std::weak_ptr<bool> alive = alive_;
  // A fresh token on every (re)open (api-notes section 5).
  with_token([this, alive, gen, &s](const std::string& err) {
    if (gen != s.generation || !running_) return;
    if (!err.empty()) return stream_ended(s, err, false);
    s.splitter.reset();
    auto live = [this, alive, gen, &s] { auto a = alive.lock(); return a && *a && gen == s.generation; };
    net::HttpStreamHandlers h;
    h.on_status = [this, live, &s](int status, const net::Headers&) {
      if (!live()) return;
      s.up = status >= 200 && status < 300;
      if (status == 401) access_token_.clear();  // the body follows, then on_end: reopen with a new token
      if (!s.up) spdlog::warn("{}: order stream answered HTTP {}", options_.name, status);
    };
    h.on_data = [this, live, &s](std::string_view bytes) {
      if (!live()) return;
      last_message_at_ = loop_.now();
      try {
        s.splitter.feed(bytes, [this, live](std::string_view obj) {
          if (live()) on_order_frame(obj);
        });
      } catch (const std::exception& e) {
        ++stats_.bad_frames;
        stream_ended(s, e.what(), false);
      }
    };
    h.on_end = [this, live, &s](const net::StreamEnd& end) {
      if (!live()) return;
      ++stats_.stream_errors;
      stream_ended(s, std::string(net::to_string(end.reason)) + (end.message.empty() ? "" : ": " + end.message), false);
    };
    s.stream->start("/brokerage/stream/accounts/" + options_.account + "/orders",
                    {{"Authorization", "Bearer " + access_token_},
                     {"Accept", "application/vnd.tradestation.streams.v3+json"}},
                    std::move(h));
  });
}

void TradeStationBroker::on_order_frame(std::string_view text) {
  StreamState& s = *orders_stream_;
  json j;
  try {
    j = json::parse(text);
  } catch (const std::exception&) {
    ++stats_.bad_frames;
    spdlog::warn("{}: order stream: unparsable object ({} bytes) skipped", options_.name, text.size());
    return;
  }
  if (!j.is_object()) return;
  if (j.contains("Heartbeat")) return;
  if (j.contains("StreamStatus")) {
    const std::string st = json_string(j, "StreamStatus");
    if (st == "EndSnapshot") {
      s.snapshot_done = true;
      s.backoff = Duration(0);
      ++stats_.stream_connects;
    } else if (st == "GoAway") {
      // The server is going away: restart the stream ([DOC-STREAM]).
      ++stats_.stream_goaways;
      stream_ended(s, "GoAway", true);
    }
    return;
  }
  if (j.contains("Error")) {
    // Brokerage stream error object {AccountID, Error, Message} (api-notes section 5): end the run.
    ++stats_.stream_errors;
    stream_ended(s, json_string(j, "Error") + ": " + json_string(j, "Message"), false);
    return;
  }
  if (!j.contains("OrderID")) return;
  std::vector<OrderEvent> events;
  try {
    mapper_.on_order(j, loop_.now(), events);
  } catch (const std::exception& e) {
    ++stats_.bad_frames;
    spdlog::warn("{}: order frame skipped: {}", options_.name, e.what());
    return;
  }
  emit(events);
}

void TradeStationBroker::emit(const std::vector<OrderEvent>& events) {
  for (const auto& ev : events) {
    if (ev.broker_status == "UCH" && !replacing_.empty()) {
      if (auto it = replacing_.find(ev.broker_order_id); it != replacing_.end()) {
        it->second.push_back(ev);
        continue;
      }
    }
    if (!ev.client_order_id.empty() || !order_handler_) {
      if (order_handler_) order_handler_(ev);
      continue;
    }
    OrderEvent copy = ev;  // the frame may precede the POST's answer; fill in the id if known
    if (auto it = id_to_coid_.find(ev.broker_order_id); it != id_to_coid_.end()) {
      copy.client_order_id = it->second;
      if (copy.fill) copy.fill->client_order_id = it->second;
    }
    order_handler_(copy);
  }
}

void TradeStationBroker::subscribe_quotes(const std::vector<std::string>& symbols, QuoteHandler handler) {
  quote_symbols_ = symbols;
  quote_handler_ = std::move(handler);
  if (running_) open_quote_stream();
}

void TradeStationBroker::open_quote_stream() {
  StreamState& s = *quotes_stream_;
  const std::uint64_t gen = ++s.generation;
  if (quote_symbols_.empty()) {
    s.stream->close();
    return;
  }
  std::string list;
  for (const auto& sym : quote_symbols_) list += (list.empty() ? "" : ",") + symbols_.to_broker(sym);
  std::weak_ptr<bool> alive = alive_;
  acquire("stream_open", [this, alive, gen, list, &s] {
    if (auto a = alive.lock(); !a || !*a) return;
    with_token([this, alive, gen, list, &s](const std::string& err) {
      if (gen != s.generation || !running_) return;
      if (!err.empty()) return stream_ended(s, err, false);
      s.splitter.reset();
      auto live = [alive, gen, &s] { auto a = alive.lock(); return a && *a && gen == s.generation; };
      net::HttpStreamHandlers h;
      h.on_status = [this, live, &s](int status, const net::Headers&) {
        if (!live()) return;
        s.up = status >= 200 && status < 300;
        if (status == 401) access_token_.clear();
      };
      h.on_data = [this, live, &s](std::string_view bytes) {
        if (!live()) return;
        last_message_at_ = loop_.now();
        try {
          s.splitter.feed(bytes, [this, live](std::string_view obj) {
            if (live()) on_quote_frame(obj);
          });
        } catch (const std::exception& e) {
          stream_ended(s, e.what(), false);
        }
      };
      h.on_end = [this, live, &s](const net::StreamEnd& end) {
        if (!live()) return;
        stream_ended(s, net::to_string(end.reason), false);
      };
      s.stream->start("/marketdata/stream/quotes/" + list,
                      {{"Authorization", "Bearer " + access_token_},
                       {"Accept", "application/vnd.tradestation.streams.v2+json"}},
                      std::move(h));
    });
  });
}

void TradeStationBroker::on_quote_frame(std::string_view text) {
  StreamState& s = *quotes_stream_;
  json j;
  try {
    j = json::parse(text);
  } catch (const std::exception&) {
    return;
  }
  if (!j.is_object() || j.contains("Heartbeat")) return;
  if (j.contains("Error")) {
    const std::string err = json_string(j, "Error");
    if (j.contains("Symbol")) {  // per-symbol error ("FAILED, INVALID SYMBOL", DualLogon)
      spdlog::warn("{}: quote stream: {}: {}", options_.name, json_string(j, "Symbol"), err);
      if (err != "DualLogon") return;
    }
    // Market-data streams signal shutdown as {"Error":"GoAway"} ([SPEC-B] examples), not StreamStatus.
    stream_ended(s, err, err == "GoAway");
    return;
  }
  if (!j.contains("Symbol")) return;
  s.snapshot_done = true;
  s.backoff = Duration(0);
  Quote q;
  q.symbol = symbols_.to_backstop(json_string(j, "Symbol"));
  q.bid = json_price(j, "Bid");
  q.ask = json_price(j, "Ask");
  q.last = json_price(j, "Last");
  q.bid_size = json_int(j, "BidSize");
  q.ask_size = json_int(j, "AskSize");
  q.last_size = json_int(j, "LastSize");
  q.at = loop_.now();
  q.source = options_.name;
  if (quote_handler_) quote_handler_(q);
}

// ---------------------------------------------------------------------------------------------

BrokerHealthReport TradeStationBroker::health() const {
  BrokerHealthReport h;
  h.last_message_at = last_message_at_;
  h.consecutive_errors = consecutive_errors_;
  const bool token_ok = !access_token_.empty() && loop_.now() < access_expires_at_;
  if (auth_refused_) {
    h.connectivity = Connectivity::not_authenticated;
    h.detail = auth_error_;
  } else if (!running_) {
    h.connectivity = Connectivity::disconnected;
    h.detail = "not started";
  } else if (!token_ok) {
    h.connectivity = Connectivity::disconnected;
    h.detail = auth_error_.empty() ? "authenticating" : auth_error_;
  } else if (!account_error_.empty()) {
    h.connectivity = Connectivity::degraded;
    h.detail = account_error_;
  } else if (options_.order_stream && !orders_stream_->snapshot_done) {
    h.connectivity = Connectivity::degraded;
    h.detail = "order stream " + (orders_stream_->last_end.empty() ? std::string("connecting")
                                                                   : "reconnecting after " + orders_stream_->last_end);
  } else {
    h.connectivity = Connectivity::connected;
    h.detail = !auth_error_.empty() ? auth_error_ : "ok";
    if (!auth_error_.empty()) h.connectivity = Connectivity::degraded;
  }
  return h;
}

}  // namespace backstop::tradestation
