// The `mirror` protection policy on two simulated venues (ManualClock: every timer runs at once),
// with faults on: read-back mismatches, a primary broker that goes down, stops that fire at both
// venues, ghost stops, and lost orders. Every test ends by checking both venues' own books: no
// open order left behind and the intended net position.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "brokers/sim/sim_broker.hpp"
#include "routing/reconciler.hpp"
#include "routing/stop_guard.hpp"

using namespace backstop;
using namespace std::chrono_literals;

namespace {

// Plays a list of last prices, one per tick, then holds the last one. Both venues get the same
// list, so a stop price is crossed at both at the same tick. The position played lives outside
// the router process (`played`), so a restarted process's feed goes on where the market is.
class Script final : public PricePath {
 public:
  Script(std::shared_ptr<std::vector<std::string>> lasts, std::size_t& played)
      : lasts_(std::move(lasts)), i_(played) {}
  std::optional<Quote> next(Timestamp now) override {
    // Holds the last price without running ahead, so that appended prices play next.
    const Price last = Price::parse((*lasts_)[std::min(i_, lasts_->size() - 1)]);
    if (i_ < lasts_->size()) ++i_;
    Quote q;
    q.symbol = "AAPL";
    q.last = last;
    q.bid = last - Price::parse("0.01");
    q.ask = last + Price::parse("0.01");
    q.at = now;
    q.source = "script";
    return q;
  }

 private:
  std::shared_ptr<std::vector<std::string>> lasts_;
  std::size_t& i_;
};

SimBrokerOptions named(const char* name) {
  SimBrokerOptions o;
  o.name = name;
  o.tick_interval = 100ms;
  return o;
}

std::vector<std::string> down_from(double from, double to) {
  std::vector<std::string> out;
  for (int c = static_cast<int>(from * 100 + 0.5); c >= static_cast<int>(to * 100 + 0.5); --c) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%d.%02d", c / 100, c % 100);
    out.push_back(buf);
  }
  return out;
}

// Everything outside the router process: the clock, the primary venue "sim_a" (faults as
// given), the mirror venue "sim_b" (no faults), the price script and the journal's folder.
struct Venues {
  explicit Venues(FaultProfile primary_faults)
      : dir(std::filesystem::temp_directory_path() /
            ("backstop-protection-" + std::to_string(::getpid()) + "-" + std::to_string(++counter()))),
        fa(std::move(primary_faults), 7),
        fb(FaultProfile{}, 8),
        va(clock, fa),
        vb(clock, fb) {
    std::filesystem::create_directories(dir);
    for (Venue* v : {&va, &vb}) v->add_instrument("AAPL", TickSize(Price::parse("0.01")));
    prices->assign(20, "100.00");
  }
  ~Venues() { std::filesystem::remove_all(dir); }
  static int& counter() {
    static int n = 0;
    return n;
  }
  std::string journal_path() const { return (dir / "j.db").string(); }
  // From the next tick on, price walks down from 99.99 to `to` one cent per tick.
  void fall_to(double to) {
    auto more = down_from(99.99, to);
    // The scripts hold their last price; replace the tail they have not played yet.
    prices->insert(prices->end(), more.begin(), more.end());
  }
  // After a double fill of a 100-share long's stop and its mirror: one restoring buy at the
  // mirror venue, both venues flat, nothing left working.
  void expect_double_fill_restored_once() const {
    EXPECT_EQ(market_orders(vb, Side::buy), 1) << "exactly one restoring order";
    EXPECT_EQ(venue_position(va), 0);
    EXPECT_EQ(venue_position(vb), 0);
    EXPECT_TRUE(va.open_orders().empty());
    EXPECT_TRUE(vb.open_orders().empty());
  }
  static std::int64_t venue_position(const Venue& v) {
    std::int64_t q = 0;
    for (const auto& p : v.positions()) q += p.quantity;
    return q;
  }
  static int market_orders(const Venue& v, Side side) {
    int n = 0;
    for (const auto& o : v.orders()) n += o.type == OrderType::market && o.side == side;
    return n;
  }

  std::filesystem::path dir;
  ManualClock clock;
  FaultInjector fa, fb;
  Venue va, vb;
  std::shared_ptr<std::vector<std::string>> prices = std::make_shared<std::vector<std::string>>();
  std::size_t played_a = 0, played_b = 0;
};

// One router process on the two venues. Destroying it is a kill: no shutdown of any kind (the
// journal commits what was queued, as a SIGKILL after those commits leaves it).
struct RouterProcess {
  RouterProcess(Venues& v, ProtectionPolicy policy, const char* id_prefix = "P")
      : loop(v.clock),
        journal(v.journal_path()),
        ids(id_prefix),
        orders(loop, journal, ids),
        a(named("sim_a"), loop, v.va),
        b(named("sim_b"), loop, v.vb) {
    a.add_price_path(std::make_unique<Script>(v.prices, v.played_a));
    b.add_price_path(std::make_unique<Script>(v.prices, v.played_b));
    orders.add_broker(a);
    orders.add_broker(b);
    StopGuardSettings s;
    s.policy = policy;
    s.ghost_grace = 2s;
    s.verify_deadline = 1s;
    s.mirror_brokers = {{"sim_a", "sim_b"}};
    Instrument inst;
    inst.symbol = "AAPL";
    inst.tick_size = TickSize(Price::parse("0.01"));
    guard = std::make_unique<StopGuard>(loop, orders, journal, s, std::map<std::string, Instrument>{{"AAPL", inst}});
    // The guard watches prices from the primary venue's feed (it keeps flowing while the order
    // link is down, like an independent market-data source).
    a.subscribe_quotes({"AAPL"}, [this](const Quote& q) { guard->on_quote(q); });
    a.start();
    b.start();
  }
  ~RouterProcess() { guard.reset(); }
  // Start-up after a kill, in Session::start's order: recovery against both brokers, then the
  // guard's restores.
  void start_after_restart() {
    bool recovered = false;
    orders.recover([&](std::size_t, std::size_t) { recovered = true; });
    for (int i = 0; i < 500 && !recovered; ++i) run_for(10ms);
    ASSERT_TRUE(recovered);
    guard->restore_from_journal();
  }
  void run_for(Duration d) { loop.run_until(loop.now() + d.count()); }
  // Long `qty` at the primary, then a GTC sell stop there; returns the stop's id.
  std::string long_with_stop(std::int64_t qty, const char* stop) {
    orders.submit("sim_a", market_order("AAPL", Side::buy, qty));
    run_for(300ms);
    orders.resync();
    run_for(100ms);
    const auto id = orders.submit("sim_a", stop_order("AAPL", Side::sell, qty, Price::parse(stop)));
    run_for(300ms);
    return id;
  }
  std::size_t events(const char* kind) {
    journal.flush();
    return journal.events(kind).size();
  }

  EventLoop loop;
  Journal journal;
  ClientOrderIdGenerator ids;
  OrderManager orders;
  SimBroker a, b;
  std::unique_ptr<StopGuard> guard;
};

// The venues and one process that is never restarted.
struct TwoVenues : Venues, RouterProcess {
  explicit TwoVenues(FaultProfile primary_faults, ProtectionPolicy policy = ProtectionPolicy::mirror)
      : Venues(std::move(primary_faults)), RouterProcess(static_cast<Venues&>(*this), policy) {
    run_for(200ms);
  }
};

// A 100-share long with a 99.50 stop at the primary; its broker goes down (a mirror goes up) and
// price falls through the stop. Returns the stop's id.
std::string stop_then_primary_down_and_price_through_it(Venues& v, RouterProcess& p) {
  const auto stop = p.long_with_stop(100, "99.50");
  p.run_for(2s);
  p.a.set_link_up(false);
  p.guard->set_broker_down("sim_a", true);
  p.run_for(1s);
  v.fall_to(99.00);
  p.run_for(10s);
  return stop;
}

// The same where the primary fills unseen and the mirror fills too.
std::string double_fill_while_the_primary_is_down(Venues& v, RouterProcess& p) {
  const auto stop = stop_then_primary_down_and_price_through_it(v, p);
  EXPECT_EQ(v.va.find_by_client_id(stop)->status, VenueStatus::filled) << "the primary fired, unseen";
  EXPECT_EQ(Venues::venue_position(v.vb), -100) << "the mirror fired too";
  return stop;
}

}  // namespace

// On the simulated venue the read-back answers within the acknowledgement's turn, so a sound
// stop is verified before it was ever seen unverified: no mirror is placed at all. (The emulator
// test MirrorAtIbkrForTradeStationStops covers a read-back that takes time.)
TEST(Mirror, StopVerifiedAtItsAcknowledgementNeedsNoMirror) {
  TwoVenues t(FaultProfile{});
  const auto stop = t.long_with_stop(100, "99.50");
  t.run_for(5s);
  EXPECT_EQ(t.guard->stops().at(stop).verification, Verification::verified);
  EXPECT_TRUE(t.guard->mirrors().empty());
  EXPECT_TRUE(t.vb.orders().empty()) << "nothing was sent to the second venue";
  EXPECT_EQ(t.events("mirror_placed"), 0u);
}

// A read-back that differs in one field keeps the mirror in place for as long as the stop is
// wrong; cancelling the primary (the position is closed) removes it.
TEST(Mirror, MismatchKeepsTheMirrorUntilThePrimaryEnds) {
  FaultProfile p;
  p.extra["sim_alter_stop_readback"] = 1.0;
  TwoVenues t(p);
  const auto stop = t.long_with_stop(100, "99.50");
  t.run_for(10s);
  const auto& rec = t.guard->stops().at(stop);
  EXPECT_EQ(rec.verification, Verification::mismatch);
  EXPECT_EQ(rec.detail, "stop_price: sent 99.5, broker has 99.51");
  ASSERT_EQ(t.guard->mirrors().size(), 1u);
  EXPECT_FALSE(t.guard->mirrors()[0].removal_requested);
  ASSERT_EQ(t.vb.open_orders().size(), 1u) << "the mirror works at the second venue";
  t.orders.cancel(stop);
  t.orders.submit("sim_a", market_order("AAPL", Side::sell, 100));
  t.run_for(2s);
  t.orders.resync();
  t.run_for(1s);
  EXPECT_TRUE(t.guard->mirrors()[0].removal_requested);
  EXPECT_TRUE(t.va.open_orders().empty());
  EXPECT_TRUE(t.vb.open_orders().empty()) << "no orphan mirror";
  EXPECT_EQ(TwoVenues::venue_position(t.va) + TwoVenues::venue_position(t.vb), 0);
  EXPECT_EQ(t.events("mirror_removed"), 1u);
}

// The primary moved by a replace while its mirror stands (here for good: the primary reads back
// wrong): the mirror is moved with it, not left protecting at the level the strategy left. Price
// then falls between the old level and the new: neither fires.
TEST(Mirror, AMirrorMovesWithItsReplacedPrimary) {
  FaultProfile p;
  p.extra["sim_alter_stop_readback"] = 1.0;
  TwoVenues t(p);
  const auto stop = t.long_with_stop(100, "99.50");
  t.run_for(5s);
  ASSERT_EQ(t.guard->mirrors().size(), 1u);
  ASSERT_EQ(t.vb.open_orders().size(), 1u);
  ASSERT_EQ(t.vb.open_orders()[0].stop_price, Price::parse("99.50"));

  OrderSpec moved = t.orders.find(stop)->spec;
  moved.stop_price = Price::parse("99.30");
  std::optional<CommandResult> r;
  t.orders.replace(stop, moved, [&](CommandResult c) { r = std::move(c); });
  t.run_for(2s);
  ASSERT_TRUE(r && r->outcome == Outcome::accepted) << (r ? r->message : "no answer");
  ASSERT_EQ(t.vb.open_orders().size(), 1u);
  EXPECT_EQ(t.vb.open_orders()[0].stop_price, Price::parse("99.30")) << "the mirror moved with its primary";
  EXPECT_EQ(t.vb.open_orders()[0].quantity, 100);
  EXPECT_EQ(t.guard->mirrors().size(), 1u) << "moved, not placed again";
  EXPECT_EQ(t.events("mirror_replace_requested"), 1u);

  t.fall_to(99.40);
  t.run_for(5s);
  EXPECT_EQ(TwoVenues::venue_position(t.va), 100);
  EXPECT_EQ(TwoVenues::venue_position(t.vb), 0) << "the mirror did not fire at the old level";
  EXPECT_EQ(t.va.open_orders().size(), 1u);
  EXPECT_EQ(t.vb.open_orders().size(), 1u);
}

// Broker down with a working stop: a mirror goes up at the second venue; back up, the stop is
// read back again, and only then the mirror goes.
TEST(Mirror, BrokerDownPlacesMirrorsBackUpRemovesThemAfterReverify) {
  TwoVenues t(FaultProfile{});
  const auto stop = t.long_with_stop(100, "99.50");
  t.run_for(2s);
  ASSERT_TRUE(t.vb.open_orders().empty());
  t.a.set_link_up(false);
  t.guard->set_broker_down("sim_a", true);
  t.run_for(5s);
  ASSERT_EQ(t.guard->mirrors().size(), 1u);
  EXPECT_EQ(t.guard->mirrors()[0].placed_because, "broker sim_a down");
  ASSERT_EQ(t.vb.open_orders().size(), 1u);
  const VenueOrder m = t.vb.open_orders()[0];
  EXPECT_EQ(m.client_order_id, t.guard->mirrors()[0].mirror);
  EXPECT_EQ(m.type, OrderType::stop);
  EXPECT_EQ(m.side, Side::sell);
  EXPECT_EQ(m.quantity, 100);
  EXPECT_EQ(m.stop_price, Price::parse("99.50"));
  EXPECT_EQ(m.tif, TimeInForce::gtc);
  t.a.set_link_up(true);
  t.guard->set_broker_down("sim_a", false);
  t.run_for(2s);
  EXPECT_EQ(t.guard->stops().at(stop).verification, Verification::verified);
  EXPECT_EQ(t.guard->mirrors()[0].removed_because, "primary stop verified");
  EXPECT_TRUE(t.vb.open_orders().empty());
  EXPECT_EQ(t.va.open_orders().size(), 1u) << "the primary keeps protecting";
  EXPECT_EQ(t.events("mirror_placed"), 1u);
  EXPECT_EQ(t.events("mirror_removed"), 1u);
  t.journal.flush();
  const auto removed = nlohmann::json::parse(t.journal.events("mirror_removed")[0].detail);
  EXPECT_EQ(removed.at("reason"), "primary stop verified");
  EXPECT_EQ(removed.at("primary"), stop);
}

// A stop is mirrored at the first other broker of its own strategy's route: after a failover the
// strategy's stop is at the route's second broker, and its mirror goes to the first.
TEST(Mirror, AStopAtTheRoutesSecondBrokerIsMirroredAtItsFirst) {
  TwoVenues t(FaultProfile{});
  StopGuardSettings s = t.guard->settings();
  s.mirror_brokers.clear();
  s.strategy_routes = {{"s", {"sim_a", "sim_b"}}};
  Instrument inst;
  inst.symbol = "AAPL";
  t.guard = std::make_unique<StopGuard>(t.loop, t.orders, t.journal, s, std::map<std::string, Instrument>{{"AAPL", inst}});
  OrderSpec buy = market_order("AAPL", Side::buy, 100);
  buy.strategy = "s";
  t.orders.submit("sim_b", buy);
  t.run_for(300ms);
  t.orders.resync();
  t.run_for(100ms);
  OrderSpec stop = stop_order("AAPL", Side::sell, 100, Price::parse("99.50"));
  stop.strategy = "s";
  t.orders.submit("sim_b", stop);
  t.run_for(2s);
  ASSERT_TRUE(t.va.open_orders().empty());
  t.b.set_link_up(false);
  t.guard->set_broker_down("sim_b", true);
  t.run_for(5s);
  ASSERT_EQ(t.guard->mirrors().size(), 1u);
  EXPECT_EQ(t.guard->mirrors()[0].mirror_broker, "sim_a");
  EXPECT_EQ(t.guard->mirrors()[0].placed_because, "broker sim_b down");
  ASSERT_EQ(t.va.open_orders().size(), 1u);
  EXPECT_EQ(t.va.open_orders()[0].type, OrderType::stop);
  EXPECT_EQ(t.va.open_orders()[0].quantity, 100);
}

// The primary's broker is down, price falls through the stop, and both the primary (unseen:
// its link is down) and the mirror fill. When the broker is back and reconciled, the double
// fill is found and undone once at the mirror venue: net flat, as intended.
TEST(Mirror, DoubleFillIsRestoredExactlyOnce) {
  TwoVenues t(FaultProfile{});
  Reconciler rec(t.loop, t.orders, t.journal);
  const auto stop = double_fill_while_the_primary_is_down(t, t);
  ASSERT_FALSE(::testing::Test::HasFailure()) << "no double fill to test";
  t.a.set_link_up(true);
  t.guard->set_broker_down("sim_a", false);
  rec.on_reconnect("sim_a");
  t.run_for(5s);
  rec.on_reconnect("sim_a");  // a second reconciliation must not restore again
  t.run_for(5s);
  EXPECT_EQ(t.orders.find(stop)->state, OrderState::filled);
  EXPECT_EQ(t.events("mirror_double_fill_restored"), 1u);
  t.expect_double_fill_restored_once();
}

// A ghost at the primary while its broker is down: the mirror fires in its place. Back up, the
// ghost is cancelled (it must not fire late) and nothing is flattened twice.
TEST(Mirror, GhostWhileDownMirrorTakesOverAndThePrimaryIsCancelled) {
  FaultProfile p;
  p.ghost_stop_rate = 1.0;
  TwoVenues t(p);
  Reconciler rec(t.loop, t.orders, t.journal);
  const auto stop = stop_then_primary_down_and_price_through_it(t, t);
  ASSERT_EQ(t.guard->ghosts().size(), 1u);
  EXPECT_NE(t.guard->ghosts()[0].action.find("broker is down"), std::string::npos) << t.guard->ghosts()[0].action;
  EXPECT_EQ(TwoVenues::venue_position(t.vb), -100);
  t.a.set_link_up(true);
  t.guard->set_broker_down("sim_a", false);
  rec.on_reconnect("sim_a");
  t.run_for(5s);
  EXPECT_EQ(t.va.find_by_client_id(stop)->status, VenueStatus::cancelled);
  EXPECT_EQ(TwoVenues::market_orders(t.va, Side::sell), 0) << "the mirror's fill was the exit";
  EXPECT_EQ(t.events("mirror_double_fill_restored"), 0u);
  EXPECT_EQ(TwoVenues::venue_position(t.va) + TwoVenues::venue_position(t.vb), 0) << "net flat";
  EXPECT_TRUE(t.va.open_orders().empty());
  EXPECT_TRUE(t.vb.open_orders().empty());
}

// Ghost stops at rate 1.0 with the primary broker up: each is flattened once at the primary, and
// the second venue ends with neither an order nor a position.
TEST(Mirror, GhostsWithBrokerUpAreFlattenedOnceAtThePrimary) {
  FaultProfile p;
  p.ghost_stop_rate = 1.0;
  TwoVenues t(p);
  std::vector<std::string> stops;
  for (const char* px : {"99.80", "99.50", "99.20"}) stops.push_back(t.long_with_stop(10, px));
  t.run_for(2s);
  t.fall_to(99.00);
  t.run_for(20s);
  ASSERT_EQ(t.guard->ghosts().size(), 3u);
  for (const auto& g : t.guard->ghosts()) {
    EXPECT_LE(g.declared_at - g.crossed_at, to_ns(2s + 100ms)) << g.client_order_id;
    EXPECT_FALSE(g.flatten_order.empty()) << g.action;
  }
  EXPECT_EQ(TwoVenues::market_orders(t.va, Side::sell), 3);
  EXPECT_EQ(TwoVenues::venue_position(t.va), 0);
  EXPECT_EQ(TwoVenues::venue_position(t.vb), 0);
  EXPECT_TRUE(t.va.open_orders().empty());
  EXPECT_TRUE(t.vb.open_orders().empty());
  EXPECT_EQ(t.events("mirror_placed"), t.events("mirror_removed"));
}

// Policies other than mirror never place a mirror, even with the map configured.
TEST(Mirror, GuardPolicyPlacesNoMirror) {
  TwoVenues t(FaultProfile{}, ProtectionPolicy::guard);
  t.long_with_stop(100, "99.50");
  t.guard->set_broker_down("sim_a", true);
  t.run_for(3s);
  EXPECT_TRUE(t.guard->mirrors().empty());
  EXPECT_TRUE(t.vb.orders().empty());
}

// ---------------------------------------------------------------------------------------------
// Restarts: the router process is killed (destroyed with no shutdown) while a mirror stop works
// at the second venue, and a new process starts on the same journal against the same venues.

// Killed while its broker was down and the mirror worked; the restarted process knows the mirror
// again, reads the primary back and removes the mirror: nothing is left at the second venue.
TEST(MirrorRestart, MirrorWorkingAtAKillIsRemovedOnceThePrimaryIsVerifiedAgain) {
  Venues v(FaultProfile{});
  std::string stop, mirror;
  {
    RouterProcess p(v, ProtectionPolicy::mirror, "A");
    p.run_for(200ms);
    stop = p.long_with_stop(100, "99.50");
    p.run_for(2s);
    p.a.set_link_up(false);
    p.guard->set_broker_down("sim_a", true);
    p.run_for(2s);
    ASSERT_EQ(p.guard->mirrors().size(), 1u);
    mirror = p.guard->mirrors()[0].mirror;
    ASSERT_EQ(v.vb.open_orders().size(), 1u);
  }
  v.clock.advance(1s);
  RouterProcess p(v, ProtectionPolicy::mirror, "B");
  p.start_after_restart();
  p.run_for(3s);
  ASSERT_EQ(p.guard->mirrors().size(), 1u) << "known again, not placed a second time";
  EXPECT_TRUE(p.guard->is_mirror(mirror));
  EXPECT_EQ(p.guard->mirrors()[0].primary, stop);
  EXPECT_EQ(p.guard->stops().at(stop).verification, Verification::verified);
  EXPECT_EQ(p.guard->mirrors()[0].removed_because, "primary stop verified");
  EXPECT_TRUE(v.vb.open_orders().empty()) << "no orphan mirror";
  EXPECT_EQ(v.va.open_orders().size(), 1u) << "the primary keeps protecting";
  EXPECT_EQ(p.events("mirror_placed"), 1u);
  EXPECT_EQ(p.events("mirror_removed"), 1u);
  p.journal.flush();
  const auto restored = nlohmann::json::parse(p.journal.events("stop_guard_restored").at(0).detail);
  EXPECT_EQ(restored.at("mirrors_restored"), 1);
}

// Price falls through the stop while the primary's broker is down: the primary fills unseen, the
// mirror fills too, and the process is killed before the broker came back. The restarted process
// finds the double fill and undoes it once; a second restart does not undo it again.
TEST(MirrorRestart, DoubleFillFoundAfterARestartIsRestoredOnceAcrossRestarts) {
  Venues v(FaultProfile{});
  std::string stop;
  {
    RouterProcess p(v, ProtectionPolicy::mirror, "A");
    p.run_for(200ms);
    stop = double_fill_while_the_primary_is_down(v, p);
    ASSERT_FALSE(::testing::Test::HasFailure()) << "no double fill to test";
    ASSERT_EQ(p.events("mirror_fired"), 1u);
  }
  {
    RouterProcess p(v, ProtectionPolicy::mirror, "B");
    p.start_after_restart();
    p.run_for(5s);
    EXPECT_EQ(p.orders.find(stop)->state, OrderState::filled);
    EXPECT_EQ(p.events("mirror_double_fill_restored"), 1u);
  }
  RouterProcess p(v, ProtectionPolicy::mirror, "C");
  p.start_after_restart();
  p.run_for(5s);
  EXPECT_EQ(p.events("mirror_double_fill_restored"), 1u) << "not undone a second time";
  v.expect_double_fill_restored_once();
}

// Restarted under another policy: nothing would manage the mirror any more, so it is cancelled.
TEST(MirrorRestart, MirrorIsCancelledWhenThePolicyIsNoLongerMirror) {
  Venues v(FaultProfile{});
  {
    RouterProcess p(v, ProtectionPolicy::mirror, "A");
    p.run_for(200ms);
    p.long_with_stop(100, "99.50");
    p.run_for(2s);
    p.a.set_link_up(false);
    p.guard->set_broker_down("sim_a", true);
    p.run_for(2s);
    ASSERT_EQ(v.vb.open_orders().size(), 1u);
  }
  RouterProcess p(v, ProtectionPolicy::guard, "B");
  p.start_after_restart();
  p.run_for(2s);
  EXPECT_TRUE(v.vb.open_orders().empty()) << "no orphan mirror";
  EXPECT_EQ(v.va.open_orders().size(), 1u);
  ASSERT_EQ(p.events("mirror_removed"), 1u);
  p.journal.flush();
  EXPECT_EQ(nlohmann::json::parse(p.journal.events("mirror_removed")[0].detail).at("reason"),
            "protection policy is now guard");
}

// Faults on the simulated venue: an order lost after its acknowledgement is reported by the
// reconciler and by verification; a stop reading back one tick off is a mismatch naming the field.
TEST(SimFaults, LostOrderIsMissingAtTheBroker) {
  FaultProfile p;
  p.extra["sim_lost_order"] = 1.0;
  TwoVenues t(p, ProtectionPolicy::verify);
  Reconciler rec(t.loop, t.orders, t.journal);
  const auto id = t.orders.submit("sim_a", stop_order("AAPL", Side::sell, 10, Price::parse("99.50")));
  t.run_for(2s);
  EXPECT_EQ(t.orders.find(id)->state, OrderState::submitted);
  EXPECT_EQ(t.guard->stops().at(id).verification, Verification::missing);
  rec.reconcile_orders("sim_a", {});
  t.run_for(500ms);
  ASSERT_EQ(rec.count("sim_a", "missing_at_broker"), 1u);
  EXPECT_EQ(rec.divergences().back().client_order_id, id);
  EXPECT_EQ(t.fa.count("lost_order"), 1u);
}

TEST(SimFaults, AlteredReadBackIsAMismatchNamingTheField) {
  FaultProfile p;
  p.extra["sim_alter_stop_readback"] = 1.0;
  TwoVenues t(p, ProtectionPolicy::verify);
  const auto id = t.orders.submit("sim_a", stop_order("AAPL", Side::sell, 10, Price::parse("99.50")));
  t.run_for(2s);
  EXPECT_EQ(t.guard->stops().at(id).verification, Verification::mismatch);
  EXPECT_EQ(t.guard->stops().at(id).detail, "stop_price: sent 99.5, broker has 99.51");
}
