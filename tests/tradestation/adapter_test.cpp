// TradeStationBroker against the in-process TradeStation emulator over real loopback sockets:
// order types, bracket, group, replace, cancel, streams across GoAway, token refresh/rotation,
// 401 retry, unknown outcomes, dropped fill frames, ghost and silently rejected stops, TLS, and
// the first authorization. Plus the pure wire mapping (no I/O).
#include <gtest/gtest.h>
#include <httplib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <future>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "brokers/net/http_client.hpp"
#include "brokers/net/loop_io.hpp"
#include "brokers/tradestation/tradestation_broker.hpp"
#include "brokers/tradestation/ts_auth.hpp"
#include "brokers/tradestation/ts_wire.hpp"
#include "core/event_loop.hpp"
#include "emulators/tradestation/tradestation_emulator.hpp"
#include "tests/tradestation/test_order.hpp"

namespace tse = backstop::tradestation_emulator;
namespace ts = backstop::tradestation;
namespace fs = std::filesystem;
using namespace backstop;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

constexpr const char* kAccount = "SIM2784990M";

tse::Options emulator_options() {
  tse::Options o;
  o.tick_interval = 0ms;
  o.heartbeat_interval = 100ms;
  o.cancel_delay = 50ms;
  o.stall_length = 1000ms;
  return o;
}

fs::path temp_dir() {
  std::random_device rd;
  fs::path p = fs::temp_directory_path() / ("ts-adapter-" + std::to_string(rd()));
  fs::create_directories(p);
  return p;
}

class AdapterTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (broker) broker->stop();
    broker.reset();
    loop.run_ready();
    if (emu) emu->stop();
    std::error_code ec;
    fs::remove_all(dir, ec);
  }

  void start_emulator(tse::Options o = emulator_options()) {
    emu = std::make_unique<tse::TradeStationEmulator>(std::move(o));
    emu->start(0);
    control = std::make_unique<httplib::Client>("127.0.0.1", emu->port());
    if (emu->options().tls) {
      control = nullptr;  // control API over TLS: use an https client
      ssl_control = std::make_unique<httplib::SSLClient>("127.0.0.1", emu->port());
      ssl_control->enable_server_certificate_verification(false);
    }
  }

  ts::TradeStationOptions adapter_options() {
    ts::TradeStationOptions o;
    o.account = kAccount;
    o.settings.base_url = emu->base_url() + "/v3";
    o.settings.token_url = emu->base_url() + "/oauth/token";
    o.settings.client_id = emu->options().client_id;
    o.settings.client_secret = emu->options().client_secret;
    o.settings.refresh_token_file = (dir / "refresh-token").string();
    o.settings.stream_inactivity_timeout = 2s;
    o.reconnect_min = 50ms;
    o.reconnect_max = 500ms;
    o.order_timeout = 2000ms;
    o.read_timeout = 2000ms;
    o.symbols = {{"AAPL.US", "AAPL"}};
    o.loop_io = &loop_io;  // as `backstop run` has it
    ts::write_refresh_token(o.settings.refresh_token_file, emu->options().refresh_token);
    return o;
  }

  void make_broker(ts::TradeStationOptions o, bool start = true) {
    broker = std::make_unique<ts::TradeStationBroker>(std::move(o), loop);
    broker->subscribe_order_events([this](const OrderEvent& ev) { events.push_back(ev); });
    if (start) {
      broker->start();
      ASSERT_TRUE(run_until([&] { return broker->health().connectivity == Connectivity::connected; }))
          << broker->health().detail;
    }
  }

  // Runs the loop until `pred` holds or 5 s pass.
  bool run_until(const std::function<bool()>& pred, Duration limit = 5s) {
    const Timestamp deadline = clock.now() + to_ns(limit);
    while (!pred()) {
      if (clock.now() >= deadline) return false;
      loop.run_until(std::min(deadline, clock.now() + 10'000'000));
    }
    return true;
  }
  void run_for(Duration d) {
    const Timestamp end = clock.now() + to_ns(d);
    run_until([&] { return clock.now() >= end; }, d + 1s);
  }

  json post(const std::string& path, const json& body = json::object()) {
    auto r = control ? control->Post(path, body.dump(), "application/json")
                     : ssl_control->Post(path, body.dump(), "application/json");
    EXPECT_TRUE(r) << path;
    if (!r || r->body.empty()) return {};
    return json::parse(r->body, nullptr, false);
  }
  json get(const std::string& path) {
    auto r = control->Get(path);
    EXPECT_TRUE(r) << path;
    return r ? json::parse(r->body, nullptr, false) : json{};
  }
  void quote(const std::string& last) {
    const Price p = Price::parse(last);
    post("/__emulator/quote", {{"symbol", "AAPL"},
                               {"bid", (p - Price::parse("0.01")).to_string()},
                               {"ask", (p + Price::parse("0.01")).to_string()},
                               {"last", last}});
  }
  int requests_for(const std::string& coid) {
    int n = 0;
    const json log = get("/__emulator/log");
    for (const auto& r : log["requests"])
      if (r.value("OrderConfirmID", "") == coid) ++n;
    return n;
  }

  CommandResult submit(const OrderSpec& o) {
    std::optional<CommandResult> res;
    broker->submit(o, [&](CommandResult r) { res = std::move(r); });
    EXPECT_TRUE(run_until([&] { return res.has_value(); }));
    return res.value_or(CommandResult{});
  }
  OrderQueryResult query(const std::string& id) {
    std::optional<OrderQueryResult> res;
    broker->query_order(id, [&](OrderQueryResult r) { res = std::move(r); });
    EXPECT_TRUE(run_until([&] { return res.has_value(); }));
    return res.value_or(OrderQueryResult{});
  }
  OrderQueryResult query_coid(const std::string& coid) {
    std::optional<OrderQueryResult> res;
    broker->query_by_client_id(coid, [&](OrderQueryResult r) { res = std::move(r); });
    EXPECT_TRUE(run_until([&] { return res.has_value(); }));
    return res.value_or(OrderQueryResult{});
  }
  // Waits until a read of the order satisfies `pred`.
  bool read_until(const std::string& id, const std::function<bool(const BrokerOrder&)>& pred) {
    return run_until([&] {
      auto q = query(id);
      return q.order && pred(*q.order);
    });
  }
  static OrderSpec spec(std::string coid, OrderType type, Side side, std::int64_t qty,
                        std::optional<std::string> limit = {}, std::optional<std::string> stop = {},
                        TimeInForce tif = TimeInForce::day) {
    return ts::testing::test_order(std::move(coid), type, side, qty, std::move(limit), std::move(stop), tif);
  }
  std::vector<OrderEvent> events_of(const std::string& id, OrderEvent::Kind k) {
    std::vector<OrderEvent> out;
    for (const auto& e : events)
      if (e.broker_order_id == id && e.kind == k) out.push_back(e);
    return out;
  }

  SystemClock clock;
  EventLoop loop{clock};
  net::LoopIo loop_io{loop};  // REST on the loop's thread; outlives the broker
  fs::path dir = temp_dir();
  std::unique_ptr<tse::TradeStationEmulator> emu;
  std::unique_ptr<httplib::Client> control;
  std::unique_ptr<httplib::SSLClient> ssl_control;
  std::unique_ptr<ts::TradeStationBroker> broker;
  std::vector<OrderEvent> events;
};

// --- pure mapping ------------------------------------------------------------------------------

TEST(TradeStationWire, DurationsInRequestAndResponseSpellings) {
  EXPECT_EQ(ts::parse_duration("GTC")->tif, TimeInForce::gtc);
  EXPECT_FALSE(ts::parse_duration("GTC")->extended_hours);
  EXPECT_EQ(ts::parse_duration("GTC+")->tif, TimeInForce::gtc);
  EXPECT_TRUE(ts::parse_duration("GTC+")->extended_hours);
  EXPECT_TRUE(ts::parse_duration("GCP")->extended_hours);
  EXPECT_TRUE(ts::parse_duration("DAY+")->extended_hours);
  EXPECT_EQ(ts::parse_duration("1")->minutes, 1);
  EXPECT_EQ(ts::parse_duration("1 min")->minutes, 1);
  EXPECT_EQ(ts::parse_duration("5 min")->minutes, 5);
  EXPECT_EQ(ts::parse_duration("IOC")->tif, TimeInForce::ioc);
  EXPECT_EQ(ts::parse_duration("FOK")->tif, TimeInForce::fok);
  EXPECT_FALSE(ts::parse_duration("FOREVER"));
}

TEST(TradeStationWire, EveryStatusCodeMaps) {
  const char* codes[] = {"ACK", "ASS", "BRC", "BRF", "BRO", "CHG", "CND", "COR", "CSN", "DIS", "DOA", "DON",
                         "ECN", "EXE", "FPR", "LAT", "OPN", "OSO", "OTHER", "PLA", "REC", "RJC", "RPD", "RSN",
                         "STP", "STT", "SUS", "UCN", "CAN", "EXP", "OUT", "RJR", "SCN", "TSC", "UCH", "REJ",
                         "FLL", "FLP"};
  for (const char* c : codes) EXPECT_TRUE(ts::state_for_status(c, 0, 10).has_value()) << c;
  EXPECT_EQ(*ts::state_for_status("FLL", 10, 10), OrderState::filled);
  EXPECT_EQ(*ts::state_for_status("REJ", 0, 10), OrderState::rejected);
  EXPECT_EQ(*ts::state_for_status("UCN", 0, 10), OrderState::pending_cancel);
  EXPECT_EQ(*ts::state_for_status("STP", 0, 10), OrderState::submitted);  // not terminal
  EXPECT_EQ(*ts::state_for_status("ACK", 4, 10), OrderState::partially_filled);
  EXPECT_FALSE(ts::state_for_status("XYZ", 0, 10));
}

json frame(const std::string& status, int exec, const std::string& price, bool closed = false) {
  json o{{"AccountID", kAccount}, {"OrderID", "123"},  {"Status", status},  {"OrderType", "Limit"},
         {"Duration", "GTC+"},    {"LimitPrice", "10"}, {"FilledPrice", price},
         {"Legs", json::array({{{"Symbol", "AAPL"}, {"BuyOrSell", "Buy"}, {"QuantityOrdered", "10"},
                                 {"ExecQuantity", std::to_string(exec)}, {"ExecutionPrice", price}}})}};
  if (closed) o["ClosedDateTime"] = "2026-11-24T15:00:00Z";
  return o;
}

TEST(TradeStationWire, FrameMapperDeltasDedupAndUnknownCodes) {
  ts::OrderFrameMapper m("ts", ts::SymbolMap(std::map<std::string, std::string>{{"AAPL.US", "AAPL"}}));
  int unknown = 0;
  m.on_unknown_status = [&](const std::string&) { ++unknown; };
  std::vector<OrderEvent> ev;
  m.on_order(frame("OPN", 0, "0"), 1, ev);
  m.on_order(frame("ACK", 4, "10"), 2, ev);  // fill data on an ACK
  m.on_order(frame("ACK", 4, "10"), 3, ev);  // duplicate
  m.on_order(frame("FPR", 4, "10"), 4, ev);
  m.on_order(frame("FLL", 10, "11"), 5, ev);  // cumulative 10 at average 11 -> 6 @ 11.666...
  m.on_order(frame("FLL", 10, "11", true), 6, ev);  // re-sent with ClosedDateTime
  m.on_order(frame("ZZZ", 10, "11", true), 7, ev);  // unknown code: kept, state unchanged
  std::vector<OrderEvent> fills;
  for (const auto& e : ev)
    if (e.kind == OrderEvent::Kind::fill) fills.push_back(e);
  ASSERT_EQ(fills.size(), 2u);
  EXPECT_EQ(fills[0].fill->quantity, 4);
  EXPECT_EQ(fills[0].fill->execution_id, "123-4");
  EXPECT_EQ(fills[0].fill->symbol, "AAPL.US");
  EXPECT_EQ(fills[1].fill->quantity, 6);
  EXPECT_EQ(fills[1].fill->execution_id, "123-10");
  EXPECT_EQ(fills[1].fill->price, Price::from_units((1100000000LL * 10 - 1000000000LL * 4) / 6));
  EXPECT_EQ(fills[1].state, OrderState::filled);
  // OPN, ACK (+fill), FPR, FLL (+fill), ZZZ: no event for the duplicates.
  EXPECT_EQ(ev.size(), 7u);
  EXPECT_EQ(ev.back().broker_status, "ZZZ");
  EXPECT_EQ(ev.back().state, OrderState::filled);
  EXPECT_EQ(unknown, 1);
}

TEST(TradeStationWire, PreviewReadsTheBodyAsTradeStationDoes) {
  ts::SymbolMap symbols(std::map<std::string, std::string>{{"AAPL.US", "AAPL"}});
  OrderSpec o;
  o.client_order_id = "c1";
  o.symbol = "AAPL.US";
  o.side = Side::sell;
  o.quantity = 5;
  o.type = OrderType::stop_limit;
  o.stop_price = Price::parse("185.5");
  o.limit_price = Price::parse("185");
  o.tif = TimeInForce::gtc;
  o.outside_rth = true;
  const json body = json::parse(ts::order_request(o, kAccount, symbols).text);
  EXPECT_EQ(body["Symbol"], "AAPL");
  EXPECT_EQ(body["StopPrice"], "185.5");
  EXPECT_EQ(body["TimeInForce"]["Duration"], "GCP");
  EXPECT_EQ(body["OrderConfirmID"], "c1");
  const WireOrderView v = ts::wire_view(body);
  EXPECT_EQ(v.stop_price, Price::parse("185.5"));
  EXPECT_EQ(v.limit_price, Price::parse("185"));
  EXPECT_TRUE(v.tif_explicit);
  EXPECT_EQ(v.tif, TimeInForce::gtc);
  EXPECT_EQ(v.outside_rth, true);
}

// --- against the emulator ------------------------------------------------------------------------

TEST_F(AdapterTest, MarketOrderFillsOnTheStreamAndInReads) {
  start_emulator();
  make_broker(adapter_options());
  quote("190");
  auto r = submit(spec("mkt1", OrderType::market, Side::buy, 10));
  ASSERT_EQ(r.outcome, Outcome::accepted) << r.message;
  ASSERT_TRUE(run_until([&] { return !events_of(r.broker_order_id, OrderEvent::Kind::fill).empty(); }));
  auto fills = events_of(r.broker_order_id, OrderEvent::Kind::fill);
  std::int64_t qty = 0;
  for (const auto& f : fills) qty += f.fill->quantity;
  EXPECT_EQ(qty, 10);
  EXPECT_EQ(fills.front().fill->symbol, "AAPL.US");
  // The first frames can precede the POST's answer; once acknowledged every event names the client id.
  EXPECT_EQ(fills.back().fill->broker_order_id, r.broker_order_id);
  run_for(200ms);  // the FLL re-sent with ClosedDateTime must not count again
  qty = 0;
  for (const auto& f : events_of(r.broker_order_id, OrderEvent::Kind::fill)) qty += f.fill->quantity;
  EXPECT_EQ(qty, 10);
  auto q = query_coid("mkt1");
  ASSERT_EQ(q.outcome, Outcome::accepted);
  ASSERT_TRUE(q.order);
  EXPECT_EQ(q.order->state, OrderState::filled);
  EXPECT_EQ(q.order->filled_quantity, 10);
  EXPECT_EQ(q.order->symbol, "AAPL.US");
  std::optional<PositionsResult> pos;
  broker->list_positions([&](PositionsResult p) { pos = std::move(p); });
  ASSERT_TRUE(run_until([&] { return pos.has_value(); }));
  ASSERT_EQ(pos->outcome, Outcome::accepted);
  ASSERT_EQ(pos->positions.size(), 1u);
  EXPECT_EQ(pos->positions[0].symbol, "AAPL.US");
  EXPECT_EQ(pos->positions[0].quantity, 10);
  // A resend of the same client order id is refused by the broker, not doubled.
  auto dup = submit(spec("mkt1", OrderType::market, Side::buy, 10));
  EXPECT_EQ(dup.outcome, Outcome::rejected);
  EXPECT_EQ(broker->rate_limited_count(), 0u);
}

// The same order with REST on a network thread of the adapter's own (no LoopIo).
TEST_F(AdapterTest, MarketOrderFillsWithRequestsOnANetworkThread) {
  start_emulator();
  auto o = adapter_options();
  o.loop_io = nullptr;
  make_broker(o);
  quote("190");
  auto r = submit(spec("mkn1", OrderType::market, Side::buy, 10));
  ASSERT_EQ(r.outcome, Outcome::accepted) << r.message;
  ASSERT_TRUE(run_until([&] { return !events_of(r.broker_order_id, OrderEvent::Kind::fill).empty(); }));
  auto q = query_coid("mkn1");
  ASSERT_EQ(q.outcome, Outcome::accepted);
  ASSERT_TRUE(q.order);
  EXPECT_EQ(q.order->state, OrderState::filled);
  EXPECT_EQ(q.order->filled_quantity, 10);
}

TEST_F(AdapterTest, LimitStopAndStopLimitReadBackAsSent) {
  start_emulator();
  make_broker(adapter_options());
  quote("190");
  auto lim = submit(spec("lim1", OrderType::limit, Side::buy, 3, "180", {}, TimeInForce::gtc));
  auto stp = submit(spec("stp1", OrderType::stop, Side::sell, 4, {}, "185", TimeInForce::gtc));
  auto sl = submit(spec("sl1", OrderType::stop_limit, Side::sell, 5, "184", "185"));
  for (auto* r : {&lim, &stp, &sl}) ASSERT_EQ(r->outcome, Outcome::accepted) << r->message;
  auto q = query(stp.broker_order_id);
  ASSERT_TRUE(q.order);
  EXPECT_EQ(q.order->type, OrderType::stop);
  EXPECT_EQ(q.order->stop_price, Price::parse("185"));
  EXPECT_EQ(q.order->tif, TimeInForce::gtc);
  EXPECT_EQ(q.order->side, Side::sell);
  EXPECT_EQ(q.order->quantity, 4);
  EXPECT_EQ(q.order->client_order_id, "stp1");
  EXPECT_TRUE(is_working(q.order->state));
  q = query(sl.broker_order_id);
  ASSERT_TRUE(q.order);
  EXPECT_EQ(q.order->type, OrderType::stop_limit);
  EXPECT_EQ(q.order->limit_price, Price::parse("184"));
  EXPECT_EQ(q.order->stop_price, Price::parse("185"));
  EXPECT_EQ(q.order->tif, TimeInForce::day);
  std::optional<OrdersResult> open;
  broker->list_open_orders([&](OrdersResult r) { open = std::move(r); });
  ASSERT_TRUE(run_until([&] { return open.has_value(); }));
  EXPECT_EQ(open->orders.size(), 3u);
  // The stop triggers when price goes through it: STP (not terminal), then the fill.
  quote("184.5");
  ASSERT_TRUE(run_until([&] { return !events_of(stp.broker_order_id, OrderEvent::Kind::fill).empty(); }));
  EXPECT_FALSE(events_of(stp.broker_order_id, OrderEvent::Kind::triggered).empty());
}

TEST_F(AdapterTest, BracketViaOsoBrkAndOcoGroup) {
  start_emulator();
  make_broker(adapter_options());
  quote("190");
  BracketSpec b;
  b.entry = spec("brk-e", OrderType::limit, Side::buy, 10, "189");
  b.take_profit = spec("brk-tp", OrderType::limit, Side::sell, 10, "200", {}, TimeInForce::gtc);
  b.protective_stop = spec("brk-sl", OrderType::stop, Side::sell, 10, {}, "180", TimeInForce::gtc);
  std::optional<BracketResult> res;
  broker->submit_bracket(b, [&](BracketResult r) { res = std::move(r); });
  ASSERT_TRUE(run_until([&] { return res.has_value(); }));
  ASSERT_EQ(res->outcome, Outcome::accepted) << res->message;
  auto stop = query(res->stop_id);
  ASSERT_TRUE(stop.order);
  EXPECT_EQ(stop.order->type, OrderType::stop);
  EXPECT_EQ(stop.order->stop_price, Price::parse("180"));
  auto tp = query(res->take_profit_id);
  ASSERT_TRUE(tp.order);
  EXPECT_EQ(tp.order->type, OrderType::limit);
  EXPECT_EQ(query_coid("brk-sl").order->broker_order_id, res->stop_id);

  std::optional<ts::GroupResult> g;
  broker->submit_group("OCO", {spec("oco-a", OrderType::limit, Side::buy, 1, "170"),
                               spec("oco-b", OrderType::limit, Side::buy, 1, "171")},
                       [&](ts::GroupResult r) { g = std::move(r); });
  ASSERT_TRUE(run_until([&] { return g.has_value(); }));
  ASSERT_EQ(g->outcome, Outcome::accepted) << g->message;
  EXPECT_EQ(g->order_ids.size(), 2u);
}

TEST_F(AdapterTest, RejectedBracketEntryEndsItsHeldExitsOnTheStream) {
  // TradeStation answers a bracket "Sent order" for every leg (accepted for processing); the
  // venue's reject of the entry then comes on the stream, and the exits must end with it rather
  // than stay working at the client (found by the chaos test).
  start_emulator();
  make_broker(adapter_options());
  quote("190");
  post("/__emulator/faults", {{"reject_rate", 1.0}});
  BracketSpec b;
  b.entry = spec("rej-e", OrderType::limit, Side::buy, 10, "189");
  b.take_profit = spec("rej-tp", OrderType::limit, Side::sell, 10, "200", {}, TimeInForce::gtc);
  b.protective_stop = spec("rej-sl", OrderType::stop, Side::sell, 10, {}, "180", TimeInForce::gtc);
  std::optional<BracketResult> res;
  broker->submit_bracket(b, [&](BracketResult r) { res = std::move(r); });
  ASSERT_TRUE(run_until([&] { return res.has_value(); }));
  ASSERT_FALSE(res->take_profit_id.empty()) << res->message;
  ASSERT_FALSE(res->stop_id.empty()) << res->message;
  for (const std::string& id : {res->entry_id, res->take_profit_id, res->stop_id})
    EXPECT_TRUE(run_until([&] { return !events_of(id, OrderEvent::Kind::rejected).empty(); })) << id;
  for (const char* coid : {"rej-tp", "rej-sl"}) {
    const auto q = query_coid(coid);
    ASSERT_TRUE(q.order) << coid;
    EXPECT_EQ(q.order->state, OrderState::rejected) << coid;
  }
}

TEST_F(AdapterTest, ReplaceAndCancelConfirmAsynchronously) {
  start_emulator();
  make_broker(adapter_options());
  quote("190");
  auto r = submit(spec("rep1", OrderType::limit, Side::buy, 2, "180"));
  ASSERT_EQ(r.outcome, Outcome::accepted);
  std::optional<CommandResult> rep;
  broker->replace(r.broker_order_id, spec("rep1", OrderType::limit, Side::buy, 3, "181"),
                  [&](CommandResult c) { rep = std::move(c); });
  ASSERT_TRUE(run_until([&] { return rep.has_value(); }));
  ASSERT_EQ(rep->outcome, Outcome::accepted) << rep->message;
  EXPECT_TRUE(read_until(r.broker_order_id, [](const BrokerOrder& o) {
    return o.limit_price == Price::parse("181") && o.quantity == 3;
  }));
  std::optional<CommandResult> can;
  broker->cancel(r.broker_order_id, [&](CommandResult c) { can = std::move(c); });
  ASSERT_TRUE(run_until([&] { return can.has_value(); }));
  ASSERT_EQ(can->outcome, Outcome::accepted) << can->message;
  ASSERT_TRUE(run_until([&] { return !events_of(r.broker_order_id, OrderEvent::Kind::cancelled).empty(); }));
  EXPECT_TRUE(read_until(r.broker_order_id, [](const BrokerOrder& o) { return o.state == OrderState::cancelled; }));
  can.reset();
  broker->cancel(r.broker_order_id, [&](CommandResult c) { can = std::move(c); });
  ASSERT_TRUE(run_until([&] { return can.has_value(); }));
  EXPECT_EQ(can->outcome, Outcome::rejected);
  EXPECT_NE(can->message.find("Not an open order"), std::string::npos) << can->message;
}

TEST_F(AdapterTest, OrderStreamSurvivesGoAwayAndReconnects) {
  start_emulator();
  make_broker(adapter_options());
  const auto connects = broker->stats().stream_connects;
  post("/__emulator/goaway");
  ASSERT_TRUE(run_until([&] { return broker->stats().stream_goaways >= 1; }));
  ASSERT_TRUE(run_until([&] { return broker->stats().stream_connects > connects; }));
  EXPECT_EQ(broker->health().connectivity, Connectivity::connected);
  // A silent drop (no GoAway) reconnects too.
  post("/__emulator/disconnect");
  ASSERT_TRUE(run_until([&] { return broker->stats().stream_connects > connects + 1; }));
  quote("190");
  auto r = submit(spec("after-goaway", OrderType::market, Side::buy, 1));
  ASSERT_EQ(r.outcome, Outcome::accepted);
  ASSERT_TRUE(run_until([&] { return !events_of(r.broker_order_id, OrderEvent::Kind::fill).empty(); }));
}

TEST_F(AdapterTest, StalledStreamHitsTheInactivityTimeout) {
  start_emulator();
  auto o = adapter_options();
  o.settings.stream_inactivity_timeout = 400ms;
  make_broker(std::move(o));
  const auto connects = broker->stats().stream_connects;
  post("/__emulator/faults", {{"ts_stall", 1.0}});
  ASSERT_TRUE(run_until([&] { return broker->stats().stream_errors >= 1; }));
  post("/__emulator/faults", {{"ts_stall", 0.0}});
  ASSERT_TRUE(run_until([&] { return broker->stats().stream_connects > connects; }));
}

TEST_F(AdapterTest, RotatedRefreshTokenIsPersisted0600BeforeUse) {
  auto eo = emulator_options();
  eo.rotate_refresh_tokens = true;
  eo.access_token_lifetime = 2s;
  start_emulator(std::move(eo));
  auto o = adapter_options();
  const std::string file = o.settings.refresh_token_file;
  make_broker(std::move(o));
  // Refreshed before expiry (at 4/5 of the lifetime), not per request.
  ASSERT_TRUE(run_until([&] { return broker->stats().token_refreshes >= 3; }, 6s));
  EXPECT_GE(broker->stats().refresh_tokens_rotated, 3u);
  const auto stored = ts::read_refresh_token(file);
  ASSERT_TRUE(stored);
  EXPECT_NE(*stored, emu->options().refresh_token);
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // A new adapter starting from the file works: the persisted token is the live one.
  broker->stop();
  auto o2 = adapter_options();
  ts::write_refresh_token(o2.settings.refresh_token_file, *stored);
  broker = std::make_unique<ts::TradeStationBroker>(o2, loop);
  broker->start();
  ASSERT_TRUE(run_until([&] { return broker->health().connectivity == Connectivity::connected; }))
      << broker->health().detail;
}

TEST_F(AdapterTest, Unauthorized401RefreshesOnceAndRetries) {
  start_emulator();
  make_broker(adapter_options());
  const auto refreshes = broker->stats().token_refreshes;
  post("/__emulator/expire-tokens");
  std::optional<PositionsResult> pos;
  broker->list_positions([&](PositionsResult p) { pos = std::move(p); });
  ASSERT_TRUE(run_until([&] { return pos.has_value(); }));
  EXPECT_EQ(pos->outcome, Outcome::accepted) << pos->message;
  EXPECT_GE(broker->stats().unauthorized_retries, 1u);
  EXPECT_GT(broker->stats().token_refreshes, refreshes);
  // Every token refused: one retry, then a clear error.
  post("/__emulator/faults", {{"ts_token_expiry", 1.0}});
  pos.reset();
  broker->list_positions([&](PositionsResult p) { pos = std::move(p); });
  ASSERT_TRUE(run_until([&] { return pos.has_value(); }));
  EXPECT_EQ(pos->outcome, Outcome::rejected);
  EXPECT_NE(pos->message.find("401"), std::string::npos) << pos->message;
  post("/__emulator/faults", {{"ts_token_expiry", 0.0}});
}

TEST_F(AdapterTest, Http429BacksOffIsCountedAndTheReadSucceeds) {
  start_emulator();
  make_broker(adapter_options());
  post("/__emulator/faults", {{"ts_429", 1.0}, {"ts_429_burst", 1}});
  std::optional<PositionsResult> pos;
  broker->list_positions([&](PositionsResult p) { pos = std::move(p); });
  ASSERT_TRUE(run_until([&] { return broker->rate_limited_count() >= 1; }));
  post("/__emulator/faults", {{"ts_429", 0.0}});
  ASSERT_TRUE(run_until([&] { return pos.has_value(); }));
  EXPECT_EQ(pos->outcome, Outcome::accepted) << pos->message;
}

TEST_F(AdapterTest, SlowAckIsUnknownNeverResentAndResolvedByClientId) {
  start_emulator();
  auto o = adapter_options();
  o.order_timeout = 300ms;
  make_broker(std::move(o));
  quote("190");
  post("/__emulator/faults", {{"ack_delay_ms", 1500}});
  auto r = submit(spec("slow1", OrderType::limit, Side::buy, 7, "150"));
  EXPECT_EQ(r.outcome, Outcome::unknown) << r.message;
  run_for(1500ms);
  EXPECT_EQ(requests_for("slow1"), 1);  // no resend
  post("/__emulator/faults", {{"ack_delay_ms", 0}});
  auto q = query_coid("slow1");
  ASSERT_EQ(q.outcome, Outcome::accepted) << q.message;
  ASSERT_TRUE(q.order);
  EXPECT_EQ(q.order->quantity, 7);
  EXPECT_EQ(q.order->client_order_id, "slow1");
  EXPECT_EQ(requests_for("slow1"), 1);
}

// After a restart the adapter finds an order whose outcome was unknown by its details (reads do
// not carry OrderConfirmID). An order of the same details that an earlier process had
// acknowledged is not it: the journal's claim on that id is remembered (OrderManager::recover),
// and the unknown order, whose request never arrived, is not found (a chaos run, seed 402, had it
// "filled" with the other's id, its fill counted twice).
TEST_F(AdapterTest, AnOrderTheJournalClaimsIsNotFoundAgainForAnUnknownOneOfTheSameDetails) {
  start_emulator();
  make_broker(adapter_options());
  quote("190");
  const OrderSpec sent = spec("claimed1", OrderType::market, Side::sell, 10);
  const auto r = submit(sent);
  ASSERT_EQ(r.outcome, Outcome::accepted) << r.message;
  ASSERT_TRUE(read_until(r.broker_order_id, [](const BrokerOrder& o) { return o.state == OrderState::filled; }));

  // The process is gone; a new one recovers from the journal.
  broker->stop();
  broker.reset();
  loop.run_ready();
  make_broker(adapter_options());
  OrderSpec lost = sent;
  lost.client_order_id = "lost1";  // same details; its request never reached TradeStation
  broker->remember_order("claimed1", r.broker_order_id);
  broker->expect_unknown(lost, clock.now() - to_ns(1s));
  const auto q = query_coid("lost1");
  ASSERT_EQ(q.outcome, Outcome::accepted) << q.message;
  EXPECT_FALSE(q.order) << "found " << q.order->broker_order_id << ", which the journal gave to claimed1";
  EXPECT_EQ(requests_for("lost1"), 0);
  // The claimed order itself still reads back as its own.
  const auto mine = query_coid("claimed1");
  ASSERT_TRUE(mine.order) << mine.message;
  EXPECT_EQ(mine.order->broker_order_id, r.broker_order_id);
}

// Nor is an unclaimed order of the same details that opened before the unknown one was sent
// (placed by hand, or by another program on the account): only an order opened since can be it.
TEST_F(AdapterTest, AnOrderOpenedBeforeTheUnknownOneWasSentIsNotIt) {
  start_emulator();
  make_broker(adapter_options());
  quote("190");
  const OrderSpec earlier = spec("byhand1", OrderType::limit, Side::buy, 5, "150");
  const auto r = submit(earlier);
  ASSERT_EQ(r.outcome, Outcome::accepted) << r.message;
  broker->stop();
  broker.reset();
  loop.run_ready();
  make_broker(adapter_options());  // a process that never heard of byhand1: the order is unclaimed

  OrderSpec later = earlier;
  later.client_order_id = "later1";  // sent five minutes after byhand1 opened; never arrived
  broker->expect_unknown(later, clock.now() + to_ns(std::chrono::minutes(5)));
  const auto q = query_coid("later1");
  ASSERT_EQ(q.outcome, Outcome::accepted) << q.message;
  EXPECT_FALSE(q.order) << "found " << q.order->broker_order_id << ", opened before later1 was sent";

  // Sent when byhand1 opened, it could be that order: found, as before.
  OrderSpec same_time = earlier;
  same_time.client_order_id = "now1";
  broker->expect_unknown(same_time, clock.now());
  const auto found = query_coid("now1");
  ASSERT_TRUE(found.order) << found.message;
  EXPECT_EQ(found.order->broker_order_id, r.broker_order_id);
}

TEST_F(AdapterTest, DroppedFillFramesAreRecoveredThroughQuery) {
  start_emulator();
  make_broker(adapter_options());
  quote("190");
  post("/__emulator/faults", {{"ts_drop_fill_frame", 1.0}});
  auto r = submit(spec("drop1", OrderType::market, Side::buy, 6));
  ASSERT_EQ(r.outcome, Outcome::accepted);
  run_for(300ms);
  EXPECT_TRUE(events_of(r.broker_order_id, OrderEvent::Kind::fill).empty());
  std::optional<FillsResult> fills;
  broker->list_fills([&](FillsResult f) { fills = std::move(f); });
  ASSERT_TRUE(run_until([&] { return fills.has_value(); }));
  ASSERT_EQ(fills->outcome, Outcome::accepted);
  ASSERT_EQ(fills->fills.size(), 1u);
  EXPECT_EQ(fills->fills[0].quantity, 6);
  EXPECT_EQ(fills->fills[0].client_order_id, "drop1");
  EXPECT_EQ(fills->fills[0].execution_id, r.broker_order_id + "-6");
  // The reconnect snapshot must not report the recovered fill again.
  post("/__emulator/faults", {{"ts_drop_fill_frame", 0.0}});
  const auto connects = broker->stats().stream_connects;
  post("/__emulator/goaway");
  ASSERT_TRUE(run_until([&] { return broker->stats().stream_connects > connects; }));
  EXPECT_TRUE(events_of(r.broker_order_id, OrderEvent::Kind::fill).empty());
}

TEST_F(AdapterTest, GhostStopStaysWorkingInReads) {
  start_emulator();
  make_broker(adapter_options());
  quote("190");
  post("/__emulator/faults", {{"ghost_stop_rate", 1.0}});
  auto r = submit(spec("ghost1", OrderType::stop, Side::sell, 2, {}, "185", TimeInForce::gtc));
  ASSERT_EQ(r.outcome, Outcome::accepted);
  quote("180");  // through the stop
  run_for(300ms);
  auto q = query(r.broker_order_id);
  ASSERT_TRUE(q.order);
  EXPECT_TRUE(is_working(q.order->state)) << q.order->broker_status;
  EXPECT_EQ(q.order->filled_quantity, 0);
  EXPECT_TRUE(events_of(r.broker_order_id, OrderEvent::Kind::fill).empty());
}

TEST_F(AdapterTest, SilentStopRejectIsVisibleInReads) {
  start_emulator();
  make_broker(adapter_options());
  quote("190");
  post("/__emulator/faults", {{"ts_reject_stop_silently", 1.0}});
  auto r = submit(spec("silent1", OrderType::stop, Side::sell, 2, {}, "185", TimeInForce::gtc));
  ASSERT_EQ(r.outcome, Outcome::accepted);
  run_for(200ms);
  EXPECT_TRUE(events_of(r.broker_order_id, OrderEvent::Kind::rejected).empty());  // the stream says nothing
  auto q = query(r.broker_order_id);
  ASSERT_TRUE(q.order);
  EXPECT_EQ(q.order->state, OrderState::rejected);
  EXPECT_EQ(q.order->broker_status, "REJ");
  std::optional<CommandResult> can;
  broker->cancel(r.broker_order_id, [&](CommandResult c) { can = std::move(c); });
  ASSERT_TRUE(run_until([&] { return can.has_value(); }));
  EXPECT_EQ(can->outcome, Outcome::rejected);
}

TEST_F(AdapterTest, QuotesStream) {
  start_emulator();
  make_broker(adapter_options());
  std::vector<Quote> quotes;
  broker->subscribe_quotes({"AAPL.US"}, [&](const Quote& q) { quotes.push_back(q); });
  ASSERT_TRUE(run_until([&] { return !quotes.empty(); }));
  quote("191.5");
  ASSERT_TRUE(run_until([&] { return !quotes.empty() && quotes.back().last == Price::parse("191.5"); }));
  EXPECT_EQ(quotes.back().symbol, "AAPL.US");
}

TEST_F(AdapterTest, TlsWithPinnedCertificateAndCaFile) {
  auto eo = emulator_options();
  eo.tls = true;
  start_emulator(std::move(eo));
  const fs::path pem = dir / "emulator.pem";
  std::ofstream(pem) << emu->certificate_pem();
  auto o = adapter_options();
  o.settings.tls.pinned_cert_file = pem.string();
  make_broker(o);
  std::optional<Outcome> acc;
  broker->list_accounts([&](Outcome oc, std::vector<std::string>, std::string) { acc = oc; });
  ASSERT_TRUE(run_until([&] { return acc.has_value(); }));
  EXPECT_EQ(*acc, Outcome::accepted);
  broker->stop();
  broker.reset();
  o.settings.tls.pinned_cert_file.clear();
  o.settings.tls.ca_file = pem.string();
  make_broker(o);
  // No trust configured: the handshake must fail, nothing is sent.
  broker->stop();
  broker.reset();
  o.settings.tls.ca_file.clear();
  ts::write_refresh_token(o.settings.refresh_token_file, emu->options().refresh_token);
  make_broker(o, false);
  broker->start();
  run_for(300ms);
  EXPECT_NE(broker->health().connectivity, Connectivity::connected);
}

TEST_F(AdapterTest, MissingRefreshTokenIsNotAuthenticatedAndSubmitFailsLocally) {
  start_emulator();
  auto o = adapter_options();
  fs::remove(o.settings.refresh_token_file);
  make_broker(o, false);
  broker->start();
  run_for(50ms);
  EXPECT_EQ(broker->health().connectivity, Connectivity::not_authenticated);
  EXPECT_NE(broker->health().detail.find("backstop auth tradestation"), std::string::npos);
  auto r = submit(spec("noauth", OrderType::market, Side::buy, 1));
  EXPECT_EQ(r.outcome, Outcome::failed_locally);
}

// Broker symbols, accounts and client order ids are ASCII: a byte outside printable ASCII fails
// locally, naming the field, before anything is recorded or sent (it used to go out as UTF-8, or,
// not being UTF-8, make nlohmann's dump() throw out of submit()).
TEST_F(AdapterTest, NonAsciiFieldFailsLocallyNamingItAndSendsNothing) {
  start_emulator();
  auto o = adapter_options();
  int order_requests = 0;
  o.on_response = [&](const std::string&, const std::string& target, int, const auto&, const std::string&) {
    if (target.find("/orderexecution/") != std::string::npos) ++order_requests;
  };
  make_broker(o);
  quote("190");
  const std::size_t logged = get("/__emulator/log")["requests"].size();
  for (const std::string sym : {"AAPL\xc3\xa9", "AAPL\xff"}) {
    auto s = spec("na-1", OrderType::limit, Side::buy, 1, "150");
    s.symbol = sym;
    std::optional<CommandResult> res;
    ASSERT_NO_THROW(broker->submit(s, [&](CommandResult r) { res = std::move(r); }));
    ASSERT_TRUE(res.has_value()) << "answered at once, without the network";
    EXPECT_EQ(res->outcome, Outcome::failed_locally);
    EXPECT_NE(res->message.find("order na-1: Symbol has a byte outside printable ASCII"), std::string::npos)
        << res->message;
    EXPECT_FALSE(broker->preview(s).has_value());
  }
  BracketSpec b;
  b.entry = spec("na-e", OrderType::limit, Side::buy, 10, "189");
  b.take_profit = spec("na-tp", OrderType::limit, Side::sell, 10, "200", {}, TimeInForce::gtc);
  b.protective_stop = spec("na-sl\xe2\x82\xac", OrderType::stop, Side::sell, 10, {}, "180", TimeInForce::gtc);
  std::optional<BracketResult> br;
  broker->submit_bracket(b, [&](BracketResult r) { br = std::move(r); });
  ASSERT_TRUE(br.has_value());
  EXPECT_EQ(br->outcome, Outcome::failed_locally);
  // Refused by the order's own validation (core/order.cpp), before the adapter's wire check.
  EXPECT_NE(br->message.find("client_order_id has a byte outside printable ASCII"), std::string::npos) << br->message;
  auto bad = spec("na-g2", OrderType::limit, Side::buy, 1, "171");
  bad.symbol = "\x01";
  std::optional<ts::GroupResult> g;
  broker->submit_group("OCO", {spec("na-g1", OrderType::limit, Side::buy, 1, "170"), bad},
                       [&](ts::GroupResult r) { g = std::move(r); });
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(g->outcome, Outcome::failed_locally);
  EXPECT_NE(g->message.find("order na-g2: Symbol"), std::string::npos) << g->message;

  run_for(100ms);
  EXPECT_EQ(order_requests, 0);
  EXPECT_EQ(get("/__emulator/log")["requests"].size(), logged);
  // Nothing is waiting to be resolved as possibly live.
  for (const char* coid : {"na-1", "na-e", "na-g1"}) EXPECT_EQ(query_coid(coid).outcome, Outcome::failed_locally) << coid;
  // And the next ordinary order goes out.
  EXPECT_EQ(submit(spec("na-ok", OrderType::limit, Side::buy, 1, "150")).outcome, Outcome::accepted);
  EXPECT_EQ(order_requests, 1);
}

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

TEST_F(AdapterTest, FirstAuthorizationThroughTheLoopbackRedirect) {
  start_emulator();
  TradeStationSettings s;
  s.base_url = emu->base_url() + "/v3";
  s.token_url = emu->base_url() + "/oauth/token";
  s.client_id = emu->options().client_id;
  s.client_secret = emu->options().client_secret;
  s.refresh_token_file = (dir / "first-token").string();
  s.redirect_uri = "http://127.0.0.1:" + std::to_string(free_port()) + "/callback";
  ts::AuthorizeOptions ao;
  ao.timeout = 10s;
  std::thread browser;
  ao.on_url = [&](const std::string& url) {
    EXPECT_NE(url.find("audience=https%3A%2F%2Fapi.tradestation.com"), std::string::npos);
    EXPECT_NE(url.find("scope=openid%20offline_access%20MarketData%20ReadAccount%20Trade"), std::string::npos);
    browser = std::thread([url, port = emu->port()] {
      // A forged callback with the wrong state is refused first.
      httplib::Client signin("127.0.0.1", port);
      auto r = signin.Get(url.substr(url.find("/authorize")));
      ASSERT_TRUE(r);
      ASSERT_EQ(r->status, 302);
      const std::string loc = r->get_header_value("Location");
      const auto host_end = loc.find('/', loc.find("//") + 2);
      const std::string origin = loc.substr(0, host_end);
      httplib::Client cb(origin);
      auto bad = cb.Get("/callback?code=x&state=forged");
      ASSERT_TRUE(bad);
      EXPECT_EQ(bad->status, 400);
      auto ok = cb.Get(loc.substr(host_end));
      ASSERT_TRUE(ok);
      EXPECT_EQ(ok->status, 200);
    });
  };
  const std::string err = ts::authorize(s, ao);
  if (browser.joinable()) browser.join();
  ASSERT_EQ(err, "");
  const auto token = ts::read_refresh_token(s.refresh_token_file);
  ASSERT_TRUE(token);
  struct stat st {};
  ASSERT_EQ(::stat(s.refresh_token_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // The stored token works.
  auto o = adapter_options();
  o.settings.refresh_token_file = s.refresh_token_file;
  ts::write_refresh_token(o.settings.refresh_token_file, *token);
  make_broker(o);
}

// The token endpoint's answer is untrusted text: a wrongly typed or absurd expires_in must neither
// throw something the refresh does not expect nor overflow the nanosecond expiry computed from it.
TEST(TokenResponse, ExpiresInOfAnyShapeGivesASaneLife) {
  auto life = [](const std::string& expires_in) {
    return tradestation::parse_token_response(R"({"access_token":"a","expires_in":)" + expires_in + "}").expires_in;
  };
  EXPECT_EQ(life("1200"), 1200);
  EXPECT_EQ(life("\"900\""), 900);
  EXPECT_EQ(life("600.0"), 600);
  EXPECT_EQ(life("0"), 1200);  // the default
  EXPECT_EQ(life("-5"), 1200);
  EXPECT_EQ(life("\"soon\""), 1200);
  EXPECT_EQ(life("\"12x\""), 1200);
  EXPECT_EQ(life("\"99999999999999999999999\""), 1200);
  EXPECT_EQ(life("18446744073709551615"), 1200);
  EXPECT_EQ(life("9223372036854775807"), 1200);  // seconds that overflow as nanoseconds
  EXPECT_EQ(life("1e300"), 1200);
  EXPECT_EQ(life("null"), 1200);
  EXPECT_EQ(life("[1]"), 1200);
  EXPECT_EQ(tradestation::parse_token_response(R"({"access_token":"a"})").expires_in, 1200);
  EXPECT_THROW(tradestation::parse_token_response(R"({"access_token":5})"), std::exception);
  EXPECT_THROW(tradestation::parse_token_response("not json"), std::exception);
}

// A 429's Retry-After: honoured in whole seconds from 1 to the longest back-off (60 s), never
// hours; an HTTP date or text leaves the group's own back-off (nullopt).
TEST(RetryAfter, WholeSecondsClampedToTheLongestBackOff) {
  EXPECT_EQ(ts::retry_after_seconds("5"), 5);
  EXPECT_EQ(ts::retry_after_seconds(" 12 "), 12);
  EXPECT_EQ(ts::retry_after_seconds("0"), 1);
  EXPECT_EQ(ts::retry_after_seconds("-3"), 1);
  EXPECT_EQ(ts::retry_after_seconds("86400"), 60);
  EXPECT_EQ(ts::retry_after_seconds("99999999999999999999999"), 60);
  EXPECT_EQ(ts::retry_after_seconds("Wed, 21 Oct 2026 07:28:00 GMT"), std::nullopt);
  EXPECT_EQ(ts::retry_after_seconds("5s"), std::nullopt);
  EXPECT_EQ(ts::retry_after_seconds(""), std::nullopt);
}

TEST(TradeStationAuthMain, RefusesMissingConfig) {
  const char* argv[] = {"auth", "tradestation"};
  EXPECT_EQ(auth_tradestation_main(2, const_cast<char**>(argv)), 2);
  const char* argv2[] = {"auth", "tradestation", "--config", "/nonexistent/backstop.json"};
  EXPECT_EQ(auth_tradestation_main(4, const_cast<char**>(argv2)), 2);
}

}  // namespace
