#include "core/journal.hpp"

#include "core/event_loop.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

using namespace backstop;
namespace fs = std::filesystem;

namespace {

class JournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("backstop-journal-test-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name = "j.db") const { return (dir_ / name).string(); }

  static OrderRecord order(const std::string& coid, OrderState state = OrderState::pre_sent) {
    OrderRecord o;
    o.spec = stop_order("AAPL", Side::sell, 100, Price::parse("232.86"));
    o.spec.client_order_id = coid;
    o.broker = "sim";
    o.state = state;
    o.state_times[0] = 1'000;
    return o;
  }

  static std::string read_bytes(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  fs::path dir_;
};

}  // namespace

TEST_F(JournalTest, RecordsOrdersTransitionsFillsAndEvents) {
  {
    Journal j(path());
    auto o = order("A-1");
    j.record_order(o);
    auto ev = o.transition(OrderState::pending, 2'000, "sent");
    j.record_transition(ev, o);
    ev = o.transition(OrderState::submitted, 3'000, "ack");
    j.record_transition(ev, o);
    ev = o.transition(OrderState::pre_sent, 3'500, "bogus");  // refused, but recorded
    j.record_transition(ev, o);
    Fill f{"E1", "sim", "A-1", "1001", "AAPL", Side::sell, 40, Price::parse("232.85"), 4'000};
    j.record_fill(f);
    j.record_fill(f);  // a repeated execution is ignored
    j.record_event({5'000, "sim", "ghost_stop", "A-1", R"({"price":"232.80"})"});
    j.flush();
  }
  Journal j(path());
  auto orders = j.orders();
  ASSERT_EQ(orders.size(), 1u);
  EXPECT_EQ(orders[0].state, OrderState::submitted);
  EXPECT_EQ(orders[0].spec.stop_price, Price::parse("232.86"));
  EXPECT_EQ(orders[0].time_of(OrderState::pending), 2'000);
  EXPECT_EQ(orders[0].time_of(OrderState::submitted), 3'000);
  auto transitions = j.transitions("A-1");
  ASSERT_EQ(transitions.size(), 3u);
  EXPECT_FALSE(transitions[2].applied);
  EXPECT_EQ(transitions[2].reason, "bogus");
  ASSERT_EQ(j.fills().size(), 1u);
  EXPECT_EQ(j.fills()[0].price, Price::parse("232.85"));
  ASSERT_EQ(j.events("ghost_stop").size(), 1u);
}

TEST_F(JournalTest, UsesWalAndFullSynchronousCommits) {
  { Journal j(path()); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path().c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, nullptr);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "wal");
  sqlite3_finalize(st);
  sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, nullptr);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(st, 0), Journal::kSchemaVersion);
  sqlite3_finalize(st);
  sqlite3_close(db);
}

TEST_F(JournalTest, DurableCallbackComesAfterCommitAndCommitsAreGrouped) {
  Journal j(path());
  constexpr int kRecords = 2000;
  std::atomic<int> durable{0};
  for (int i = 0; i < kRecords; ++i)
    j.record_order(order("G-" + std::to_string(i)), [&](const std::string& error) {
      EXPECT_EQ(error, "");
      ++durable;
    });
  j.flush();
  EXPECT_EQ(durable.load(), kRecords);
  EXPECT_EQ(j.records_committed(), static_cast<std::uint64_t>(kRecords));
  // Records queued while a commit is running share the next one.
  EXPECT_LT(j.commits(), static_cast<std::uint64_t>(kRecords));
  EXPECT_EQ(j.orders().size(), static_cast<std::size_t>(kRecords));
}

TEST_F(JournalTest, RecoveryListsEveryNonTerminalOrder) {
  {
    Journal j(path());
    for (auto [coid, st] : std::vector<std::pair<std::string, OrderState>>{
             {"R-1", OrderState::pre_sent}, {"R-2", OrderState::pending}, {"R-3", OrderState::submitted},
             {"R-4", OrderState::filled}, {"R-5", OrderState::cancelled}, {"R-6", OrderState::pending_cancel},
             {"R-7", OrderState::failed}})
      j.record_order(order(coid, st));
  }  // closed without an explicit flush: the destructor commits the queue
  Journal j(path());
  std::vector<std::string> open;
  for (const auto& o : j.non_terminal_orders()) open.push_back(o.spec.client_order_id);
  EXPECT_EQ(open, (std::vector<std::string>{"R-1", "R-2", "R-3", "R-6"}));
}

TEST_F(JournalTest, SecondWriterIsRefusedAsLocked) {
  Journal first(path());
  first.record_order(order("L-1"));
  first.flush();
  try {
    Journal second(path());
    FAIL() << "a second writer opened the journal";
  } catch (const JournalError& e) {
    EXPECT_NE(std::string(e.what()).find("locked by another process"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path()), std::string::npos) << "names the file";
  }
  EXPECT_EQ(first.orders().size(), 1u) << "the first writer is unaffected";
}

TEST_F(JournalTest, CorruptFileIsReportedAndLeftUntouched) {
  {
    std::ofstream out(path(), std::ios::binary);
    out << "this is not a database, it is a shopping list: eggs, milk, ";
    for (int i = 0; i < 200; ++i) out << "garbage ";
  }
  const auto before = read_bytes(path());
  try {
    Journal j(path());
    FAIL();
  } catch (const JournalError& e) {
    EXPECT_NE(std::string(e.what()).find("corrupt"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_bytes(path()), before);
}

TEST_F(JournalTest, DamagedPagesFailTheIntegrityCheck) {
  {
    Journal j(path());
    for (int i = 0; i < 500; ++i) j.record_order(order("C-" + std::to_string(i)));
  }
  // Scribble over the middle of the file (not the header).
  {
    std::fstream f(path(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4096 * 3);
    for (int i = 0; i < 4096; ++i) f.put(static_cast<char>(0xA5));
  }
  const auto before = read_bytes(path());
  EXPECT_THROW({ Journal j(path()); }, JournalError);
  EXPECT_EQ(read_bytes(path()), before);
}

TEST_F(JournalTest, NewerSchemaIsRefused) {
  { Journal j(path()); }
  sqlite3* db = nullptr;
  sqlite3_open(path().c_str(), &db);
  sqlite3_exec(db, "PRAGMA user_version=99", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  const auto before = read_bytes(path());
  try {
    Journal j(path());
    FAIL();
  } catch (const JournalError& e) {
    EXPECT_NE(std::string(e.what()).find("newer Backstop (schema 99"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_bytes(path()), before);
}

TEST_F(JournalTest, ForeignDatabaseIsRefused) {
  sqlite3* db = nullptr;
  sqlite3_open(path().c_str(), &db);
  sqlite3_exec(db, "CREATE TABLE recipes (name TEXT)", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  try {
    Journal j(path());
    FAIL();
  } catch (const JournalError& e) {
    EXPECT_NE(std::string(e.what()).find("not a Backstop journal"), std::string::npos) << e.what();
  }
}

TEST_F(JournalTest, UnwritablePathIsAClearError) {
  // /proc refuses file creation even to root, like a read-only mount.
  try {
    Journal j("/proc/backstop-journal-test.db");
    FAIL();
  } catch (const JournalError& e) {
    EXPECT_NE(std::string(e.what()).find("/proc/backstop-journal-test.db"), std::string::npos) << e.what();
  }
  EXPECT_THROW({ Journal j(path("missing-dir/j.db")); }, JournalError);
}

TEST_F(JournalTest, ReadOnlyModeReadsAndRefusesWrites) {
  {
    Journal j(path());
    j.record_order(order("O-1"));
  }
  Journal ro(path(), JournalMode::read_only);
  EXPECT_EQ(ro.orders().size(), 1u);
  std::string error;
  ro.record_order(order("O-2"), [&](const std::string& e) { error = e; });
  EXPECT_NE(error.find("read-only"), std::string::npos);
  EXPECT_THROW({ Journal missing(path("nope.db"), JournalMode::read_only); }, JournalError);
}

// A journal written by schema 1 (before the two unused indexes were dropped) is read as it is
// by a read-only opening (reports, `backstop compare`) and migrated by a read-write one, its
// orders, transitions and fills intact.
namespace {
// One integer from a query on a journal file, through SQLite itself.
std::int64_t sql_int(const std::string& file, const char* sql) {
  sqlite3* db = nullptr;
  sqlite3_open(file.c_str(), &db);
  sqlite3_stmt* st = nullptr;
  std::int64_t v = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

void expect_same_order(const OrderRecord& got, const OrderRecord& want) {
  EXPECT_EQ(got.spec.client_order_id, want.spec.client_order_id);
  EXPECT_EQ(got.broker, want.broker);
  EXPECT_EQ(got.broker_order_id, want.broker_order_id);
  EXPECT_EQ(got.spec.symbol, want.spec.symbol);
  EXPECT_EQ(got.spec.quantity, want.spec.quantity);
  EXPECT_EQ(got.spec.limit_price, want.spec.limit_price);
  EXPECT_EQ(got.spec.stop_price, want.spec.stop_price);
  EXPECT_EQ(got.spec.tif, want.spec.tif);
  EXPECT_EQ(got.state, want.state);
  EXPECT_EQ(got.filled_quantity, want.filled_quantity);
  EXPECT_EQ(got.average_fill_price, want.average_fill_price);
  EXPECT_EQ(got.last_message, want.last_message);
  EXPECT_EQ(got.state_times, want.state_times);
}
}  // namespace

// A journal written by schema 1 (the tables as that release created them, frozen here) is read
// as it is by a read-only opening and migrated, data intact, by a read-write one.
TEST_F(JournalTest, SchemaOneJournalIsReadAndMigrated) {
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path().c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, R"sql(
CREATE TABLE orders (
  client_order_id TEXT PRIMARY KEY, broker TEXT NOT NULL, broker_order_id TEXT NOT NULL DEFAULT '',
  symbol TEXT NOT NULL, side TEXT NOT NULL, quantity INTEGER NOT NULL, type TEXT NOT NULL,
  limit_price TEXT, stop_price TEXT, tif TEXT NOT NULL, outside_rth INTEGER NOT NULL,
  parent_client_order_id TEXT NOT NULL DEFAULT '', oco_group TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL, filled_quantity INTEGER NOT NULL DEFAULT 0,
  average_fill_price TEXT NOT NULL DEFAULT '0', last_message TEXT NOT NULL DEFAULT '',
  created_at INTEGER, sent_at INTEGER, submitted_at INTEGER, partially_filled_at INTEGER,
  filled_at INTEGER, pending_cancel_at INTEGER, cancelled_at INTEGER, rejected_at INTEGER,
  failed_at INTEGER);
CREATE INDEX orders_by_state ON orders(state);
CREATE TABLE transitions (id INTEGER PRIMARY KEY, client_order_id TEXT NOT NULL,
  from_state TEXT NOT NULL, to_state TEXT NOT NULL, at INTEGER NOT NULL, reason TEXT NOT NULL,
  applied INTEGER NOT NULL);
CREATE INDEX transitions_by_order ON transitions(client_order_id);
CREATE TABLE fills (broker TEXT NOT NULL, execution_id TEXT NOT NULL, client_order_id TEXT NOT NULL,
  broker_order_id TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL, quantity INTEGER NOT NULL,
  price TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (broker, execution_id));
CREATE TABLE events (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, broker TEXT NOT NULL,
  kind TEXT NOT NULL, client_order_id TEXT NOT NULL, detail TEXT NOT NULL);
CREATE INDEX events_by_kind ON events(kind);
INSERT INTO orders VALUES ('S1-1', 'sim', '', 'AAPL', 'sell', 100, 'stop', NULL, '232.86', 'gtc', 0,
  '', '', 'pending', 0, '0', '', 1000, 2000, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO transitions (client_order_id, from_state, to_state, at, reason, applied)
  VALUES ('S1-1', 'pre_sent', 'pending', 2000, 'sent', 1);
PRAGMA application_id=1112757328;
PRAGMA user_version=1;
)sql",
                           nullptr, nullptr, nullptr),
              SQLITE_OK)
        << sqlite3_errmsg(db);
    sqlite3_close(db);
  }
  const char* index_count =
      "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN ('orders_by_state', 'transitions_by_order')";
  OrderRecord want = order("S1-1");
  want.transition(OrderState::pending, 2'000, "sent");
  {
    Journal ro(path(), JournalMode::read_only);
    ASSERT_EQ(ro.orders().size(), 1u);
    expect_same_order(ro.orders()[0], want);
    EXPECT_EQ(ro.transitions("S1-1").size(), 1u);
  }
  EXPECT_EQ(sql_int(path(), index_count), 2) << "a read-only opening changed the file";
  EXPECT_EQ(sql_int(path(), "PRAGMA user_version"), 1);
  {
    Journal rw(path());
    ASSERT_EQ(rw.orders().size(), 1u);
    expect_same_order(rw.orders()[0], want);
    EXPECT_EQ(rw.transitions("S1-1").size(), 1u);
    OrderRecord o = *rw.order("S1-1");
    rw.record_transition(o.transition(OrderState::submitted, 3'000, "ack"), o);
    want.transition(OrderState::submitted, 3'000, "ack");
    rw.flush();
    expect_same_order(*rw.order("S1-1"), want);
  }
  EXPECT_EQ(sql_int(path(), index_count), 0);
  EXPECT_EQ(sql_int(path(), "PRAGMA user_version"), Journal::kSchemaVersion);
  Journal ro(path(), JournalMode::read_only);
  expect_same_order(*ro.order("S1-1"), want);
  EXPECT_EQ(ro.transitions("S1-1").size(), 2u);
}

// Schema 4 journals the strategy (route) that sent an order. A schema 3 journal (made here
// from a current one by dropping the column) is read without it by a read-only opening, its
// unfolded transitions still folded in, and migrated by a read-write one, its orders kept with
// no strategy.
TEST_F(JournalTest, StrategyIsJournaledAndASchemaThreeJournalIsReadAndMigrated) {
  OrderRecord mine = order("S-1");
  mine.spec.strategy = "mean_reversion";
  OrderRecord guards = order("S-2");
  {
    Journal j(path());
    j.record_order(mine);
    j.record_order(guards);
    j.record_transition(mine.transition(OrderState::pending, 2'000, "sent"), mine);
    j.flush();
    EXPECT_EQ(j.order("S-1")->spec.strategy, "mean_reversion");
    EXPECT_EQ(j.order("S-2")->spec.strategy, "");
  }
  {
    Journal j(path());
    EXPECT_EQ(j.order("S-1")->spec.strategy, "mean_reversion") << "kept by the fold of a reopening";
    EXPECT_EQ(j.orders()[0].spec.strategy, "mean_reversion");
    j.record_transition(mine.transition(OrderState::submitted, 3'000, "ack"), mine);  // not folded yet
    j.flush();
  }
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path().c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "ALTER TABLE orders DROP COLUMN held_at; ALTER TABLE orders DROP COLUMN strategy; "
                           "PRAGMA user_version=3;",
                           nullptr, nullptr, nullptr),
              SQLITE_OK)
        << sqlite3_errmsg(db);
    sqlite3_close(db);
  }
  mine.spec.strategy.clear();
  {
    Journal ro(path(), JournalMode::read_only);
    ASSERT_EQ(ro.orders().size(), 2u);
    expect_same_order(*ro.order("S-1"), mine);
    EXPECT_EQ(ro.order("S-1")->state, OrderState::submitted);
    EXPECT_EQ(ro.order("S-1")->spec.strategy, "");
  }
  EXPECT_EQ(sql_int(path(), "PRAGMA user_version"), 3) << "a read-only opening changed the file";
  {
    Journal rw(path());
    expect_same_order(*rw.order("S-1"), mine);
    expect_same_order(*rw.order("S-2"), guards);
    EXPECT_EQ(rw.order("S-1")->spec.strategy, "");
  }
  EXPECT_EQ(sql_int(path(), "PRAGMA user_version"), Journal::kSchemaVersion);
}

// Schema 5: a stop held by Backstop (protection `local`) is an order in state held, with the time
// it was held; released, the same order becomes a market order, and its row says so.
TEST_F(JournalTest, HeldOrderIsJournaledReleasedAndASchemaFourJournalIsReadAndMigrated) {
  OrderRecord held = order("H-1");
  OrderRecord plain = order("H-2");
  {
    Journal j(path());
    j.record_order(held);
    j.record_transition(held.transition(OrderState::held, 1'500, "held"), held);
    j.record_order(plain);
    j.flush();
    const auto got = j.order("H-1");
    ASSERT_TRUE(got);
    EXPECT_EQ(got->state, OrderState::held);
    EXPECT_EQ(got->time_of(OrderState::held), 1'500);
    ASSERT_EQ(j.non_terminal_orders().size(), 2u) << "held is not terminal: it is loaded on start";
  }
  {
    Journal j(path());  // the reopening folds the transition into the row
    expect_same_order(*j.order("H-1"), held);
    EXPECT_EQ(j.order("H-1")->time_of(OrderState::held), 1'500);
    // Released: sent as a market order under its own id.
    held.spec.type = OrderType::market;
    held.spec.stop_price.reset();
    held.spec.tif = TimeInForce::day;
    j.record_transition(held.transition(OrderState::pre_sent, 9'000, "local stop triggered"), held);
    j.record_order(held);
    j.record_state_change(held.transition(OrderState::pending, 9'100, "sent"));
    j.flush();
    const auto got = j.order("H-1");
    expect_same_order(*got, held);
    EXPECT_EQ(got->spec.type, OrderType::market);
    EXPECT_FALSE(got->spec.stop_price);
    EXPECT_EQ(got->state, OrderState::pending);
    EXPECT_EQ(got->time_of(OrderState::held), 1'500);
  }
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path().c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "ALTER TABLE orders DROP COLUMN held_at; PRAGMA user_version=4;", nullptr, nullptr,
                           nullptr),
              SQLITE_OK)
        << sqlite3_errmsg(db);
    sqlite3_close(db);
  }
  {
    Journal ro(path(), JournalMode::read_only);
    ASSERT_EQ(ro.orders().size(), 2u);
    expect_same_order(*ro.order("H-2"), plain);
    EXPECT_EQ(ro.order("H-1")->time_of(OrderState::held), 0) << "schema 4 has no held_at";
  }
  EXPECT_EQ(sql_int(path(), "PRAGMA user_version"), 4) << "a read-only opening changed the file";
  {
    Journal rw(path());
    expect_same_order(*rw.order("H-2"), plain);
    OrderRecord again = plain;
    rw.record_transition(again.transition(OrderState::held, 7'000, "held"), again);
    rw.flush();
    EXPECT_EQ(rw.order("H-2")->time_of(OrderState::held), 7'000);
  }
  EXPECT_EQ(sql_int(path(), "PRAGMA user_version"), Journal::kSchemaVersion);
  Journal reopened(path());
  EXPECT_EQ(reopened.order("H-2")->time_of(OrderState::held), 7'000) << "folded into the migrated row";
}

// Schema 3 writes one row per transition and leaves the order row as recorded: every read folds
// the later transitions in (read-write and read-only alike), and the next read-write opening
// folds them into the order rows for good.
TEST_F(JournalTest, TransitionsAreFoldedIntoTheOrderOnReadAndOnReopening) {
  OrderRecord o = order("F-1");
  OrderRecord other = order("F-2");
  {
    Journal j(path());
    j.record_order(o);
    j.record_order(other);
    j.record_state_change(o.transition(OrderState::pending, 2'000, "sent"));
    o.broker_order_id = "B-77";
    j.record_transition(o.transition(OrderState::submitted, 3'000, "ack"), o);
    j.record_transition(o.transition(OrderState::submitted, 3'500, "repeated ack"), o);  // refused
    o.add_fill(40, Price::parse("232.80"));
    o.last_message = "partial";
    j.record_transition(o.transition(OrderState::partially_filled, 4'000, "fill"), o);
    j.record_state_change(other.transition(OrderState::pending, 2'100, "sent"));
    j.flush();
    expect_same_order(*j.order("F-1"), o);
    expect_same_order(*j.order("F-2"), other);
    ASSERT_EQ(j.non_terminal_orders().size(), 2u);
    o.add_fill(60, Price::parse("232.70"));
    j.record_transition(o.transition(OrderState::filled, 5'000, "fill"), o);
    const auto open = j.non_terminal_orders();
    ASSERT_EQ(open.size(), 1u) << "the fold decides which orders are open";
    EXPECT_EQ(open[0].spec.client_order_id, "F-2");
    EXPECT_EQ(j.transitions("F-1").size(), 5u);
  }
  EXPECT_EQ(sql_int(path(), "SELECT count(*) FROM orders WHERE state = 'pre_sent'"), 2)
      << "the writer updated order rows";
  {
    Journal ro(path(), JournalMode::read_only);
    const auto all = ro.orders();
    ASSERT_EQ(all.size(), 2u);
    expect_same_order(all[0], o);
    expect_same_order(all[1], other);
  }
  { Journal reopened(path()); }
  EXPECT_EQ(sql_int(path(), "SELECT count(*) FROM orders WHERE state = 'pre_sent'"), 0);
  EXPECT_EQ(sql_int(path(), "SELECT through_transition FROM fold"), sql_int(path(), "SELECT max(id) FROM transitions"));
  Journal j(path());
  expect_same_order(*j.order("F-1"), o);
  expect_same_order(*j.order("F-2"), other);
  EXPECT_FALSE(j.order("F-3"));
}

// An order recorded again (here with a new stop price) already reflects the transitions before
// it: a read must not replay them over it, and only later ones apply.
TEST_F(JournalTest, AnOrderRecordedAgainKeepsWhatEarlierTransitionsDidNotKnow) {
  OrderRecord o = order("R-1");
  {
    Journal j(path());
    j.record_order(o);
    j.record_transition(o.transition(OrderState::pending, 2'000, "sent"), o);
    j.record_transition(o.transition(OrderState::submitted, 3'000, "ack"), o);
    o.spec.stop_price = Price::parse("230.00");
    o.broker_order_id = "B-9";
    j.record_order(o);
    expect_same_order(*j.order("R-1"), o);
    j.record_transition(o.transition(OrderState::pending_cancel, 4'000, "cancel"), o);
    expect_same_order(*j.order("R-1"), o);
  }
  { Journal reopened(path()); }  // folds
  Journal ro(path(), JournalMode::read_only);
  expect_same_order(*ro.order("R-1"), o);
  EXPECT_EQ(ro.order("R-1")->spec.stop_price, Price::parse("230.00"));
}

// Records queued by a loop task that called defer_wake_to_task_end wake the idle writer once,
// after the task (a strategy's burst of orders: one wake-up, one commit), and none is lost.
TEST_F(JournalTest, RecordsQueuedInALoopTaskWakeTheWriterOnceAfterTheTask) {
  ManualClock clock;
  EventLoop loop(clock);
  Journal j(path());
  j.flush();
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!j.writer_waiting() && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
  ASSERT_TRUE(j.writer_waiting());
  const auto before = j.wakeups();
  std::atomic<int> durable{0};
  std::uint64_t wakeups_in_task = 99;
  loop.post([&] {
    for (int i = 0; i < 3; ++i) {
      j.defer_wake_to_task_end(loop);  // taken once per task however often it is asked for
      j.record_order(order("T-" + std::to_string(i)), [&](const std::string&) { ++durable; });
    }
    wakeups_in_task = j.wakeups();
  });
  loop.run_ready();
  EXPECT_EQ(wakeups_in_task, before) << "the writer was woken inside the task";
  // No flush (it would wake the writer itself): the task's end must have.
  while (durable < 3 && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
  EXPECT_EQ(durable.load(), 3);
  EXPECT_EQ(j.wakeups(), before + 1);
  EXPECT_EQ(j.orders().size(), 3u);
}

// Outside a loop task the hold is not taken, and a journal destroyed inside the task that holds
// it commits what was queued and leaves no hook behind.
TEST_F(JournalTest, DeferredWakeOutsideATaskOrAcrossTheJournalsEnd) {
  ManualClock clock;
  EventLoop loop(clock);
  {
    Journal j(path());
    j.defer_wake_to_task_end(loop);  // not in a task: nothing held
    bool durable = false;
    j.record_order(order("A-1"), [&](const std::string&) { durable = true; });
    j.flush();
    EXPECT_TRUE(durable);
  }
  loop.post([&] {
    Journal j(path());
    j.defer_wake_to_task_end(loop);
    j.record_order(order("A-2"));
  });  // ~Journal inside the task: drains, forgets its hook
  loop.run_ready();
  Journal j(path(), JournalMode::read_only);
  EXPECT_EQ(j.orders().size(), 2u);
}

TEST_F(JournalTest, ReopeningKeepsSchemaAndData) {
  for (int round = 0; round < 3; ++round) {
    Journal j(path());
    j.record_order(order("K-" + std::to_string(round)));
    j.flush();
    EXPECT_EQ(j.orders().size(), static_cast<std::size_t>(round + 1));
  }
}
