#include "brokers/sim/sim_broker.hpp"

#include <gtest/gtest.h>

using namespace backstop;
using namespace std::chrono_literals;

namespace {

// Feeds a fixed sequence of quotes, one per tick, then repeats the last.
class ScriptedPath final : public PricePath {
 public:
  explicit ScriptedPath(std::vector<std::pair<const char*, const char*>> quotes) : quotes_(std::move(quotes)) {}
  std::optional<Quote> next(Timestamp now) override {
    const auto& [bid, ask] = quotes_[std::min(i_++, quotes_.size() - 1)];
    Quote q;
    q.symbol = "AAPL";
    q.bid = Price::parse(bid);
    q.ask = Price::parse(ask);
    q.at = now;
    return q;
  }

 private:
  std::vector<std::pair<const char*, const char*>> quotes_;
  std::size_t i_ = 0;
};

struct Harness {
  explicit Harness(FaultProfile profile, std::vector<std::pair<const char*, const char*>> quotes = {{"100.00", "100.02"}})
      : faults(std::move(profile), 5), venue(clock, faults), loop(clock), sim(SimBrokerOptions{}, loop, venue) {
    venue.add_instrument("AAPL", TickSize(Price::parse("0.01")));
    sim.add_price_path(std::make_unique<ScriptedPath>(std::move(quotes)));
    sim.subscribe_order_events([this](const OrderEvent& e) { events.push_back(e); });
    sim.start();
    loop.run_until(clock.now() + to_ns(150ms));  // first quotes in
  }
  OrderSpec order(OrderSpec s, const std::string& id) {
    s.client_order_id = id;
    return s;
  }
  CommandResult submit(const OrderSpec& s) {
    CommandResult out;
    bool done = false;
    sim.submit(s, [&](CommandResult r) {
      out = r;
      done = true;
    });
    while (!done) loop.run_until(clock.now() + to_ns(10ms));
    return out;
  }

  ManualClock clock;
  FaultInjector faults;
  Venue venue;
  EventLoop loop;
  SimBroker sim;
  std::vector<OrderEvent> events;
};

}  // namespace

// A broker destroyed with replies and stream events still queued on the loop (the loop and the
// venue going on): none of them reaches its caller, and the venue's later events reach nothing.
TEST(SimBroker, RepliesAndEventsAfterItIsDestroyedDoNothing) {
  ManualClock clock;
  FaultInjector faults(FaultProfile{}, 5);
  Venue venue(clock, faults);
  EventLoop loop(clock);
  venue.add_instrument("AAPL", TickSize(Price::parse("0.01")));
  auto sim = std::make_unique<SimBroker>(SimBrokerOptions{}, loop, venue);
  sim->add_price_path(std::make_unique<ScriptedPath>(std::vector<std::pair<const char*, const char*>>{{"100.00", "100.02"}}));
  int events = 0, replies = 0;
  sim->subscribe_order_events([&](const OrderEvent&) { ++events; });
  sim->start();
  loop.run_until(clock.now() + to_ns(150ms));
  OrderSpec o = limit_order("AAPL", Side::buy, 5, Price::parse("99.00"));
  o.client_order_id = "D-1";
  sim->submit(o, [&](CommandResult) { ++replies; });
  loop.run_until(clock.now() + to_ns(100ms));
  ASSERT_EQ(replies, 1);
  ASSERT_NE(venue.find_by_client_id("D-1"), nullptr);
  const int events_before = events;
  o.client_order_id = "D-2";
  sim->submit(o, [&](CommandResult) { ++replies; });  // its request and reply wait on the loop
  sim.reset();
  loop.run_until(clock.now() + to_ns(1s));  // the submit's turn and the broker's tick timer
  EXPECT_EQ(replies, 1);
  EXPECT_EQ(venue.find_by_client_id("D-2"), nullptr) << "a destroyed broker sends nothing";
  venue.cancel(venue.find_by_client_id("D-1")->id);  // an event for the destroyed broker's listener
  loop.run_until(clock.now() + to_ns(1s));
  EXPECT_EQ(events, events_before);
}

TEST(SimBroker, AcknowledgesAfterTheConfiguredDelay) {
  FaultProfile p;
  p.ack_delay = 250ms;
  Harness h(p);
  const Timestamp sent = h.clock.now();
  auto r = h.submit(h.order(limit_order("AAPL", Side::buy, 5, Price::parse("99")), "A1"));
  EXPECT_EQ(r.outcome, Outcome::accepted);
  EXPECT_FALSE(r.broker_order_id.empty());
  EXPECT_GE(h.clock.now() - sent, to_ns(250ms));
  EXPECT_GE(h.faults.count("ack_delay"), 1u);
}

TEST(SimBroker, DroppedFillEventIsLoggedAndTheQueryStillTellsTheTruth) {
  FaultProfile p;
  p.drop_fill_event_rate = 1.0;
  Harness h(p);
  auto r = h.submit(h.order(market_order("AAPL", Side::buy, 5), "F1"));
  h.loop.run_until(h.clock.now() + to_ns(50ms));
  for (const auto& e : h.events) EXPECT_NE(e.kind, OrderEvent::Kind::fill);
  EXPECT_EQ(h.faults.count("drop_fill_event"), 1u);
  bool answered = false;
  h.sim.query_order(r.broker_order_id, [&](OrderQueryResult q) {
    answered = true;
    ASSERT_TRUE(q.order);
    EXPECT_EQ(q.order->state, OrderState::filled);
    EXPECT_EQ(q.order->filled_quantity, 5);
  });
  EXPECT_TRUE(answered);
  h.sim.list_fills([&](FillsResult f) { EXPECT_EQ(f.fills.size(), 1u); });
}

TEST(SimBroker, LostReplyIsUnknownAndTheOrderIsLiveAtTheVenue) {
  FaultProfile p;
  p.lost_reply_rate = 1.0;
  Harness h(p);
  CommandResult r;
  bool done = false;
  h.sim.submit(h.order(limit_order("AAPL", Side::buy, 5, Price::parse("99")), "U1"), [&](CommandResult c) {
    r = c;
    done = true;
  });
  while (!done) h.loop.run_until(h.clock.now() + to_ns(10ms));
  EXPECT_EQ(r.outcome, Outcome::unknown);
  EXPECT_NE(h.venue.find_by_client_id("U1"), nullptr) << "unknown means it may be live: here it is";
  EXPECT_GE(h.faults.count("reply_lost"), 1u);
}

TEST(SimBroker, DisconnectedLinkFailsLocally) {
  FaultProfile p;
  p.disconnect_rate = 1.0;
  p.disconnect_length = 10s;
  Harness h(p);
  auto r = h.submit(h.order(market_order("AAPL", Side::buy, 1), "X1"));
  EXPECT_EQ(r.outcome, Outcome::failed_locally);
  EXPECT_EQ(h.venue.find_by_client_id("X1"), nullptr) << "failed locally means it never left";
  EXPECT_EQ(h.sim.health().connectivity, Connectivity::disconnected);
}

TEST(SimBroker, StalePositionReportIsLogged) {
  FaultProfile p;
  p.stale_position_rate = 1.0;
  Harness h(p);
  h.submit(h.order(market_order("AAPL", Side::buy, 7), "P1"));
  h.sim.list_positions([&](PositionsResult r) {
    EXPECT_TRUE(r.positions.empty()) << "answered from the old (empty) snapshot";
  });
  EXPECT_EQ(h.faults.count("stale_positions"), 1u);
  EXPECT_EQ(h.venue.positions().at(0).quantity, 7);
}

TEST(SimBroker, EventsCarryClientOrderIdsAndFills) {
  Harness h(FaultProfile{});
  auto r = h.submit(h.order(market_order("AAPL", Side::sell, 3), "E1"));
  h.loop.run_until(h.clock.now() + to_ns(50ms));
  ASSERT_GE(h.events.size(), 2u);
  bool saw_fill = false;
  for (const auto& e : h.events) {
    EXPECT_EQ(e.client_order_id, "E1");
    if (e.kind == OrderEvent::Kind::fill) {
      saw_fill = true;
      EXPECT_EQ(e.fill->quantity, 3);
      EXPECT_EQ(e.fill->price, Price::parse("100.00"));
    }
  }
  EXPECT_TRUE(saw_fill);
  EXPECT_TRUE(h.sim.capabilities().client_order_ids);
}

TEST(FaultProfiles, UnknownNameIsAConfigError) {
  EXPECT_THROW(FaultProfile::named("sometimes"), ConfigError);
  EXPECT_EQ(FaultProfile::named("lossy_stream").drop_fill_event_rate, 0.8);
}
