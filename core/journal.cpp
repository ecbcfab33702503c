#include "core/journal.hpp"

#include <pthread.h>

#include "core/cpu_affinity.hpp"
#include "core/event_loop.hpp"

#include <nlohmann/json.hpp>
#include <sqlite3.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <array>
#include <future>
#include <string_view>
#include <unordered_map>

namespace backstop {

// [[gnu::hot]]: on every order's submit path (see routing/router.cpp).

namespace {

// 'BSTP': marks a SQLite file as a Backstop journal, so that pointing --journal at some other
// database is refused instead of adding tables to it.
constexpr int kApplicationId = 0x42535450;

// Migrations, index i brings the schema from version i to i+1. Never edit a released entry:
// add a new one.
const char* const kMigrations[] = {
    R"sql(
CREATE TABLE orders (
  client_order_id TEXT PRIMARY KEY,
  broker TEXT NOT NULL,
  broker_order_id TEXT NOT NULL DEFAULT '',
  symbol TEXT NOT NULL,
  side TEXT NOT NULL,
  quantity INTEGER NOT NULL,
  type TEXT NOT NULL,
  limit_price TEXT,
  stop_price TEXT,
  tif TEXT NOT NULL,
  outside_rth INTEGER NOT NULL,
  parent_client_order_id TEXT NOT NULL DEFAULT '',
  oco_group TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL,
  filled_quantity INTEGER NOT NULL DEFAULT 0,
  average_fill_price TEXT NOT NULL DEFAULT '0',
  last_message TEXT NOT NULL DEFAULT '',
  created_at INTEGER, sent_at INTEGER, submitted_at INTEGER, partially_filled_at INTEGER,
  filled_at INTEGER, pending_cancel_at INTEGER, cancelled_at INTEGER, rejected_at INTEGER,
  failed_at INTEGER
);
CREATE INDEX orders_by_state ON orders(state);
CREATE TABLE transitions (
  id INTEGER PRIMARY KEY,
  client_order_id TEXT NOT NULL,
  from_state TEXT NOT NULL,
  to_state TEXT NOT NULL,
  at INTEGER NOT NULL,
  reason TEXT NOT NULL,
  applied INTEGER NOT NULL
);
CREATE INDEX transitions_by_order ON transitions(client_order_id);
CREATE TABLE fills (
  broker TEXT NOT NULL,
  execution_id TEXT NOT NULL,
  client_order_id TEXT NOT NULL,
  broker_order_id TEXT NOT NULL,
  symbol TEXT NOT NULL,
  side TEXT NOT NULL,
  quantity INTEGER NOT NULL,
  price TEXT NOT NULL,
  at INTEGER NOT NULL,
  PRIMARY KEY (broker, execution_id)
);
CREATE TABLE events (
  id INTEGER PRIMARY KEY,
  at INTEGER NOT NULL,
  broker TEXT NOT NULL,
  kind TEXT NOT NULL,
  client_order_id TEXT NOT NULL,
  detail TEXT NOT NULL
);
CREATE INDEX events_by_kind ON events(kind);
)sql",
    // 1 -> 2: nothing reads through these two indexes, and keeping them current was most of the
    // b-tree work of a transition's commit (an index delete and insert per state change, an
    // index insert per transition row). The per-order transitions query has the form
    // "?1 = '' OR client_order_id = ?1" and the open-orders query "state NOT IN (...)": SQLite
    // scans for both (EXPLAIN QUERY PLAN), and the production readers (reports, recovery) read
    // every row anyway. No data changes: indexes are derived.
    R"sql(
DROP INDEX IF EXISTS orders_by_state;
DROP INDEX IF EXISTS transitions_by_order;
)sql",
    // 2 -> 3: one insert per transition. Keeping the order row current in the same commit (an
    // upsert of 26 columns by client order id) cost twice the transition's own insert and held
    // the journal at half the raw insert rate of the disk. A transition row now also carries
    // what a transition changes in an order besides its state: the broker's order id, the fill
    // totals and the last message (NULL when it changed nothing but the state:
    // record_state_change); the state's timestamp is the transition's own `at`, kept when already
    // set. What was ordered never changes through a transition (a replacement is recorded as the
    // whole order again). Readers fold the transitions after an order row into it, and a
    // read-write opening folds them into the order rows for good. `as_of_transition` is the last
    // transition an order row already reflects (an order recorded again mid-run must not have
    // older transitions replayed over it); `fold.through_transition` is the last transition
    // folded into every order row. Order rows of schema 2 are current: every existing transition
    // counts as folded. ADD COLUMN rewrites no row.
    R"sql(
ALTER TABLE orders ADD COLUMN as_of_transition INTEGER NOT NULL DEFAULT 0;
ALTER TABLE transitions ADD COLUMN broker_order_id TEXT;
ALTER TABLE transitions ADD COLUMN filled_quantity INTEGER;
ALTER TABLE transitions ADD COLUMN average_fill_price TEXT;
ALTER TABLE transitions ADD COLUMN last_message TEXT;
CREATE TABLE fold (through_transition INTEGER NOT NULL);
INSERT INTO fold SELECT coalesce(max(id), 0) FROM transitions;
)sql",
    // 3 -> 4: the route (strategy) that sent an order, so that after a restart a strategy owns
    // its orders again: its position counts their fills and their updates reach it. Empty for
    // orders no route sent (the stop guard's own orders) and for every order of an older schema.
    R"sql(
ALTER TABLE orders ADD COLUMN strategy TEXT NOT NULL DEFAULT '';
)sql",
    // 4 -> 5: the state `held` (protection `local`: a stop Backstop holds instead of the broker)
    // and when an order entered it. An order row of an older schema was never held.
    R"sql(
ALTER TABLE orders ADD COLUMN held_at INTEGER;
)sql",
};
static_assert(std::size(kMigrations) == Journal::kSchemaVersion);

std::string where(const std::string& path) { return "journal " + path + ": "; }

void exec(sqlite3* db, const std::string& sql, const std::string& path) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    const int code = sqlite3_extended_errcode(db);
    std::string msg = err ? err : sqlite3_errmsg(db);
    sqlite3_free(err);
    if ((code & 0xff) == SQLITE_BUSY || (code & 0xff) == SQLITE_LOCKED)
      throw JournalError(where(path) + "locked by another process (is another backstop running on it?)");
    if ((code & 0xff) == SQLITE_NOTADB || (code & 0xff) == SQLITE_CORRUPT)
      throw JournalError(where(path) + "file is corrupt or not a SQLite database (" + msg + "); it was left untouched");
    if ((code & 0xff) == SQLITE_READONLY)
      throw JournalError(where(path) + "cannot write: file or directory is read-only (" + msg + ")");
    throw JournalError(where(path) + msg);
  }
}

std::int64_t query_int(sqlite3* db, const char* sql, const std::string& path) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) != SQLITE_OK) exec(db, sql, path);  // throws classified
  std::int64_t v = 0;
  const int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) exec(db, sql, path);
  return v;
}

std::string query_text(sqlite3* db, const char* sql, const std::string& path) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) != SQLITE_OK) exec(db, sql, path);
  std::string v;
  const int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW && sqlite3_column_text(st, 0))
    v = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) exec(db, sql, path);
  return v;
}

// A statement prepared for one read and finalized after it. Reads are rare (start-up, reports,
// tests) and may run on several threads of a read-only journal, so they share nothing.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &st_, nullptr) != SQLITE_OK)
      throw JournalError(std::string("journal: cannot prepare statement: ") + sqlite3_errmsg(db));
  }
  ~Statement() { sqlite3_finalize(st_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int i, const std::string& v) {
    sqlite3_bind_text(st_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  bool next() {
    const int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw JournalError(std::string("journal: read failed: ") + sqlite3_errmsg(db_));
  }
  std::string text(int c) const {
    auto p = sqlite3_column_text(st_, c);
    return p ? reinterpret_cast<const char*>(p) : "";
  }
  std::int64_t integer(int c) const { return sqlite3_column_int64(st_, c); }
  bool is_null(int c) const { return sqlite3_column_type(st_, c) == SQLITE_NULL; }
  int columns() const { return sqlite3_column_count(st_); }

 private:
  sqlite3* db_;
  sqlite3_stmt* st_ = nullptr;
};

// Binding for the writer's cached statements. Text is bound SQLITE_STATIC: every string bound
// lives in the batch being written (or in a local of the binding function) until the statement
// has been stepped and reset, and every parameter is bound again before the next step, so
// SQLite need not copy it.
void bind(sqlite3_stmt* st, int i, const std::string& v) {
  sqlite3_bind_text(st, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
}
void bind(sqlite3_stmt* st, int i, const char* v) { sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC); }
void bind(sqlite3_stmt* st, int i, std::int64_t v) { sqlite3_bind_int64(st, i, v); }
void bind_time(sqlite3_stmt* st, int i, Timestamp t) {
  if (t == 0)
    sqlite3_bind_null(st, i);
  else
    sqlite3_bind_int64(st, i, t);
}
void run(sqlite3* db, sqlite3_stmt* st) {
  const int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW)
    throw JournalError(std::string("journal: write failed: ") + sqlite3_errmsg(db));
}

sqlite3_stmt* prepare(sqlite3* db, const char* sql) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, nullptr) != SQLITE_OK)
    throw JournalError(std::string("journal: cannot prepare statement: ") + sqlite3_errmsg(db));
  return st;
}

constexpr const char* kUpsertOrder = R"sql(
INSERT INTO orders (client_order_id, broker, broker_order_id, symbol, side, quantity, type,
  limit_price, stop_price, tif, outside_rth, parent_client_order_id, oco_group, state,
  filled_quantity, average_fill_price, last_message, created_at, sent_at, submitted_at,
  partially_filled_at, filled_at, pending_cancel_at, cancelled_at, rejected_at, failed_at,
  as_of_transition, strategy, held_at)
VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24,?25,?26,?27,?28,?29)
ON CONFLICT(client_order_id) DO UPDATE SET broker=?2, broker_order_id=?3, quantity=?6, type=?7,
  limit_price=?8, stop_price=?9, tif=?10, state=?14, filled_quantity=?15, average_fill_price=?16,
  last_message=?17, created_at=?18, sent_at=?19, submitted_at=?20, partially_filled_at=?21,
  filled_at=?22, pending_cancel_at=?23, cancelled_at=?24, rejected_at=?25, failed_at=?26,
  as_of_transition=?27, held_at=?29
)sql";
// The timestamps of the states up to `failed` sit in consecutive columns of the first schema
// (created_at .. failed_at); `held_at` came with schema 5, after `strategy`.
constexpr std::size_t kFirstSchemaStates = static_cast<std::size_t>(OrderState::failed) + 1;
static_assert(static_cast<std::size_t>(OrderState::held) == kFirstSchemaStates && kOrderStateCount == kFirstSchemaStates + 1,
              "a new state needs a column (a migration) and its place in upsert_order and read_order");
// Parameters 7-10 are what the transition changed in the order besides its state, NULL for a
// refused transition and for a state change (record_state_change).
constexpr const char* kInsertTransition = R"sql(
INSERT INTO transitions (client_order_id, from_state, to_state, at, reason, applied,
  broker_order_id, filled_quantity, average_fill_price, last_message)
VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)
)sql";
constexpr int kTransitionOrderFirst = 7, kTransitionOrderLast = 10;
constexpr const char* kInsertFill =
    "INSERT OR IGNORE INTO fills (broker, execution_id, client_order_id, broker_order_id, symbol, side, quantity, "
    "price, at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)";
constexpr const char* kInsertEvent =
    "INSERT INTO events (at, broker, kind, client_order_id, detail) VALUES (?1,?2,?3,?4,?5)";

}  // namespace

struct Journal::Statements {
  explicit Statements(sqlite3* db)
      : upsert_order(prepare(db, kUpsertOrder)),
        insert_transition(prepare(db, kInsertTransition)),
        insert_fill(prepare(db, kInsertFill)),
        insert_event(prepare(db, kInsertEvent)) {}
  ~Statements() {
    for (sqlite3_stmt* st : {upsert_order, insert_transition, insert_fill, insert_event}) sqlite3_finalize(st);
  }
  Statements(const Statements&) = delete;
  Statements& operator=(const Statements&) = delete;
  sqlite3_stmt* upsert_order;
  sqlite3_stmt* insert_transition;
  sqlite3_stmt* insert_fill;
  sqlite3_stmt* insert_event;
  // Id of the last transition written: an order row recorded now reflects every transition up to
  // it (as_of_transition).
  std::int64_t last_transition = 0;
};

namespace {

void upsert_order(sqlite3* db, sqlite3_stmt* st, const OrderRecord& o, std::int64_t as_of_transition) {
  const auto& s = o.spec;
  // Locals that outlive the step (bound SQLITE_STATIC).
  const std::string limit = s.limit_price ? s.limit_price->to_string() : std::string();
  const std::string stop = s.stop_price ? s.stop_price->to_string() : std::string();
  const std::string average = o.average_fill_price.to_string();
  bind(st, 1, s.client_order_id);
  bind(st, 2, o.broker);
  bind(st, 3, o.broker_order_id);
  bind(st, 4, s.symbol);
  bind(st, 5, to_string(s.side));
  bind(st, 6, s.quantity);
  bind(st, 7, to_string(s.type));
  if (s.limit_price) bind(st, 8, limit); else sqlite3_bind_null(st, 8);
  if (s.stop_price) bind(st, 9, stop); else sqlite3_bind_null(st, 9);
  bind(st, 10, to_string(s.tif));
  bind(st, 11, static_cast<std::int64_t>(s.outside_rth));
  bind(st, 12, s.parent_client_order_id);
  bind(st, 13, s.oco_group);
  bind(st, 14, to_string(o.state));
  bind(st, 15, o.filled_quantity);
  bind(st, 16, average);
  bind(st, 17, o.last_message);
  for (std::size_t i = 0; i < kFirstSchemaStates; ++i) bind_time(st, 18 + static_cast<int>(i), o.state_times[i]);
  bind(st, 27, as_of_transition);
  bind(st, 28, s.strategy);
  bind_time(st, 29, o.time_of(OrderState::held));
  run(db, st);
}

// `broker_order_id` is null when the row carries only the transition (a state change, or a
// refused transition); then the three after it are not read.
void insert_transition(sqlite3* db, sqlite3_stmt* st, const TransitionEvent& ev, const std::string* broker_order_id,
                       std::int64_t filled_quantity, const Price& average_fill_price, const std::string& last_message) {
  bind(st, 1, ev.client_order_id);
  bind(st, 2, to_string(ev.from));
  bind(st, 3, to_string(ev.to));
  bind(st, 4, ev.at);
  bind(st, 5, ev.reason);
  bind(st, 6, static_cast<std::int64_t>(ev.applied));
  if (!broker_order_id) {
    for (int i = kTransitionOrderFirst; i <= kTransitionOrderLast; ++i) sqlite3_bind_null(st, i);
    run(db, st);
    return;
  }
  const std::string average = average_fill_price.to_string();  // outlives the step
  bind(st, 7, *broker_order_id);
  bind(st, 8, filled_quantity);
  bind(st, 9, average);
  bind(st, 10, last_message);
  run(db, st);
}

#define BACKSTOP_ORDER_COLUMNS                                                                  \
  "client_order_id, broker, broker_order_id, symbol, side, quantity, type, limit_price, "      \
  "stop_price, tif, outside_rth, parent_client_order_id, oco_group, state, filled_quantity, " \
  "average_fill_price, last_message, created_at, sent_at, submitted_at, partially_filled_at, " \
  "filled_at, pending_cancel_at, cancelled_at, rejected_at, failed_at"
// Schemas 1 and 2: the order rows are current.
constexpr const char* kSelectAllOrders = "SELECT " BACKSTOP_ORDER_COLUMNS " FROM orders ORDER BY created_at, rowid";
constexpr const char* kSelectOrderById = "SELECT " BACKSTOP_ORDER_COLUMNS " FROM orders WHERE client_order_id = ?1";
// Schema 3 (read-only): the order rows with the transition each reflects (column 26), to be
// folded.
constexpr const char* kSelectAllOrdersToFoldSchema3 =
    "SELECT " BACKSTOP_ORDER_COLUMNS ", as_of_transition FROM orders ORDER BY created_at, rowid";
constexpr const char* kSelectOrderByIdToFoldSchema3 =
    "SELECT " BACKSTOP_ORDER_COLUMNS ", as_of_transition FROM orders WHERE client_order_id = ?1";
// Schema 4 (read-only): the same, and the strategy that sent the order (column 27).
constexpr const char* kSelectAllOrdersToFoldSchema4 =
    "SELECT " BACKSTOP_ORDER_COLUMNS ", as_of_transition, strategy FROM orders ORDER BY created_at, rowid";
constexpr const char* kSelectOrderByIdToFoldSchema4 =
    "SELECT " BACKSTOP_ORDER_COLUMNS ", as_of_transition, strategy FROM orders WHERE client_order_id = ?1";
// Schema 5: the same, and when the order was held (column 28).
constexpr const char* kSelectAllOrdersToFold =
    "SELECT " BACKSTOP_ORDER_COLUMNS ", as_of_transition, strategy, held_at FROM orders ORDER BY created_at, rowid";
constexpr const char* kSelectOrderByIdToFold =
    "SELECT " BACKSTOP_ORDER_COLUMNS ", as_of_transition, strategy, held_at FROM orders WHERE client_order_id = ?1";
// The orders that applied transitions not folded for good yet name (a read-write opening, so
// always the current schema).
constexpr const char* kSelectOrdersWithUnfoldedTransitions =
    "SELECT " BACKSTOP_ORDER_COLUMNS ", as_of_transition, strategy, held_at FROM orders WHERE client_order_id IN "
    "(SELECT client_order_id FROM transitions WHERE id > (SELECT through_transition FROM fold) AND applied = 1) "
    "ORDER BY created_at, rowid";
#undef BACKSTOP_ORDER_COLUMNS
// Applied transitions not folded for good yet, of every order (?1 = '') or of one. A range of
// the rowid: only what was written since the last read-write opening is read.
constexpr const char* kSelectUnfoldedTransitions = R"sql(
SELECT id, client_order_id, to_state, at, broker_order_id, filled_quantity, average_fill_price,
  last_message
FROM transitions WHERE id > (SELECT through_transition FROM fold) AND applied = 1
  AND (?1 = '' OR client_order_id = ?1) ORDER BY id
)sql";

OrderRecord read_order(const Statement& st) {
  OrderRecord o;
  auto& s = o.spec;
  s.client_order_id = st.text(0);
  o.broker = st.text(1);
  o.broker_order_id = st.text(2);
  s.symbol = st.text(3);
  s.side = side_from_string(st.text(4)).value_or(Side::buy);
  s.quantity = st.integer(5);
  s.type = order_type_from_string(st.text(6)).value_or(OrderType::market);
  if (!st.is_null(7)) s.limit_price = Price::parse(st.text(7));
  if (!st.is_null(8)) s.stop_price = Price::parse(st.text(8));
  s.tif = tif_from_string(st.text(9)).value_or(TimeInForce::day);
  s.outside_rth = st.integer(10) != 0;
  s.parent_client_order_id = st.text(11);
  s.oco_group = st.text(12);
  const auto state = order_state_from_string(st.text(13));
  if (!state) throw JournalError("journal: order " + s.client_order_id + " has unknown state \"" + st.text(13) + "\"");
  o.state = *state;
  o.filled_quantity = st.integer(14);
  o.average_fill_price = Price::parse(st.text(15));
  o.last_message = st.text(16);
  for (std::size_t i = 0; i < kFirstSchemaStates; ++i) o.state_times[i] = st.integer(17 + static_cast<int>(i));
  return o;
}

// One row of kSelectUnfoldedTransitions applied to the order it names, as OrderRecord::transition
// did: the state, and its timestamp if not yet set; then, unless the row carries only the state
// (filled_quantity NULL), what else the transition changed.
void apply_transition(OrderRecord& o, const Statement& t) {
  const auto to = order_state_from_string(t.text(2));
  if (!to) throw JournalError("journal: transition " + std::to_string(t.integer(0)) + " of order " +
                              o.spec.client_order_id + " has unknown state \"" + t.text(2) + "\"");
  o.state = *to;
  auto& entered = o.state_times[static_cast<std::size_t>(*to)];
  if (entered == 0) entered = t.integer(3);
  if (t.is_null(5)) return;
  o.broker_order_id = t.text(4);
  o.filled_quantity = t.integer(5);
  o.average_fill_price = Price::parse(t.text(6));
  o.last_message = t.text(7);
}

int schema_version(sqlite3* db) {
  Statement st(db, "PRAGMA user_version");
  return st.next() ? static_cast<int>(st.integer(0)) : 0;
}

// Order rows as of everything journaled: read by `orders_sql` (order columns, then
// as_of_transition, then the strategy from schema 4 on, then held_at from schema 5 on; ?1 bound
// to `coid`), with every later
// applied transition (of `coid` only, when not empty) folded in. `touched`, when given, tells which orders a transition changed.
std::vector<OrderRecord> read_folded_orders(sqlite3* db, const char* orders_sql, const std::string& coid,
                                            std::vector<bool>* touched = nullptr) {
  std::vector<OrderRecord> out;
  std::vector<std::int64_t> as_of;
  {
    Statement st(db, orders_sql);
    if (!coid.empty()) st.bind(1, coid);
    const bool has_strategy = st.columns() > 27;
    const bool has_held = st.columns() > 28;
    while (st.next()) {
      out.push_back(read_order(st));
      as_of.push_back(st.integer(26));
      if (has_strategy) out.back().spec.strategy = st.text(27);
      if (has_held) out.back().state_times[static_cast<std::size_t>(OrderState::held)] = st.integer(28);
    }
  }
  if (touched) touched->assign(out.size(), false);
  if (out.empty()) return out;
  std::unordered_map<std::string_view, std::size_t> by_id;
  by_id.reserve(out.size());
  for (std::size_t i = 0; i < out.size(); ++i) by_id.emplace(out[i].spec.client_order_id, i);
  Statement t(db, kSelectUnfoldedTransitions);
  t.bind(1, coid);
  while (t.next()) {
    const std::string id = t.text(1);
    const auto it = by_id.find(id);
    if (it == by_id.end()) {
      spdlog::error("journal: transition {} names order {}, which has no order row; ignored", t.integer(0), id);
      continue;
    }
    if (t.integer(0) <= as_of[it->second]) continue;  // the order row was recorded after it
    apply_transition(out[it->second], t);
    if (touched) (*touched)[it->second] = true;
  }
  return out;
}

// Read-write opening: the transitions written since the last opening are folded into their order
// rows for good, so that reads (and this fold) only ever read what one run wrote. Returns the id
// of the last transition.
std::int64_t fold_transitions_into_orders(sqlite3* db, sqlite3_stmt* upsert, const std::string& path) {
  const std::int64_t last = query_int(db, "SELECT coalesce(max(id), 0) FROM transitions", path);
  if (last == query_int(db, "SELECT through_transition FROM fold", path)) return last;
  std::vector<bool> touched;
  const auto orders = read_folded_orders(db, kSelectOrdersWithUnfoldedTransitions, {}, &touched);
  for (std::size_t i = 0; i < orders.size(); ++i)
    if (touched[i]) upsert_order(db, upsert, orders[i], last);
  exec(db, "UPDATE fold SET through_transition = " + std::to_string(last), path);
  return last;
}

}  // namespace

Journal::Journal(const std::string& path, JournalMode mode) : path_(path), mode_(mode) {
  struct stat sb {};
  const bool exists = ::stat(path.c_str(), &sb) == 0;
  if (mode == JournalMode::read_only && !exists) throw JournalError(where(path) + "no such file");
  // Read-write: the connection is used by one thread at a time (this constructor, then only the
  // writer thread, then the destructor after joining it), so SQLite's per-call mutex is pure
  // overhead (tens of lock/unlock pairs per transition). Read-only: reads run on the callers'
  // threads, possibly several at once, so SQLite serializes them.
  const int flags = mode == JournalMode::read_only
                        ? (SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX)
                        : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX);
  if (sqlite3_open_v2(path.c_str(), &db_, flags, nullptr) != SQLITE_OK) {
    const std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw JournalError(where(path) + "cannot open (" + msg + "); check that the directory exists and is writable");
  }
  try {
    if (mode == JournalMode::read_write && sqlite3_db_readonly(db_, "main") == 1)
      throw JournalError(where(path) + "cannot write: file or directory is read-only");
    sqlite3_busy_timeout(db_, 250);
    sqlite3_extended_result_codes(db_, 1);
    if (mode == JournalMode::read_write) {
      // One writer per journal: exclusive locking makes a second Backstop on the same file fail
      // loudly at start instead of interleaving its orders with ours. Set before WAL is entered
      // so that no shared-memory index is used.
      exec(db_, "PRAGMA locking_mode=EXCLUSIVE", path);
    }
    // Reading the header is where a corrupt or foreign file first shows itself.
    const auto app_id = query_int(db_, "PRAGMA application_id", path);
    const auto version = query_int(db_, "PRAGMA user_version", path);
    const auto tables = query_int(db_, "SELECT count(*) FROM sqlite_master", path);
    if ((app_id != 0 && app_id != kApplicationId) || (app_id == 0 && tables > 0))
      throw JournalError(where(path) + "not a Backstop journal (a different SQLite database); it was left untouched");
    if (version > kSchemaVersion)
      throw JournalError(where(path) + "written by a newer Backstop (schema " + std::to_string(version) +
                         ", this build knows " + std::to_string(kSchemaVersion) + "); upgrade Backstop");
    if (exists && sb.st_size > 0 && query_text(db_, "PRAGMA quick_check", path) != "ok")
      throw JournalError(where(path) + "failed its integrity check (corrupt); it was left untouched");
    if (mode == JournalMode::read_write) {
      if (query_text(db_, "PRAGMA journal_mode=WAL", path) != "wal")
        throw JournalError(where(path) + "cannot switch to WAL mode");
      exec(db_, "PRAGMA synchronous=FULL", path);
      exec(db_, "BEGIN IMMEDIATE", path);  // takes the exclusive lock (or reports it is held)
      try {
        for (auto v = version; v < kSchemaVersion; ++v) exec(db_, kMigrations[v], path);
        exec(db_, "PRAGMA application_id=" + std::to_string(kApplicationId), path);
        exec(db_, "PRAGMA user_version=" + std::to_string(kSchemaVersion), path);
        statements_ = std::make_unique<Statements>(db_);
        statements_->last_transition = fold_transitions_into_orders(db_, statements_->upsert_order, path);
        exec(db_, "COMMIT", path);
      } catch (...) {
        sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
        throw;
      }
      if (version < kSchemaVersion && version > 0)
        spdlog::info("journal {}: migrated schema {} -> {}", path, version, kSchemaVersion);
    } else if (version < kOldestReadableVersion) {
      throw JournalError(where(path) + "schema " + std::to_string(version) + " is older than " +
                         std::to_string(kOldestReadableVersion) + "; open it once read-write to migrate");
    }
  } catch (...) {
    statements_.reset();
    sqlite3_close(db_);
    db_ = nullptr;
    throw;
  }
  // Started by the loop's thread, which may be pinned (config runtime.loop_cpu): the writer goes
  // back to the process's CPUs, less the loop's if it is reserved for busy polling.
  if (mode == JournalMode::read_write) writer_ = std::thread([this] {
    // Named so that it can be told apart in top -H, gdb and /proc (cpu_affinity_test looks for it).
    pthread_setname_np(pthread_self(), "bs-journal");
    unpin_this_thread();
    writer_loop();
  });
}

Journal::~Journal() {
  if (turn_hold_loop_) {  // destroyed inside the task that took the hold
    turn_hold_loop_->forget_task_end(this);
    turn_hold_loop_ = nullptr;
    turn_hold_.reset();
  }
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (writer_.joinable()) writer_.join();
  statements_.reset();
  if (db_) sqlite3_close(db_);
}

Journal::DeferWake::DeferWake(Journal& journal) : journal_(journal) { journal_.wake_holds_.fetch_add(1); }

Journal::DeferWake::~DeferWake() {
  bool wake = false;
  {
    // Under the lock, so that a wake-up deferred by a concurrent enqueue is never lost.
    std::lock_guard lock(journal_.mutex_);
    if (journal_.wake_holds_.fetch_sub(1) == 1 && journal_.wake_deferred_) wake = journal_.wake_locked(false);
  }
  if (wake) journal_.wake_.notify_one();
}

[[gnu::hot]] void Journal::defer_wake_to_task_end(EventLoop& loop) {
  if (mode_ == JournalMode::read_only || !loop.in_task()) return;
  if (turn_hold_loop_) return;  // this task holds it already
  if (!loop.at_task_end(&Journal::end_turn_hold, this)) return;
  turn_hold_loop_ = &loop;
  turn_hold_.emplace(*this);
}

void Journal::end_turn_hold(void* journal) {
  auto* self = static_cast<Journal*>(journal);
  self->turn_hold_loop_ = nullptr;
  self->turn_hold_.reset();  // the last hold ending wakes the writer if a record is waiting
}

bool Journal::wake_locked(bool force) {
  // Only a writer waiting on wake_ needs a notify; a busy one takes the queue when its commit
  // ends. Returns whether the caller must notify (after unlocking).
  if (!writer_idle_ || queue_.empty()) return false;
  if (wake_holds_ > 0 && !force) {
    wake_deferred_ = true;
    return false;
  }
  ++wakeups_;
  wake_deferred_ = false;
  writer_idle_ = false;  // one notify is enough until the writer waits again
  return true;
}

bool Journal::refuse_write(Durable& on_durable) {
  if (mode_ != JournalMode::read_only) return false;
  if (on_durable) on_durable(where(path_) + "opened read-only");
  return true;
}

[[gnu::hot]] Journal::Entry& Journal::add_entry(Kind kind, std::uint32_t index, Durable&& on_durable) {
  if (queue_.n_entries == queue_.entries.size()) queue_.entries.emplace_back();
  Entry& e = queue_.entries[queue_.n_entries++];
  e.kind = kind;
  e.index = index;
  e.on_durable = std::move(on_durable);
  return e;
}

namespace {
// The next free slot of one per-kind array: reused when present (assignment keeps the strings'
// capacity), appended otherwise.
template <typename T>
std::uint32_t take_slot(std::vector<T>& v, std::size_t& n) {
  if (n == v.size()) v.emplace_back();
  return static_cast<std::uint32_t>(n++);
}
}  // namespace

template <typename QueueIt>
void Journal::enqueue(Durable& on_durable, bool force_wake, QueueIt&& queue_it) {
  if (refuse_write(on_durable)) return;
  bool wake;
  {
    std::lock_guard lock(mutex_);
    queue_it();  // copies the record into its slot and adds its Entry
    wake = wake_locked(force_wake);
  }
  if (wake) wake_.notify_one();
}

[[gnu::hot]] void Journal::record_order(const OrderRecord& order, Durable on_durable) {
  enqueue(on_durable, false, [&] {
    const auto i = take_slot(queue_.orders, queue_.n_orders);
    queue_.orders[i] = order;
    add_entry(Kind::order, i, std::move(on_durable));
  });
}

void Journal::record_transition(const TransitionEvent& ev, const OrderRecord& after, Durable on_durable) {
  enqueue(on_durable, false, [&] {
    const auto t = take_slot(queue_.transitions, queue_.n_transitions);
    TransitionSlot& slot = queue_.transitions[t];
    slot.ev = ev;
    slot.carries_order = ev.applied;  // a refused transition changed nothing in the order
    if (ev.applied) {
      slot.broker_order_id = after.broker_order_id;
      slot.filled_quantity = after.filled_quantity;
      slot.average_fill_price = after.average_fill_price;
      slot.last_message = after.last_message;
    }
    add_entry(Kind::transition, t, std::move(on_durable));
  });
}

[[gnu::hot]] void Journal::record_state_change(const TransitionEvent& ev, Durable on_durable) {
  enqueue(on_durable, false, [&] {
    const auto t = take_slot(queue_.transitions, queue_.n_transitions);
    queue_.transitions[t].ev = ev;
    queue_.transitions[t].carries_order = false;
    add_entry(Kind::state_change, t, std::move(on_durable));
  });
}

void Journal::record_fill(const Fill& f, Durable on_durable) {
  enqueue(on_durable, false, [&] {
    const auto i = take_slot(queue_.fills, queue_.n_fills);
    queue_.fills[i] = f;
    add_entry(Kind::fill, i, std::move(on_durable));
  });
}

void Journal::record_event(const JournalEvent& ev, Durable on_durable) {
  record_event(ev.at, ev.broker, ev.kind, ev.client_order_id, ev.detail, std::move(on_durable));
}

void Journal::record_event(Timestamp at, std::string_view broker, std::string_view kind,
                           std::string_view client_order_id, std::string_view detail, Durable on_durable) {
  enqueue(on_durable, false, [&] {
    const auto i = take_slot(queue_.events, queue_.n_events);
    // assign(), not a new string: the slot keeps its capacity from earlier events.
    JournalEvent& slot = queue_.events[i];
    slot.at = at;
    slot.broker.assign(broker);
    slot.kind.assign(kind);
    slot.client_order_id.assign(client_order_id);
    slot.detail.assign(detail);
    add_entry(Kind::event, i, std::move(on_durable));
  });
}

void Journal::enqueue_op(Op op, Durable on_durable) {
  enqueue(on_durable, true /* the caller blocks on the result */, [&] {
    const auto i = take_slot(queue_.ops, queue_.n_ops);
    queue_.ops[i] = std::move(op);
    add_entry(Kind::op, i, std::move(on_durable));
  });
}

void Journal::write_batch(Queue& batch) {
  Statements& sql = *statements_;
  for (std::size_t k = 0; k < batch.n_entries; ++k) {
    const Entry& e = batch.entries[k];
    switch (e.kind) {
      case Kind::order:
        upsert_order(db_, sql.upsert_order, batch.orders[e.index], sql.last_transition);
        break;
      case Kind::transition:
      case Kind::state_change: {
        const TransitionSlot& t = batch.transitions[e.index];
        insert_transition(db_, sql.insert_transition, t.ev, t.carries_order ? &t.broker_order_id : nullptr,
                          t.filled_quantity, t.average_fill_price, t.last_message);
        sql.last_transition = sqlite3_last_insert_rowid(db_);
        break;
      }
      case Kind::fill: {
        const Fill& f = batch.fills[e.index];
        const std::string price = f.price.to_string();
        sqlite3_stmt* st = statements_->insert_fill;
        bind(st, 1, f.broker);
        bind(st, 2, f.execution_id);
        bind(st, 3, f.client_order_id);
        bind(st, 4, f.broker_order_id);
        bind(st, 5, f.symbol);
        bind(st, 6, to_string(f.side));
        bind(st, 7, f.quantity);
        bind(st, 8, price);
        bind(st, 9, f.at);
        run(db_, st);
        break;
      }
      case Kind::event: {
        const JournalEvent& ev = batch.events[e.index];
        sqlite3_stmt* st = statements_->insert_event;
        bind(st, 1, ev.at);
        bind(st, 2, ev.broker);
        bind(st, 3, ev.kind);
        bind(st, 4, ev.client_order_id);
        bind(st, 5, ev.detail);
        run(db_, st);
        break;
      }
      case Kind::op:
        batch.ops[e.index](db_);
        break;
    }
  }
}

void Journal::recycle(Queue& batch) {
  for (std::size_t k = 0; k < batch.n_entries; ++k) batch.entries[k].on_durable = nullptr;
  for (std::size_t k = 0; k < batch.n_ops; ++k) batch.ops[k] = nullptr;
  batch.n_entries = batch.n_orders = batch.n_transitions = batch.n_fills = batch.n_events = batch.n_ops = 0;
  // Slots are kept for the next batch, up to the size of a busy one; a burst beyond it (start-up
  // recovery, a mass cancel) gives its memory back.
  constexpr std::size_t kKeep = 1024;
  auto trim = [](auto& v) {
    if (v.size() <= kKeep) return;
    v.resize(kKeep);
    v.shrink_to_fit();
  };
  trim(batch.entries);
  trim(batch.orders);
  trim(batch.transitions);
  trim(batch.fills);
  trim(batch.events);
  trim(batch.ops);
}

void Journal::writer_loop() {
  for (;;) {
    std::string error;
    {
      std::unique_lock lock(mutex_);
      while (!stopping_ && queue_.empty()) {
        writer_idle_ = true;
        wake_.wait(lock);
      }
      writer_idle_ = false;
      if (queue_.empty() && stopping_) return;
      std::swap(queue_, batch_);  // batch_ was recycled: callers now fill its slots
      committing_ = true;
      error = last_error_;  // once a commit has failed, nothing more is claimed durable
    }
    if (error.empty()) {
      try {
        exec(db_, "BEGIN IMMEDIATE", path_);
        try {
          write_batch(batch_);
          exec(db_, "COMMIT", path_);
        } catch (...) {
          sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
          throw;
        }
      } catch (const std::exception& e) {
        error = e.what();
        spdlog::error("journal {}: commit failed: {}", path_, error);
      }
    }
    {
      std::lock_guard lock(mutex_);
      if (!error.empty()) last_error_ = error;
      ++commits_;
      if (error.empty()) records_ += batch_.n_entries;
    }
    for (std::size_t k = 0; k < batch_.n_entries; ++k)
      if (batch_.entries[k].on_durable) batch_.entries[k].on_durable(error);
    recycle(batch_);
    {
      std::lock_guard lock(mutex_);
      committing_ = false;
    }
    drained_.notify_all();
  }
}

void Journal::flush() {
  std::unique_lock lock(mutex_);
  if (mode_ == JournalMode::read_only) return;
  // Even under a DeferWake: waiting for a writer that was never woken would never end.
  if (wake_locked(true)) wake_.notify_one();
  drained_.wait(lock, [this] { return queue_.empty() && !committing_; });
  if (!last_error_.empty()) throw JournalError(last_error_);
}

template <typename T>
T Journal::read(std::function<T(sqlite3*)> query) {
  if (mode_ == JournalMode::read_only) return query(db_);
  // Reads run on the writer thread, after everything queued before them. If the journal has
  // already failed, the op is not run and the error arrives through on_durable instead.
  auto result = std::make_shared<std::promise<T>>();
  auto delivered = std::make_shared<bool>(false);
  auto future = result->get_future();
  enqueue_op(
      [result, delivered, query](sqlite3* db) {
        *delivered = true;
        try {
          result->set_value(query(db));
        } catch (...) {
          result->set_exception(std::current_exception());
        }
      },
      [result, delivered](const std::string& error) {
        if (!*delivered && !error.empty()) result->set_exception(std::make_exception_ptr(JournalError(error)));
      });
  return future.get();
}

namespace {
// Every order (`coid` empty) or one, as of everything journaled.
std::vector<OrderRecord> read_orders(sqlite3* db, const std::string& coid) {
  if (const int schema = schema_version(db); schema >= 5)
    return read_folded_orders(db, coid.empty() ? kSelectAllOrdersToFold : kSelectOrderByIdToFold, coid);
  else if (schema == 4)
    return read_folded_orders(db, coid.empty() ? kSelectAllOrdersToFoldSchema4 : kSelectOrderByIdToFoldSchema4, coid);
  else if (schema == 3)
    return read_folded_orders(db, coid.empty() ? kSelectAllOrdersToFoldSchema3 : kSelectOrderByIdToFoldSchema3, coid);
  std::vector<OrderRecord> out;  // schemas 1 and 2 (read-only): the order rows are current
  Statement st(db, coid.empty() ? kSelectAllOrders : kSelectOrderById);
  if (!coid.empty()) st.bind(1, coid);
  while (st.next()) out.push_back(read_order(st));
  return out;
}
}  // namespace

std::vector<OrderRecord> Journal::orders() {
  return read<std::vector<OrderRecord>>([](sqlite3* db) { return read_orders(db, {}); });
}

std::optional<OrderRecord> Journal::order(const std::string& coid) {
  if (coid.empty()) return std::nullopt;
  return read<std::optional<OrderRecord>>([&coid](sqlite3* db) -> std::optional<OrderRecord> {
    auto found = read_orders(db, coid);
    if (found.empty()) return std::nullopt;
    return std::move(found.front());
  });
}

std::vector<OrderRecord> Journal::non_terminal_orders() {
  return read<std::vector<OrderRecord>>([](sqlite3* db) {
    // The state is only known after the fold, so the filter is here, not in SQL.
    auto out = read_orders(db, {});
    std::erase_if(out, [](const OrderRecord& o) { return o.is_terminal(); });
    return out;
  });
}

std::vector<TransitionRow> Journal::transitions(const std::string& coid) {
  return read<std::vector<TransitionRow>>([&coid](sqlite3* db) {
    std::vector<TransitionRow> out;
    Statement st(db,
                 "SELECT client_order_id, from_state, to_state, at, reason, applied FROM transitions "
                 "WHERE ?1 = '' OR client_order_id = ?1 ORDER BY id");
    st.bind(1, coid);
    while (st.next())
      out.push_back({st.text(0), st.text(1), st.text(2), st.integer(3), st.text(4), st.integer(5) != 0});
    return out;
  });
}

std::vector<Fill> Journal::fills() {
  return read<std::vector<Fill>>([](sqlite3* db) {
    std::vector<Fill> out;
    Statement st(db,
                 "SELECT execution_id, broker, client_order_id, broker_order_id, symbol, side, quantity, "
                 "price, at FROM fills ORDER BY at, rowid");
    while (st.next())
      out.push_back({st.text(0), st.text(1), st.text(2), st.text(3), st.text(4),
                     side_from_string(st.text(5)).value_or(Side::buy), st.integer(6), Price::parse(st.text(7)),
                     st.integer(8)});
    return out;
  });
}

std::vector<JournalEvent> Journal::events(const std::string& kind) {
  // One kind, or every event when `kind` is empty.
  return read_events("SELECT at, broker, kind, client_order_id, detail FROM events "
                     "WHERE ?1 = '' OR kind = ?1 ORDER BY id",
                     kind);
}

std::vector<JournalEvent> Journal::events_of_kinds(const std::vector<std::string>& kinds) {
  // The kinds travel as one JSON array parameter: the statement text stays constant, and
  // `IN (SELECT ...)` still uses events_by_kind.
  nlohmann::json list = nlohmann::json::array();
  for (const auto& k : kinds) list.push_back(k);
  return read_events("SELECT at, broker, kind, client_order_id, detail FROM events "
                     "WHERE kind IN (SELECT value FROM json_each(?1)) ORDER BY id",
                     list.dump());
}

std::vector<JournalEvent> Journal::read_events(const char* sql, const std::string& param) {
  return read<std::vector<JournalEvent>>([sql, &param](sqlite3* db) {
    std::vector<JournalEvent> out;
    Statement st(db, sql);
    st.bind(1, param);
    while (st.next()) out.push_back({st.integer(0), st.text(1), st.text(2), st.text(3), st.text(4)});
    return out;
  });
}

std::uint64_t Journal::commits() const {
  std::lock_guard lock(mutex_);
  return commits_;
}

std::uint64_t Journal::records_committed() const {
  std::lock_guard lock(mutex_);
  return records_;
}

std::uint64_t Journal::wakeups() const {
  std::lock_guard lock(mutex_);
  return wakeups_;
}

bool Journal::writer_waiting() const {
  std::lock_guard lock(mutex_);
  return writer_idle_;
}

std::string Journal::pin_writer(int cpu) {
  if (mode_ == JournalMode::read_only) return "journal " + path_ + " is read-only: it has no writer thread to pin";
  return pin_thread(writer_, cpu);
}

}  // namespace backstop
