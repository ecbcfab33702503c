#include "core/journal.hpp"

#include <nlohmann/json.hpp>

#include <sqlite3.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <future>
#include <map>

namespace backstop {

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

// Prepared statements are cached per connection (keyed by the SQL text's address: every caller
// passes a string literal), because preparing costs more than executing a small insert.
std::map<std::pair<sqlite3*, const char*>, sqlite3_stmt*>& statement_cache() {
  static std::map<std::pair<sqlite3*, const char*>, sqlite3_stmt*> cache;
  return cache;
}
std::mutex& statement_cache_mutex() {
  static std::mutex m;
  return m;
}

void forget_statements(sqlite3* db) {
  std::lock_guard lock(statement_cache_mutex());
  auto& cache = statement_cache();
  for (auto it = cache.begin(); it != cache.end();) {
    if (it->first.first == db) {
      sqlite3_finalize(it->second);
      it = cache.erase(it);
    } else {
      ++it;
    }
  }
}

// A cached prepared statement with positional binding helpers; reset on scope exit.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    std::lock_guard lock(statement_cache_mutex());
    auto& slot = statement_cache()[{db, sql}];
    if (!slot && sqlite3_prepare_v2(db, sql, -1, &slot, nullptr) != SQLITE_OK)
      throw JournalError(std::string("journal: cannot prepare statement: ") + sqlite3_errmsg(db));
    st_ = slot;
  }
  ~Statement() {
    sqlite3_reset(st_);
    sqlite3_clear_bindings(st_);
  }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int i, const std::string& v) {
    sqlite3_bind_text(st_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& bind(int i, const char* v) { return bind(i, std::string(v)); }
  Statement& bind(int i, std::int64_t v) {
    sqlite3_bind_int64(st_, i, v);
    return *this;
  }
  Statement& bind(int i, const std::optional<Price>& v) {
    if (v) return bind(i, v->to_string());
    sqlite3_bind_null(st_, i);
    return *this;
  }
  Statement& bind_time(int i, Timestamp t) {
    if (t == 0) {
      sqlite3_bind_null(st_, i);
      return *this;
    }
    return bind(i, t);
  }
  void run() {
    const int rc = sqlite3_step(st_);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
      throw JournalError(std::string("journal: write failed: ") + sqlite3_errmsg(db_));
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

 private:
  sqlite3* db_;
  sqlite3_stmt* st_ = nullptr;
};

constexpr const char* kUpsertOrder = R"sql(
INSERT INTO orders (client_order_id, broker, broker_order_id, symbol, side, quantity, type,
  limit_price, stop_price, tif, outside_rth, parent_client_order_id, oco_group, state,
  filled_quantity, average_fill_price, last_message, created_at, sent_at, submitted_at,
  partially_filled_at, filled_at, pending_cancel_at, cancelled_at, rejected_at, failed_at)
VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24,?25,?26)
ON CONFLICT(client_order_id) DO UPDATE SET broker=?2, broker_order_id=?3, quantity=?6,
  limit_price=?8, stop_price=?9, tif=?10, state=?14, filled_quantity=?15, average_fill_price=?16,
  last_message=?17, created_at=?18, sent_at=?19, submitted_at=?20, partially_filled_at=?21,
  filled_at=?22, pending_cancel_at=?23, cancelled_at=?24, rejected_at=?25, failed_at=?26
)sql";

void upsert_order(sqlite3* db, const OrderRecord& o) {
  Statement st(db, kUpsertOrder);
  const auto& s = o.spec;
  st.bind(1, s.client_order_id).bind(2, o.broker).bind(3, o.broker_order_id).bind(4, s.symbol);
  st.bind(5, to_string(s.side)).bind(6, s.quantity).bind(7, to_string(s.type));
  st.bind(8, s.limit_price).bind(9, s.stop_price).bind(10, to_string(s.tif));
  st.bind(11, static_cast<std::int64_t>(s.outside_rth)).bind(12, s.parent_client_order_id);
  st.bind(13, s.oco_group).bind(14, to_string(o.state)).bind(15, o.filled_quantity);
  st.bind(16, o.average_fill_price.to_string()).bind(17, o.last_message);
  for (std::size_t i = 0; i < kOrderStateCount; ++i) st.bind_time(18 + static_cast<int>(i), o.state_times[i]);
  st.run();
}

#define BACKSTOP_SELECT_ORDERS                                                                   \
  "SELECT client_order_id, broker, broker_order_id, symbol, side, quantity, type, limit_price, "  \
  "stop_price, tif, outside_rth, parent_client_order_id, oco_group, state, filled_quantity, "     \
  "average_fill_price, last_message, created_at, sent_at, submitted_at, partially_filled_at, "    \
  "filled_at, pending_cancel_at, cancelled_at, rejected_at, failed_at FROM orders"
constexpr const char* kSelectAllOrders = BACKSTOP_SELECT_ORDERS " ORDER BY created_at, rowid";
constexpr const char* kSelectOrderById = BACKSTOP_SELECT_ORDERS " WHERE client_order_id = ?1";
constexpr const char* kSelectOpenOrders =
    BACKSTOP_SELECT_ORDERS " WHERE state NOT IN ('filled','cancelled','rejected','failed') ORDER BY created_at, rowid";
#undef BACKSTOP_SELECT_ORDERS

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
  for (std::size_t i = 0; i < kOrderStateCount; ++i) o.state_times[i] = st.integer(17 + static_cast<int>(i));
  return o;
}

}  // namespace

Journal::Journal(const std::string& path, JournalMode mode) : path_(path), mode_(mode) {
  struct stat sb {};
  const bool exists = ::stat(path.c_str(), &sb) == 0;
  if (mode == JournalMode::read_only && !exists) throw JournalError(where(path) + "no such file");
  const int flags = mode == JournalMode::read_only ? SQLITE_OPEN_READONLY
                                                   : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (sqlite3_open_v2(path.c_str(), &db_, flags | SQLITE_OPEN_FULLMUTEX, nullptr) != SQLITE_OK) {
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
        exec(db_, "COMMIT", path);
      } catch (...) {
        sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
        throw;
      }
      if (version < kSchemaVersion && version > 0)
        spdlog::info("journal {}: migrated schema {} -> {}", path, version, kSchemaVersion);
    } else if (version < kSchemaVersion) {
      throw JournalError(where(path) + "schema " + std::to_string(version) + " is older than " +
                         std::to_string(kSchemaVersion) + "; open it once read-write to migrate");
    }
  } catch (...) {
    forget_statements(db_);
    sqlite3_close(db_);
    db_ = nullptr;
    throw;
  }
  writer_ = std::thread([this] { writer_loop(); });
}

Journal::~Journal() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (writer_.joinable()) writer_.join();
  if (db_) {
    forget_statements(db_);
    sqlite3_close(db_);
  }
}

void Journal::enqueue(Op op, Durable on_durable) {
  {
    std::lock_guard lock(mutex_);
    if (mode_ == JournalMode::read_only) {
      if (on_durable) on_durable(where(path_) + "opened read-only");
      return;
    }
    queue_.push_back({std::move(op), std::move(on_durable)});
  }
  wake_.notify_one();
}

void Journal::writer_loop() {
  for (;;) {
    std::deque<Pending> batch;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty() && stopping_) return;
      batch.swap(queue_);
      committing_ = true;
    }
    std::string error;
    {
      std::lock_guard lock(mutex_);
      error = last_error_;  // once a commit has failed, nothing more is claimed durable
    }
    if (error.empty()) {
      try {
        exec(db_, "BEGIN IMMEDIATE", path_);
        try {
          for (auto& p : batch) p.op(db_);
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
      if (error.empty()) records_ += batch.size();
    }
    for (auto& p : batch)
      if (p.on_durable) p.on_durable(error);
    {
      std::lock_guard lock(mutex_);
      committing_ = false;
    }
    drained_.notify_all();
  }
}

void Journal::flush() {
  std::unique_lock lock(mutex_);
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
  enqueue(
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

void Journal::record_order(const OrderRecord& order, Durable on_durable) {
  enqueue([order](sqlite3* db) { upsert_order(db, order); }, std::move(on_durable));
}

void Journal::record_transition(const TransitionEvent& ev, const OrderRecord& after, Durable on_durable) {
  enqueue(
      [ev, after](sqlite3* db) {
        Statement st(db,
                     "INSERT INTO transitions (client_order_id, from_state, to_state, at, reason, applied) "
                     "VALUES (?1,?2,?3,?4,?5,?6)");
        st.bind(1, ev.client_order_id).bind(2, to_string(ev.from)).bind(3, to_string(ev.to));
        st.bind(4, ev.at).bind(5, ev.reason).bind(6, static_cast<std::int64_t>(ev.applied));
        st.run();
        if (ev.applied) upsert_order(db, after);
      },
      std::move(on_durable));
}

void Journal::record_fill(const Fill& f, Durable on_durable) {
  enqueue(
      [f](sqlite3* db) {
        Statement st(db,
                     "INSERT OR IGNORE INTO fills (broker, execution_id, client_order_id, broker_order_id, "
                     "symbol, side, quantity, price, at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)");
        st.bind(1, f.broker).bind(2, f.execution_id).bind(3, f.client_order_id).bind(4, f.broker_order_id);
        st.bind(5, f.symbol).bind(6, to_string(f.side)).bind(7, f.quantity).bind(8, f.price.to_string());
        st.bind(9, f.at);
        st.run();
      },
      std::move(on_durable));
}

void Journal::record_event(const JournalEvent& ev, Durable on_durable) {
  enqueue(
      [ev](sqlite3* db) {
        Statement st(db,
                     "INSERT INTO events (at, broker, kind, client_order_id, detail) VALUES (?1,?2,?3,?4,?5)");
        st.bind(1, ev.at).bind(2, ev.broker).bind(3, ev.kind).bind(4, ev.client_order_id).bind(5, ev.detail);
        st.run();
      },
      std::move(on_durable));
}

std::vector<OrderRecord> Journal::orders() {
  return read<std::vector<OrderRecord>>([](sqlite3* db) {
    std::vector<OrderRecord> out;
    Statement st(db, kSelectAllOrders);
    while (st.next()) out.push_back(read_order(st));
    return out;
  });
}

std::optional<OrderRecord> Journal::order(const std::string& coid) {
  return read<std::optional<OrderRecord>>([&coid](sqlite3* db) -> std::optional<OrderRecord> {
    Statement st(db, kSelectOrderById);
    st.bind(1, coid);
    if (st.next()) return read_order(st);
    return std::nullopt;
  });
}

std::vector<OrderRecord> Journal::non_terminal_orders() {
  return read<std::vector<OrderRecord>>([](sqlite3* db) {
    std::vector<OrderRecord> out;
    Statement st(db, kSelectOpenOrders);
    while (st.next()) out.push_back(read_order(st));
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
  return read<std::vector<JournalEvent>>([&kind](sqlite3* db) {
    std::vector<JournalEvent> out;
    Statement st(db,
                 "SELECT at, broker, kind, client_order_id, detail FROM events "
                 "WHERE ?1 = '' OR kind = ?1 ORDER BY id");
    st.bind(1, kind);
    while (st.next()) out.push_back({st.integer(0), st.text(1), st.text(2), st.text(3), st.text(4)});
    return out;
  });
}

std::vector<JournalEvent> Journal::events_of_kinds(const std::vector<std::string>& kinds) {
  // The kinds travel as one JSON array parameter: the statement text stays constant, and
  // `IN (SELECT ...)` still uses events_by_kind.
  nlohmann::json list = nlohmann::json::array();
  for (const auto& k : kinds) list.push_back(k);
  const std::string param = list.dump();
  return read<std::vector<JournalEvent>>([&param](sqlite3* db) {
    std::vector<JournalEvent> out;
    Statement st(db,
                 "SELECT at, broker, kind, client_order_id, detail FROM events "
                 "WHERE kind IN (SELECT value FROM json_each(?1)) ORDER BY id");
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

}  // namespace backstop
