#include "brokers/sim/venue.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "brokers/sim/price_path.hpp"
#include "core/error.hpp"

using namespace backstop;

namespace {

class VenueTest : public ::testing::Test {
 protected:
  VenueTest() : faults_(FaultProfile::named("none"), 1), venue_(clock_, faults_) {
    venue_.add_instrument("AAPL", TickSize(Price::parse("0.01")));
    venue_.set_listener([this](const VenueEvent& e) { events_.push_back(e); });
  }

  // To the fixture's venue, or to `to`.
  void quote(const char* bid, const char* ask, const char* last = nullptr, std::int64_t size = 0, Venue* to = nullptr) {
    Quote q;
    q.symbol = "AAPL";
    q.bid = Price::parse(bid);
    q.ask = Price::parse(ask);
    if (last) q.last = Price::parse(last);
    q.bid_size = q.ask_size = size;
    clock_.advance(std::chrono::milliseconds(10));
    (to ? *to : venue_).on_quote(q);
  }

  OrderSpec with_id(OrderSpec o, const std::string& id) {
    o.client_order_id = id;
    return o;
  }

  int count(VenueEvent::Kind k) const {
    int n = 0;
    for (const auto& e : events_) n += e.kind == k;
    return n;
  }

  ManualClock clock_;
  FaultInjector faults_;
  Venue venue_;
  std::vector<VenueEvent> events_;
};

}  // namespace

TEST_F(VenueTest, MarketOrderFillsAtTheTouch) {
  quote("100.00", "100.02");
  auto r = venue_.submit(with_id(market_order("AAPL", Side::buy, 10), "M1"));
  ASSERT_TRUE(r.accepted);
  const VenueOrder* o = venue_.find(r.order_id);
  EXPECT_EQ(o->status, VenueStatus::filled);
  EXPECT_EQ(o->average_fill_price, Price::parse("100.02"));
  ASSERT_EQ(venue_.positions().size(), 1u);
  EXPECT_EQ(venue_.positions()[0].quantity, 10);
}

TEST_F(VenueTest, LimitOrderRestsUntilMarketable) {
  quote("100.00", "100.02");
  auto r = venue_.submit(with_id(limit_order("AAPL", Side::buy, 10, Price::parse("99.95")), "L1"));
  EXPECT_EQ(venue_.find(r.order_id)->status, VenueStatus::working);
  quote("99.96", "99.97");
  EXPECT_EQ(venue_.find(r.order_id)->status, VenueStatus::working);
  quote("99.93", "99.94");
  EXPECT_EQ(venue_.find(r.order_id)->status, VenueStatus::filled);
  EXPECT_EQ(venue_.find(r.order_id)->average_fill_price, Price::parse("99.94"));  // price improvement
}

TEST_F(VenueTest, StopTriggersOnLastThenFills) {
  quote("100.00", "100.02", "100.01");
  auto r = venue_.submit(with_id(stop_order("AAPL", Side::sell, 10, Price::parse("99.50")), "S1"));
  quote("99.60", "99.62", "99.61");
  EXPECT_EQ(venue_.find(r.order_id)->status, VenueStatus::working);
  quote("99.48", "99.50", "99.50");
  EXPECT_EQ(venue_.find(r.order_id)->status, VenueStatus::filled);
  EXPECT_EQ(count(VenueEvent::Kind::triggered), 1);
  EXPECT_EQ(venue_.find(r.order_id)->average_fill_price, Price::parse("99.48"));
}

TEST_F(VenueTest, StopLimitTriggersButWaitsForItsLimit) {
  quote("100.00", "100.02", "100.01");
  OrderSpec o = stop_order("AAPL", Side::sell, 10, Price::parse("99.50"));
  o.type = OrderType::stop_limit;
  o.limit_price = Price::parse("99.45");
  auto r = venue_.submit(with_id(o, "SL1"));
  quote("99.40", "99.42", "99.41");  // gapped through the limit
  EXPECT_EQ(venue_.find(r.order_id)->status, VenueStatus::triggered);
  quote("99.46", "99.47", "99.46");
  EXPECT_EQ(venue_.find(r.order_id)->status, VenueStatus::filled);
  EXPECT_EQ(venue_.find(r.order_id)->average_fill_price, Price::parse("99.46"));
}

TEST_F(VenueTest, PartialFillsAreLimitedByDisplayedSize) {
  quote("100.00", "100.02", nullptr, 30);
  auto r = venue_.submit(with_id(market_order("AAPL", Side::buy, 100), "P1"));
  EXPECT_EQ(venue_.find(r.order_id)->filled_quantity, 30);
  EXPECT_EQ(venue_.find(r.order_id)->status, VenueStatus::working);
  quote("100.01", "100.03", nullptr, 50);
  EXPECT_EQ(venue_.find(r.order_id)->filled_quantity, 80);
  quote("100.01", "100.04", nullptr, 50);
  EXPECT_EQ(venue_.find(r.order_id)->status, VenueStatus::filled);
  EXPECT_EQ(venue_.fills().size(), 3u);
  // (30*100.02 + 50*100.03 + 20*100.04) / 100
  EXPECT_EQ(venue_.find(r.order_id)->average_fill_price, Price::parse("100.0290"));
}

TEST_F(VenueTest, BracketExitsWaitForTheEntryThenCancelEachOther) {
  quote("100.00", "100.02");
  BracketSpec b;
  b.entry = with_id(limit_order("AAPL", Side::buy, 10, Price::parse("99.90")), "B1");
  b.take_profit = with_id(limit_order("AAPL", Side::sell, 10, Price::parse("100.50"), TimeInForce::gtc), "B1T");
  b.protective_stop = with_id(stop_order("AAPL", Side::sell, 10, Price::parse("99.50")), "B1S");
  auto r = venue_.submit_bracket(b);
  ASSERT_TRUE(r.accepted) << r.reason;
  EXPECT_EQ(venue_.find(r.take_profit_id)->status, VenueStatus::held);
  EXPECT_EQ(venue_.find(r.stop_id)->status, VenueStatus::held);
  quote("100.55", "100.60", "100.58");  // would hit the take-profit, but the entry is not filled
  EXPECT_EQ(venue_.find(r.take_profit_id)->status, VenueStatus::held);
  quote("99.85", "99.88");  // entry fills, exits activate
  EXPECT_EQ(venue_.find(r.entry_id)->status, VenueStatus::filled);
  EXPECT_EQ(venue_.find(r.take_profit_id)->status, VenueStatus::working);
  EXPECT_EQ(venue_.find(r.stop_id)->status, VenueStatus::working);
  quote("100.50", "100.52", "100.51");  // take-profit fills, OCO cancels the stop
  EXPECT_EQ(venue_.find(r.take_profit_id)->status, VenueStatus::filled);
  EXPECT_EQ(venue_.find(r.stop_id)->status, VenueStatus::cancelled);
  EXPECT_TRUE(venue_.positions().empty()) << "flat after the round trip";
}

TEST_F(VenueTest, OcoPartialFillShrinksTheSibling) {
  quote("100.00", "100.02");
  auto r = venue_.submit_oco(with_id(limit_order("AAPL", Side::sell, 100, Price::parse("100.50")), "O1"),
                             with_id(stop_order("AAPL", Side::sell, 100, Price::parse("99.00")), "O2"));
  ASSERT_TRUE(r.accepted);
  quote("100.50", "100.52", nullptr, 40);
  EXPECT_EQ(venue_.find(r.take_profit_id)->filled_quantity, 40);
  EXPECT_EQ(venue_.find(r.stop_id)->quantity, 60);
  EXPECT_EQ(venue_.find(r.stop_id)->status, VenueStatus::working);
}

TEST_F(VenueTest, CancellingAnEntryCancelsItsHeldExits) {
  quote("100.00", "100.02");
  BracketSpec b;
  b.entry = with_id(limit_order("AAPL", Side::buy, 10, Price::parse("99.00")), "C1");
  b.take_profit = with_id(limit_order("AAPL", Side::sell, 10, Price::parse("101"), TimeInForce::gtc), "C1T");
  b.protective_stop = with_id(stop_order("AAPL", Side::sell, 10, Price::parse("98")), "C1S");
  auto r = venue_.submit_bracket(b);
  EXPECT_EQ(venue_.cancel(r.entry_id), "");
  EXPECT_EQ(venue_.find(r.take_profit_id)->status, VenueStatus::cancelled);
  EXPECT_EQ(venue_.find(r.stop_id)->status, VenueStatus::cancelled);
  EXPECT_NE(venue_.cancel(r.entry_id), "") << "already cancelled";
}

TEST_F(VenueTest, DuplicateClientOrderIdIsRefusedAndRecorded) {
  quote("100.00", "100.02");
  EXPECT_TRUE(venue_.submit(with_id(limit_order("AAPL", Side::buy, 1, Price::parse("90")), "D1")).accepted);
  auto again = venue_.submit(with_id(limit_order("AAPL", Side::buy, 1, Price::parse("90")), "D1"));
  EXPECT_FALSE(again.accepted);
  EXPECT_NE(again.reason.find("duplicate client order id"), std::string::npos);
  ASSERT_EQ(venue_.arrivals().size(), 2u);
  EXPECT_TRUE(venue_.arrivals()[1].duplicate);
  EXPECT_EQ(venue_.open_orders().size(), 1u);
}

TEST_F(VenueTest, RefusesPricesOffTickAndUnknownSymbols) {
  auto r = venue_.submit(with_id(limit_order("AAPL", Side::buy, 1, Price::parse("100.005")), "T1"));
  EXPECT_FALSE(r.accepted);
  EXPECT_NE(r.reason.find("not a multiple of tick 0.01"), std::string::npos);
  r = venue_.submit(with_id(market_order("MSFT", Side::buy, 1), "T2"));
  EXPECT_FALSE(r.accepted);
  EXPECT_NE(r.reason.find("unknown symbol"), std::string::npos);
}

TEST_F(VenueTest, ReplaceChangesPriceAndQuantity) {
  quote("100.00", "100.02");
  auto r = venue_.submit(with_id(limit_order("AAPL", Side::buy, 10, Price::parse("99.00")), "R1"));
  EXPECT_EQ(venue_.replace(r.order_id, 20, Price::parse("99.50"), std::nullopt), "");
  EXPECT_EQ(venue_.find(r.order_id)->quantity, 20);
  EXPECT_EQ(venue_.find(r.order_id)->limit_price, Price::parse("99.50"));
  EXPECT_NE(venue_.replace(r.order_id, 20, Price::parse("99.505"), std::nullopt), "");
  EXPECT_EQ(venue_.replace(r.order_id, 20, Price::parse("100.02"), std::nullopt), "");
  EXPECT_EQ(venue_.find(r.order_id)->status, VenueStatus::filled) << "a replace can make an order marketable";
}

TEST(VenueFaults, GhostStopIsListedAsWorkingAndNeverTriggers) {
  ManualClock clock;
  FaultInjector faults(FaultProfile::named("ghost_stops"), 7);
  Venue venue(clock, faults);
  venue.add_instrument("AAPL", TickSize(Price::parse("0.01")));
  Quote q{"AAPL", Price::parse("100"), Price::parse("100.02"), Price::parse("100.01"), 0, 0, 0, 0, "t"};
  venue.on_quote(q);
  OrderSpec s = stop_order("AAPL", Side::sell, 10, Price::parse("99.50"));
  s.client_order_id = "G1";
  auto r = venue.submit(s);
  ASSERT_TRUE(r.accepted);
  for (const char* px : {"99.40", "99.00", "98.00"}) {
    q.bid = q.last = Price::parse(px);
    q.ask = Price::parse(px) + Price::parse("0.02");
    venue.on_quote(q);
  }
  EXPECT_EQ(venue.find(r.order_id)->status, VenueStatus::working);
  EXPECT_EQ(venue.open_orders().size(), 1u);
  EXPECT_EQ(faults.count("ghost_stop"), 1u);
  EXPECT_EQ(faults.count("ghost_stop_crossed"), 1u) << "logged once, when price first goes through";
  EXPECT_EQ(faults.log()[0].client_order_id, "G1");
}

TEST(VenueFaults, RejectRateIsSeededAndLogged) {
  auto run = [](std::uint64_t seed) {
    ManualClock clock;
    FaultProfile p;
    p.reject_rate = 0.3;
    FaultInjector faults(p, seed);
    Venue venue(clock, faults);
    venue.add_instrument("AAPL", TickSize(Price::parse("0.01")));
    std::vector<bool> accepted;
    for (int i = 0; i < 200; ++i) {
      OrderSpec s = limit_order("AAPL", Side::buy, 1, Price::parse("50"));
      s.client_order_id = "R" + std::to_string(i);
      accepted.push_back(venue.submit(s).accepted);
    }
    const auto rejects = static_cast<std::size_t>(std::count(accepted.begin(), accepted.end(), false));
    EXPECT_EQ(faults.count("reject"), rejects);
    return accepted;
  };
  const auto a = run(11);
  EXPECT_EQ(a, run(11)) << "same seed, same faults";
  const auto rejects = std::count(a.begin(), a.end(), false);
  EXPECT_GT(rejects, 30);
  EXPECT_LT(rejects, 90);
}

TEST(VenueFaults, RejectedBracketEntryReportsItsHeldExitsRejected) {
  // A venue that gave the exits ids must also report their end; otherwise a client that was told
  // "sent" for all three legs keeps the exits as working forever.
  ManualClock clock;
  FaultProfile p;
  p.reject_rate = 1.0;
  FaultInjector faults(p, 1);
  Venue venue(clock, faults);
  venue.add_instrument("AAPL", TickSize(Price::parse("0.01")));
  std::vector<VenueEvent> events;
  venue.set_listener([&](const VenueEvent& e) { events.push_back(e); });
  BracketSpec b;
  b.entry = limit_order("AAPL", Side::buy, 10, Price::parse("99.00"));
  b.entry.client_order_id = "J1";
  b.take_profit = limit_order("AAPL", Side::sell, 10, Price::parse("101"), TimeInForce::gtc);
  b.take_profit.client_order_id = "J1T";
  b.protective_stop = stop_order("AAPL", Side::sell, 10, Price::parse("98"));
  b.protective_stop.client_order_id = "J1S";
  const auto r = venue.submit_bracket(b);
  ASSERT_FALSE(r.accepted);
  ASSERT_FALSE(r.take_profit_id.empty());
  std::set<std::string> rejected;
  for (const auto& e : events)
    if (e.kind == VenueEvent::Kind::rejected) rejected.insert(e.order.client_order_id);
  EXPECT_EQ(rejected, (std::set<std::string>{"J1", "J1T", "J1S"}));
  EXPECT_EQ(venue.find(r.take_profit_id)->status, VenueStatus::rejected);
  EXPECT_EQ(venue.find(r.stop_id)->status, VenueStatus::rejected);
}

TEST(PricePaths, RandomWalkIsSeededAndOnTick) {
  RandomWalkParams p{"ES", Price::parse("5000"), TickSize(Price::parse("0.25")), 1, 2, 100};
  RandomWalkPath a(p, 3), b(p, 3);
  for (int i = 0; i < 1000; ++i) {
    auto qa = a.next(i), qb = b.next(i);
    EXPECT_EQ(qa->bid, qb->bid);
    EXPECT_TRUE(p.tick.is_on_tick(*qa->bid));
    EXPECT_EQ(*qa->ask - *qa->bid, Price::parse("0.25"));
  }
}

TEST(PricePaths, CsvReplayParsesAndReportsBadLines) {
  const std::string path = ::testing::TempDir() + "/quotes.csv";
  {
    std::ofstream out(path);
    out << "timestamp,symbol,bid,ask,last,bid_size,ask_size,last_size\n"
        << "2026-11-24T14:30:00Z,AAPL,232.85,232.86,232.86,100,200,5\n"
        << "2026-11-24T14:30:01.5Z,AAPL,\"1,300\",232.87,,,,\n";
  }
  EXPECT_THROW(CsvReplayPath{path}, ParseError);  // quoted fields are not supported: refused, never misread
  {
    std::ofstream out(path);
    out << "timestamp,symbol,bid,ask,last\n2026-11-24T14:30:00Z,AAPL,232.85,232.86,232.86\n"
        << "2026-11-24T14:30:01Z,AAPL,232.84,232.8x,\n";
  }
  try {
    CsvReplayPath replay(path);
    FAIL();
  } catch (const ParseError& e) {
    EXPECT_NE(std::string(e.what()).find("quotes.csv:3"), std::string::npos) << e.what();
  }
  {
    std::ofstream out(path);
    out << "timestamp,symbol,bid,ask,last\n2026-11-24T14:30:00Z,AAPL,232.85,232.86,232.86\n"
        << "1764000000000000000,AAPL,232.84,232.85,\n";
  }
  CsvReplayPath replay(path);
  EXPECT_EQ(replay.size(), 2u);
  EXPECT_EQ(replay.next(0)->last, Price::parse("232.86"));
  EXPECT_FALSE(replay.next(0)->last.has_value());
  EXPECT_FALSE(replay.next(0).has_value());
}

// An emulator killed and restarted restores its venue from the saved record: the restored venue
// must go on exactly as the one that was saved would have (held exits, duplicates, ids, positions).
TEST_F(VenueTest, RestoredStateCarriesOnLikeTheOriginal) {
  quote("100.00", "100.02", "100.01");
  BracketSpec b;
  b.entry = with_id(limit_order("AAPL", Side::buy, 10, Price::parse("99.90")), "B1");
  b.take_profit = with_id(limit_order("AAPL", Side::sell, 10, Price::parse("100.50"), TimeInForce::gtc), "B1T");
  b.protective_stop = with_id(stop_order("AAPL", Side::sell, 10, Price::parse("99.50")), "B1S");
  auto bracket = venue_.submit_bracket(b);
  ASSERT_TRUE(bracket.accepted) << bracket.reason;
  auto filled = venue_.submit(with_id(market_order("AAPL", Side::buy, 5), "M1"));
  ASSERT_TRUE(filled.accepted);
  const auto changes_before = venue_.changes();
  EXPECT_GT(changes_before, 0u);

  // Through text, as the state file carries it.
  const auto saved = nlohmann::json::parse(venue_.save_state().dump());
  FaultInjector faults2(FaultProfile::named("none"), 2);
  Venue restored(clock_, faults2);
  restored.add_instrument("AAPL", TickSize(Price::parse("0.01")));
  std::vector<VenueEvent> events2;
  restored.set_listener([&](const VenueEvent& e) { events2.push_back(e); });
  restored.restore_state(saved);

  EXPECT_EQ(restored.save_state(), venue_.save_state());
  ASSERT_NE(restored.find_by_client_id("B1S"), nullptr);
  EXPECT_EQ(restored.find_by_client_id("B1S")->status, VenueStatus::held);
  ASSERT_EQ(restored.positions().size(), 1u);
  EXPECT_EQ(restored.positions()[0].quantity, 5);
  EXPECT_EQ(restored.positions()[0].average_price, Price::parse("100.02"));
  ASSERT_TRUE(restored.last_quote("AAPL"));
  EXPECT_EQ(restored.last_quote("AAPL")->last, Price::parse("100.01"));

  // The same client order id is still a duplicate; a new order gets the next id, not a reused one.
  EXPECT_FALSE(restored.submit(with_id(market_order("AAPL", Side::buy, 1), "M1")).accepted);
  auto next = restored.submit(with_id(limit_order("AAPL", Side::buy, 1, Price::parse("90.00")), "L2"));
  ASSERT_TRUE(next.accepted);
  EXPECT_GT(std::stoull(next.order_id), std::stoull(filled.order_id));

  // The entry fills; its exits activate and stay linked OCO.
  Quote q;
  q.symbol = "AAPL";
  q.bid = Price::parse("99.88");
  q.ask = Price::parse("99.89");
  restored.on_quote(q);
  EXPECT_EQ(restored.find(bracket.entry_id)->status, VenueStatus::filled);
  EXPECT_EQ(restored.find(bracket.stop_id)->status, VenueStatus::working);
  q.bid = Price::parse("100.50");
  q.ask = Price::parse("100.52");
  restored.on_quote(q);
  EXPECT_EQ(restored.find(bracket.take_profit_id)->status, VenueStatus::filled);
  EXPECT_EQ(restored.find(bracket.stop_id)->status, VenueStatus::cancelled);
  EXPECT_EQ(restored.positions()[0].quantity, 5);
}

TEST_F(VenueTest, RestoringABadRecordNamesThePartAndKeepsTheVenue) {
  quote("100.00", "100.02");
  ASSERT_TRUE(venue_.submit(with_id(market_order("AAPL", Side::buy, 5), "M1")).accepted);
  auto bad = venue_.save_state();
  bad["orders"][0]["side"] = "sideways";
  try {
    venue_.restore_state(bad);
    FAIL() << "restore_state accepted an unknown side";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("orders"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("sideways"), std::string::npos) << e.what();
  }
  auto missing = venue_.save_state();
  missing.erase("fills");
  EXPECT_THROW(venue_.restore_state(missing), Error);
  EXPECT_NE(venue_.find_by_client_id("M1"), nullptr);  // untouched
  EXPECT_EQ(venue_.positions()[0].quantity, 5);
}

// A venue opened again after its process ended, keeping nothing of the first (no state file):
// its order and execution ids must not repeat the first one's, or the journal of the earlier
// run would take a new order's fill for an old order's (or drop it as an execution already
// counted). A busy first life: 500 orders filled in the second before the restart.
TEST_F(VenueTest, AVenueOpenedAgainRepeatsNoIdOfTheFirst) {
  std::set<std::string> order_ids, execution_ids;
  auto trade = [&](Venue& venue, const std::string& prefix, int n) {
    for (int i = 0; i < n; ++i) {
      const auto r = venue.submit(with_id(market_order("AAPL", Side::buy, 1), prefix + std::to_string(i)));
      ASSERT_TRUE(r.accepted) << r.reason;
      EXPECT_TRUE(order_ids.insert(r.order_id).second) << "order id " << r.order_id << " given twice";
    }
    for (const auto& f : venue.fills()) EXPECT_TRUE(execution_ids.insert(f.execution_id).second) << f.execution_id;
  };
  quote("100.00", "100.02");
  trade(venue_, "first-", 500);
  clock_.advance(std::chrono::seconds(1));
  Venue again(clock_, faults_);
  again.add_instrument("AAPL", TickSize(Price::parse("0.01")));
  quote("100.00", "100.02", nullptr, 0, &again);
  trade(again, "second-", 500);
  EXPECT_EQ(order_ids.size(), 1000u);
  EXPECT_EQ(execution_ids.size(), 1000u);
}

// The state as text, written and read one record at a time (a venue of thousands of orders keeps
// its state beside the journal of `backstop run`): the same text a document of it dumps, and read
// back to the same venue, fills, positions, arrivals, quotes and counters included.
TEST_F(VenueTest, StateTextIsTheDocumentsTextAndReadsBackTheSameVenue) {
  quote("100.00", "100.02", "100.01");
  BracketSpec b;
  b.entry = with_id(limit_order("AAPL", Side::buy, 10, Price::parse("99.90")), "B1");
  b.take_profit = with_id(limit_order("AAPL", Side::sell, 10, Price::parse("100.50"), TimeInForce::gtc), "B1T");
  b.protective_stop = with_id(stop_order("AAPL", Side::sell, 10, Price::parse("99.50")), "B1S");
  ASSERT_TRUE(venue_.submit_bracket(b).accepted);
  ASSERT_TRUE(venue_.submit(with_id(market_order("AAPL", Side::buy, 5), "M1")).accepted);
  ASSERT_TRUE(venue_.submit(with_id(market_order("AAPL", Side::buy, 5), "M1")).accepted == false);  // an arrival
  ASSERT_TRUE(venue_.submit(with_id(limit_order("AAPL", Side::sell, 3, Price::parse("101.00")), "L\"1\\")).accepted);

  std::string text = "left over from an earlier write";
  venue_.write_state_text(text);
  EXPECT_EQ(text, venue_.save_state().dump());

  FaultInjector faults2(FaultProfile::named("none"), 2);
  Venue restored(clock_, faults2);
  restored.add_instrument("AAPL", TickSize(Price::parse("0.01")));
  restored.restore_state_text(text);
  EXPECT_EQ(restored.save_state(), venue_.save_state());
  EXPECT_EQ(restored.fills().size(), venue_.fills().size());
  EXPECT_EQ(restored.arrivals().size(), venue_.arrivals().size());
  ASSERT_NE(restored.find_by_client_id("L\"1\\"), nullptr);
  EXPECT_EQ(restored.open_order_count(), venue_.open_order_count());

  // A key given twice counts with its last value, as in a document.
  auto twice = text;
  twice.insert(1, "\"orders\":[" + nlohmann::json::parse(text)["orders"][0].dump() + "],");
  Venue from_twice(clock_, faults2);
  from_twice.restore_state_text(twice);
  EXPECT_EQ(from_twice.save_state(), venue_.save_state());
}

TEST_F(VenueTest, ABadStateTextNamesWhatIsWrongAndKeepsTheVenue) {
  quote("100.00", "100.02");
  ASSERT_TRUE(venue_.submit(with_id(market_order("AAPL", Side::buy, 5), "M1")).accepted);
  const auto before = venue_.save_state();
  const auto message = [&](const std::string& text) {
    try {
      venue_.restore_state_text(text);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  auto bad = before;
  bad["orders"][0]["side"] = "sideways";
  const auto unknown_side = message(bad.dump());
  EXPECT_NE(unknown_side.find("venue state: orders"), std::string::npos) << unknown_side;
  EXPECT_NE(unknown_side.find("sideways"), std::string::npos) << unknown_side;
  auto missing = before;
  missing.erase("fills");
  EXPECT_NE(message(missing.dump()).find("fills"), std::string::npos) << message(missing.dump());
  const auto cut = message(before.dump().substr(0, 40));
  EXPECT_NE(cut.find("not JSON"), std::string::npos) << cut;
  EXPECT_NE(message("[1,2]").find("not an object"), std::string::npos) << message("[1,2]");
  EXPECT_EQ(venue_.save_state(), before);  // nothing was replaced
}
