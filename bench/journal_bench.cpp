// Durable journal throughput and latency, beside the raw SQLite floor with the same durability
// (WAL, synchronous=FULL) on the same disk. Set BACKSTOP_BENCH_DIR to choose the disk (default:
// the system temp directory).
#include <benchmark/benchmark.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>

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

// Many transitions in flight, as under load: group commit batches them.
void BM_JournalDurableTransitions(benchmark::State& state) {
  const std::string path = fresh_path("journal");
  {
    Journal j(path);
    std::int64_t i = 0;
    for (auto _ : state) {
      const std::int64_t batch = state.range(0);
      std::atomic<std::int64_t> durable{0};
      std::mutex m;
      std::condition_variable cv;
      for (std::int64_t k = 0; k < batch; ++k) {
        OrderRecord o = sample_order(i++);
        const auto ev = o.transition(OrderState::partially_filled, i, "fill");
        j.record_transition(ev, o, [&](const std::string&) {
          if (++durable == batch) {
            std::lock_guard l(m);
            cv.notify_one();
          }
        });
      }
      std::unique_lock l(m);
      cv.wait(l, [&] { return durable.load() == batch; });
    }
    state.SetItemsProcessed(state.iterations() * state.range(0));
    state.counters["commits"] = static_cast<double>(j.commits());
  }
  remove_db(path);
}
BENCHMARK(BM_JournalDurableTransitions)->Arg(1000)->UseRealTime()->Unit(benchmark::kMillisecond);

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

}  // namespace

BENCHMARK_MAIN();
