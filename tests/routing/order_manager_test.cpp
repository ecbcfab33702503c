#include "routing/order_manager.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "brokers/sim/sim_broker.hpp"
#include "sim_harness.hpp"

using namespace backstop;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// A broker whose answers the test scripts, and which remembers what reached it.
class ScriptedBroker final : public Broker {
 public:
  explicit ScriptedBroker(EventLoop& loop) : loop_(loop) {}
  const std::string& name() const override { return name_; }
  BrokerCapabilities capabilities() const override {
    BrokerCapabilities c;
    c.client_order_ids = c.query_by_client_id = c.order_query = true;
    c.fill_query = fill_query;
    return c;
  }
  void submit(const OrderSpec& o, CommandCallback done) override {
    received.push_back(o);
    if (on_submit) on_submit(o);
    CommandResult r = next_result;
    if (r.outcome == Outcome::accepted || (r.outcome == Outcome::unknown && keep_unknown_orders)) {
      BrokerOrder b;
      b.broker_order_id = "B" + std::to_string(received.size());
      b.client_order_id = o.client_order_id;
      b.symbol = o.symbol;
      b.quantity = o.quantity;
      b.type = o.type;
      b.state = OrderState::submitted;
      b.broker_status = "working";
      book[o.client_order_id] = b;
      if (r.outcome == Outcome::accepted) r.broker_order_id = b.broker_order_id;
    }
    loop_.post([done, r] { done(r); });
  }
  void cancel(const std::string&, CommandCallback done) override { done(CommandResult::accepted_as("")); }
  void query_order(const std::string& id, OrderQueryCallback done) override {
    for (auto& [coid, b] : book)
      if (b.broker_order_id == id) return done({Outcome::accepted, {}, b});
    done({Outcome::accepted, {}, std::nullopt});
  }
  void remember_order(const std::string& coid, const std::string& broker_order_id) override {
    remembered.emplace_back(coid, broker_order_id);
  }
  void query_by_client_id(const std::string& coid, OrderQueryCallback done) override {
    ++queries;
    remembered_before_query.push_back(remembered.size());
    if (unreachable) return done({Outcome::unknown, "gateway unreachable", std::nullopt});
    if (unanswered_queries > 0) {
      --unanswered_queries;
      return done({Outcome::unknown, "timed out", std::nullopt});
    }
    auto it = book.find(coid);
    done({Outcome::accepted, {}, it == book.end() ? std::nullopt : std::optional(it->second)});
  }
  void list_fills(FillsCallback done) override { loop_.post([done, f = executions] { done({Outcome::accepted, {}, f}); }); }
  void subscribe_order_events(OrderEventHandler h) override { handler = std::move(h); }
  BrokerHealthReport health() const override { return {Connectivity::connected, {}, 0, 0}; }

  std::string name_ = "scripted";
  EventLoop& loop_;
  CommandResult next_result = CommandResult::accepted_as("");
  bool keep_unknown_orders = true;
  std::vector<OrderSpec> received;
  std::map<std::string, BrokerOrder> book;
  std::function<void(const OrderSpec&)> on_submit;
  OrderEventHandler handler;
  int queries = 0;
  bool unreachable = false;  // queries by client order id answer `unknown`
  int unanswered_queries = 0;  // ... the next this many only
  bool fill_query = false;
  std::vector<Fill> executions;  // what list_fills answers
  std::vector<std::pair<std::string, std::string>> remembered;  // remember_order's calls
  std::vector<std::size_t> remembered_before_query;  // remembered.size() at each query by client id
};

class OrderManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("backstop-om-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string journal_path() const { return (dir_ / "j.db").string(); }
  void settle(EventLoop& loop, ManualClock& clock, Duration d = 50ms) { loop.run_until(clock.now() + d.count()); }

  fs::path dir_;
  ClientOrderIdGenerator ids_{"T"};
};

OrderSpec limit_buy() { return limit_order("AAPL", Side::buy, 10, Price::parse("99")); }

}  // namespace

TEST_F(OrderManagerTest, SendsOnlyOnceTheOrderIsDurable) {
  ManualClock clock;
  EventLoop loop(clock);
  Journal journal(journal_path());
  OrderManager om(loop, journal, ids_);
  ScriptedBroker broker(loop);
  om.add_broker(broker);
  broker.on_submit = [&](const OrderSpec& o) {
    // By the time the request leaves, the commit carrying the order has completed.
    EXPECT_GE(journal.records_committed(), 1u);
    EXPECT_TRUE(journal.order(o.client_order_id).has_value());
  };
  const auto coid = om.submit("scripted", limit_buy());
  EXPECT_TRUE(broker.received.empty()) << "nothing sent synchronously, before the commit";
  settle(loop, clock);
  ASSERT_EQ(broker.received.size(), 1u);
  EXPECT_EQ(om.find(coid)->state, OrderState::submitted);
  journal.flush();
  const auto rows = journal.transitions(coid);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].to_state, "pending");
  EXPECT_EQ(rows[1].to_state, "submitted");
}

TEST_F(OrderManagerTest, JournalFailureMeansTheOrderIsNeverSent) {
  { Journal create(journal_path()); }
  ManualClock clock;
  EventLoop loop(clock);
  Journal journal(journal_path(), JournalMode::read_only);  // every write fails
  OrderManager om(loop, journal, ids_);
  ScriptedBroker broker(loop);
  om.add_broker(broker);
  CommandResult result;
  om.submit("scripted", limit_buy(), [&](const CommandResult& r) { result = r; });
  settle(loop, clock);
  EXPECT_TRUE(broker.received.empty());
  EXPECT_EQ(result.outcome, Outcome::failed_locally);
  EXPECT_NE(result.message.find("journal write failed"), std::string::npos) << result.message;
}

TEST_F(OrderManagerTest, UnknownOutcomeIsResolvedByQueryAndNeverResent) {
  ManualClock clock;
  EventLoop loop(clock);
  Journal journal(journal_path());
  OrderManager om(loop, journal, ids_);
  ScriptedBroker broker(loop);
  om.add_broker(broker);
  broker.next_result = CommandResult::unknown_because("timeout after 3 s");
  const auto coid = om.submit("scripted", limit_buy());
  settle(loop, clock);
  EXPECT_EQ(om.find(coid)->state, OrderState::pending) << "unknown is not failure";
  settle(loop, clock, 2s);
  EXPECT_EQ(om.find(coid)->state, OrderState::submitted);
  EXPECT_EQ(om.find(coid)->broker_order_id, "B1");
  EXPECT_EQ(broker.received.size(), 1u) << "resolved by query, not by sending again";
  journal.flush();
  EXPECT_EQ(journal.events("unknown_outcome").size(), 1u);
}

TEST_F(OrderManagerTest, UnknownOutcomeTheBrokerNeverSawEndsFailedAfterRetries) {
  ManualClock clock;
  EventLoop loop(clock);
  Journal journal(journal_path());
  OrderManagerOptions opt;
  opt.resolve_attempts = 4;
  OrderManager om(loop, journal, ids_, opt);
  ScriptedBroker broker(loop);
  broker.keep_unknown_orders = false;
  om.add_broker(broker);
  broker.next_result = CommandResult::unknown_because("connection reset");
  const auto coid = om.submit("scripted", limit_buy());
  settle(loop, clock, 10s);
  EXPECT_EQ(om.find(coid)->state, OrderState::failed);
  EXPECT_EQ(broker.queries, 4);
  EXPECT_EQ(broker.received.size(), 1u);
}

// An adapter that throws from submit() (here before anything is sent, as a JSON writer refusing
// a field would) neither ends the process nor leaves the order pending: unknown, resolved by client
// order id, failed once the broker says it never had it; the next order goes out as usual.
TEST_F(OrderManagerTest, AdapterThrowingFromSubmitIsAnUnknownOutcomeNotACrash) {
  ManualClock clock;
  EventLoop loop(clock);
  Journal journal(journal_path());
  OrderManagerOptions opt;
  opt.resolve_attempts = 3;
  OrderManager om(loop, journal, ids_, opt);
  ScriptedBroker broker(loop);
  om.add_broker(broker);
  broker.on_submit = [](const OrderSpec&) { throw std::runtime_error("[json.exception.type_error.316] invalid UTF-8"); };
  std::optional<CommandResult> answer;
  const auto coid = om.submit("scripted", limit_buy(), [&](const CommandResult& r) { answer = r; });
  ASSERT_NO_THROW(settle(loop, clock));
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->outcome, Outcome::unknown);
  EXPECT_EQ(answer->message, "scripted adapter threw while sending: [json.exception.type_error.316] invalid UTF-8");
  ASSERT_NO_THROW(settle(loop, clock, 10s));
  EXPECT_EQ(om.find(coid)->state, OrderState::failed) << "the broker never had it";
  EXPECT_EQ(broker.queries, 3);
  broker.on_submit = nullptr;
  std::optional<CommandResult> next;
  om.submit("scripted", limit_buy(), [&](const CommandResult& r) { next = r; });
  settle(loop, clock);
  ASSERT_TRUE(next);
  EXPECT_EQ(next->outcome, Outcome::accepted);
  journal.flush();
  EXPECT_EQ(journal.events("unknown_outcome").size(), 1u);
}

// A broker's message is outside text (an HTTP body excerpt, a proxy's Latin-1 error page, an
// excerpt cut inside a UTF-8 character): bytes that are not valid UTF-8 must not make the journal
// event written for it throw (nlohmann's dump()) out of the loop: an unknown and a rejected
// answer to a submit. (Cancel, replace and query answers pass through the same make_valid_utf8.)
TEST_F(OrderManagerTest, BrokerMessageThatIsNotUtf8IsJournaledNotACrash) {
  ManualClock clock;
  EventLoop loop(clock);
  Journal journal(journal_path());
  OrderManager om(loop, journal, ids_);
  ScriptedBroker broker(loop);
  om.add_broker(broker);
  const std::string latin1 = "gateway answered HTTP 502 <h1>Erreur d\xe9lai</h1> \xe2\x82";  // cut inside a character
  broker.next_result = CommandResult::unknown_because(latin1);
  std::optional<CommandResult> unknown;
  const auto a = om.submit("scripted", limit_buy(), [&](const CommandResult& r) { unknown = r; });
  ASSERT_NO_THROW(settle(loop, clock));
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->outcome, Outcome::unknown);
  broker.next_result = CommandResult::rejected_by_broker(latin1);
  const auto b = om.submit("scripted", limit_buy());
  ASSERT_NO_THROW(settle(loop, clock));
  EXPECT_EQ(om.find(b)->state, OrderState::rejected);
  journal.flush();
  const auto events = journal.events("unknown_outcome");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].client_order_id, a);
  const auto detail = nlohmann::json::parse(events[0].detail);
  EXPECT_EQ(detail.at("message").get<std::string>().rfind("gateway answered HTTP 502 <h1>Erreur d", 0), 0u);
}

// An order submitted with an unknown outcome while its broker answers no query (`unknown`), so
// its resolution gives up after `attempts` queries; `broker_has_it`: the request reached the
// broker and only its reply was lost.
struct AbandonedResolution {
  AbandonedResolution(const std::string& journal_path, ClientOrderIdGenerator& ids, int attempts, bool broker_has_it)
      : loop(clock), journal(journal_path), om(loop, journal, ids, options(attempts)), broker(loop) {
    broker.keep_unknown_orders = broker_has_it;
    om.add_broker(broker);
    broker.next_result = CommandResult::unknown_because("connection reset");
    broker.unreachable = true;
    coid = om.submit("scripted", limit_buy());
    settle();
  }
  static OrderManagerOptions options(int attempts) {
    OrderManagerOptions o;
    o.resolve_attempts = attempts;
    return o;
  }
  void settle() { loop.run_until(clock.now() + Duration(10s).count()); }
  OrderState state() const { return om.find(coid)->state; }

  ManualClock clock;
  EventLoop loop;
  Journal journal;
  OrderManager om;
  ScriptedBroker broker;
  std::string coid;
};

// Found by the chaos test (IBKR gateway restart): an order whose reply was lost just before the
// gateway went away was queried while it was unreachable, the resolution gave up, and the order
// stayed pending for the rest of the run although the broker, reachable again, never had it.
TEST_F(OrderManagerTest, AbandonedResolutionResumesAtResyncOnceTheBrokerAnswers) {
  AbandonedResolution a(journal_path(), ids_, 3, false);
  EXPECT_EQ(a.state(), OrderState::pending) << "no answer is not \"no such order\"";
  EXPECT_EQ(a.broker.queries, 3);

  // Still unreachable: a resync keeps it pending (and tries again from the first attempt).
  bool resynced = false;
  a.om.resync([&] { resynced = true; });
  a.settle();
  EXPECT_TRUE(resynced);
  EXPECT_EQ(a.state(), OrderState::pending);
  EXPECT_EQ(a.broker.queries, 6);

  // Reachable again: the broker answers "no such order" three times, so the order failed.
  a.broker.unreachable = false;
  resynced = false;
  a.om.resync([&] { resynced = true; });
  a.settle();
  EXPECT_TRUE(resynced);
  EXPECT_EQ(a.state(), OrderState::failed);
  EXPECT_EQ(a.broker.queries, 9);
  EXPECT_EQ(a.broker.received.size(), 1u) << "never resent";

  // Terminal now: the next resync leaves it alone.
  a.om.resync();
  a.settle();
  EXPECT_EQ(a.broker.queries, 9);
}

// "No such order" fails an order only when every query was answered so: one that went unanswered
// says nothing about whether the broker has it.
TEST_F(OrderManagerTest, UnansweredQueriesDoNotCountTowardNeverHadIt) {
  AbandonedResolution a(journal_path(), ids_, 3, false);
  ASSERT_EQ(a.state(), OrderState::pending);
  a.broker.unreachable = false;
  a.broker.unanswered_queries = 1;  // then "no such order", twice
  a.om.resync();
  a.settle();
  EXPECT_EQ(a.broker.queries, 6);
  EXPECT_EQ(a.state(), OrderState::pending) << "two answers of three are not enough";
  a.om.resync();
  a.settle();
  EXPECT_EQ(a.broker.queries, 9);
  EXPECT_EQ(a.state(), OrderState::failed);
  EXPECT_NE(a.om.find(a.coid)->last_message.find("3 answered queries"), std::string::npos) << a.om.find(a.coid)->last_message;
  EXPECT_EQ(a.broker.received.size(), 1u) << "never resent";
}

TEST_F(OrderManagerTest, AbandonedResolutionOfAnOrderTheBrokerHasEndsInItsState) {
  AbandonedResolution a(journal_path(), ids_, 2, true);
  EXPECT_EQ(a.state(), OrderState::pending);
  a.broker.unreachable = false;
  a.om.resync();
  a.settle();
  EXPECT_EQ(a.state(), OrderState::submitted);
  EXPECT_EQ(a.om.find(a.coid)->broker_order_id, "B1");
  EXPECT_EQ(a.broker.received.size(), 1u);
}

// The stream ends the order before the broker answers queries again: resync must not resume
// the abandoned resolution of a terminal order.
TEST_F(OrderManagerTest, AbandonedResolutionOfAnOrderTheStreamEndsIsNotResumed) {
  AbandonedResolution a(journal_path(), ids_, 2, true);
  ASSERT_EQ(a.state(), OrderState::pending);
  OrderEvent rejected;
  rejected.kind = OrderEvent::Kind::rejected;
  rejected.client_order_id = a.coid;
  rejected.message = "insufficient margin";
  a.broker.handler(rejected);
  ASSERT_EQ(a.state(), OrderState::rejected);
  const int queries = a.broker.queries;
  a.om.resync();
  a.settle();
  EXPECT_EQ(a.broker.queries, queries) << "a terminal order is not queried again";
  EXPECT_EQ(a.state(), OrderState::rejected);
}

TEST_F(OrderManagerTest, LateIllegalReportIsJournaledNotApplied) {
  ManualClock clock;
  EventLoop loop(clock);
  Journal journal(journal_path());
  OrderManager om(loop, journal, ids_);
  ScriptedBroker broker(loop);
  om.add_broker(broker);
  const auto coid = om.submit("scripted", limit_buy());
  settle(loop, clock);
  OrderEvent fill;
  fill.kind = OrderEvent::Kind::fill;
  fill.client_order_id = coid;
  fill.fill = Fill{"X1", "scripted", coid, "B1", "AAPL", Side::buy, 10, Price::parse("99"), clock.now()};
  broker.handler(fill);
  broker.handler(fill);  // repeated frame: counted once
  OrderEvent late_cancel;
  late_cancel.kind = OrderEvent::Kind::cancelled;
  late_cancel.client_order_id = coid;
  broker.handler(late_cancel);
  EXPECT_EQ(om.find(coid)->state, OrderState::filled);
  EXPECT_EQ(om.find(coid)->filled_quantity, 10);
  EXPECT_EQ(om.position("scripted", "AAPL"), 10);
  journal.flush();
  const auto rows = journal.transitions(coid);
  ASSERT_FALSE(rows.empty());
  EXPECT_EQ(rows.back().to_state, "cancelled");
  EXPECT_FALSE(rows.back().applied);
  EXPECT_EQ(journal.fills().size(), 1u);
}

TEST_F(OrderManagerTest, ResyncRecoversFillsTheStreamDropped) {
  ManualClock clock;
  EventLoop loop(clock);
  Journal journal(journal_path());
  OrderManager om(loop, journal, ids_);
  FaultProfile p;
  p.drop_fill_event_rate = 1.0;
  p.drop_order_event_rate = 1.0;
  FaultInjector faults(p, 3);
  Venue venue(clock, faults);
  venue.add_instrument("AAPL", TickSize(Price::parse("0.01")));
  SimBroker sim(SimBrokerOptions{}, loop, venue);
  sim.add_price_path(std::make_unique<RandomWalkPath>(
      RandomWalkParams{"AAPL", Price::parse("100"), TickSize(Price::parse("0.01")), 1, 2, 0}, 9));
  om.add_broker(sim);
  sim.start();
  settle(loop, clock, 300ms);
  const auto coid = om.submit("sim", market_order("AAPL", Side::buy, 25));
  settle(loop, clock, 300ms);
  EXPECT_EQ(om.find(coid)->state, OrderState::submitted) << "the ack came back; the fill event was dropped";
  EXPECT_GE(faults.count("drop_fill_event"), 1u);
  om.resync();
  settle(loop, clock);
  EXPECT_EQ(om.find(coid)->state, OrderState::filled);
  EXPECT_EQ(om.position("sim", "AAPL"), 25);
  om.resync();
  settle(loop, clock);
  EXPECT_EQ(om.position("sim", "AAPL"), 25) << "a second resync counts nothing twice";
  journal.flush();
  EXPECT_EQ(journal.fills().size(), venue.fills().size());
}

// One execution under two names: the order's view read back (its execution list not available)
// books "query:B1:4"; the stream's delayed report of the same execution is "B1:4". Both name the
// order's cumulative quantity: a partial fill is counted once, whichever comes first, and a later
// report covering more books only the part beyond it. (The check against the order's quantity
// catches this only when the order is wholly filled.)
TEST_F(OrderManagerTest, AnExecutionNamedTwiceByItsCumulativeQuantityIsCountedOnce) {
  ManualClock clock;
  EventLoop loop(clock);
  Journal journal(journal_path());
  OrderManager om(loop, journal, ids_);
  ScriptedBroker broker(loop);
  om.add_broker(broker);
  const auto coid = om.submit("scripted", limit_buy());  // 10
  settle(loop, clock);
  ASSERT_EQ(om.find(coid)->broker_order_id, "B1");
  BrokerOrder& view = broker.book[coid];
  view.filled_quantity = 4;
  view.average_fill_price = Price::parse("99");
  view.state = OrderState::partially_filled;
  om.resync();
  settle(loop, clock);
  ASSERT_EQ(om.position("scripted", "AAPL"), 4);

  OrderEvent ev;
  ev.kind = OrderEvent::Kind::fill;
  ev.client_order_id = coid;
  ev.broker_order_id = "B1";
  ev.state = OrderState::partially_filled;
  ev.fill = Fill{"B1:4", "scripted", coid, "B1", "AAPL", Side::buy, 4, Price::parse("99"), clock.now(), 4};
  broker.handler(ev);
  settle(loop, clock);
  EXPECT_EQ(om.position("scripted", "AAPL"), 4) << "the read-back's execution counted again";
  EXPECT_EQ(om.find(coid)->filled_quantity, 4);
  // The stream missed an update: its next report covers 4 more than it last said (cumulative 7,
  // 3 of them new to us as well as to it, had it seen the 4): only the 3 beyond the 4 booked.
  ev.fill = Fill{"B1:7", "scripted", coid, "B1", "AAPL", Side::buy, 7, Price::parse("98.99"), clock.now(), 7};
  broker.handler(ev);
  settle(loop, clock);
  EXPECT_EQ(om.position("scripted", "AAPL"), 7);
  EXPECT_EQ(om.find(coid)->state, OrderState::partially_filled);
  journal.flush();
  std::int64_t journaled = 0;
  for (const auto& f : journal.fills()) journaled += f.quantity;
  EXPECT_EQ(journaled, 7);
}

TEST_F(OrderManagerTest, ResyncBooksOnlyTheQuantityTheStreamMissedWhenIdsDiffer) {
  // IBKR's stream names a fill by the order's cumulative quantity ("B1:5"); one stream update can
  // cover two executions ("B1:2" and "B1:5" in the execution list). The list must add only the
  // quantity the stream missed (the 4 of "B1:9"), never the 2 of "B1:2" a second time.
  ManualClock clock;
  EventLoop loop(clock);
  Journal journal(journal_path());
  OrderManager om(loop, journal, ids_);
  ScriptedBroker broker(loop);
  broker.fill_query = true;
  om.add_broker(broker);
  const auto coid = om.submit("scripted", limit_buy());
  settle(loop, clock);
  ASSERT_EQ(om.find(coid)->broker_order_id, "B1");
  auto fill = [&](const std::string& id, std::int64_t qty, const char* price, Timestamp at) {
    return Fill{id, "scripted", coid, "B1", "AAPL", Side::buy, qty, Price::parse(price), at};
  };
  OrderEvent ev;
  ev.kind = OrderEvent::Kind::fill;
  ev.client_order_id = coid;
  ev.broker_order_id = "B1";
  ev.state = OrderState::partially_filled;
  ev.fill = fill("B1:5", 5, "98.98", 2);
  broker.handler(ev);
  settle(loop, clock);
  ASSERT_EQ(om.find(coid)->filled_quantity, 5);
  broker.executions = {fill("B1:2", 2, "98.97", 1), fill("B1:5", 3, "98.99", 2), fill("B1:9", 4, "99.00", 3)};
  om.resync();
  settle(loop, clock);
  EXPECT_EQ(om.find(coid)->filled_quantity, 9);
  EXPECT_EQ(om.position("scripted", "AAPL"), 9);
  om.resync();
  settle(loop, clock);
  EXPECT_EQ(om.position("scripted", "AAPL"), 9) << "a second resync counts nothing twice";
  // The stream's late report of the same execution, under the same cumulative name.
  ev.fill = fill("B1:9", 4, "99.00", 3);
  broker.handler(ev);
  settle(loop, clock);
  EXPECT_EQ(om.position("scripted", "AAPL"), 9);
  // An execution list that does not reach back to the first fills books nothing.
  broker.executions = {fill("B1:9", 4, "99.00", 3)};
  om.resync();
  settle(loop, clock);
  EXPECT_EQ(om.position("scripted", "AAPL"), 9);
}

TEST_F(OrderManagerTest, RecoveryResolvesEveryOpenOrderBeforeAnythingNew) {
  {
    Journal journal(journal_path());
    for (const char* coid : {"R-1", "R-2", "R-3"}) {
      OrderRecord o;
      o.spec = limit_buy();
      o.spec.client_order_id = coid;
      o.broker = "scripted";
      o.state = OrderState::pre_sent;
      o.state_times[0] = 1;
      journal.record_order(o);
    }
  }  // "crash" with three orders journaled and unresolved
  ManualClock clock;
  EventLoop loop(clock);
  Journal journal(journal_path());
  OrderManager om(loop, journal, ids_);
  ScriptedBroker broker(loop);
  broker.book["R-2"] = BrokerOrder{"B9", "R-2", "AAPL", Side::buy, 10, OrderType::limit, Price::parse("99"),
                                   std::nullopt, TimeInForce::day, false, OrderState::submitted, "working", 0,
                                   std::nullopt, ""};
  om.add_broker(broker);
  std::size_t resolved = 0, unresolved = 0;
  bool done = false;
  om.recover([&](std::size_t r, std::size_t u) {
    resolved = r;
    unresolved = u;
    done = true;
  });
  settle(loop, clock, 10s);
  ASSERT_TRUE(done);
  EXPECT_EQ(resolved, 3u);
  EXPECT_EQ(unresolved, 0u);
  EXPECT_EQ(om.find("R-1")->state, OrderState::failed);
  EXPECT_EQ(om.find("R-2")->state, OrderState::submitted);
  EXPECT_EQ(om.find("R-2")->broker_order_id, "B9");
  EXPECT_EQ(om.find("R-3")->state, OrderState::failed);
  EXPECT_TRUE(broker.received.empty()) << "recovery never resends";
}

// A broker that finds unknown outcomes by an order's details (TradeStation) must know, before the
// first such query, every broker order id the journal has already given to an order, ended or
// not: found again for an order whose request never arrived, it would count one order's fills for
// two (a chaos run did: seed 402).
TEST_F(OrderManagerTest, RecoveryTellsTheBrokerEveryJournaledBrokerIdBeforeItResolvesAnything) {
  {
    Journal journal(journal_path());
    const auto journal_order = [&](const char* coid, OrderState state, const char* broker_id) {
      OrderRecord o;
      o.spec = limit_buy();
      o.spec.client_order_id = coid;
      o.broker = "scripted";
      o.broker_order_id = broker_id;
      o.state = state;
      o.state_times[0] = 1;
      journal.record_order(o);
    };
    journal_order("K-1", OrderState::filled, "B1");     // ended: still claims B1
    journal_order("K-2", OrderState::submitted, "B2");  // working
    journal_order("K-3", OrderState::pending, "");      // its request may never have arrived
  }
  ManualClock clock;
  EventLoop loop(clock);
  Journal journal(journal_path());
  OrderManager om(loop, journal, ids_);
  ScriptedBroker broker(loop);
  om.add_broker(broker);
  bool done = false;
  om.recover([&](std::size_t, std::size_t) { done = true; });
  settle(loop, clock, 10s);
  ASSERT_TRUE(done);
  using Pair = std::pair<std::string, std::string>;
  EXPECT_EQ(broker.remembered, (std::vector<Pair>{{"K-1", "B1"}, {"K-2", "B2"}}));
  ASSERT_FALSE(broker.remembered_before_query.empty()) << "K-3 was never queried by client order id";
  EXPECT_EQ(broker.remembered_before_query.front(), 2u) << "queried before every journaled id was remembered";
}

TEST_F(OrderManagerTest, BracketLegsAreJournaledTogetherAndLinked) {
  ManualClock clock;
  EventLoop loop(clock);
  Journal journal(journal_path());
  OrderManager om(loop, journal, ids_);
  FaultInjector faults(FaultProfile{}, 1);
  Venue venue(clock, faults);
  venue.add_instrument("AAPL", TickSize(Price::parse("0.01")));
  SimBroker sim(SimBrokerOptions{}, loop, venue);
  om.add_broker(sim);
  BracketSpec b;
  b.entry = limit_order("AAPL", Side::buy, 10, Price::parse("99"));
  b.take_profit = limit_order("AAPL", Side::sell, 10, Price::parse("101"), TimeInForce::gtc);
  b.protective_stop = stop_order("AAPL", Side::sell, 10, Price::parse("98"));
  const auto ids = om.submit_bracket("sim", b);
  settle(loop, clock);
  for (const auto& id : {ids.entry, ids.take_profit, ids.protective_stop})
    EXPECT_EQ(om.find(id)->state, OrderState::submitted) << id;
  EXPECT_EQ(om.find(ids.protective_stop)->spec.parent_client_order_id, ids.entry);
  EXPECT_EQ(venue.find_by_client_id(ids.protective_stop)->status, VenueStatus::held);
  om.cancel(ids.entry);
  settle(loop, clock);
  for (const auto& id : {ids.entry, ids.take_profit, ids.protective_stop})
    EXPECT_EQ(om.find(id)->state, OrderState::cancelled) << id;
}

// The broker refusing to change an order the record calls working ("already filled") most often
// means the record is behind: here a stop filled at the venue with every event of it lost. The
// refusal (of a replace, or of a cancel) reads the order back at once, so the fill is booked and
// the order ends filled then, not at the next resync (a strategy trailing that stop learns at once
// that it fired).
static void refused_change_reads_the_order_back(const std::function<void(OrderManager&, const std::string&,
                                                                  OrderManager::SubmitCallback)>& change) {
  std::vector<std::string> path(20, "100.00");  // then 99.40: through the 99.50 stop
  path.push_back("99.40");
  FaultProfile lossy;
  lossy.drop_order_event_rate = 1.0;
  lossy.drop_fill_event_rate = 1.0;
  testing_support::SimSession s(lossy, path);
  s.sim.start();
  s.orders.submit("sim", market_order("AAPL", Side::buy, 10));
  s.run_for(300ms);
  s.orders.resync();
  s.run_for(300ms);
  ASSERT_EQ(s.orders.position("sim", "AAPL"), 10);
  const std::string stop = s.orders.submit("sim", stop_order("AAPL", Side::sell, 10, Price::parse("99.50")));
  s.run_for(3s);
  ASSERT_EQ(s.venue.find_by_client_id(stop)->status, VenueStatus::filled) << "the stop fired at the venue";
  ASSERT_EQ(s.orders.find(stop)->state, OrderState::submitted) << "every event of it was lost";

  std::optional<CommandResult> r;
  change(s.orders, stop, [&](const CommandResult& c) { r = c; });
  s.run_for(100ms);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->outcome, Outcome::rejected) << r->message;
  EXPECT_EQ(s.orders.find(stop)->state, OrderState::filled) << to_string(s.orders.find(stop)->state);
  EXPECT_EQ(s.orders.position("sim", "AAPL"), 0);
}

TEST(OrderManagerOnSim, ARefusedReplaceReadsTheOrderBackAndFindsItFilled) {
  refused_change_reads_the_order_back([](OrderManager& om, const std::string& stop, OrderManager::SubmitCallback done) {
    OrderSpec moved = om.find(stop)->spec;
    moved.stop_price = Price::parse("99.30");
    om.replace(stop, moved, std::move(done));
  });
}

TEST(OrderManagerOnSim, ARefusedCancelReadsTheOrderBackAndFindsItFilled) {
  refused_change_reads_the_order_back([](OrderManager& om, const std::string& stop, OrderManager::SubmitCallback done) {
    om.cancel(stop, std::move(done));
  });
}
