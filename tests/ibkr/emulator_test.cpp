// The IBKR gateway emulator over real HTTPS and WSS on 127.0.0.1, driven by independent plain
// clients (cpp-httplib, Beast): the emulator must look like the gateway to any client.
#define CPPHTTPLIB_OPENSSL_SUPPORT
#include <httplib.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <gtest/gtest.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "emulators/ibkr/ibkr_gateway_emulator.hpp"

namespace backstop {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;

constexpr const char* kAcct = "DU1234567";
constexpr std::int64_t kAapl = 265598;
constexpr std::int64_t kEs = 495512557;

IbkrEmulatorOptions quiet_options() {
  IbkrEmulatorOptions o;
  o.pacing = false;  // most tests fire requests faster than 10/s; pacing has its own test
  o.prompts = {};
  o.ws_ready_delay = 50ms;
  o.cancel_delay = 50ms;
  return o;
}

struct Reply {
  int status = 0;
  json body;
  std::string raw;
};

class Gateway {
 public:
  explicit Gateway(IbkrEmulatorOptions o = quiet_options()) : emu(std::move(o)) {
    emu.start(0);
    cli = std::make_unique<httplib::SSLClient>("127.0.0.1", emu.port());
    cli->enable_server_certificate_verification(false);  // test only: self-signed, like the gateway
    cli->set_connection_timeout(5, 0);
    cli->set_read_timeout(5, 0);
  }

  Reply wrap(const httplib::Result& r) {
    Reply out;
    if (!r) return out;
    out.status = r->status;
    out.raw = r->body;
    out.body = json::parse(r->body, nullptr, false);
    return out;
  }
  Reply get(const std::string& path) { return wrap(cli->Get(("/v1/api" + path).c_str())); }
  Reply post(const std::string& path, const json& body = json::object()) {
    return wrap(cli->Post(("/v1/api" + path).c_str(), body.dump(), "application/json"));
  }
  Reply del(const std::string& path) { return wrap(cli->Delete(("/v1/api" + path).c_str())); }
  Reply control(const std::string& path, const json& body = json::object()) {
    return wrap(cli->Post(("/__emulator/" + path).c_str(), body.dump(), "application/json"));
  }
  json log() { return wrap(cli->Get("/__emulator/log")).body; }
  std::size_t faults(const std::string& kind) {
    std::size_t n = 0;
    const json all = log();  // named: a range-for over a temporary's member would dangle
    for (const auto& f : all["faults"]) n += f["kind"] == kind;
    return n;
  }
  std::size_t events(const std::string& kind) {
    std::size_t n = 0;
    const json all = log();
    for (const auto& f : all["events"]) n += f["kind"] == kind;
    return n;
  }
  Reply place(const json& tickets) { return post(std::string("/iserver/account/") + kAcct + "/orders", json{{"orders", tickets}}); }
  std::string place_one(const json& ticket) {
    auto r = place(json::array({ticket}));
    EXPECT_EQ(r.status, 200) << r.raw;
    EXPECT_TRUE(r.body.is_array()) << r.raw;
    return r.body.is_array() ? r.body[0]["order_id"].get<std::string>() : "";
  }
  json status(const std::string& id) { return get("/iserver/account/order/status/" + id).body; }
  json live_row(const std::string& id) {
    const json live = get("/iserver/account/orders").body;
    for (const auto& o : live["orders"])
      if (std::to_string(o["orderId"].get<std::int64_t>()) == id) return o;
    return nullptr;
  }
  void quote(std::int64_t conid, const std::string& bid, const std::string& ask, const std::string& last) {
    auto r = control("quote", {{"conid", conid}, {"bid", bid}, {"ask", ask}, {"last", last}});
    ASSERT_EQ(r.status, 200) << r.raw;
  }

  IbkrGatewayEmulator emu;
  std::unique_ptr<httplib::SSLClient> cli;
};

json lmt(const std::string& coid, const std::string& side, double price, int qty = 10) {
  return {{"conid", kAapl}, {"orderType", "LMT"}, {"price", price}, {"side", side}, {"tif", "GTC"}, {"quantity", qty}, {"cOID", coid}};
}
json stp(const std::string& coid, const std::string& side, double stop, int qty = 10) {
  return {{"conid", kAapl}, {"orderType", "STP"}, {"price", stop}, {"side", side}, {"tif", "GTC"}, {"quantity", qty}, {"cOID", coid}};
}

// A WebSocket client on its own io_context thread; frames are queued for the test to read.
class WsClient {
 public:
  WsClient(std::uint16_t port, const std::string& cookie) {
    ctx_.set_verify_mode(asio::ssl::verify_none);  // test only
    asio::ip::tcp::resolver resolver(ioc_);
    beast::get_lowest_layer(ws_).connect(resolver.resolve("127.0.0.1", std::to_string(port)));
    ws_.next_layer().handshake(asio::ssl::stream_base::client);
    ws_.set_option(websocket::stream_base::decorator([cookie](websocket::request_type& req) {
      if (!cookie.empty()) req.set(beast::http::field::cookie, cookie);
    }));
    ws_.handshake("127.0.0.1", "/v1/api/ws");
    read_loop();
    thread_ = std::thread([this] { ioc_.run(); });
  }
  ~WsClient() {
    asio::post(ioc_, [this] {
      beast::get_lowest_layer(ws_).close();
    });
    thread_.join();
  }

  void send(const std::string& text) {
    std::promise<void> done;
    asio::post(ioc_, [&] {
      beast::error_code ec;
      ws_.text(true);
      ws_.write(asio::buffer(text), ec);  // brief, on the io thread: no concurrent write
      done.set_value();
    });
    done.get_future().wait();
  }

  // The next frame matching `pred`, skipping others; nullopt on timeout.
  std::optional<json> next(const std::function<bool(const json&)>& pred, std::chrono::milliseconds timeout = 2000ms) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::unique_lock lock(mutex_);
    while (true) {
      while (!frames_.empty()) {
        json f = std::move(frames_.front());
        frames_.pop_front();
        if (pred(f)) return f;
      }
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && frames_.empty()) return std::nullopt;
    }
  }
  static std::function<bool(const json&)> topic(const std::string& t) {
    return [t](const json& f) { return f.is_object() && f.value("topic", "") == t; };
  }

 private:
  void read_loop() {
    ws_.async_read(buffer_, [this](beast::error_code ec, std::size_t) {
      if (ec) return;
      auto j = json::parse(beast::buffers_to_string(buffer_.data()), nullptr, false);
      buffer_.consume(buffer_.size());
      {
        std::lock_guard lock(mutex_);
        frames_.push_back(std::move(j));
      }
      cv_.notify_all();
      read_loop();
    });
  }

  asio::io_context ioc_;
  asio::ssl::context ctx_{asio::ssl::context::tls_client};
  websocket::stream<beast::ssl_stream<beast::tcp_stream>> ws_{ioc_, ctx_};
  beast::flat_buffer buffer_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<json> frames_;
};

std::string session_cookie(Gateway& g) {
  return "api=" + json{{"session", g.post("/tickle").body["session"]}}.dump();
}

// ------------------------------------------------------------------------------------------------

TEST(IbkrEmulator, SessionStatusTickleAndSsodh) {
  Gateway g;
  auto st = g.post("/iserver/auth/status");
  ASSERT_EQ(st.status, 200);
  EXPECT_TRUE(st.body["authenticated"]);
  EXPECT_TRUE(st.body["connected"]);
  EXPECT_FALSE(st.body["competing"]);
  auto t = g.post("/tickle");
  EXPECT_EQ(t.body["session"].get<std::string>().size(), 32u);
  EXPECT_TRUE(t.body["iserver"]["authStatus"]["authenticated"]);
  EXPECT_EQ(g.post("/iserver/auth/ssodh/init", {{"publish", false}, {"compete", true}}).status, 500);
  EXPECT_EQ(g.post("/iserver/auth/ssodh/init", {{"publish", true}, {"compete", true}}).status, 200);
  EXPECT_EQ(g.post("/iserver/reauthenticate").body["message"], "triggered");
}

TEST(IbkrEmulator, BeforeLoginRedirectsAnd401sUntilControlLogin) {
  auto o = quiet_options();
  o.start_logged_in = false;
  Gateway g(o);
  EXPECT_EQ(g.post("/iserver/auth/status").status, 302);
  EXPECT_EQ(g.get("/iserver/accounts").status, 401);
  EXPECT_EQ(g.post("/tickle").status, 401);
  ASSERT_EQ(g.control("login").status, 200);
  auto st = g.post("/iserver/auth/status");
  ASSERT_EQ(st.status, 200);
  EXPECT_TRUE(st.body["authenticated"]);
  EXPECT_EQ(g.post("/logout").body["status"], true);
  EXPECT_EQ(g.get("/iserver/accounts").status, 401);
}

TEST(IbkrEmulator, SessionTimeoutFaultDropsAuthenticationUntilSsodhInit) {
  Gateway g;
  g.get("/iserver/accounts");
  ASSERT_EQ(g.control("faults", {{"extra", {{"ibkr_session_timeout", 1.0}}}}).status, 200);
  EXPECT_EQ(g.get("/iserver/account/orders").status, 401);
  ASSERT_EQ(g.control("faults", {{"profile", "none"}}).status, 200);
  auto st = g.post("/iserver/auth/status");
  EXPECT_FALSE(st.body["authenticated"]);
  EXPECT_TRUE(st.body["connected"]);
  EXPECT_EQ(g.get("/portfolio/accounts").status, 200);  // the read-only session still works
  g.post("/iserver/auth/ssodh/init", {{"publish", true}, {"compete", true}});
  EXPECT_TRUE(g.post("/iserver/auth/status").body["authenticated"]);
  // A new brokerage session must be primed with /iserver/accounts again.
  EXPECT_EQ(g.get("/iserver/account/orders").status, 500);
  EXPECT_EQ(g.faults("session_timeout"), 1u);
}

TEST(IbkrEmulator, AccountsMustBeQueriedBeforeOrders) {
  Gateway g;
  auto r = g.place(json::array({lmt("c1", "BUY", 185)}));
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.body["error"], "Please query /accounts first");
  auto a = g.get("/iserver/accounts");
  EXPECT_EQ(a.body["accounts"][0], kAcct);
  EXPECT_EQ(g.place(json::array({lmt("c1", "BUY", 185)})).status, 200);
  EXPECT_EQ(g.post("/iserver/account", {{"acctId", kAcct}}).body["set"], true);
}

TEST(IbkrEmulator, ContractLookups) {
  Gateway g;
  auto s = g.get("/iserver/secdef/search?symbol=AAPL");
  EXPECT_EQ(s.body[0]["conid"], "265598");
  EXPECT_EQ(g.get("/trsrv/stocks?symbols=AAPL").body["AAPL"][0]["contracts"][0]["conid"], kAapl);
  EXPECT_EQ(g.get("/trsrv/futures?symbols=ES").body["ES"][0]["conid"], kEs);
  auto ir = g.get("/iserver/contract/495512557/info-and-rules");
  EXPECT_EQ(ir.body["rules"]["increment"], 0.25);
  EXPECT_EQ(g.post("/iserver/contract/rules", {{"conid", kAapl}, {"isBuy", true}}).body["increment"], 0.01);
}

TEST(IbkrEmulator, EachOrderTypeWithItsPriceFields) {
  Gateway g;
  g.get("/iserver/accounts");
  const auto mkt = g.place_one({{"conid", kAapl}, {"orderType", "MKT"}, {"side", "BUY"}, {"tif", "DAY"}, {"quantity", 5}, {"cOID", "m1"}});
  EXPECT_EQ(g.status(mkt)["order_status"], "Filled");
  EXPECT_EQ(g.status(mkt)["average_price"], "190.01");
  const auto l = g.place_one(lmt("l1", "BUY", 185.5));
  EXPECT_EQ(g.status(l)["order_status"], "Submitted");
  EXPECT_EQ(g.live_row(l)["price"], "185.50");
  // STP: the stop is in `price`; IB-held stops rest PreSubmitted until triggered.
  const auto s = g.place_one(stp("s1", "SELL", 180));
  EXPECT_EQ(g.status(s)["order_status"], "PreSubmitted");
  EXPECT_EQ(g.status(s)["stop_price"], "180.00");
  // STOP_LIMIT: limit in `price`, stop in `auxPrice`.
  const auto sl = g.place_one({{"conid", kAapl}, {"orderType", "STOP_LIMIT"}, {"price", 179.5}, {"auxPrice", 180},
                               {"side", "SELL"}, {"tif", "GTC"}, {"quantity", 5}, {"cOID", "sl1"}, {"outsideRTH", true}});
  EXPECT_EQ(g.status(sl)["limit_price"], "179.50");
  EXPECT_EQ(g.status(sl)["stop_price"], "180.00");
  EXPECT_EQ(g.live_row(sl)["outsideRTH"], true);
  // STP with the stop only in auxPrice is refused (api-notes section 4 #1).
  auto bad = g.place(json::array({{{"conid", kAapl}, {"orderType", "STP"}, {"auxPrice", 180}, {"side", "SELL"}, {"tif", "GTC"}, {"quantity", 1}}}));
  EXPECT_TRUE(bad.body.contains("error")) << bad.raw;
  // The stop triggers and fills when the price goes through it.
  g.quote(kAapl, "179.90", "179.91", "179.90");
  EXPECT_EQ(g.status(s)["order_status"], "Filled");
  // US futures need manualIndicator + extOperator.
  json es{{"conid", kEs}, {"orderType", "LMT"}, {"price", 5990.25}, {"side", "BUY"}, {"tif", "GTC"}, {"quantity", 1}, {"cOID", "f1"}};
  EXPECT_TRUE(g.place(json::array({es})).body.contains("error"));
  es["manualIndicator"] = false;
  es["extOperator"] = "algo1";
  EXPECT_FALSE(g.place_one(es).empty());
}

TEST(IbkrEmulator, ReplyLoopConfirmRefuseStaleAndSuppress) {
  auto o = quiet_options();
  o.prompts = {"o163", "o10331"};
  Gateway g(o);
  g.get("/iserver/accounts");
  // A stop-limit far from the market raises the price-cap question, then the stop warning.
  json far{{"conid", kAapl}, {"orderType", "STOP_LIMIT"}, {"price", 150}, {"auxPrice", 151}, {"side", "SELL"},
           {"tif", "GTC"}, {"quantity", 5}, {"cOID", "r1"}};
  auto first = g.place(json::array({far}));
  ASSERT_TRUE(first.body.is_array()) << first.raw;
  EXPECT_EQ(first.body[0]["messageIds"][0], "o163");
  const std::string id1 = first.body[0]["id"];
  auto second = g.post("/iserver/reply/" + id1, {{"confirmed", true}});
  EXPECT_EQ(second.body[0]["messageIds"][0], "o10331");
  const std::string id2 = second.body[0]["id"];
  EXPECT_NE(id1, id2);
  auto stale = g.post("/iserver/reply/" + id1, {{"confirmed", true}});
  EXPECT_EQ(stale.status, 400);
  EXPECT_EQ(stale.body["error"], "reply id not found: '" + id1 + "'");
  auto done = g.post("/iserver/reply/" + id2, {{"confirmed", true}});
  ASSERT_TRUE(done.body[0].contains("order_id")) << done.raw;
  EXPECT_EQ(done.body[0]["order_status"], "PreSubmitted");
  EXPECT_EQ(done.body[0]["encrypt_message"], "1");

  // confirmed:false discards the order.
  auto q = g.place(json::array({stp("r2", "SELL", 180)}));
  auto refused = g.post("/iserver/reply/" + q.body[0]["id"].get<std::string>(), {{"confirmed", false}});
  EXPECT_TRUE(refused.body.contains("error"));
  EXPECT_EQ(g.get("/iserver/account/orders").body["orders"].size(), 1u);

  // Suppressed questions are skipped; reset brings them back.
  EXPECT_EQ(g.post("/iserver/questions/suppress", {{"messageIds", {"o10331"}}}).body["status"], "submitted");
  EXPECT_TRUE(g.place(json::array({stp("r3", "SELL", 180)})).body[0].contains("order_id"));
  g.post("/iserver/questions/suppress/reset");
  EXPECT_TRUE(g.place(json::array({stp("r4", "SELL", 180)})).body[0].contains("messageIds"));
}

TEST(IbkrEmulator, DuplicateCoidIsRefusedAndLogged) {
  Gateway g;
  g.get("/iserver/accounts");
  g.place_one(lmt("dup1", "BUY", 185));
  auto again = g.place(json::array({lmt("dup1", "BUY", 185)}));
  ASSERT_TRUE(again.body.contains("error")) << again.raw;
  EXPECT_NE(again.body["error"].get<std::string>().find("already registered"), std::string::npos);
  std::size_t dups = 0;
  const json log = g.log();
  for (const auto& e : log["orders"]) dups += e["duplicate"].get<bool>() && e["cOID"] == "dup1";
  EXPECT_EQ(dups, 1u);
  EXPECT_EQ(g.get("/iserver/account/orders").body["orders"].size(), 1u);
}

TEST(IbkrEmulator, BracketWithParentIdAndOcaChildren) {
  Gateway g;
  g.get("/iserver/accounts");
  json parent = lmt("br1", "BUY", 189);
  json sl = stp("", "SELL", 185);
  sl.erase("cOID");
  sl["parentId"] = "br1";
  json tp = lmt("", "SELL", 195);
  tp.erase("cOID");
  tp["parentId"] = "br1";
  auto r = g.place(json::array({parent, sl, tp}));
  ASSERT_EQ(r.body.size(), 3u) << r.raw;
  const std::string pid = r.body[0]["order_id"], sid = r.body[1]["order_id"], tid = r.body[2]["order_id"];
  EXPECT_EQ(g.live_row(sid)["parentId"], std::stoll(pid));
  EXPECT_EQ(g.live_row(sid)["status"], "PreSubmitted");
  EXPECT_EQ(g.live_row(tid)["status"], "PreSubmitted");  // held until the entry fills
  g.quote(kAapl, "188.99", "189.00", "189.00");
  EXPECT_EQ(g.status(pid)["order_status"], "Filled");
  EXPECT_EQ(g.status(sid)["order_status"], "PreSubmitted");
  EXPECT_EQ(g.status(tid)["order_status"], "Submitted");
  // Cancelling one child cancels its sibling.
  EXPECT_EQ(g.del(std::string("/iserver/account/") + kAcct + "/order/" + tid).body["msg"], "Request was submitted");
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(g.status(tid)["order_status"], "Cancelled");
  EXPECT_EQ(g.status(sid)["order_status"], "Cancelled");
}

TEST(IbkrEmulator, ModifyAndAsynchronousCancel) {
  Gateway g;
  g.get("/iserver/accounts");
  const auto id = g.place_one(lmt("mod1", "BUY", 180));
  auto m = g.post(std::string("/iserver/account/") + kAcct + "/order/" + id, lmt("mod1", "BUY", 181.25));
  ASSERT_TRUE(m.body.is_array()) << m.raw;
  EXPECT_EQ(g.live_row(id)["price"], "181.25");
  auto missing = g.post(std::string("/iserver/account/") + kAcct + "/order/999", lmt("x", "BUY", 181));
  EXPECT_EQ(missing.body["error"], "OrderID 999 doesn't exist");

  auto c = g.del(std::string("/iserver/account/") + kAcct + "/order/" + id);
  EXPECT_EQ(c.body["msg"], "Request was submitted");
  EXPECT_EQ(c.body["order_id"], id);
  EXPECT_EQ(g.status(id)["order_status"], "PendingCancel");  // not yet: the cancel lands later
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(g.status(id)["order_status"], "Cancelled");
  EXPECT_EQ(g.del(std::string("/iserver/account/") + kAcct + "/order/1").body["error"], "OrderID 1 doesn't exist");
}

TEST(IbkrEmulator, LiveOrdersQuirks) {
  Gateway g;
  g.get("/iserver/accounts");
  const auto l = g.place_one(lmt("lo1", "BUY", 180));
  g.place_one(stp("lo2", "SELL", 170));
  auto forced = g.get("/iserver/account/orders?force=true");
  EXPECT_TRUE(forced.body["orders"].empty());
  EXPECT_EQ(g.get("/iserver/account/orders").body["orders"].size(), 2u);
  EXPECT_EQ(g.get("/iserver/account/orders?filters=Submitted").status, 500);  // capitalised
  auto f = g.get("/iserver/account/orders?filters=submitted");
  ASSERT_EQ(f.body["orders"].size(), 1u);
  EXPECT_EQ(std::to_string(f.body["orders"][0]["orderId"].get<std::int64_t>()), l);
  EXPECT_EQ(f.body["orders"][0]["order_ref"], "lo1");
  EXPECT_EQ(g.events("sor_stopped_by_filters"), 1u);
}

TEST(IbkrEmulator, SnapshotPreflightThenPrices) {
  Gateway g;
  EXPECT_EQ(g.get("/iserver/marketdata/snapshot?conids=265598&fields=31,84,86").status, 500);  // accounts first
  g.get("/iserver/accounts");
  auto first = g.get("/iserver/marketdata/snapshot?conids=265598&fields=31,84,86,88");
  ASSERT_EQ(first.body.size(), 1u);
  EXPECT_FALSE(first.body[0].contains("31"));
  EXPECT_EQ(first.body[0]["conidEx"], "265598");
  auto second = g.get("/iserver/marketdata/snapshot?conids=265598");
  EXPECT_EQ(second.body[0]["31"], "190.00");
  EXPECT_EQ(second.body[0]["86"], "190.01");
  EXPECT_EQ(second.body[0]["88"], "1,000");
}

TEST(IbkrEmulator, PositionsAreCachedUntilInvalidated) {
  Gateway g;
  g.get("/iserver/accounts");
  g.get("/portfolio/accounts");
  json mkt{{"conid", kAapl}, {"orderType", "MKT"}, {"side", "BUY"}, {"tif", "DAY"}, {"quantity", 5}, {"cOID", "p1"}};
  g.place_one(mkt);
  EXPECT_EQ(g.get(std::string("/portfolio/") + kAcct + "/positions/0").body[0]["position"], 5.0);
  mkt["cOID"] = "p2";
  g.place_one(mkt);
  EXPECT_EQ(g.get(std::string("/portfolio/") + kAcct + "/positions/0").body[0]["position"], 5.0);  // cached
  g.post(std::string("/portfolio/") + kAcct + "/positions/invalidate");
  EXPECT_EQ(g.get(std::string("/portfolio/") + kAcct + "/positions/0").body[0]["position"], 10.0);
}

TEST(IbkrEmulator, PacingAnswers429AndLogsIt) {
  auto o = quiet_options();
  o.pacing = true;
  o.pacing_window_scale = 0.05;  // 5 s -> 250 ms
  Gateway g(o);
  g.get("/iserver/accounts");
  EXPECT_EQ(g.get("/iserver/account/orders").status, 200);
  EXPECT_EQ(g.get("/iserver/account/orders").status, 429);  // 1 per 5 s (scaled)
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(g.get("/iserver/account/orders").status, 200);
  std::this_thread::sleep_for(1100ms);
  int too_many = 0;
  for (int i = 0; i < 12; ++i) too_many += g.post("/iserver/auth/status").status == 429;
  EXPECT_GE(too_many, 2);  // global 10 req/s
  EXPECT_GE(g.faults("http_429"), 3u);
}

TEST(IbkrEmulator, WebSocketReadyFrameRuleAndSorDeltas) {
  Gateway g;
  g.get("/iserver/accounts");
  WsClient ws(g.emu.port(), session_cookie(g));
  ws.send("sor+{}");  // before the ready frame: silently discarded
  ASSERT_TRUE(ws.next(WsClient::topic("system")));
  ASSERT_TRUE(ws.next(WsClient::topic("sts")));
  const auto id = g.place_one(lmt("ws1", "BUY", 180));
  EXPECT_FALSE(ws.next(WsClient::topic("sor"), 300ms));  // the early subscription was dropped
  EXPECT_EQ(g.events("ws_subscription_discarded"), 1u);

  ws.send("sor+{}");
  auto full = ws.next(WsClient::topic("sor"));
  ASSERT_TRUE(full);
  EXPECT_EQ((*full)["args"][0]["ticker"], "AAPL");  // the first message is the full list
  g.post(std::string("/iserver/account/") + kAcct + "/order/" + id, lmt("ws1", "BUY", 181));
  auto delta = ws.next(WsClient::topic("sor"));
  ASSERT_TRUE(delta);
  const json d = (*delta)["args"][0];
  EXPECT_EQ(d["orderId"], std::stoll(id));
  EXPECT_EQ(d["price"], "181.00");
  EXPECT_FALSE(d.contains("ticker"));  // deltas carry only what changed
  ws.send("tic");
  EXPECT_TRUE(ws.next(WsClient::topic("tic")));
}

TEST(IbkrEmulator, WebSocketMarketDataAndSessionMessage) {
  Gateway g;
  WsClient ws(g.emu.port(), "");
  auto waiting = ws.next([](const json& f) { return f.value("message", "") == "waiting for session"; });
  ASSERT_TRUE(waiting);
  ws.send(json{{"session", g.post("/tickle").body["session"]}}.dump());
  ASSERT_TRUE(ws.next(WsClient::topic("system")));
  ws.send("smd+265598+{\"fields\":[\"31\",\"84\",\"86\"]}");
  auto first = ws.next(WsClient::topic("smd+265598"));
  ASSERT_TRUE(first);
  EXPECT_EQ((*first)["84"], "190.00");
  g.quote(kAapl, "191.00", "191.01", "191.00");
  auto moved = ws.next(WsClient::topic("smd+265598"));
  ASSERT_TRUE(moved);
  EXPECT_EQ((*moved)["84"], "191.00");
}

// ------------------------------------------------------------------------------------------------
// Faults: each one is visible in /__emulator/log.

TEST(IbkrEmulatorFaults, GhostStopStaysPreSubmittedAfterPriceTradesThrough) {
  Gateway g;
  g.get("/iserver/accounts");
  g.control("faults", {{"ghost_stop_rate", 1.0}});
  const auto id = g.place_one(stp("g1", "SELL", 185));
  g.quote(kAapl, "183.00", "183.01", "183.00");
  EXPECT_EQ(g.status(id)["order_status"], "PreSubmitted");
  EXPECT_EQ(g.live_row(id)["status"], "PreSubmitted");
  EXPECT_EQ(g.faults("ghost_stop"), 1u);
  EXPECT_EQ(g.faults("ghost_stop_crossed"), 1u);
}

TEST(IbkrEmulatorFaults, LostOrderIsAcknowledgedThenVanishes) {
  Gateway g;
  g.get("/iserver/accounts");
  g.control("faults", {{"extra", {{"ibkr_lost_order", 1.0}}}});
  const auto id = g.place_one(lmt("lost1", "BUY", 185));
  EXPECT_FALSE(id.empty());
  EXPECT_TRUE(g.get("/iserver/account/orders").body["orders"].empty());
  EXPECT_EQ(g.get("/iserver/account/order/status/" + id).status, 503);
  EXPECT_EQ(g.faults("lost_order"), 1u);
}

TEST(IbkrEmulatorFaults, InactiveAfterAcknowledgement) {
  Gateway g;
  g.get("/iserver/accounts");
  g.control("faults", {{"extra", {{"ibkr_inactive", 1.0}}}});
  const auto id = g.place_one(stp("in1", "SELL", 185));
  EXPECT_EQ(g.live_row(id)["status"], "Inactive");
  EXPECT_EQ(g.faults("inactive"), 1u);
}

TEST(IbkrEmulatorFaults, DroppedSorAndDeadSocketAndInjected429) {
  Gateway g;
  g.get("/iserver/accounts");
  {
    WsClient ws(g.emu.port(), session_cookie(g));
    ASSERT_TRUE(ws.next(WsClient::topic("system")));
    ws.send("sor+{}");
    std::this_thread::sleep_for(100ms);
    g.control("faults", {{"extra", {{"ibkr_drop_sor", 1.0}}}});
    g.place_one(lmt("ds1", "BUY", 185));
    EXPECT_FALSE(ws.next(WsClient::topic("sor"), 300ms));
    EXPECT_GE(g.faults("drop_sor"), 1u);
  }
  g.control("faults", {{"profile", "none"}, {"extra", {{"ibkr_dead_ws", 1.0}}}});
  {
    WsClient ws(g.emu.port(), session_cookie(g));
    ASSERT_TRUE(ws.next(WsClient::topic("system")));
    ws.send("smd+265598+{\"fields\":[\"31\"]}");
    ws.send("tic");
    EXPECT_TRUE(ws.next(WsClient::topic("tic")));  // heartbeats still answered
    g.quote(kAapl, "186.00", "186.01", "186.00");
    EXPECT_FALSE(ws.next(WsClient::topic("smd+265598"), 300ms));  // but nothing flows
    EXPECT_EQ(g.faults("dead_ws"), 1u);
  }
  g.control("faults", {{"profile", "none"}, {"extra", {{"ibkr_429", 1.0}}}});
  EXPECT_EQ(g.get("/iserver/accounts").status, 429);
  EXPECT_GE(g.faults("http_429"), 1u);
  // Earlier records survive profile changes.
  EXPECT_GE(g.emu.fault_log().size(), 3u);
}

TEST(IbkrEmulatorFaults, ReloginLeavesOldSocketBeatingButDead) {
  Gateway g;
  g.get("/iserver/accounts");
  WsClient ws(g.emu.port(), session_cookie(g));
  ASSERT_TRUE(ws.next(WsClient::topic("system")));
  ws.send("smd+265598+{\"fields\":[\"31\"]}");
  ASSERT_TRUE(ws.next(WsClient::topic("smd+265598")));
  g.control("session_timeout");
  g.post("/iserver/auth/ssodh/init", {{"publish", true}, {"compete", true}});
  g.quote(kAapl, "187.00", "187.01", "187.00");
  EXPECT_FALSE(ws.next(WsClient::topic("smd+265598"), 300ms));
  ws.send("tic");
  EXPECT_TRUE(ws.next(WsClient::topic("tic")));
}

// ------------------------------------------------------------------------------------------------
// Durable state: the gateway process dies and comes back; IBKR's back end kept the orders.

namespace {

std::filesystem::path fresh_state_path(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("backstop-ibkr-state-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = dir / name;
  std::filesystem::remove(path);
  return path;
}

json read_json_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  return json::parse(in, nullptr, false);
}

// Polls (the cancel lands on the emulator's own timer) until `status` is reached or 5 s pass.
std::string wait_for_status(Gateway& g, const std::string& id, const std::string& want) {
  std::string last;
  for (auto deadline = std::chrono::steady_clock::now() + 5s; std::chrono::steady_clock::now() < deadline;
       std::this_thread::sleep_for(20ms)) {
    last = g.status(id).value("order_status", "");
    if (last == want) break;
  }
  return last;
}

// The venue's record (status, filled_quantity, ...) of the order with IBKR client order id `coid`
// in the state file as it is now on disk; null when the file lacks it (or does not exist yet).
json order_in_file(const std::filesystem::path& file, const std::string& coid) {
  const json state = read_json_file(file);
  if (!state.is_object()) return nullptr;
  std::string venue_id;
  for (const auto& o : state["orders"])
    if (o["coid"] == coid) venue_id = o["venue_id"];
  for (const auto& v : state["venue"]["orders"])
    if (!venue_id.empty() && v["id"] == venue_id) return v;
  return nullptr;
}

// The writer writes FILE.new and renames it over FILE: a directory at FILE.new makes every write
// fail until it is removed.
std::filesystem::path block_writes(const std::filesystem::path& file) {
  const auto blocker = std::filesystem::path(file.string() + ".new");
  std::filesystem::create_directory(blocker);
  return blocker;
}

}  // namespace

TEST(IbkrEmulatorState, RestartKeepsOrdersFillsIdsAndLogs) {
  const auto file = fresh_state_path("restart.json");
  IbkrEmulatorOptions first = quiet_options();
  first.state_file = file.string();
  first.cancel_delay = 10min;  // the cancel is still on its way when the process dies
  std::string resting, filled, cancelling;
  {
    Gateway g(first);
    g.get("/iserver/accounts");
    g.quote(kAapl, "189.99", "190.00", "190.00");
    resting = g.place_one(lmt("keep1", "BUY", 180));
    // Written before the answer left: the order the client was just told about is in the file.
    bool in_file = false;
    const json saved = read_json_file(file);  // named: a range-for over a temporary's member would dangle
    for (const auto& o : saved["orders"]) in_file |= o["ib_id"] == resting;
    EXPECT_TRUE(in_file) << "order " << resting << " answered but not in " << file;
    filled = g.place_one(lmt("fill1", "BUY", 191));
    EXPECT_EQ(g.status(filled)["order_status"], "Filled");
    cancelling = g.place_one(lmt("cxl1", "BUY", 170));
    g.del(std::string("/iserver/account/") + kAcct + "/order/" + cancelling);
    EXPECT_EQ(g.status(cancelling)["order_status"], "PendingCancel");
  }  // the process is gone: sessions, sockets and the cancel timer with it

  IbkrEmulatorOptions second = quiet_options();
  second.state_file = file.string();
  Gateway g(second);
  g.get("/iserver/accounts");
  g.get("/portfolio/accounts");
  const json row = g.live_row(resting);
  ASSERT_TRUE(row.is_object()) << "resting order " << resting << " not listed after the restart";
  EXPECT_EQ(row["status"], "Submitted");
  EXPECT_EQ(row["price"], "180.00");
  EXPECT_EQ(g.status(filled)["order_status"], "Filled");
  EXPECT_EQ(g.get(std::string("/portfolio/") + kAcct + "/positions/0").body[0]["position"], 10.0);
  // The cancel had reached IBKR: it lands after the restart.
  EXPECT_EQ(wait_for_status(g, cancelling, "Cancelled"), "Cancelled");
  // The client order id is still taken; a new order gets a new, higher id.
  auto again = g.place(json::array({lmt("keep1", "BUY", 180)}));
  EXPECT_TRUE(again.body.contains("error")) << again.raw;
  const auto next = g.place_one(lmt("new1", "BUY", 175));
  EXPECT_GT(std::stoll(next), std::stoll(cancelling));
  // The first life's record is still there, and the restart is in it.
  const json log = g.log();
  std::size_t received_keep1 = 0;
  for (const auto& e : log["orders"]) received_keep1 += e["cOID"] == "keep1" && e["stage"] == "received";
  EXPECT_EQ(received_keep1, 2u);  // the original and the refused repeat
  EXPECT_EQ(g.events("restarted"), 1u);
}

// Without a state file a restarted gateway is an IBKR back end that kept nothing; it must still
// not hand out an order id its previous life did: a journal that outlived it would take a new
// order's updates for an old order's. Both within int32, as the official spec has IBKR's ids.
TEST(IbkrEmulatorState, AGatewayStartedAfreshRepeatsNoOrderIdOfItsPreviousLife) {
  std::string first;
  {
    Gateway g(quiet_options());
    g.get("/iserver/accounts");
    first = g.place_one(lmt("fresh1", "BUY", 180));
  }
  Gateway g(quiet_options());
  g.get("/iserver/accounts");
  const std::string second = g.place_one(lmt("fresh2", "BUY", 180));
  EXPECT_NE(second, first);
  EXPECT_LE(std::stoll(first), 2147483647LL);
  EXPECT_LE(std::stoll(second), 2147483647LL);
}

TEST(IbkrEmulatorState, FailedWriteAnswers500NamingTheFileAndIsRetried) {
  const auto file = fresh_state_path("unwritable.json");
  std::filesystem::remove_all(file.string() + ".new");
  IbkrEmulatorOptions o = quiet_options();
  o.state_file = file.string();
  Gateway g(o);
  g.get("/iserver/accounts");
  const auto blocker = block_writes(file);
  // The order is placed, but its id must not reach the client while the file lacks it.
  auto r = g.place(json::array({lmt("nowrite1", "BUY", 180)}));
  EXPECT_EQ(r.status, 500) << r.raw;
  const std::string message = r.body.is_object() ? r.body.value("error", "") : "";
  EXPECT_NE(message.find(file.string()), std::string::npos) << r.raw;
  EXPECT_NE(message.find(std::strerror(EISDIR)), std::string::npos) << r.raw;  // the OS's reason
  EXPECT_EQ(r.raw.find("order_id"), std::string::npos) << "the prepared answer leaked: " << r.raw;
  EXPECT_TRUE(order_in_file(file, "nowrite1").is_null());

  std::filesystem::remove(blocker);
  // The next operation writes what was missed (the placement did happen: its outcome was unknown).
  ASSERT_EQ(g.post("/tickle").status, 200);
  const json saved = order_in_file(file, "nowrite1");
  ASSERT_TRUE(saved.is_object()) << "order not in " << file << " after a successful write";
  EXPECT_EQ(saved["status"], "working") << saved.dump();
  const json live = g.get("/iserver/account/orders").body;
  ASSERT_EQ(live["orders"].size(), 1u) << live.dump();
  EXPECT_EQ(live["orders"][0]["order_ref"], "nowrite1");
}

TEST(IbkrEmulatorState, StreamFramesWaitForASuccessfulWriteAndKeepTheirOrder) {
  const auto file = fresh_state_path("held-frames.json");
  std::filesystem::remove_all(file.string() + ".new");
  IbkrEmulatorOptions o = quiet_options();
  o.state_file = file.string();
  Gateway g(o);
  g.get("/iserver/accounts");
  const auto a = g.place_one(lmt("held-a", "BUY", 180));
  const auto b = g.place_one(lmt("held-b", "BUY", 179.5));
  WsClient ws(g.emu.port(), session_cookie(g));
  ASSERT_TRUE(ws.next(WsClient::topic("system")));
  ws.send("sor+{}");
  ASSERT_TRUE(ws.next(WsClient::topic("sor")));  // the full list; deltas follow

  const auto blocker = block_writes(file);
  // Two operations, each filling one order; each answers 500 and each fill frame is held.
  EXPECT_EQ(g.control("quote", {{"conid", kAapl}, {"bid", "179.98"}, {"ask", "179.99"}, {"last", "179.99"}}).status, 500);
  EXPECT_EQ(g.control("quote", {{"conid", kAapl}, {"bid", "179.39"}, {"ask", "179.40"}, {"last", "179.40"}}).status, 500);
  // An absence check, not a timing one: the emulator retries (and fails) every few milliseconds.
  const auto early = ws.next(WsClient::topic("sor"), 300ms);
  EXPECT_FALSE(early) << "frame sent while the state file could not be written: " << early->dump();

  std::filesystem::remove(blocker);
  ASSERT_EQ(g.post("/tickle").status, 200);  // a locked operation: the write succeeds
  auto first = ws.next(WsClient::topic("sor"));
  ASSERT_TRUE(first) << "held fill frame never sent after the write succeeded";
  // The frame left after the write: the file already holds both fills.
  EXPECT_EQ(order_in_file(file, "held-a").value("filled_quantity", 0), 10);
  EXPECT_EQ(order_in_file(file, "held-b").value("filled_quantity", 0), 10);
  auto second = ws.next(WsClient::topic("sor"));
  ASSERT_TRUE(second);
  // In their original order.
  EXPECT_EQ((*first)["args"][0]["orderId"], std::stoll(a)) << first->dump();
  EXPECT_EQ((*first)["args"][0]["status"], "Filled") << first->dump();
  EXPECT_EQ((*second)["args"][0]["orderId"], std::stoll(b)) << second->dump();
  EXPECT_EQ((*second)["args"][0]["status"], "Filled") << second->dump();
}

TEST(IbkrEmulatorState, UnreadableStateFileIsAnErrorNamingIt) {
  const auto file = fresh_state_path("corrupt.json");
  std::ofstream(file) << "{\"version\": 1, \"orders\": [";
  IbkrEmulatorOptions o = quiet_options();
  o.state_file = file.string();
  try {
    IbkrGatewayEmulator emu(o);
    FAIL() << "a corrupt state file was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(file.string()), std::string::npos) << e.what();
  }
  std::ofstream(file, std::ios::trunc) << json{{"version", 1}, {"orders", json::array({{{"ib_id", "1"}}})}}.dump();
  try {
    IbkrGatewayEmulator emu(o);
    FAIL() << "a state file with an incomplete order was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(file.string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("venue_id"), std::string::npos) << e.what();
  }
}
}  // namespace
}  // namespace backstop
