// The stop guard and reconciler with the real TradeStation and IBKR adapters against their
// emulators, over loopback sockets, with the emulators' faults on. The emulators serve on their
// own threads in real time, so the loop runs on a SystemClock and every wait is bounded: the loop
// is driven until a condition holds or a deadline passes (no sleeps). Prices are set at the
// emulator (so its venue matches them) and fed to the guard as an independent market-data feed.
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "brokers/ibkr/ibkr_broker.hpp"
#include "brokers/tradestation/tradestation_broker.hpp"
#include "brokers/tradestation/ts_auth.hpp"
#include "emulators/ibkr/ibkr_gateway_emulator.hpp"
#include "emulators/tradestation/tradestation_emulator.hpp"
#include "routing/reconciler.hpp"
#include "routing/stop_guard.hpp"

namespace tse = backstop::tradestation_emulator;
namespace ts = backstop::tradestation;
namespace fs = std::filesystem;
using namespace backstop;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

constexpr std::int64_t kAapl = 265598;
constexpr auto kGrace = 400ms;
constexpr auto kTick = 100ms;  // how often the test's feed moves the price

enum class Venue_ { tradestation, ibkr };
const char* name_of(Venue_ v) { return v == Venue_::tradestation ? "tradestation" : "ibkr"; }

class Protection : public ::testing::TestWithParam<Venue_> {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("backstop-protection-emu-" + std::to_string(::getpid()) + "-" +
                                       std::to_string(++counter()));
    fs::create_directories(dir);
    journal = std::make_unique<Journal>((dir / "j.db").string());
    orders = std::make_unique<OrderManager>(loop, *journal, ids);
  }
  void TearDown() override {
    guard.reset();
    for (Broker* b : {static_cast<Broker*>(tsb.get()), static_cast<Broker*>(ibb.get())})
      if (b) b->stop();
    loop.run_ready();
    orders.reset();
    tsb.reset();
    ibb.reset();
    run_for(50ms);
    if (ts_emu) ts_emu->stop();
    if (ib_emu) ib_emu->stop();
    journal.reset();
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  static int& counter() {
    static int n = 0;
    return n;
  }

  void start_tradestation(FaultProfile faults = {}) {
    tse::Options o;
    o.tick_interval = 0ms;
    o.heartbeat_interval = 200ms;
    o.cancel_delay = 20ms;
    o.faults = std::move(faults);
    o.seed = 11;
    o.replace_assigns_new_order_id = ts_replace_assigns_new_order_id;
    ts_emu = std::make_unique<tse::TradeStationEmulator>(o);
    ts_emu->start(0);
    control = std::make_unique<httplib::Client>("127.0.0.1", ts_emu->port());
    ts::TradeStationOptions a;
    a.account = "SIM2784990M";
    a.settings.base_url = ts_emu->base_url() + "/v3";
    a.settings.token_url = ts_emu->base_url() + "/oauth/token";
    a.settings.client_id = o.client_id;
    a.settings.client_secret = o.client_secret;
    a.settings.refresh_token_file = (dir / "refresh-token").string();
    a.settings.stream_inactivity_timeout = 2s;
    a.reconnect_min = 50ms;
    a.reconnect_max = 500ms;
    a.order_timeout = 3000ms;
    a.read_timeout = 3000ms;
    a.symbols = {{"AAPL", "AAPL"}};
    ts::write_refresh_token(a.settings.refresh_token_file, o.refresh_token);
    tsb = std::make_unique<ts::TradeStationBroker>(a, loop);
    orders->add_broker(*tsb);
    tsb->start();
    ASSERT_TRUE(run_until([&] { return tsb->health().connectivity == Connectivity::connected; }, 10s))
        << tsb->health().detail;
  }
  void start_ibkr(FaultProfile faults = {}) {
    IbkrEmulatorOptions o;
    o.pacing_window_scale = 0.02;
    o.faults = std::move(faults);
    o.seed = 12;
    ib_emu = std::make_unique<IbkrGatewayEmulator>(o);
    ib_emu->start();
    const auto cert = dir / "ibkr.pem";
    std::ofstream(cert) << ib_emu->certificate_pem();
    IbkrBrokerOptions a;
    a.settings.base_url = ib_emu->base_url() + "/v1/api";
    a.settings.tls.pinned_cert_file = cert.string();
    a.symbols = {{"AAPL", "AAPL"}};
    a.slow_endpoint_interval = 100ms;
    a.auth_poll_interval = 200ms;
    a.request_timeout = 3s;
    ibb = std::make_unique<IbkrBroker>(a, loop);
    orders->add_broker(*ibb);
    ibb->start();
    ASSERT_TRUE(run_until([&] { return ibb->health().connectivity == Connectivity::connected; }, 10s))
        << ibb->health().detail;
  }
  void start(Venue_ v, FaultProfile faults = {}) {
    if (v == Venue_::tradestation)
      start_tradestation(std::move(faults));
    else
      start_ibkr(std::move(faults));
  }
  void make_guard(ProtectionPolicy policy, std::map<std::string, std::string> mirrors = {}) {
    StopGuardSettings s;
    s.policy = policy;
    s.ghost_grace = kGrace;
    s.verify_deadline = 3s;
    s.verify_retry = 200ms;
    s.mirror_brokers = std::move(mirrors);
    Instrument inst;
    inst.symbol = "AAPL";
    inst.tick_size = TickSize(Price::parse("0.01"));
    guard = std::make_unique<StopGuard>(loop, *orders, *journal, s, std::map<std::string, Instrument>{{"AAPL", inst}});
  }

  bool run_until(const std::function<bool()>& pred, Duration limit = 10s) {
    const Timestamp deadline = clock.now() + to_ns(limit);
    while (!pred()) {
      if (clock.now() >= deadline) return false;
      loop.run_until(std::min(deadline, clock.now() + to_ns(5ms)));
    }
    return true;
  }
  void run_for(Duration d) { loop.run_until(clock.now() + to_ns(d)); }

  // Sets the price at the emulator(s) and feeds the same tick to the guard.
  void price(const std::string& last) {
    const Price p = Price::parse(last), cent = Price::parse("0.01");
    if (ts_emu) {
      auto r = control->Post("/__emulator/quote",
                             json{{"symbol", "AAPL"}, {"bid", (p - cent).to_string()}, {"ask", (p + cent).to_string()},
                                  {"last", last}}
                                 .dump(),
                             "application/json");
      EXPECT_TRUE(r && r->status == 200);
    }
    if (ib_emu) ib_emu->set_quote(kAapl, p - cent, p + cent, p);
    if (guard) {
      Quote q;
      q.symbol = "AAPL";
      q.last = p;
      q.bid = p - cent;
      q.ask = p + cent;
      q.at = loop.now();
      q.source = "test-feed";
      guard->on_quote(q);
    }
  }
  // Walks the price down one cent per tick from `from` to `to`, running the loop between ticks.
  void walk_down(const char* from, const char* to) {
    const Price end = Price::parse(to), cent = Price::parse("0.01");
    for (Price p = Price::parse(from); p >= end; p = p - cent) {
      price(p.to_string());
      run_for(kTick);
    }
  }
  // Holds the last price, ticking it to the guard, until `pred` or the limit.
  bool hold_until(const std::string& last, const std::function<bool()>& pred, Duration limit = 10s) {
    const Timestamp deadline = clock.now() + to_ns(limit);
    while (!pred()) {
      if (clock.now() >= deadline) return false;
      price(last);
      run_for(kTick);
    }
    return true;
  }

  Broker& broker(Venue_ v) { return v == Venue_::tradestation ? static_cast<Broker&>(*tsb) : *ibb; }
  bool filled(const std::string& coid) {
    const OrderRecord* o = orders->find(coid);
    return o && o->state == OrderState::filled;
  }
  bool verdict(const std::string& coid) {
    auto it = guard->stops().find(coid);
    return it != guard->stops().end() && it->second.verification != Verification::pending;
  }
  // Long `qty` at `b` (waits for the fill, through a resync if the stream lost it), then a sell stop.
  std::string long_with_stop(const std::string& b, std::int64_t qty, const char* stop) {
    const auto buy = orders->submit(b, market_order("AAPL", Side::buy, qty));
    EXPECT_TRUE(run_until([&] {
      if (!filled(buy)) {
        orders->resync();
        run_for(100ms);
      }
      return filled(buy);
    })) << b;
    const auto id = orders->submit(b, stop_order("AAPL", Side::sell, qty, Price::parse(stop)));
    EXPECT_TRUE(run_until([&] { return verdict(id); })) << b;
    return id;
  }
  OrdersResult open_orders(Broker& b) {
    std::optional<OrdersResult> r;
    b.list_open_orders([&](OrdersResult x) { r = std::move(x); });
    EXPECT_TRUE(run_until([&] { return r.has_value(); }));
    return r.value_or(OrdersResult{});
  }
  std::int64_t venue_position(Broker& b) {
    // Read until two answers agree: position caches (IBKR) may lag the fills by one read.
    std::optional<PositionsResult> r;
    b.list_positions([&](PositionsResult x) { r = std::move(x); });
    EXPECT_TRUE(run_until([&] { return r.has_value(); }));
    std::int64_t q = 0;
    if (r)
      for (const auto& p : r->positions) q += p.symbol == "AAPL" ? p.quantity : 0;
    return q;
  }
  // Order requests that reached the emulator for a client order id (its own log).
  // (Each parsed log is a named local: a range-for over a member of a temporary dangles.)
  int arrivals(Venue_ v, const std::string& coid) {
    int n = 0;
    if (v == Venue_::tradestation) {
      const json log = json::parse(control->Get("/__emulator/log")->body);
      for (const auto& e : log["requests"]) n += e.value("OrderConfirmID", "") == coid && e.value("accepted", false);
    } else {
      const json log = json::parse(ib_emu->log_json());
      for (const auto& e : log["orders"]) n += e.value("cOID", "") == coid && e.value("stage", "") == "executed";
    }
    return n;
  }
  // Distinct client order ids of accepted order requests in the emulator's log.
  std::set<std::string> accepted_orders(Venue_ v) {
    std::set<std::string> out;
    if (v == Venue_::tradestation) {
      const json log = json::parse(control->Get("/__emulator/log")->body);
      for (const auto& e : log["requests"])
        if (e.value("accepted", false) && !e.value("OrderConfirmID", "").empty()) out.insert(e["OrderConfirmID"]);
    } else {
      const json log = json::parse(ib_emu->log_json());
      for (const auto& e : log["orders"])
        if (e.value("stage", "") == "executed" && !e.value("cOID", "").empty()) out.insert(e["cOID"]);
    }
    return out;
  }
  std::size_t faults_of(Venue_ v, const std::string& kind) {
    std::size_t n = 0;
    for (const auto& f : v == Venue_::tradestation ? ts_emu->fault_log() : ib_emu->fault_log()) n += f.kind == kind;
    return n;
  }

  SystemClock clock;
  EventLoop loop{clock};
  fs::path dir;
  std::unique_ptr<Journal> journal;
  ClientOrderIdGenerator ids{ClientOrderIdGenerator::time_prefix(SystemClock().now())};
  std::unique_ptr<OrderManager> orders;
  std::unique_ptr<tse::TradeStationEmulator> ts_emu;
  std::unique_ptr<httplib::Client> control;
  std::unique_ptr<IbkrGatewayEmulator> ib_emu;
  std::unique_ptr<ts::TradeStationBroker> tsb;
  std::unique_ptr<IbkrBroker> ibb;
  std::unique_ptr<StopGuard> guard;
  bool ts_replace_assigns_new_order_id = false;  // read by start_tradestation
};

}  // namespace

// Ghost stops at rate 1.0: every crossed stop is declared within grace plus one tick, and under
// `guard` each position is flattened exactly once, as the emulator's own order log shows.
TEST_P(Protection, GhostStopsDeclaredInTimeAndFlattenedOnce) {
  const Venue_ v = GetParam();
  FaultProfile f;
  f.ghost_stop_rate = 1.0;
  start(v, f);
  make_guard(ProtectionPolicy::guard);
  price("190.00");
  const auto s1 = long_with_stop(name_of(v), 10, "189.80");
  const auto s2 = long_with_stop(name_of(v), 20, "189.60");
  ASSERT_EQ(guard->stops().at(s1).verification, Verification::verified) << guard->stops().at(s1).detail;
  ASSERT_EQ(guard->stops().at(s2).verification, Verification::verified) << guard->stops().at(s2).detail;
  walk_down("189.99", "189.50");
  ASSERT_TRUE(hold_until("189.50", [&] {
    if (guard->ghosts().size() < 2) return false;
    for (const auto& g : guard->ghosts())
      if (g.flatten_order.empty() || !filled(g.flatten_order)) {
        orders->resync();
        return false;
      }
    return true;
  })) << guard->ghosts().size();
  EXPECT_EQ(faults_of(v, "ghost_stop_crossed"), 2u);
  for (const auto& g : guard->ghosts()) {
    EXPECT_GE(g.declared_at - g.crossed_at, to_ns(kGrace)) << g.client_order_id;
    EXPECT_LE(g.declared_at - g.crossed_at, to_ns(kGrace + kTick)) << g.client_order_id;
    EXPECT_EQ(arrivals(v, g.flatten_order), 1) << "one flatten per ghost: " << g.action;
  }
  hold_until("189.50", [] { return false; }, 1s);  // let any duplicate show up
  EXPECT_EQ(accepted_orders(v).size(), 6u) << "2 entries, 2 stops, 2 flattens: nothing else was sent";
  EXPECT_EQ(venue_position(broker(v)), 0);
  EXPECT_TRUE(open_orders(broker(v)).orders.empty()) << "the ghosts were cancelled";
}

// Protection `local` with every broker stop a ghost (rate 1.0): the stops are held by Backstop, so
// the venue never holds one to lose. When price goes through, each reaches the venue once, as a
// market order under its own client order id, and the position is flat.
TEST_P(Protection, HeldStopsReachTheVenueOnlyAsMarketOrdersUnderTheirOwnIds) {
  const Venue_ v = GetParam();
  FaultProfile f;
  f.ghost_stop_rate = 1.0;
  start(v, f);
  make_guard(ProtectionPolicy::local);
  price("190.00");
  const auto buy = orders->submit(name_of(v), market_order("AAPL", Side::buy, 30));
  ASSERT_TRUE(run_until([&] {
    if (!filled(buy)) {
      orders->resync();
      run_for(100ms);
    }
    return filled(buy);
  }));
  const auto s1 = orders->hold(name_of(v), stop_order("AAPL", Side::sell, 10, Price::parse("189.80")));
  const auto s2 = orders->hold(name_of(v), stop_order("AAPL", Side::sell, 20, Price::parse("189.60")));
  run_for(200ms);
  EXPECT_EQ(accepted_orders(v), std::set<std::string>{buy}) << "no stop at the venue";
  EXPECT_TRUE(open_orders(broker(v)).orders.empty());
  walk_down("189.99", "189.50");
  ASSERT_TRUE(hold_until("189.50", [&] {
    if (filled(s1) && filled(s2)) return true;
    orders->resync();
    return false;
  }));
  for (const auto& s : {s1, s2}) {
    EXPECT_EQ(arrivals(v, s), 1) << s;
    EXPECT_EQ(orders->find(s)->spec.type, OrderType::market) << s;
  }
  hold_until("189.50", [] { return false; }, 1s);  // let any duplicate show up
  EXPECT_EQ(accepted_orders(v), (std::set<std::string>{buy, s1, s2})) << "nothing else was sent";
  EXPECT_EQ(venue_position(broker(v)), 0);
  EXPECT_EQ(faults_of(v, "ghost_stop_crossed"), 0u) << "no stop at the venue to ghost";
  EXPECT_TRUE(guard->ghosts().empty());
  journal->flush();
  EXPECT_EQ(journal->events("local_stop_fired").size(), 2u);
}

// 80 % of fill events dropped: one reconciliation recovers every fill.
TEST_P(Protection, DroppedFillsRecoveredInOneReconciliation) {
  const Venue_ v = GetParam();
  FaultProfile f;
  f.drop_fill_event_rate = 0.8;
  start(v, f);
  Reconciler rec(loop, *orders, *journal);
  price("190.00");
  std::vector<std::string> ids_;
  std::int64_t expected = 0;
  for (int i = 0; i < 10; ++i) {
    const Side side = i % 3 == 2 ? Side::sell : Side::buy;
    expected += side == Side::buy ? 5 + i : -(5 + i);
    ids_.push_back(orders->submit(name_of(v), market_order("AAPL", side, 5 + i)));
    ASSERT_TRUE(run_until([&] { return orders->find(ids_.back())->state != OrderState::pending &&
                                       orders->find(ids_.back())->state != OrderState::pre_sent; }));
  }
  run_for(500ms);  // whatever the stream delivers, it has delivered
  const std::string drop_kind = v == Venue_::tradestation ? "ts_drop_fill_frame" : "drop_sor";
  ASSERT_GT(faults_of(v, drop_kind), 3u);
  bool done = false;
  rec.reconcile_orders(name_of(v), [&] { done = true; });
  ASSERT_TRUE(run_until([&] { return done; }));
  for (const auto& id : ids_) EXPECT_TRUE(filled(id)) << id << " " << to_string(orders->find(id)->state);
  EXPECT_EQ(orders->position(name_of(v), "AAPL"), expected);
  EXPECT_EQ(venue_position(broker(v)), expected);
}

// A stop whose read-back differs in one field is a verification mismatch naming the field.
TEST_P(Protection, AlteredReadBackIsAMismatchNamingTheField) {
  const Venue_ v = GetParam();
  FaultProfile f;
  f.extra[v == Venue_::tradestation ? "ts_alter_stop_readback" : "ibkr_alter_stop_readback"] = 1.0;
  start(v, f);
  make_guard(ProtectionPolicy::verify);
  price("190.00");
  const auto id = orders->submit(name_of(v), stop_order("AAPL", Side::sell, 10, Price::parse("189.50")));
  ASSERT_TRUE(run_until([&] { return verdict(id); }));
  EXPECT_EQ(guard->stops().at(id).verification, Verification::mismatch);
  EXPECT_EQ(guard->stops().at(id).detail, "stop_price: sent 189.5, broker has 189.51");
}

// An order acknowledged and then missing at the broker is a reconciler divergence (and its
// verification never succeeds).
TEST_P(Protection, OrderMissingAtTheBrokerIsReported) {
  const Venue_ v = GetParam();
  FaultProfile f;
  f.extra[v == Venue_::tradestation ? "ts_lost_order" : "ibkr_lost_order"] = 1.0;
  start(v, f);
  make_guard(ProtectionPolicy::verify);
  Reconciler rec(loop, *orders, *journal);
  price("190.00");
  const auto id = orders->submit(name_of(v), stop_order("AAPL", Side::sell, 10, Price::parse("189.50")));
  ASSERT_TRUE(run_until([&] { return verdict(id); }));
  EXPECT_NE(guard->stops().at(id).verification, Verification::verified) << guard->stops().at(id).detail;
  bool done = false;
  rec.reconcile_orders(name_of(v), [&] { done = true; });
  ASSERT_TRUE(run_until([&] { return done; }));
  ASSERT_EQ(rec.count(name_of(v), "missing_at_broker"), 1u);
  EXPECT_EQ(rec.divergences().back().client_order_id, id);
}

INSTANTIATE_TEST_SUITE_P(Emulators, Protection, ::testing::Values(Venue_::tradestation, Venue_::ibkr),
                         [](const auto& instance) { return std::string(name_of(instance.param)); });

// The mirror policy across the two emulators: primary stops at TradeStation, mirrors at IBKR.
// A mirror appears while the primary is unverified and while TradeStation is down, and goes when
// the primary reads back verified; the run ends with no order left at either and flat at both.
TEST_F(Protection, MirrorAtIbkrForTradeStationStops) {
  start_tradestation();
  start_ibkr();
  make_guard(ProtectionPolicy::mirror, {{"tradestation", "ibkr"}});
  price("190.00");
  const auto stop = long_with_stop("tradestation", 10, "189.50");
  ASSERT_EQ(guard->stops().at(stop).verification, Verification::verified);
  auto mirror_ended = [&](std::size_t i) {
    const OrderRecord* m = orders->find(guard->mirrors()[i].mirror);
    return m && m->state == OrderState::cancelled;
  };
  ASSERT_GE(guard->mirrors().size(), 1u) << "placed while the read-back was pending";
  ASSERT_TRUE(run_until([&] { return mirror_ended(0); })) << guard->mirrors()[0].removed_because;
  EXPECT_EQ(guard->mirrors()[0].removed_because, "primary stop verified");

  guard->set_broker_down("tradestation", true);
  ASSERT_EQ(guard->mirrors().size(), 2u);
  const auto mirror = guard->mirrors()[1].mirror;
  ASSERT_TRUE(run_until([&] { return orders->find(mirror)->state == OrderState::submitted; }));
  const auto at_ibkr = open_orders(*ibb);
  ASSERT_EQ(at_ibkr.orders.size(), 1u);
  EXPECT_EQ(at_ibkr.orders[0].type, OrderType::stop);
  EXPECT_EQ(at_ibkr.orders[0].side, Side::sell);
  EXPECT_EQ(at_ibkr.orders[0].quantity, 10);
  EXPECT_EQ(at_ibkr.orders[0].stop_price, Price::parse("189.50"));

  guard->set_broker_down("tradestation", false);
  ASSERT_TRUE(run_until([&] { return mirror_ended(1); })) << guard->mirrors()[1].removed_because;
  EXPECT_EQ(guard->mirrors()[1].removed_because, "primary stop verified");
  EXPECT_EQ(guard->mirrors().size(), 2u);

  // Close the position: cancel the stop, sell at market.
  orders->cancel(stop);
  const auto sell = orders->submit("tradestation", market_order("AAPL", Side::sell, 10));
  ASSERT_TRUE(run_until([&] {
    orders->resync();
    run_for(50ms);
    return filled(sell) && orders->find(stop)->state == OrderState::cancelled;
  }));
  EXPECT_TRUE(open_orders(*tsb).orders.empty());
  EXPECT_TRUE(open_orders(*ibb).orders.empty()) << "no orphan mirror";
  EXPECT_EQ(venue_position(*tsb), 0);
  EXPECT_EQ(venue_position(*ibb), 0);
  journal->flush();
  EXPECT_EQ(journal->events("mirror_placed").size(), 2u);
  EXPECT_EQ(journal->events("mirror_removed").size(), 2u);
}

// TradeStation's replace answer names an OrderID (api-notes section 3). Where it names a new order
// (the emulator's replace_assigns_new_order_id), the old order ends "UCH" (Replaced, a cancelled
// status) on the stream. The protective stop lives on under the new id: not taken for cancelled,
// verified and reconciled at its new price there, and it fires once when price goes through it.
TEST_F(Protection, AStopReplacedUnderANewTradeStationOrderIdStaysGuardedAndFiresOnce) {
  ts_replace_assigns_new_order_id = true;
  start_tradestation();
  make_guard(ProtectionPolicy::verify);
  Reconciler rec(loop, *orders, *journal);
  price("190.00");
  const auto stop = long_with_stop("tradestation", 10, "189.50");
  ASSERT_EQ(guard->stops().at(stop).verification, Verification::verified) << guard->stops().at(stop).detail;
  const std::string old_id = orders->find(stop)->broker_order_id;

  OrderSpec moved = orders->find(stop)->spec;
  moved.stop_price = Price::parse("189.80");
  std::optional<CommandResult> rep;
  orders->replace(stop, moved, [&](CommandResult r) { rep = std::move(r); });
  ASSERT_TRUE(run_until([&] { return rep.has_value(); }));
  ASSERT_EQ(rep->outcome, Outcome::accepted) << rep->message;
  const std::string new_id = orders->find(stop)->broker_order_id;
  ASSERT_NE(new_id, old_id) << "the emulator placed the change as a new order";
  EXPECT_EQ(new_id, rep->broker_order_id);

  // The old order's UCH has come (the stream is ahead of a full order read): journaled as the end
  // of a superseded order, or (wrongly) taken for this order's end.
  ASSERT_TRUE(run_until([&] {
    journal->flush();
    return !journal->events("superseded_order_event").empty() || orders->find(stop)->is_terminal();
  }));
  EXPECT_TRUE(is_working(orders->find(stop)->state)) << to_string(orders->find(stop)->state);
  const auto open = open_orders(*tsb);
  ASSERT_EQ(open.orders.size(), 1u);
  EXPECT_EQ(open.orders[0].broker_order_id, new_id);
  EXPECT_EQ(open.orders[0].stop_price, Price::parse("189.80"));
  ASSERT_TRUE(run_until([&] { return guard->stops().at(stop).verification == Verification::verified; }))
      << guard->stops().at(stop).detail;
  bool reconciled = false;
  rec.reconcile_orders("tradestation", [&] { reconciled = true; });
  ASSERT_TRUE(run_until([&] { return reconciled; }));
  EXPECT_TRUE(rec.divergences().empty()) << rec.divergences().front().kind << ": " << rec.divergences().front().detail;

  walk_down("189.99", "189.75");
  ASSERT_TRUE(hold_until("189.75", [&] {
    if (!filled(stop)) orders->resync();
    return filled(stop);
  })) << to_string(orders->find(stop)->state);
  hold_until("189.75", [] { return false; }, 500ms);  // let a second fill show up, if any
  EXPECT_EQ(orders->find(stop)->filled_quantity, 10);
  EXPECT_EQ(venue_position(*tsb), 0);
  EXPECT_TRUE(open_orders(*tsb).orders.empty());
}
