#pragma once
// The durable journal: SQLite in WAL mode with synchronous (FULL) commits. Writes are queued
// and committed by one writer thread in batches (group commit): every record queued while a
// commit is in progress shares the next one, so throughput scales with load while each record's
// `on_durable` still fires only after its own data is on disk. An order is journaled, and its
// on_durable awaited, before its request leaves the process.
//
// The journal is never overwritten: a file that is locked by another process, corrupt, written
// by a newer Backstop, not a Backstop journal, or on a read-only path gives a JournalError
// naming the file and the problem.
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/fill.hpp"
#include "core/lifecycle.hpp"

struct sqlite3;

namespace backstop {

// A fact worth keeping that is not an order, transition or fill: broker events, injected faults
// met, health changes, stop verifications, ghost stops, divergences. `detail` is JSON text.
struct JournalEvent {
  Timestamp at = 0;
  std::string broker;
  std::string kind;
  std::string client_order_id;
  std::string detail;
};

struct TransitionRow {
  std::string client_order_id;
  std::string from_state;
  std::string to_state;
  Timestamp at = 0;
  std::string reason;
  bool applied = true;
};

enum class JournalMode { read_write, read_only };

class Journal {
 public:
  static constexpr int kSchemaVersion = 1;
  // Called on the writer thread once the record is durable (ok) or the commit failed (error).
  using Durable = std::function<void(const std::string& error)>;

  // Opens (creating if absent in read_write mode) and migrates. Throws JournalError.
  explicit Journal(const std::string& path, JournalMode mode = JournalMode::read_write);
  ~Journal();  // commits everything queued
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  const std::string& path() const { return path_; }

  // Asynchronous, group-committed writes.
  void record_order(const OrderRecord& order, Durable on_durable = {});
  // The transition row plus the order's new state, timestamps and fill totals, atomically.
  void record_transition(const TransitionEvent& ev, const OrderRecord& order_after, Durable on_durable = {});
  // Idempotent per (broker, execution id): a repeated execution is ignored.
  void record_fill(const Fill& fill, Durable on_durable = {});
  void record_event(const JournalEvent& ev, Durable on_durable = {});
  // Blocks until everything queued so far is durable; throws JournalError if a commit failed.
  void flush();

  // Reads (they flush first, so they see every write queued before them).
  std::vector<OrderRecord> orders();
  std::optional<OrderRecord> order(const std::string& client_order_id);
  // Every order not in a terminal state: on start, each must be resolved with its broker before
  // anything new is sent.
  std::vector<OrderRecord> non_terminal_orders();
  std::vector<TransitionRow> transitions(const std::string& client_order_id = {});
  std::vector<Fill> fills();
  std::vector<JournalEvent> events(const std::string& kind = {});
  // Events of any of these kinds, in the order they were journaled (one ordered pass over a few
  // kinds, through the kind index, without reading every event ever written). Read-only.
  std::vector<JournalEvent> events_of_kinds(const std::vector<std::string>& kinds);

  // Counters for benchmarks: commits executed and records they carried.
  std::uint64_t commits() const;
  std::uint64_t records_committed() const;

 private:
  using Op = std::function<void(sqlite3*)>;
  struct Pending {
    Op op;
    Durable on_durable;
  };
  void enqueue(Op op, Durable on_durable);
  void writer_loop();
  template <typename T>
  T read(std::function<T(sqlite3*)> query);

  std::string path_;
  JournalMode mode_;
  sqlite3* db_ = nullptr;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable drained_;
  std::deque<Pending> queue_;
  bool committing_ = false;
  bool stopping_ = false;
  std::string last_error_;
  std::uint64_t commits_ = 0;
  std::uint64_t records_ = 0;
  std::thread writer_;
};

}  // namespace backstop
