// The local API over real loopback HTTP: authentication, path-precise validation errors, every
// endpoint's happy path against a simulated venue, the event stream's order and resume, and the
// promise behind a 503 (a request the loop never ran did nothing).
//
// The routing objects run on an EventLoop on a thread of this test with the system clock (the
// HTTP client waits in real time, so a manual clock would jump ahead under it).
#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "api/api_json.hpp"
#include "api/api_server.hpp"
#include "brokers/sim/sim_broker.hpp"
#include "core/error.hpp"

namespace backstop {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

// A market that stands still at 100.00 (bid 99.99, ask 100.01): resting orders stay resting,
// marketable ones fill, and no stop is ever crossed unless a test moves it.
class FlatPath final : public PricePath {
 public:
  std::optional<Quote> next(Timestamp now) override {
    Quote q;
    q.symbol = "AAPL";
    q.last = Price::parse("100.00");
    q.bid = Price::parse("99.99");
    q.ask = Price::parse("100.01");
    q.at = now;
    q.source = "flat";
    return q;
  }
};

Config test_config(const std::filesystem::path& dir) {
  Config c;
  c.origin = "api test";
  Instrument aapl;
  aapl.symbol = "AAPL";
  aapl.tick_size = TickSize(Price::parse("0.01"));
  c.instruments.push_back(aapl);
  StrategyConfig s;
  s.name = "api";
  s.kind = "external";
  s.instrument = "AAPL";
  s.quantity = 10;
  c.strategies.push_back(s);
  RouteConfig r;
  r.strategy = "api";
  r.brokers = {"sim"};
  c.routes.push_back(r);
  c.risk.max_orders_per_second = 1000;  // the tests send bursts; rate limits are not under test
  c.api.enabled = true;
  c.api.bind = "127.0.0.1";
  c.api.token_file = (dir / "api.token").string();
  return c;
}

SimBrokerOptions sim_options() {
  SimBrokerOptions o;
  o.name = "sim";
  o.tick_interval = 20ms;
  return o;
}

int& counter() {
  static int n = 0;
  return n;
}

// Orders, health, stop guard and reconciler on one simulated venue, as a Session assembles them.
struct Stack {
  explicit Stack(ApiServerOptions options = fast_options())
      : dir(std::filesystem::temp_directory_path() /
            ("backstop-api-" + std::to_string(::getpid()) + "-" + std::to_string(++counter()))),
        config((std::filesystem::create_directories(dir), test_config(dir))),
        faults(FaultProfile::named("none"), 1),
        venue(clock, faults),
        loop(clock),
        journal((dir / "j.db").string()),
        ids("A"),
        orders(loop, journal, ids),
        sim(sim_options(), loop, venue),
        health(loop, journal),
        router(loop, orders, health, journal, config.risk, {{"AAPL", config.instruments[0]}}),
        guard(loop, orders, journal, guard_settings(), {{"AAPL", config.instruments[0]}}),
        reconciler(loop, orders, journal),
        server(ApiContext{loop, orders, router, health, guard, reconciler, journal, config}, options) {
    venue.add_instrument("AAPL", TickSize(Price::parse("0.01")));
    sim.add_price_path(std::make_unique<FlatPath>());
    orders.add_broker(sim);
    for (const auto& r : config.routes) router.add_route(r);
    sim.subscribe_quotes({"AAPL"}, [this](const Quote& q) {
      router.on_quote(q);
      guard.on_quote(q);
      server.on_quote(q);
    });
    sim.start();
    server.start();  // before the loop thread: start() registers listeners on the loop's objects
    start_loop();
  }
  ~Stack() {
    server.stop();
    stop_loop();
    sim.stop();
    std::filesystem::remove_all(dir);
  }
  static ApiServerOptions fast_options() {
    ApiServerOptions o;
    o.port = 0;
    o.sse_heartbeat = 100ms;  // stream readers wake often enough to notice the test is done
    o.poll_interval = 50ms;
    return o;
  }
  static StopGuardSettings guard_settings() {
    StopGuardSettings g;
    // The tests' strategy "api" has a policy of its own, different from the default, so that the
    // stops listing shows which one each stop is under.
    g.policy = ProtectionPolicy::guard;
    g.strategy_policies["api"] = ProtectionPolicy::verify;
    g.verify_deadline = 2s;
    return g;
  }
  void start_loop() {
    loop.restart();
    loop_thread = std::thread([this] { loop.run_until(std::numeric_limits<Timestamp>::max()); });
  }
  void stop_loop() {
    loop.stop();
    if (loop_thread.joinable()) loop_thread.join();
  }
  std::string token() const {
    std::ifstream in(config.api.token_file);
    std::string t;
    in >> t;
    return t;
  }
  httplib::Client client(bool with_token = true) const {
    httplib::Client c("127.0.0.1", server.port());
    c.set_read_timeout(10, 0);
    c.set_connection_timeout(5, 0);
    if (with_token) c.set_bearer_token_auth(token());
    return c;
  }

  std::filesystem::path dir;
  Config config;
  SystemClock clock;
  FaultInjector faults;
  Venue venue;
  EventLoop loop;
  Journal journal;
  ClientOrderIdGenerator ids;
  OrderManager orders;
  SimBroker sim;
  BrokerHealth health;
  Router router;
  StopGuard guard;
  Reconciler reconciler;
  ApiServer server;
  std::thread loop_thread;
};

// The venue's own record, read with the loop paused (it is the loop's data).
std::vector<VenueArrival> arrivals(Stack& s) {
  s.stop_loop();
  auto a = s.venue.arrivals();
  s.start_loop();
  return a;
}

json body_of(const httplib::Result& r) {
  EXPECT_TRUE(r) << "no HTTP response";
  if (!r) return json();
  return json::parse(r->body, nullptr, false);
}

// Polls `get` until `done` holds or 10 s pass (the venue and verification run on their own
// timers; the API offers no "wait until" so tests poll the way a client would).
json eventually(const std::function<json()>& get, const std::function<bool(const json&)>& done) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  json last;
  while (std::chrono::steady_clock::now() < deadline) {
    last = get();
    if (done(last)) return last;
    std::this_thread::sleep_for(20ms);
  }
  ADD_FAILURE() << "condition not reached; last: " << last.dump();
  return last;
}

// The venue connected and its first quote seen (the router refuses market orders until it has a
// reference price for the notional check).
void wait_ready(httplib::Client& c) {
  eventually([&] { return body_of(c.Get("/api/v1/brokers")); },
             [](const json& b) { return b["brokers"].size() == 1 && b["brokers"][0]["connectivity"] == "connected"; });
  eventually([&] { return body_of(c.Get("/api/v1/quotes")); },
             [](const json& q) { return q["quotes"].contains("AAPL") && q["quotes"]["AAPL"]["last"] == "100"; });
}

json post(httplib::Client& c, const std::string& path, const json& body) {
  return body_of(c.Post(path.c_str(), body.dump(), "application/json"));
}

json limit_buy(const std::string& price, std::int64_t qty = 10) {
  return {{"strategy", "api"},
          {"order", {{"symbol", "AAPL"}, {"side", "buy"}, {"quantity", qty}, {"type", "limit"}, {"limit_price", price}}}};
}

TEST(ApiToken, CreatedWithMode0600AndReused) {
  const auto dir = std::filesystem::temp_directory_path() / ("backstop-api-token-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = (dir / "t").string();
  const std::string a = load_or_create_token(path);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(a.size(), 64u);
  EXPECT_EQ(load_or_create_token(path), a);  // the same token on the next start
  // A token readable by others is refused, with the fix in the message, and never used.
  ::chmod(path.c_str(), 0644);
  try {
    load_or_create_token(path);
    ADD_FAILURE() << "a 0644 token file was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("has mode 0644"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("chmod 600"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find(a), std::string::npos) << "the token leaked into the error";
  }
  std::filesystem::remove_all(dir);
}

TEST(ApiToken, ConstantTimeEqualCompares) {
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("abc", "abcd"));
  EXPECT_FALSE(constant_time_equal("", "a"));
}

TEST(ApiServer, RefusesNonLoopbackBindUnlessAllowed) {
  Stack s;
  Config c = s.config;
  c.api.bind = "0.0.0.0";
  ApiServer other(ApiContext{s.loop, s.orders, s.router, s.health, s.guard, s.reconciler, s.journal, c},
                  Stack::fast_options());
  try {
    other.start();
    ADD_FAILURE() << "bound to 0.0.0.0 without api.allow_non_loopback";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("allow_non_loopback"), std::string::npos) << e.what();
  }
}

TEST(ApiServer, EveryRouteNeedsTheToken) {
  Stack s;
  auto anon = s.client(false);
  for (const char* path : {"/api/v1/orders", "/api/v1/brokers", "/api/v1/positions", "/metrics", "/",
                           "/api/v1/openapi.yaml", "/api/v1/no-such-thing"}) {
    auto r = anon.Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 401) << path;
    EXPECT_EQ(r->get_header_value("WWW-Authenticate"), "Bearer realm=\"backstop\"") << path;
  }
  auto r = anon.Post("/api/v1/orders", limit_buy("99.00").dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);

  auto wrong = s.client(false);
  wrong.set_bearer_token_auth(std::string(64, 'a'));
  r = wrong.Get("/api/v1/orders");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(json::parse(r->body)["error"], "invalid token");
  EXPECT_EQ(r->body.find(s.token()), std::string::npos);

  // The query-string token works on the page and the stream only.
  r = anon.Get(("/api/v1/orders?token=" + s.token()).c_str());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  r = anon.Get(("/?token=" + s.token()).c_str());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);

  auto ok = s.client();
  r = ok.Get("/api/v1/orders");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  // Nothing was sent by the refused POST.
  EXPECT_TRUE(json::parse(r->body)["orders"].empty());
}

TEST(ApiServer, BadRequestsNameThePath) {
  Stack s;
  auto c = s.client();
  auto order = [](json fields) {
    json o{{"symbol", "AAPL"}, {"side", "buy"}, {"quantity", 10}, {"type", "limit"}, {"limit_price", "99.00"}};
    for (auto& [k, v] : fields.items()) {
      if (v.is_null()) o.erase(k);
      else o[k] = v;
    }
    return json{{"strategy", "api"}, {"order", o}};
  };
  const std::vector<std::pair<json, std::string>> cases = {
      {order({{"quantity", -5}}), "order.quantity: must be a positive integer"},
      {order({{"quantity", 1.5}}), "order.quantity: must be a positive integer"},
      {order({{"quantity", nullptr}}), "order.quantity: required"},
      {order({{"symbol", nullptr}}), "order.symbol: required"},
      {order({{"symbol", "MSFT"}}), "order.symbol: unknown instrument \"MSFT\" (configured: AAPL)"},
      {order({{"side", "long"}}), "order.side: must be \"buy\" or \"sell\", not \"long\""},
      {order({{"limit_price", 99.5}}), "order.limit_price: must be a decimal string such as \"101.25\" (prices are "
                                       "exact; JSON numbers are not)"},
      {order({{"limit_price", "99.005"}}), "order.limit_price: 99.005 is not a multiple of AAPL's tick size 0.01"},
      {order({{"limit_price", nullptr}}), "order.limit_price: required for a limit order"},
      {order({{"type", "stop"}, {"limit_price", nullptr}}), "order.stop_price: required for a stop order"},
      {order({{"stop_prize", "98.00"}}), "order.stop_prize: unknown field (allowed: client_order_id, limit_price, "
                                         "outside_rth, quantity, side, stop_price, symbol, tif, type)"},
      {order({{"client_order_id", std::string(23, 'x')}}), "order.client_order_id: longer than 22 characters"},
      {json{{"strategy", "nope"}, {"order", order({})["order"]}},
       "strategy: no route for strategy \"nope\" (routed strategies: api)"},
      {json{{"strategy", "api"}}, "order: required"},
      {json{{"strategy", "api"}, {"order", 3}}, "order: must be a JSON object"},
  };
  for (const auto& [body, error] : cases) {
    auto r = c.Post("/api/v1/orders", body.dump(), "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << body.dump();
    EXPECT_EQ(json::parse(r->body)["error"], error) << body.dump();
  }
  auto r = c.Post("/api/v1/orders", "{\"strategy\": ", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(json::parse(r->body)["error"], "body: not valid JSON (at byte 14)");

  json bracket{{"strategy", "api"},
               {"entry", {{"symbol", "AAPL"}, {"side", "buy"}, {"quantity", 10}}},
               {"take_profit", {{"symbol", "AAPL"}, {"side", "buy"}, {"quantity", 10}, {"type", "limit"}, {"limit_price", "101.00"}}},
               {"protective_stop", {{"symbol", "AAPL"}, {"side", "sell"}, {"quantity", 10}, {"type", "stop"}, {"stop_price", "99.00"}}}};
  r = c.Post("/api/v1/brackets", bracket.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(json::parse(r->body)["error"], "take_profit.side: must be the opposite of entry.side (buy)");
  bracket["take_profit"]["side"] = "sell";
  bracket["protective_stop"]["quantity"] = 0;
  r = c.Post("/api/v1/brackets", bracket.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(json::parse(r->body)["error"], "protective_stop.quantity: must be a positive integer");

  // Nothing that failed validation reached the router.
  EXPECT_TRUE(body_of(c.Get("/api/v1/orders"))["orders"].empty());
  EXPECT_TRUE(arrivals(s).empty());
}

TEST(ApiServer, OrderLifecycleThroughTheApi) {
  Stack s;
  auto c = s.client();
  wait_ready(c);

  // A resting limit order: acknowledged, then replaced, then cancelled.
  json r = post(c, "/api/v1/orders", limit_buy("99.00"));
  ASSERT_EQ(r["result"]["outcome"], "accepted") << r.dump();
  const std::string id = r["client_order_id"];
  EXPECT_EQ(r["order"]["state"], "submitted");
  EXPECT_EQ(r["order"]["limit_price"], "99");
  for (const char* t : {"created_at", "sent_at", "submitted_at"})
    EXPECT_TRUE(r["order"]["timestamps"].contains(t)) << t << " in " << r.dump();

  r = post(c, "/api/v1/orders/" + id + "/replace", json{{"order", {{"limit_price", "98.50"}}}});
  EXPECT_EQ(r["result"]["outcome"], "accepted") << r.dump();
  json o = eventually([&] { return body_of(c.Get(("/api/v1/orders/" + id).c_str())); },
                      [](const json& j) { return j["limit_price"] == "98.5"; });
  EXPECT_EQ(o["state"], "submitted");

  r = post(c, "/api/v1/orders/" + id + "/cancel", json::object());
  EXPECT_EQ(r["result"]["outcome"], "accepted") << r.dump();
  eventually([&] { return body_of(c.Get(("/api/v1/orders/" + id).c_str())); },
             [](const json& j) { return j["state"] == "cancelled" && j["timestamps"].contains("cancelled_at"); });
  auto again = c.Post(("/api/v1/orders/" + id + "/cancel").c_str(), "{}", "application/json");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 409);
  auto missing = c.Post("/api/v1/orders/NOPE-1/cancel", "{}", "application/json");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);

  // A client-chosen id makes a retried POST safe: the repeat is refused, not sent twice.
  json named = limit_buy("97.00");
  named["order"]["client_order_id"] = "client-1";
  EXPECT_EQ(post(c, "/api/v1/orders", named)["client_order_id"], "client-1");
  auto dup = c.Post("/api/v1/orders", named.dump(), "application/json");
  ASSERT_TRUE(dup);
  EXPECT_EQ(dup->status, 409);
  std::size_t sent = 0;
  for (const auto& a : arrivals(s)) sent += a.client_order_id == "client-1";
  EXPECT_EQ(sent, 1u);

  // A bracket: entry fills at the market, both exits work, the stop is read back (verified).
  json bracket{{"strategy", "api"},
               {"entry", {{"symbol", "AAPL"}, {"side", "buy"}, {"quantity", 5}}},
               {"take_profit", {{"symbol", "AAPL"}, {"side", "sell"}, {"quantity", 5}, {"type", "limit"}, {"limit_price", "105.00"}}},
               {"protective_stop", {{"symbol", "AAPL"}, {"side", "sell"}, {"quantity", 5}, {"type", "stop"}, {"stop_price", "95.00"}}}};
  r = post(c, "/api/v1/brackets", bracket);
  ASSERT_EQ(r["orders"].size(), 3u) << r.dump();
  const std::string stop_id = r["orders"][2]["client_order_id"];
  EXPECT_EQ(r["orders"][2]["tif"], "gtc");  // a stop's default
  json stops = eventually([&] { return body_of(c.Get("/api/v1/stops")); }, [&](const json& j) {
    for (const auto& st : j["stops"])
      if (st["client_order_id"] == stop_id && st["verification"] == "verified") return true;
    return false;
  });
  EXPECT_EQ(stops["policy"], "guard");             // the default
  EXPECT_EQ(stops["policies"]["api"], "verify");  // the strategy's own
  for (const auto& st : stops["stops"]) {
    if (st["client_order_id"] == stop_id) {
      EXPECT_EQ(st["policy"], "verify") << st.dump();
    }
  }
  json listed = eventually([&] { return body_of(c.Get("/api/v1/orders?state=working")); }, [&](const json& j) {
    for (const auto& ord : j["orders"])
      if (ord["client_order_id"] == stop_id) return ord["stop"].is_object() && ord["stop"]["verification"] == "verified";
    return false;
  });
  for (const auto& ord : listed["orders"]) EXPECT_TRUE(ord["working"].get<bool>()) << ord.dump();

  json positions = eventually([&] { return body_of(c.Get("/api/v1/positions?broker_view=true")); }, [](const json& j) {
    const auto& p = j["brokers"]["sim"]["positions"];
    return p.size() == 1 && p[0]["quantity"] == 5;
  });
  EXPECT_EQ(positions["brokers"]["sim"]["positions"][0]["symbol"], "AAPL");
  EXPECT_EQ(positions["brokers"]["sim"]["broker_view"]["outcome"], "accepted") << positions.dump();

  json brokers = body_of(c.Get("/api/v1/brokers"));
  ASSERT_EQ(brokers["brokers"].size(), 1u);
  EXPECT_EQ(brokers["brokers"][0]["name"], "sim");
  EXPECT_EQ(brokers["brokers"][0]["state"], "up");
  EXPECT_EQ(brokers["brokers"][0]["circuit"], "closed");
  EXPECT_EQ(brokers["brokers"][0]["routes"][0]["strategy"], "api");

  json quotes = body_of(c.Get("/api/v1/quotes"));
  EXPECT_EQ(quotes["quotes"]["AAPL"]["last"], "100") << quotes.dump();
  EXPECT_TRUE(quotes["quotes"]["AAPL"]["last_fill"].is_object()) << quotes.dump();

  EXPECT_TRUE(body_of(c.Get("/api/v1/divergences"))["divergences"].is_array());

  auto metrics = c.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_NE(metrics->body.find("backstop_orders{broker=\"sim\",state=\"cancelled\"} 1\n"), std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("# TYPE backstop_submit_to_ack_seconds histogram"), std::string::npos);
  EXPECT_NE(metrics->body.find("backstop_submit_to_ack_seconds_bucket{broker=\"sim\",le=\"+Inf\"}"), std::string::npos);
  EXPECT_NE(metrics->body.find("backstop_stops{broker=\"sim\",verification=\"verified\"} 1\n"), std::string::npos);
  EXPECT_NE(metrics->body.find("backstop_ghost_stops_total{broker=\"sim\"} 0\n"), std::string::npos);
  EXPECT_NE(metrics->body.find("backstop_orders{broker=\"sim\",state=\"held\"} 0\n"), std::string::npos);
  EXPECT_NE(metrics->body.find("backstop_broker_health{broker=\"sim\",state=\"up\"} 1\n"), std::string::npos);
  EXPECT_NE(metrics->body.find("backstop_divergences_total{broker=\"sim\",kind=\"missed_fill\"} 0\n"), std::string::npos);

  auto rel = c.Get("/api/v1/reliability");
  ASSERT_TRUE(rel);
#ifdef BACKSTOP_API_TEST_RELIABILITY
  ASSERT_EQ(rel->status, 200) << rel->body;
  json report = json::parse(rel->body);
  EXPECT_EQ(report["schema_version"], 1);
  EXPECT_NE(rel->body.find("\"sim\""), std::string::npos);
  auto bad = c.Get("/api/v1/reliability?from=yesterday");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(json::parse(bad->body)["error"].get<std::string>().rfind("from: ", 0), 0u) << bad->body;
#endif

  auto spec = c.Get("/api/v1/openapi.yaml");
  ASSERT_TRUE(spec);
  EXPECT_EQ(spec->body.rfind("openapi: 3", 0), 0u);
  auto page = c.Get("/");
  ASSERT_TRUE(page);
  EXPECT_NE(page->body.find("<title>Backstop</title>"), std::string::npos);
  EXPECT_EQ(page->body.find("@DASHBOARD_JS@"), std::string::npos) << "the script was not inlined";
}

// Reads the event stream on its own thread, collecting events until `stop`.
struct StreamReader {
  StreamReader(const Stack& s, const std::string& path, httplib::Headers headers = {}) {
    thread = std::thread([this, &s, path, headers] {
      auto c = s.client();
      c.Get(path.c_str(), headers, [this](const char* data, std::size_t n) {
        // An event stream begins with its retry line (an error body would not).
        if (buffer.empty() && std::string_view(data, n).rfind("retry:", 0) == 0) connected = true;
        buffer.append(data, n);
        std::size_t end;
        while ((end = buffer.find("\n\n")) != std::string::npos) {
          const std::string block = buffer.substr(0, end);
          buffer.erase(0, end + 2);
          json ev{{"id", nullptr}};
          std::size_t pos = 0;
          while (pos < block.size()) {
            auto eol = block.find('\n', pos);
            if (eol == std::string::npos) eol = block.size();
            const std::string line = block.substr(pos, eol - pos);
            pos = eol + 1;
            if (line.rfind("id: ", 0) == 0) ev["id"] = std::stoull(line.substr(4));
            if (line.rfind("event: ", 0) == 0) ev["event"] = line.substr(7);
            if (line.rfind("data: ", 0) == 0) ev["data"] = json::parse(line.substr(6));
          }
          if (ev.contains("event")) {
            std::lock_guard lock(mutex);
            events.push_back(ev);
          }
        }
        return !stop.load();
      });
    });
  }
  ~StreamReader() { finish(); }
  void finish() {
    stop = true;
    if (thread.joinable()) thread.join();
  }
  std::vector<json> snapshot() {
    std::lock_guard lock(mutex);
    return events;
  }
  std::string buffer;
  std::mutex mutex;
  std::vector<json> events;
  std::atomic<bool> stop{false};
  std::atomic<bool> connected{false};
  std::thread thread;
};

TEST(ApiServer, EventStreamDeliversEventsInOrderAndResumes) {
  Stack s;
  auto c = s.client();
  wait_ready(c);
  StreamReader reader(s, "/api/v1/events?last_event_id=0");

  json r = post(c, "/api/v1/orders",
                json{{"strategy", "api"}, {"order", {{"symbol", "AAPL"}, {"side", "buy"}, {"quantity", 3}}}});
  const std::string id = r["client_order_id"];
  // A resting stop: its read-back at the venue is a "stop" event (verification has no listener;
  // the server's poll must notice it).
  r = post(c, "/api/v1/orders", json{{"strategy", "api"},
                                     {"order", {{"symbol", "AAPL"}, {"side", "sell"}, {"quantity", 3}, {"type", "stop"},
                                                {"stop_price", "90.00"}}}});
  const std::string stop_id = r["client_order_id"];
  // A health change, through the same listener BrokerHealth calls for any observation.
  s.loop.post([&] { s.health.stop_failure("sim", "test: verification failure"); });
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  std::vector<json> events;
  auto has = [&](const std::string& type, const std::function<bool(const json&)>& match) {
    for (const auto& e : events)
      if (e["event"] == type && match(e["data"])) return true;
    return false;
  };
  auto has_fill = [&] { return has("fill", [&](const json& d) { return d["client_order_id"] == id; }); };
  auto has_filled = [&] { return has("order", [&](const json& d) { return d["client_order_id"] == id && d["state"] == "filled"; }); };
  auto has_verified = [&] {
    return has("stop", [&](const json& d) { return d["client_order_id"] == stop_id && d["verification"] == "verified"; });
  };
  auto has_health = [&] { return has("health", [](const json& d) { return d["broker"] == "sim" && d["to"] == "degraded"; }); };
  while (std::chrono::steady_clock::now() < deadline) {
    events = reader.snapshot();
    if (has_filled() && has_fill() && has_verified() && has_health()) break;
    std::this_thread::sleep_for(20ms);
  }
  reader.finish();
  ASSERT_TRUE(has_fill()) << "no fill event";
  EXPECT_TRUE(has_verified()) << "no stop verification event";
  EXPECT_TRUE(has_health()) << "no health event";

  // Ids count up by one from the first event: nothing lost, nothing reordered.
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front()["id"], 1);
  for (std::size_t i = 1; i < events.size(); ++i) EXPECT_EQ(events[i]["id"], events[i - 1]["id"].get<std::uint64_t>() + 1);
  // The order's states arrive in lifecycle order, ending filled.
  std::vector<std::string> states;
  for (const auto& e : events)
    if (e["event"] == "order" && e["data"]["client_order_id"] == id) states.push_back(e["data"]["state"]);
  ASSERT_GE(states.size(), 2u);
  EXPECT_EQ(states.back(), "filled");
  const std::vector<std::string> lifecycle = {"pre_sent", "pending", "submitted", "partially_filled", "filled"};
  std::size_t last = 0;
  for (const auto& st : states) {
    const auto at = std::find(lifecycle.begin(), lifecycle.end(), st) - lifecycle.begin();
    EXPECT_GE(static_cast<std::size_t>(at), last) << st << " after " << lifecycle[last];
    last = static_cast<std::size_t>(at);
  }

  // Resume: Last-Event-ID picks up right after the given event.
  const std::uint64_t resume_after = events[events.size() / 2]["id"];
  StreamReader resumed(s, "/api/v1/events", {{"Last-Event-ID", std::to_string(resume_after)}});
  std::vector<json> again;
  const auto deadline2 = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline2 && (again = resumed.snapshot()).empty())
    std::this_thread::sleep_for(20ms);
  resumed.finish();
  ASSERT_FALSE(again.empty());
  EXPECT_EQ(again.front()["id"], resume_after + 1);
  EXPECT_EQ(again.front(), events[events.size() / 2 + 1]);
}

TEST(ApiServer, EventStreamsCannotTakeEveryThread) {
  ApiServerOptions o = Stack::fast_options();
  o.threads = 4;  // at most 2 streams
  Stack s(o);
  StreamReader a(s, "/api/v1/events"), b(s, "/api/v1/events");
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!(a.connected && b.connected) && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(a.connected && b.connected);
  auto c = s.client();
  auto third = c.Get("/api/v1/events");
  ASSERT_TRUE(third);
  EXPECT_EQ(third->status, 503);
  // REST still answers while both streams are open.
  auto r = c.Get("/api/v1/brokers");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  a.finish();
  // A closed stream frees its place (noticed at its next write, within one heartbeat).
  const auto deadline2 = std::chrono::steady_clock::now() + 10s;
  bool admitted = false;
  while (!admitted && std::chrono::steady_clock::now() < deadline2) {
    StreamReader again(s, "/api/v1/events");
    const auto until = std::chrono::steady_clock::now() + 300ms;
    while (!again.connected && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(10ms);
    admitted = again.connected;
  }
  EXPECT_TRUE(admitted);
}

TEST(ApiServer, AnUnansweredRequestDoesNothing) {
  ApiServerOptions o = Stack::fast_options();
  o.loop_timeout = 300ms;
  Stack s(o);
  auto c = s.client();
  wait_ready(c);
  s.stop_loop();  // the loop is busy elsewhere (here: not running at all)
  auto r = c.Post("/api/v1/orders", limit_buy("99.00").dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  s.start_loop();
  // The abandoned submit must not run late: a client that saw 503 may safely send again.
  json orders = body_of(c.Get("/api/v1/orders"));
  EXPECT_TRUE(orders["orders"].empty()) << orders.dump();
  EXPECT_TRUE(arrivals(s).empty());
}

}  // namespace
}  // namespace backstop
