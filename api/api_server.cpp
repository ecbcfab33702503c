#include "api/api_server.hpp"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <thread>

#include "api/api_json.hpp"
#include "api_assets.hpp"
#include "core/url.hpp"
#include "core/cpu_affinity.hpp"
#include "core/error.hpp"
#ifdef BACKSTOP_API_RELIABILITY
#include "reliability/reliability.hpp"
#endif

namespace backstop {

using nlohmann::json;
namespace aj = api_json;

namespace {

using SteadyClock = std::chrono::steady_clock;

// The loop did not run a request in time (busy, stopped, or the server is stopping).
struct LoopTimeout : std::runtime_error {
  LoopTimeout() : std::runtime_error("the event loop did not answer in time") {}
};
struct HttpError : std::runtime_error {
  HttpError(int s, const std::string& m) : std::runtime_error(m), status(s) {}
  int status;
};

struct StreamEvent {
  std::uint64_t id;
  std::string type;
  std::string data;
};

// Events in the order the loop thread produced them, numbered from 1. Written on the loop
// thread, read by every stream's HTTP thread.
class EventHub {
 public:
  explicit EventHub(std::size_t capacity) : capacity_(std::max<std::size_t>(capacity, 1)) {}

  void publish(const std::string& type, const json& data) {
    {
      std::lock_guard lock(mutex_);
      if (closed_) return;
      events_.push_back({++last_id_, type, data.dump()});
      if (events_.size() > capacity_) events_.pop_front();
    }
    cv_.notify_all();
  }
  // Events after id `after`, waiting up to `wait` for the first one. `gap` is set when some
  // events after `after` have already left the buffer; `closed` once the hub is closed.
  std::vector<StreamEvent> after(std::uint64_t after, Duration wait, bool& closed, bool& gap) {
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, wait, [&] { return closed_ || last_id_ > after; });
    closed = closed_;
    gap = !events_.empty() && events_.front().id > after + 1;
    std::vector<StreamEvent> out;
    for (const auto& e : events_)
      if (e.id > after) out.push_back(e);
    return out;
  }
  std::uint64_t last_id() {
    std::lock_guard lock(mutex_);
    return last_id_;
  }
  void close() {
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<StreamEvent> events_;
  std::uint64_t last_id_ = 0;
  std::size_t capacity_;
  bool closed_ = false;
};

// A command's outcome, delivered on the loop thread to an HTTP thread that waits for it.
struct CommandWait {
  std::mutex mutex;
  std::condition_variable cv;
  std::optional<CommandResult> result;
  void set(const CommandResult& r) {
    {
      std::lock_guard lock(mutex);
      if (!result) result = r;
    }
    cv.notify_all();
  }
};

}  // namespace

// State shared by the HTTP threads, the loop-thread listeners and posted tasks. Posted tasks
// hold it by shared_ptr, listeners by weak_ptr: a listener outliving the server does nothing.
struct ApiShared {
  ApiShared(ApiContext c, ApiServerOptions o) : ctx(c), options(std::move(o)), hub(options.event_buffer) {}
  ApiContext ctx;
  ApiServerOptions options;
  EventHub hub;
  std::string token;  // never logged
  std::atomic<bool> stopping{false};
  std::atomic<int> streams{0};  // open event streams

  // Loop thread only.
  std::map<std::string, Quote> quotes;
  std::map<std::string, json> last_fills;  // by symbol
  std::map<std::string, std::pair<Verification, int>> stop_states;
  std::size_t divergences_seen = 0;

  // Runs `fn` on the loop thread and returns its result here; throws LoopTimeout when the loop
  // does not start it within options.loop_timeout, and rethrows what `fn` throws. A timed-out
  // request is abandoned before it runs: a 503 means nothing was done (no late submit).
  template <class F>
  auto on_loop(F fn) -> decltype(fn()) {
    using T = decltype(fn());
    struct Slot {
      std::mutex m;
      std::condition_variable cv;
      bool abandoned = false, running = false, done = false;
      T value{};
      std::exception_ptr error;
    };
    auto slot = std::make_shared<Slot>();
    ctx.loop.post([slot, fn = std::move(fn)]() mutable {
      {
        std::lock_guard lock(slot->m);
        if (slot->abandoned) return;
        slot->running = true;
      }
      T v{};
      std::exception_ptr err;
      try {
        v = fn();
      } catch (...) {
        err = std::current_exception();
      }
      {
        std::lock_guard lock(slot->m);
        slot->value = std::move(v);
        slot->error = err;
        slot->done = true;
      }
      slot->cv.notify_all();
    });
    std::unique_lock lock(slot->m);
    const auto deadline = SteadyClock::now() + options.loop_timeout;
    // Short slices so a stopping server does not keep its HTTP threads for the whole timeout.
    while (!slot->done && (slot->running || (!stopping.load() && SteadyClock::now() < deadline)))
      slot->cv.wait_for(lock, std::chrono::milliseconds(50));
    if (!slot->done) {
      slot->abandoned = true;
      throw LoopTimeout();
    }
    if (slot->error) std::rethrow_exception(slot->error);
    return std::move(slot->value);
  }

  // Waits (bounded by options.outcome_wait) for a command's broker answer.
  std::optional<CommandResult> wait_outcome(CommandWait& w) {
    std::unique_lock lock(w.mutex);
    const auto deadline = SteadyClock::now() + options.outcome_wait;
    while (!w.result && !stopping.load() && SteadyClock::now() < deadline)
      w.cv.wait_for(lock, std::chrono::milliseconds(50));
    return w.result;
  }

  // Loop thread.
  const StopRecord* stop_of(const std::string& coid) const {
    auto it = ctx.guard.stops().find(coid);
    return it == ctx.guard.stops().end() ? nullptr : &it->second;
  }
  json order(const std::string& coid) const {
    const OrderRecord* o = ctx.orders.find(coid);
    return o ? aj::order_json(*o, stop_of(coid)) : json(nullptr);
  }
  // Loop thread. A stop with its order and the protection policy it is under (its strategy's;
  // a mirror's is its primary's), as /api/v1/stops lists it and the "stop" event carries it.
  json stop_view(const std::string& coid, const StopRecord& st) const {
    json j = aj::stop_json(st);
    const OrderRecord* o = ctx.orders.find(coid);
    j["order"] = o ? aj::order_json(*o, &st) : json(nullptr);
    j["policy"] = to_string(ctx.guard.policy_of(coid));
    return j;
  }
  std::vector<std::string> broker_names() const {
    std::set<std::string> names;
    for (const auto& n : ctx.orders.broker_names()) names.insert(n);
    for (const auto& n : ctx.health.brokers()) names.insert(n);
    return {names.begin(), names.end()};
  }
  json brokers_json() const;
  std::string metrics_text() const;
  void poll();  // stop verification changes and new divergences -> events
};

namespace {

void json_reply(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}
void error_reply(httplib::Response& res, int status, const std::string& message) {
  json_reply(res, status, json{{"error", message}});
}

const char* kHealthStates[] = {"up", "degraded", "down"};
const char* kCircuits[] = {"closed", "open", "half_open"};

// Prometheus label values: backslash, quote and newline escaped.
std::string label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\', out += c;
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::optional<std::uint64_t> parse_id(const std::string& s) {
  if (s.empty() || s.size() > 19 || !std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); }))
    return std::nullopt;
  return std::stoull(s);
}

std::string dashboard_page() {
  std::string page(api_assets::kAsset_index_html);
  auto inline_asset = [&](const std::string& marker, std::string_view content) {
    const auto at = page.find(marker);
    if (at != std::string::npos) page.replace(at, marker.size(), content);
  };
  inline_asset("/*@DASHBOARD_CSS@*/", api_assets::kAsset_dashboard_css);
  inline_asset("/*@DASHBOARD_JS@*/", api_assets::kAsset_dashboard_js);
  return page;
}

}  // namespace

json ApiShared::brokers_json() const {
  json out = json::array();
  for (const auto& name : broker_names()) {
    json b{{"name", name},
           {"state", to_string(ctx.health.state(name))},
           {"circuit", to_string(ctx.health.circuit(name))},
           {"takes_orders", ctx.health.takes_orders(name)}};
    if (Broker* br = ctx.orders.broker(name)) {
      const BrokerHealthReport h = br->health();
      b["connectivity"] = to_string(h.connectivity);
      b["detail"] = h.detail;
      b["last_message_at"] = h.last_message_at ? json(format_timestamp(h.last_message_at)) : json(nullptr);
      b["consecutive_errors"] = h.consecutive_errors;
    }
    json routes = json::array();
    for (const auto& r : ctx.config.routes)
      if (std::find(r.brokers.begin(), r.brokers.end(), name) != r.brokers.end())
        routes.push_back({{"strategy", r.strategy},
                          {"mode", r.mode == RouteMode::dual ? "dual" : "failover"},
                          {"current", ctx.router.current_broker(r.strategy) == name}});
    b["routes"] = routes;
    std::int64_t working = 0;
    for (const OrderRecord* o : ctx.orders.working_orders())
      if (o->broker == name) ++working;
    b["working_orders"] = working;
    b["divergences"] = ctx.reconciler.count(name);
    std::int64_t ghosts = 0;
    for (const auto& g : ctx.guard.ghosts())
      if (g.broker == name) ++ghosts;
    b["ghost_stops"] = ghosts;
    out.push_back(b);
  }
  return out;
}

std::string ApiShared::metrics_text() const {
  std::string m;
  auto help = [&](const char* name, const char* type, const char* text) {
    m += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, text, name, type);
  };
  const auto names = broker_names();

  help("backstop_orders", "gauge", "Orders known to this process by broker and lifecycle state.");
  std::map<std::pair<std::string, std::string>, std::int64_t> by_state;
  for (const auto& n : names)
    for (std::size_t i = 0; i < kOrderStateCount; ++i) by_state[{n, to_string(static_cast<OrderState>(i))}] = 0;
  // Submit -> ack: sent (pending) to acknowledged (submitted), per broker. Each order's value is
  // fixed once acknowledged, so recomputing from the records keeps the histogram cumulative.
  static const double kBuckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  struct Histogram {
    std::array<std::uint64_t, std::size(kBuckets)> counts{};
    std::uint64_t count = 0;
    double sum = 0;
  };
  std::map<std::string, Histogram> ack;
  std::map<std::string, std::int64_t> fills;
  for (const auto& n : names) ack[n], fills[n] = 0;
  for (const OrderRecord* o : ctx.orders.orders()) {
    by_state[{o->broker, to_string(o->state)}]++;
    const Timestamp sent = o->time_of(OrderState::pending), acked = o->time_of(OrderState::submitted);
    if (sent && acked && acked >= sent) {
      const double s = static_cast<double>(acked - sent) / 1e9;
      auto& h = ack[o->broker];
      for (std::size_t i = 0; i < std::size(kBuckets); ++i)
        if (s <= kBuckets[i]) h.counts[i]++;
      h.count++;
      h.sum += s;
    }
    if (o->filled_quantity > 0) fills[o->broker] += o->filled_quantity;
  }
  for (const auto& [k, v] : by_state)
    m += fmt::format("backstop_orders{{broker=\"{}\",state=\"{}\"}} {}\n", label(k.first), k.second, v);

  help("backstop_submit_to_ack_seconds", "histogram", "Time from sending an order to the broker's acknowledgement.");
  for (const auto& [b, h] : ack) {
    for (std::size_t i = 0; i < std::size(kBuckets); ++i)
      m += fmt::format("backstop_submit_to_ack_seconds_bucket{{broker=\"{}\",le=\"{}\"}} {}\n", label(b), kBuckets[i],
                       h.counts[i]);
    m += fmt::format("backstop_submit_to_ack_seconds_bucket{{broker=\"{}\",le=\"+Inf\"}} {}\n", label(b), h.count);
    m += fmt::format("backstop_submit_to_ack_seconds_sum{{broker=\"{}\"}} {}\n", label(b), h.sum);
    m += fmt::format("backstop_submit_to_ack_seconds_count{{broker=\"{}\"}} {}\n", label(b), h.count);
  }

  help("backstop_filled_quantity", "gauge", "Quantity filled on the orders of this process, by broker.");
  for (const auto& [b, q] : fills) m += fmt::format("backstop_filled_quantity{{broker=\"{}\"}} {}\n", label(b), q);

  help("backstop_stops", "gauge", "Protective stops by broker and verification state.");
  std::map<std::pair<std::string, std::string>, std::int64_t> stops;
  for (const auto& n : names)
    for (auto v : {Verification::pending, Verification::verified, Verification::mismatch, Verification::missing,
                   Verification::timeout})
      stops[{n, to_string(v)}] = 0;
  for (const auto& [id, s] : ctx.guard.stops()) stops[{s.broker, to_string(s.verification)}]++;
  for (const auto& [k, v] : stops)
    m += fmt::format("backstop_stops{{broker=\"{}\",verification=\"{}\"}} {}\n", label(k.first), k.second, v);

  help("backstop_ghost_stops_total", "counter", "Ghost stops declared (price went through, no fill or trigger).");
  std::map<std::string, std::int64_t> ghosts;
  for (const auto& n : names) ghosts[n] = 0;
  for (const auto& g : ctx.guard.ghosts()) ghosts[g.broker]++;
  for (const auto& [b, v] : ghosts) m += fmt::format("backstop_ghost_stops_total{{broker=\"{}\"}} {}\n", label(b), v);

  help("backstop_divergences_total", "counter", "Reconciliation divergences by broker and kind.");
  std::map<std::pair<std::string, std::string>, std::int64_t> div;
  for (const auto& n : names)
    for (const char* k : {"position_size", "missing_at_broker", "unknown_to_backstop", "missed_fill", "stuck_order"})
      div[{n, k}] = 0;
  for (const auto& d : ctx.reconciler.divergences()) div[{d.broker, d.kind}]++;
  for (const auto& [k, v] : div)
    m += fmt::format("backstop_divergences_total{{broker=\"{}\",kind=\"{}\"}} {}\n", label(k.first), label(k.second), v);

  help("backstop_broker_health", "gauge", "1 for each broker's current health state, 0 for the others.");
  for (const auto& n : names)
    for (const char* s : kHealthStates)
      m += fmt::format("backstop_broker_health{{broker=\"{}\",state=\"{}\"}} {}\n", label(n), s,
                       std::string(to_string(ctx.health.state(n))) == s ? 1 : 0);
  help("backstop_broker_circuit", "gauge", "1 for each broker's current circuit state, 0 for the others.");
  for (const auto& n : names)
    for (const char* c : kCircuits)
      m += fmt::format("backstop_broker_circuit{{broker=\"{}\",circuit=\"{}\"}} {}\n", label(n), c,
                       std::string(to_string(ctx.health.circuit(n))) == c ? 1 : 0);
  return m;
}

void ApiShared::poll() {
  // A stop appearing or changing verification state (or read back once more) is an event.
  for (const auto& [coid, st] : ctx.guard.stops()) {
    const std::pair<Verification, int> now{st.verification, st.verifications};
    auto it = stop_states.find(coid);
    if (it != stop_states.end() && it->second == now) continue;
    stop_states[coid] = now;
    hub.publish("stop", stop_view(coid, st));
  }
  const auto& divs = ctx.reconciler.divergences();
  for (; divergences_seen < divs.size(); ++divergences_seen)
    hub.publish("divergence", aj::divergence_json(divs[divergences_seen]));
}

namespace {
// Loop thread: poll() every interval until the server stops (the chain then ends by itself,
// without cancel(), which only the loop thread may call).
void schedule_poll(std::weak_ptr<ApiShared> weak, EventLoop& loop, Duration every) {
  loop.call_after(every, [weak, &loop, every] {
    auto s = weak.lock();
    if (!s || s->stopping.load()) return;
    s->poll();
    schedule_poll(weak, loop, every);
  });
}
}  // namespace

struct ApiServer::Impl {
  std::shared_ptr<ApiShared> sh;
  std::unique_ptr<httplib::Server> server;
  std::thread listen_thread;
  std::string host;
  int port = -1;
  bool started = false;
  bool stopped = false;
  std::string dashboard;

  void routes();
  void command_routes();
  void read_routes();
  void stream_routes();
};

ApiServer::ApiServer(ApiContext context, ApiServerOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->sh = std::make_shared<ApiShared>(context, std::move(options));
}

ApiServer::~ApiServer() {
  try {
    stop();
  } catch (const std::exception& e) {
    spdlog::error("api: stop: {}", e.what());
  }
}

int ApiServer::port() const { return impl_->port; }
std::string ApiServer::url() const {
  const bool v6 = impl_->host.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + impl_->host + "]" : impl_->host) + ":" + std::to_string(impl_->port) + "/";
}
const std::string& ApiServer::token_file() const { return impl_->sh->ctx.config.api.token_file; }

void ApiServer::on_quote(const Quote& q) {
  Quote& last = impl_->sh->quotes[q.symbol];
  // Partial updates keep the fields they do not carry.
  last.symbol = q.symbol;
  if (q.bid) last.bid = q.bid;
  if (q.ask) last.ask = q.ask;
  if (q.last) last.last = q.last;
  last.at = q.at;
  last.source = q.source;
}

void ApiServer::start() {
  Impl& im = *impl_;
  if (im.started) return;
  auto& sh = im.sh;
  const ApiConfig& cfg = sh->ctx.config.api;
  im.host = cfg.bind.empty() ? "127.0.0.1" : cfg.bind;
  // The loader refuses this too; checked again here because a Config can be built in code.
  if (!is_loopback_host(im.host) && !cfg.allow_non_loopback)
    throw ConfigError("api.bind " + im.host +
                      " is not a loopback address; set api.allow_non_loopback to expose the API beyond this machine");
  sh->token = load_or_create_token(cfg.token_file);
  im.dashboard = dashboard_page();

  // Listeners: loop thread. They hold the shared state weakly and go quiet once stopped.
  std::weak_ptr<ApiShared> weak = sh;
  auto live = [weak]() -> std::shared_ptr<ApiShared> {
    auto s = weak.lock();
    return s && !s->stopping.load() ? s : nullptr;
  };
  sh->ctx.orders.on_order_update([live](const OrderRecord& o) {
    if (auto s = live()) s->hub.publish("order", aj::order_json(o, s->stop_of(o.spec.client_order_id)));
  });
  sh->ctx.orders.on_fill([live](const Fill& f, const OrderRecord& o) {
    auto s = live();
    if (!s) return;
    json j = aj::fill_json(f);
    j["order_state"] = to_string(o.state);
    j["filled_quantity"] = o.filled_quantity;
    s->last_fills[f.symbol] = {{"price", f.price.to_string()}, {"at", format_timestamp(f.at)}, {"broker", f.broker}};
    s->hub.publish("fill", j);
  });
  sh->ctx.health.on_change([live](const HealthChange& c) {
    if (auto s = live()) s->hub.publish("health", aj::health_change_json(c));
  });
  sh->ctx.guard.on_ghost([live](const GhostStop& g) {
    if (auto s = live()) s->hub.publish("ghost_stop", aj::ghost_json(g));
  });
  // Stop verification and divergences have no listener: a timer compares with what it saw.
  for (const auto& [coid, s] : sh->ctx.guard.stops()) sh->stop_states[coid] = {s.verification, s.verifications};
  sh->divergences_seen = sh->ctx.reconciler.divergences().size();
  schedule_poll(weak, sh->ctx.loop, sh->options.poll_interval);

  im.server = std::make_unique<httplib::Server>();
  const int threads = sh->options.threads;
  im.server->new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<std::size_t>(threads)); };
  im.server->set_keep_alive_timeout(1);  // lets stop() finish quickly
  im.server->set_read_timeout(5, 0);
  im.server->set_write_timeout(5, 0);
  im.server->set_payload_max_length(64 * 1024);
  im.routes();

  const int want = sh->options.port.value_or(cfg.port);
  im.port = want == 0 ? im.server->bind_to_any_port(im.host) : (im.server->bind_to_port(im.host, want) ? want : -1);
  if (im.port <= 0)
    throw Error("api: cannot listen on " + im.host + ":" + std::to_string(want) + " (port in use or address unavailable)");
  im.listen_thread = std::thread([&im] {
    unpin_this_thread();  // its request workers, started from here, inherit this
    im.server->listen_after_bind();
  });
  // httplib's stop() does nothing until the listen loop runs: a stop() right after start()
  // would otherwise leave the listen thread running forever.
  const auto deadline = SteadyClock::now() + std::chrono::seconds(5);
  while (!im.server->is_running() && SteadyClock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  im.started = true;
  spdlog::info("api listening on {} (token in {})", url(), cfg.token_file);
}

void ApiServer::stop() {
  Impl& im = *impl_;
  if (!im.started || im.stopped) return;
  im.stopped = true;
  im.sh->stopping.store(true);
  im.sh->hub.close();  // event streams end; waiting requests give up within 50 ms
  im.server->stop();
  if (im.listen_thread.joinable()) im.listen_thread.join();
}

void ApiServer::Impl::routes() {
  auto s = sh;
  // Authentication for every route, before routing: unknown paths answer 401 too, so the
  // server says nothing to a caller without the token.
  server->set_pre_routing_handler([s](const httplib::Request& req, httplib::Response& res) {
    // Browsers cannot set a header on a page load or an EventSource: these two routes alone
    // take the token as a query parameter.
    const bool query_ok = req.path == "/" || req.path == "/api/v1/events";
    const std::string auth = req.get_header_value("Authorization");
    std::string given;
    if (auth.size() > 7 && (auth.compare(0, 7, "Bearer ") == 0 || auth.compare(0, 7, "bearer ") == 0))
      given = auth.substr(7);
    else if (query_ok && req.has_param("token"))
      given = req.get_param_value("token");
    if (!given.empty() && constant_time_equal(given, s->token)) return httplib::Server::HandlerResponse::Unhandled;
    res.set_header("WWW-Authenticate", "Bearer realm=\"backstop\"");
    std::string why = "missing bearer token: send Authorization: Bearer <the token in api.token_file>";
    if (!given.empty()) why = "invalid token";
    else if (!auth.empty()) why = "the Authorization header must be \"Bearer <token>\"";
    else if (req.has_param("token")) why = "?token= is accepted only on / and /api/v1/events; send Authorization: Bearer <token>";
    error_reply(res, 401, why);
    return httplib::Server::HandlerResponse::Handled;
  });
  server->set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;  // a handler's own JSON error
    error_reply(res, res.status, res.status == 404 ? "no such endpoint: " + req.method + " " + req.path
                                                   : "HTTP " + std::to_string(res.status));
  });
  server->set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    try {
      std::rethrow_exception(ep);
    } catch (const aj::BadRequest& e) {
      error_reply(res, 400, e.what());
    } catch (const HttpError& e) {
      error_reply(res, e.status, e.what());
    } catch (const LoopTimeout& e) {
      error_reply(res, 503, e.what());
    } catch (const std::exception& e) {
      error_reply(res, 500, e.what());
    } catch (...) {
      error_reply(res, 500, "internal error");
    }
  });
  server->set_post_routing_handler([](const httplib::Request&, httplib::Response& res) {
    // Nothing the API returns may be cached: it is live state, and the dashboard page carries
    // the token in its URL.
    res.set_header("Cache-Control", "no-store");
    res.set_header("Referrer-Policy", "no-referrer");
    res.set_header("X-Content-Type-Options", "nosniff");
  });
  command_routes();
  read_routes();
  stream_routes();
}

void ApiServer::Impl::command_routes() {
  auto s = sh;
  // Replies with the order as it stands once the broker answered (200) or, when the answer
  // takes longer than outcome_wait, as it stands then (202: follow it on the event stream).
  auto finish = [s](httplib::Response& res, const std::vector<std::string>& ids, const std::shared_ptr<CommandWait>& w) {
    const auto outcome = s->wait_outcome(*w);
    json orders = s->on_loop([s, ids] {
      json a = json::array();
      for (const auto& id : ids) a.push_back(s->order(id));
      return a;
    });
    json body{{"client_order_id", ids.front()},
              {"result", outcome ? aj::command_result_json(*outcome) : json(nullptr)},
              {"order", orders.front()}};
    if (ids.size() > 1) body["orders"] = orders;
    json_reply(res, outcome ? 200 : 202, body);
  };

  server->Post("/api/v1/orders", [s, finish](const httplib::Request& req, httplib::Response& res) {
    auto r = aj::read_order_request(aj::parse_body(req.body), s->ctx.config);
    auto w = std::make_shared<CommandWait>();
    const std::string coid = s->on_loop([s, r, w]() mutable {
      if (!r.order.client_order_id.empty() && s->ctx.orders.find(r.order.client_order_id))
        throw HttpError(409, "order.client_order_id: " + r.order.client_order_id + " already exists");
      return s->ctx.router.submit(r.strategy, r.order, [w](const CommandResult& cr) { w->set(cr); });
    });
    finish(res, {coid}, w);
  });

  server->Post("/api/v1/brackets", [s, finish](const httplib::Request& req, httplib::Response& res) {
    auto r = aj::read_bracket_request(aj::parse_body(req.body), s->ctx.config);
    auto w = std::make_shared<CommandWait>();
    const BracketIds ids = s->on_loop([s, r, w]() mutable {
      for (const OrderSpec* leg : {&r.bracket.entry, &r.bracket.take_profit, &r.bracket.protective_stop})
        if (!leg->client_order_id.empty() && s->ctx.orders.find(leg->client_order_id))
          throw HttpError(409, "client_order_id " + leg->client_order_id + " already exists");
      return s->ctx.router.submit_bracket(r.strategy, r.bracket, [w](const CommandResult& cr) { w->set(cr); });
    });
    finish(res, {ids.entry, ids.take_profit, ids.protective_stop}, w);
  });

  server->Post(R"(/api/v1/orders/([A-Za-z0-9_-]{1,64})/cancel)", [s, finish](const httplib::Request& req,
                                                                            httplib::Response& res) {
    const std::string coid = req.matches[1];
    auto w = std::make_shared<CommandWait>();
    s->on_loop([s, coid, w] {
      const OrderRecord* o = s->ctx.orders.find(coid);
      if (!o) throw HttpError(404, "no order " + coid);
      if (o->is_terminal())
        throw HttpError(409, "order " + coid + " is " + to_string(o->state) + ": nothing to cancel");
      s->ctx.router.cancel(coid, [w](const CommandResult& cr) { w->set(cr); });
      return true;
    });
    finish(res, {coid}, w);
  });

  server->Post(R"(/api/v1/orders/([A-Za-z0-9_-]{1,64})/replace)", [s, finish](const httplib::Request& req,
                                                                             httplib::Response& res) {
    const std::string coid = req.matches[1];
    const json body = aj::parse_body(req.body);
    auto w = std::make_shared<CommandWait>();
    s->on_loop([s, coid, body, w] {
      const OrderRecord* o = s->ctx.orders.find(coid);
      if (!o) throw HttpError(404, "no order " + coid);
      if (!is_working(o->state) && o->state != OrderState::held)
        throw HttpError(409, "order " + coid + " is " + to_string(o->state) +
                                 ": only a working order (or one held by Backstop) can be replaced");
      const OrderSpec updated = aj::read_replace_request(body, o->spec, s->ctx.config);
      s->ctx.router.replace(coid, updated, [w](const CommandResult& cr) { w->set(cr); });
      return true;
    });
    finish(res, {coid}, w);
  });
}

void ApiServer::Impl::read_routes() {
  auto s = sh;
  server->Get("/api/v1/orders", [s](const httplib::Request& req, httplib::Response& res) {
    const std::string filter = req.has_param("state") ? req.get_param_value("state") : "all";
    if (filter != "all" && filter != "working" && filter != "terminal" && !order_state_from_string(filter))
      throw aj::BadRequest("state: must be all, working, terminal or a lifecycle state, not \"" + filter + "\"");
    std::size_t limit = 1000;
    if (req.has_param("limit")) {
      auto v = parse_id(req.get_param_value("limit"));
      if (!v || *v == 0 || *v > 100000) throw aj::BadRequest("limit: must be an integer from 1 to 100000");
      limit = *v;
    }
    json body = s->on_loop([s, filter, limit] {
      json out = json::array();
      const auto all = s->ctx.orders.orders();
      // The newest `limit` matching orders, oldest first.
      std::vector<const OrderRecord*> picked;
      for (auto it = all.rbegin(); it != all.rend() && picked.size() < limit; ++it) {
        const OrderRecord* o = *it;
        const bool keep = filter == "all" || (filter == "working" && is_working(o->state)) ||
                          (filter == "terminal" && o->is_terminal()) || filter == to_string(o->state);
        if (keep) picked.push_back(o);
      }
      for (auto it = picked.rbegin(); it != picked.rend(); ++it)
        out.push_back(aj::order_json(**it, s->stop_of((*it)->spec.client_order_id)));
      return json{{"orders", out}};
    });
    json_reply(res, 200, body);
  });

  server->Get(R"(/api/v1/orders/([A-Za-z0-9_-]{1,64}))", [s](const httplib::Request& req, httplib::Response& res) {
    const std::string coid = req.matches[1];
    json o = s->on_loop([s, coid] { return s->order(coid); });
    if (o.is_null()) throw HttpError(404, "no order " + coid);
    json_reply(res, 200, o);
  });

  server->Get("/api/v1/positions", [s](const httplib::Request& req, httplib::Response& res) {
    // Backstop's record from the fills it applied; with ?broker_view=true also each broker's own
    // answer to a positions query (the reconciler's input), so a client can see both.
    const bool broker_view = req.has_param("broker_view") && req.get_param_value("broker_view") == "true";
    struct Collect {
      std::mutex m;
      std::condition_variable cv;
      std::map<std::string, PositionsResult> results;
    };
    auto c = std::make_shared<Collect>();
    auto [body, expected] = s->on_loop([s, c, broker_view] {
      json brokers = json::object();
      for (const auto& n : s->broker_names()) brokers[n] = json{{"positions", json::array()}};
      for (const auto& [key, p] : s->ctx.orders.positions()) brokers[key.first]["positions"].push_back(aj::position_json(p));
      std::size_t asked = 0;
      if (broker_view)
        for (const auto& n : s->ctx.orders.broker_names())
          if (Broker* b = s->ctx.orders.broker(n)) {
            ++asked;
            b->list_positions([c, n](PositionsResult r) {
              {
                std::lock_guard lock(c->m);
                c->results[n] = std::move(r);
              }
              c->cv.notify_all();
            });
          }
      return std::pair{brokers, asked};
    });
    if (broker_view) {
      std::unique_lock lock(c->m);
      c->cv.wait_for(lock, s->options.outcome_wait, [&] { return c->results.size() >= expected; });
      for (auto& [n, r] : c->results) {
        json ps = json::array();
        for (const auto& p : r.positions) ps.push_back(aj::position_json(p));
        body[n]["broker_view"] = {{"outcome", to_string(r.outcome)}, {"message", r.message}, {"positions", ps}};
      }
    }
    json_reply(res, 200, json{{"brokers", body}});
  });

  server->Get("/api/v1/brokers", [s](const httplib::Request&, httplib::Response& res) {
    json_reply(res, 200, json{{"brokers", s->on_loop([s] { return s->brokers_json(); })}});
  });

  server->Get("/api/v1/stops", [s](const httplib::Request&, httplib::Response& res) {
    json body = s->on_loop([s] {
      json stops = json::array(), ghosts = json::array();
      for (const auto& [id, st] : s->ctx.guard.stops()) stops.push_back(s->stop_view(id, st));
      for (const auto& g : s->ctx.guard.ghosts()) ghosts.push_back(aj::ghost_json(g));
      // "policy" is the default (a stop whose strategy has none of its own); "policies" names
      // each strategy's, so that a dashboard with several strategies does not show one for all.
      const auto& settings = s->ctx.guard.settings();
      json policies = json::object();
      for (const auto& [strategy, p] : settings.strategy_policies) policies[strategy] = to_string(p);
      return json{{"policy", to_string(settings.policy)},
                  {"policies", policies},
                  {"stops", stops},
                  {"ghost_stops", ghosts}};
    });
    json_reply(res, 200, body);
  });

  server->Get("/api/v1/divergences", [s](const httplib::Request&, httplib::Response& res) {
    json body = s->on_loop([s] {
      json a = json::array();
      for (const auto& d : s->ctx.reconciler.divergences()) a.push_back(aj::divergence_json(d));
      return json{{"divergences", a}};
    });
    json_reply(res, 200, body);
  });

  server->Get("/api/v1/quotes", [s](const httplib::Request&, httplib::Response& res) {
    json body = s->on_loop([s] {
      json q = json::object();
      for (const auto& [sym, quote] : s->quotes) q[sym] = aj::quote_json(quote);
      for (const auto& [sym, f] : s->last_fills) {
        if (!q.contains(sym)) q[sym] = {{"symbol", sym}, {"bid", nullptr}, {"ask", nullptr}, {"last", nullptr}};
        q[sym]["last_fill"] = f;
      }
      return json{{"quotes", q}};
    });
    json_reply(res, 200, body);
  });

  server->Get("/api/v1/reliability", [s](const httplib::Request& req, httplib::Response& res) {
#ifdef BACKSTOP_API_RELIABILITY
    // Built here, not on the loop: it reads the whole journal. Journal reads are queued to the
    // journal's own thread and safe from any thread; no routing object is touched.
    reliability::ReportOptions options;
    for (const char* bound : {"from", "to"}) {
      if (!req.has_param(bound)) continue;
      try {
        const Timestamp t = parse_timestamp(req.get_param_value(bound));
        (std::string(bound) == "from" ? options.window.from : options.window.to) = t;
      } catch (const std::exception& e) {
        throw aj::BadRequest(std::string(bound) + ": " + e.what() + " (expected ISO-8601, e.g. 2026-11-24T02:10:58Z)");
      }
    }
    for (const auto& inst : s->ctx.config.instruments) options.tick_sizes[inst.symbol] = inst.tick_size;
    options.journal_name = s->ctx.journal.path();
    const auto report = reliability::build_report(reliability::read_facts(s->ctx.journal), options);
    res.status = 200;
    res.set_content(reliability::render_json(report), "application/json");
#else
    (void)req;
    throw HttpError(501, "this build has no reliability report (reliability/ was not built)");
#endif
  });

  server->Get("/api/v1/openapi.yaml", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(api_assets::kAsset_openapi_yaml), "application/yaml");
  });

  server->Get("/metrics", [s](const httplib::Request&, httplib::Response& res) {
    res.set_content(s->on_loop([s] { return s->metrics_text(); }), "text/plain; version=0.0.4");
  });

  server->Get("/", [this](const httplib::Request&, httplib::Response& res) {
    // Everything inline (no asset routes, no external network); the policy forbids loading
    // anything from elsewhere and sending the page's URL (with its token) anywhere.
    res.set_header("Content-Security-Policy",
                   "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                   "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
    res.set_content(dashboard, "text/html; charset=utf-8");
  });
}

void ApiServer::Impl::stream_routes() {
  auto s = sh;
  server->Get("/api/v1/events", [s](const httplib::Request& req, httplib::Response& res) {
    // Resume after Last-Event-ID (what EventSource sends on reconnect), else after
    // ?last_event_id= (0 replays the buffer), else only what happens from now on.
    std::uint64_t start = s->hub.last_id();
    const std::string header = req.get_header_value("Last-Event-ID");
    if (!header.empty()) {
      auto v = parse_id(header);
      if (!v) throw aj::BadRequest("Last-Event-ID: must be an event id (a non-negative integer)");
      start = *v;
    } else if (req.has_param("last_event_id")) {
      auto v = parse_id(req.get_param_value("last_event_id"));
      if (!v) throw aj::BadRequest("last_event_id: must be an event id (a non-negative integer)");
      start = *v;
    }
    if (s->streams.fetch_add(1) >= std::max(1, s->options.threads / 2)) {
      s->streams.fetch_sub(1);
      throw HttpError(503, "too many open event streams (" + std::to_string(std::max(1, s->options.threads / 2)) +
                               "); close one or resume later with Last-Event-ID");
    }
    // Counts the stream until httplib drops the provider (the client left or the server stops).
    std::shared_ptr<void> counted(nullptr, [s](void*) { s->streams.fetch_sub(1); });
    auto cursor = std::make_shared<std::uint64_t>(start);
    auto first = std::make_shared<bool>(true);
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider("text/event-stream", [s, cursor, first, counted](std::size_t, httplib::DataSink& sink) {
      std::string out;
      if (*first) {
        *first = false;
        out = "retry: 2000\n\n";
      }
      bool closed = false, gap = false;
      const auto events = s->hub.after(*cursor, s->options.sse_heartbeat, closed, gap);
      if (closed) {
        sink.done();
        return true;
      }
      if (gap && !events.empty())
        out += "event: gap\ndata: " +
               json{{"after", *cursor}, {"resumed_at", events.front().id}, {"detail", "older events left the buffer"}}.dump() +
               "\n\n";
      for (const auto& e : events) {
        out += "id: " + std::to_string(e.id) + "\nevent: " + e.type + "\ndata: " + e.data + "\n\n";
        *cursor = e.id;
      }
      if (events.empty()) out += ": keepalive\n\n";
      return sink.write(out.data(), out.size());
    });
  });
}

}  // namespace backstop
