// Durable journal throughput and latency, beside raw SQLite floors with the same durability
// (WAL, synchronous=FULL, exclusive locking) on the same disk: one narrow insert per row (the
// floor of issue 8's target), the journal's own wide insert per transition, and the two
// statements per transition of schema 2 (for comparison). Set BACKSTOP_BENCH_DIR to choose the disk
// (default: the system temp directory).
#include <benchmark/benchmark.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <optional>
#include <vector>

#include "core/journal.hpp"

using namespace backstop;
namespace fs = std::filesystem;

namespace {

std::string fresh_path(const std::string& name) {
  const char* dir = std::getenv("BACKSTOP_BENCH_DIR");
  const fs::path p = fs::path(dir ? dir : fs::temp_directory_path().string()) /
                     ("backstop-bench-" + std::to_string(::getpid()) + "-" + name + ".db");
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(p.string() + suffix);
  return p.string();
}

void remove_db(const std::string& p) {
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(p + suffix);
}

OrderRecord sample_order(std::int64_t i) {
  OrderRecord o;
  o.spec = stop_order("AAPL", Side::sell, 100, Price::parse("232.86"));
  o.spec.client_order_id = "BENCH-" + std::to_string(i);
  o.broker = "sim";
  o.state = OrderState::submitted;
  return o;
}

// Many transitions in flight, as under load: group commit batches them. Each iteration brings
// a fill to each of 1000 working orders (recorded before the timing starts, as every order is
// before its first transition). Second argument 1: the 1000 are queued as from one loop task
// (a burst of fills handled in one callback), the writer woken once after them, as OrderManager
// does (Journal::DeferWake, defer_wake_to_task_end); 0: the first record wakes the idle writer,
// which commits whatever has arrived by then, then the rest.
void BM_JournalDurableTransitions(benchmark::State& state) {
  const std::string path = fresh_path("journal");
  {
    Journal j(path);
    std::vector<OrderRecord> working;
    for (std::int64_t k = 0; k < state.range(0); ++k) {
      working.push_back(sample_order(k));
      j.record_order(working.back());
    }
    j.flush();
    const std::uint64_t commits_before = j.commits();
    std::int64_t at = 0;
    for (auto _ : state) {
      const std::int64_t batch = state.range(0);
      std::atomic<std::int64_t> durable{0};
      std::mutex m;
      std::condition_variable cv;
      std::optional<Journal::DeferWake> one_task;
      if (state.range(1) == 1) one_task.emplace(j);
      for (OrderRecord& o : working) {
        o.add_fill(1, Price::parse("232.80"));
        const auto ev = o.transition(OrderState::partially_filled, ++at, "fill");
        j.record_transition(ev, o, [&](const std::string&) {
          if (++durable == batch) {
            std::lock_guard l(m);
            cv.notify_one();
          }
        });
      }
      one_task.reset();
      std::unique_lock l(m);
      cv.wait(l, [&] { return durable.load() == batch; });
    }
    state.SetItemsProcessed(state.iterations() * state.range(0));
    state.counters["commits"] = static_cast<double>(j.commits() - commits_before);
  }
  remove_db(path);
}
BENCHMARK(BM_JournalDurableTransitions)->Args({1000, 1})->Args({1000, 0})->UseRealTime()->Unit(benchmark::kMillisecond);

// Sustained load: fills keep arriving while the writer commits (at most 2 x 1000 transitions in
// flight, the producer waiting when it is that far ahead), so the writer is never idle and each
// commit takes everything queued during the previous one. An iteration is 20,000 transitions
// over 1000 working orders, ended by waiting for all of them to be durable. Compare with
// BM_RawSqliteInsert/1000 and BM_RawSqliteWideTransitionRow/1000, which do the inserts and
// commits on one thread.
void BM_JournalSustainedTransitions(benchmark::State& state) {
  constexpr std::int64_t kOrders = 1000, kPerIteration = 20'000, kMaxAhead = 2 * kOrders;
  const std::string path = fresh_path("journal-sustained");
  {
    Journal j(path);
    std::vector<OrderRecord> working;
    for (std::int64_t k = 0; k < kOrders; ++k) {
      working.push_back(sample_order(k));
      j.record_order(working.back());
    }
    j.flush();
    const std::uint64_t commits_before = j.commits();
    std::atomic<std::int64_t> durable{0};
    std::mutex m;
    std::condition_variable cv;
    auto on_durable = [&](const std::string&) {
      if (++durable % kOrders == 0) {  // the producer waits for whole thousands
        std::lock_guard l(m);
        cv.notify_one();
      }
    };
    std::int64_t queued = 0, at = 0;
    for (auto _ : state) {
      for (std::int64_t n = 0; n < kPerIteration; n += kOrders) {
        {
          std::unique_lock l(m);
          cv.wait(l, [&] { return queued - durable.load() < kMaxAhead; });
        }
        for (OrderRecord& o : working) {
          o.add_fill(1, Price::parse("232.80"));
          j.record_transition(o.transition(OrderState::partially_filled, ++at, "fill"), o, on_durable);
        }
        queued += kOrders;
      }
      std::unique_lock l(m);
      cv.wait(l, [&] { return durable.load() == queued; });
    }
    state.SetItemsProcessed(state.iterations() * kPerIteration);
    state.counters["commits"] = static_cast<double>(j.commits() - commits_before);
  }
  remove_db(path);
}
BENCHMARK(BM_JournalSustainedTransitions)->UseRealTime()->Unit(benchmark::kMillisecond);

// One order at a time: the latency durability adds to each order when the journal is idle.
void BM_JournalAddedLatencyPerOrder(benchmark::State& state) {
  const std::string path = fresh_path("latency");
  {
    Journal j(path);
    std::int64_t i = 0;
    for (auto _ : state) {
      std::mutex m;
      std::condition_variable cv;
      bool done = false;
      j.record_order(sample_order(i++), [&](const std::string&) {
        std::lock_guard l(m);
        done = true;
        cv.notify_one();
      });
      std::unique_lock l(m);
      cv.wait(l, [&] { return done; });
    }
  }
  remove_db(path);
}
BENCHMARK(BM_JournalAddedLatencyPerOrder)->UseRealTime()->Unit(benchmark::kMicrosecond);

// The floor: raw SQLite with the same durability, rows committed in transactions of the given
// size (1 = a commit per row, as with no group commit).
void BM_RawSqliteInsert(benchmark::State& state) {
  const std::string path = fresh_path("raw");
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  sqlite3_exec(db, "PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                   "CREATE TABLE t (id INTEGER PRIMARY KEY, client_order_id TEXT, from_state TEXT, to_state TEXT,"
                   " at INTEGER, reason TEXT, applied INTEGER)", nullptr, nullptr, nullptr);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO t (client_order_id, from_state, to_state, at, reason, applied) VALUES (?,?,?,?,?,?)",
                     -1, &st, nullptr);
  const std::int64_t per_commit = state.range(0);
  std::int64_t i = 0;
  for (auto _ : state) {
    sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
    for (std::int64_t k = 0; k < per_commit; ++k, ++i) {
      const std::string coid = "BENCH-" + std::to_string(i);
      sqlite3_bind_text(st, 1, coid.c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_text(st, 2, "submitted", -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 3, "partially_filled", -1, SQLITE_STATIC);
      sqlite3_bind_int64(st, 4, i);
      sqlite3_bind_text(st, 5, "fill", -1, SQLITE_STATIC);
      sqlite3_bind_int(st, 6, 1);
      sqlite3_step(st);
      sqlite3_reset(st);
    }
    sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  }
  state.SetItemsProcessed(state.iterations() * per_commit);
  sqlite3_finalize(st);
  sqlite3_close(db);
  remove_db(path);
}
BENCHMARK(BM_RawSqliteInsert)->Arg(1)->Arg(1000)->UseRealTime()->Unit(benchmark::kMicrosecond);

// Schema 2's design, for comparison (the journal no longer does this): raw SQLite executing the
// transition row, then the order row's upsert (26 columns, keyed by client order id), per
// transition, same durability, same commit size. The order row's upsert cost as much as the
// rest of the commit.
void BM_RawSqliteTransitionWithOrderRow(benchmark::State& state) {
  const std::string path = fresh_path("raw-order-row");
  { Journal schema(path); }  // creates the current schema, then closes
  sqlite3* db = nullptr;
  sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  sqlite3_exec(db, "PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", nullptr,
               nullptr, nullptr);
  sqlite3_stmt* tr = nullptr;
  sqlite3_prepare_v2(db,
                     "INSERT INTO transitions (client_order_id, from_state, to_state, at, reason, applied) "
                     "VALUES (?1,?2,?3,?4,?5,?6)",
                     -1, &tr, nullptr);
  sqlite3_stmt* up = nullptr;
  sqlite3_prepare_v2(db, R"sql(
INSERT INTO orders (client_order_id, broker, broker_order_id, symbol, side, quantity, type,
  limit_price, stop_price, tif, outside_rth, parent_client_order_id, oco_group, state,
  filled_quantity, average_fill_price, last_message, created_at, sent_at, submitted_at,
  partially_filled_at, filled_at, pending_cancel_at, cancelled_at, rejected_at, failed_at)
VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24,?25,?26)
ON CONFLICT(client_order_id) DO UPDATE SET broker=?2, broker_order_id=?3, quantity=?6,
  limit_price=?8, stop_price=?9, tif=?10, state=?14, filled_quantity=?15, average_fill_price=?16,
  last_message=?17, created_at=?18, sent_at=?19, submitted_at=?20, partially_filled_at=?21,
  filled_at=?22, pending_cancel_at=?23, cancelled_at=?24, rejected_at=?25, failed_at=?26
)sql",
                     -1, &up, nullptr);
  const std::int64_t per_commit = state.range(0);
  std::int64_t i = 0;
  for (auto _ : state) {
    sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
    for (std::int64_t k = 0; k < per_commit; ++k, ++i) {
      const std::string coid = "BENCH-" + std::to_string(i);
      sqlite3_bind_text(tr, 1, coid.c_str(), -1, SQLITE_STATIC);
      sqlite3_bind_text(tr, 2, "submitted", -1, SQLITE_STATIC);
      sqlite3_bind_text(tr, 3, "partially_filled", -1, SQLITE_STATIC);
      sqlite3_bind_int64(tr, 4, i);
      sqlite3_bind_text(tr, 5, "fill", -1, SQLITE_STATIC);
      sqlite3_bind_int(tr, 6, 1);
      sqlite3_step(tr);
      sqlite3_reset(tr);
      sqlite3_bind_text(up, 1, coid.c_str(), -1, SQLITE_STATIC);
      sqlite3_bind_text(up, 2, "sim", -1, SQLITE_STATIC);
      sqlite3_bind_text(up, 3, "", -1, SQLITE_STATIC);
      sqlite3_bind_text(up, 4, "AAPL", -1, SQLITE_STATIC);
      sqlite3_bind_text(up, 5, "sell", -1, SQLITE_STATIC);
      sqlite3_bind_int64(up, 6, 100);
      sqlite3_bind_text(up, 7, "stop", -1, SQLITE_STATIC);
      sqlite3_bind_null(up, 8);
      sqlite3_bind_text(up, 9, "232.86", -1, SQLITE_STATIC);
      sqlite3_bind_text(up, 10, "gtc", -1, SQLITE_STATIC);
      sqlite3_bind_int64(up, 11, 0);
      sqlite3_bind_text(up, 12, "", -1, SQLITE_STATIC);
      sqlite3_bind_text(up, 13, "", -1, SQLITE_STATIC);
      sqlite3_bind_text(up, 14, "partially_filled", -1, SQLITE_STATIC);
      sqlite3_bind_int64(up, 15, 0);
      sqlite3_bind_text(up, 16, "0", -1, SQLITE_STATIC);
      sqlite3_bind_text(up, 17, "", -1, SQLITE_STATIC);
      for (int c = 18; c <= 26; ++c) {
        if (c == 21)
          sqlite3_bind_int64(up, c, i);  // partially_filled_at
        else
          sqlite3_bind_null(up, c);
      }
      sqlite3_step(up);
      sqlite3_reset(up);
    }
    sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  }
  state.SetItemsProcessed(state.iterations() * per_commit);
  sqlite3_finalize(tr);
  sqlite3_finalize(up);
  sqlite3_close(db);
  remove_db(path);
}
BENCHMARK(BM_RawSqliteTransitionWithOrderRow)->Arg(1000)->UseRealTime()->Unit(benchmark::kMicrosecond);

// Raw SQLite executing the journal's own statement per transition (schema 3: one row carrying
// the transition and what it changed in the order) on a file with the journal's schema, same durability,
// same commit size. The gap to BM_RawSqliteInsert is the wider row; the gap from here to
// BM_JournalDurableTransitions is the journal's own cost (queue, binding, callbacks).
void BM_RawSqliteWideTransitionRow(benchmark::State& state) {
  const std::string path = fresh_path("raw-wide");
  { Journal schema(path); }  // creates the current schema, then closes
  sqlite3* db = nullptr;
  sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  sqlite3_exec(db, "PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", nullptr,
               nullptr, nullptr);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, R"sql(
INSERT INTO transitions (client_order_id, from_state, to_state, at, reason, applied,
  broker_order_id, filled_quantity, average_fill_price, last_message)
VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)
)sql",
                     -1, &st, nullptr);
  const std::int64_t per_commit = state.range(0);
  std::int64_t i = 0;
  for (auto _ : state) {
    sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
    for (std::int64_t k = 0; k < per_commit; ++k, ++i) {
      const std::string coid = "BENCH-" + std::to_string(i % per_commit);
      sqlite3_bind_text(st, 1, coid.c_str(), -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 2, "partially_filled", -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 3, "partially_filled", -1, SQLITE_STATIC);
      sqlite3_bind_int64(st, 4, i);
      sqlite3_bind_text(st, 5, "fill", -1, SQLITE_STATIC);
      sqlite3_bind_int(st, 6, 1);
      sqlite3_bind_text(st, 7, "", -1, SQLITE_STATIC);
      sqlite3_bind_int64(st, 8, i / per_commit + 1);
      sqlite3_bind_text(st, 9, "232.8", -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 10, "", -1, SQLITE_STATIC);
      sqlite3_step(st);
      sqlite3_reset(st);
    }
    sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  }
  state.SetItemsProcessed(state.iterations() * per_commit);
  sqlite3_finalize(st);
  sqlite3_close(db);
  remove_db(path);
}
BENCHMARK(BM_RawSqliteWideTransitionRow)->Arg(1000)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
