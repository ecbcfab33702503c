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
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/fill.hpp"
#include "core/lifecycle.hpp"

struct sqlite3;

namespace backstop {

class EventLoop;

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
  // 2: dropped the secondary indexes orders_by_state and transitions_by_order.
  // 3: a transition row carries what it changed in the order; the order row is no longer
  //    updated in the same commit but folded from the transitions when read and when the journal
  //    is opened read-write (see kMigrations in journal.cpp).
  // 4: an order row names the strategy (route) that sent it (OrderSpec::strategy).
  // 5: the state `held` (protection `local`) and its timestamp column held_at.
  static constexpr int kSchemaVersion = 5;
  // Read-only opening accepts any schema from this one on: an order row of schema 1 or 2 is
  // current as it stands, one of schema 3 to 5 is completed by the transitions after it (an
  // order of a schema before 4 has no strategy, and none before 5 was ever held).
  static constexpr int kOldestReadableVersion = 1;
  // Called on the writer thread once the record is durable (ok) or the commit failed (error).
  using Durable = std::function<void(const std::string& error)>;

  // Opens (creating if absent in read_write mode) and migrates. Throws JournalError.
  explicit Journal(const std::string& path, JournalMode mode = JournalMode::read_write);
  ~Journal();  // commits everything queued
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  const std::string& path() const { return path_; }

  // Asynchronous, group-committed writes. The caller's thread only copies the record into a
  // reused queue slot (no allocation once the slots have grown to the usual batch size); the
  // SQL binding and execution happen on the writer thread.
  void record_order(const OrderRecord& order, Durable on_durable = {});
  // The transition plus what it changed in the order: state, that state's timestamp (set if it
  // was not yet), broker order id, fill totals and last message, in one row (one insert per
  // transition: the order row is brought up to date when read, and folded on the next
  // read-write opening). The order must have been recorded before, and what was ordered (spec,
  // broker, other timestamps) changes only through record_order.
  void record_transition(const TransitionEvent& ev, const OrderRecord& order_after, Durable on_durable = {});
  // The same for a transition that changed nothing in the order but its state and that state's
  // timestamp (set if it was not yet): the row carries only the transition, so the caller's
  // thread copies no order. Only valid when everything else in the order is as last journaled
  // (an order just journaled and now being sent).
  void record_state_change(const TransitionEvent& ev, Durable on_durable = {});
  // Idempotent per (broker, execution id): a repeated execution is ignored.
  void record_fill(const Fill& fill, Durable on_durable = {});
  void record_event(const JournalEvent& ev, Durable on_durable = {});
  // The same from views: copied straight into the queue's reused slot, so an event whose fields
  // live in the caller's own buffers costs no allocation (a local stop's release, on the
  // tick-to-order path). A JournalEvent built for the call would allocate for every field longer
  // than the small-string buffer (a 22-character client order id, "local_stop_fired").
  void record_event(Timestamp at, std::string_view broker, std::string_view kind, std::string_view client_order_id,
                    std::string_view detail, Durable on_durable = {});
  // Blocks until everything queued so far is durable; throws JournalError if a commit failed.
  void flush();

  // While one is alive, queuing a record does not wake an idle writer thread; the last one to end
  // wakes it once. Waking a sleeping thread is a system call plus a cross-CPU interrupt (about
  // 5 us on the 2-core VM of bench/PERFORMANCE.md), so a caller that queues a record it does not
  // wait for right before a latency-critical step (an order's "sent" transition, queued before
  // its request leaves) holds the wake-up until after that step. Records queued meanwhile are
  // still committed in order; flush() and the reads always wake the writer.
  class DeferWake {
   public:
    explicit DeferWake(Journal& journal);
    ~DeferWake();
    DeferWake(const DeferWake&) = delete;
    DeferWake& operator=(const DeferWake&) = delete;

   private:
    Journal& journal_;
  };
  // The same hold for the rest of the loop task that calls it, when called inside a task on
  // `loop`'s thread (otherwise nothing): the writer is woken once, after the task, for every
  // record the task queued. A strategy's callback that sends several orders then pays no wake-up
  // per order (and no preemption by the woken writer between them, measured at up to ~100 us on
  // the 2-core VM), and its orders share a commit. Nothing is lost by waiting: an order leaves
  // from a continuation that runs on the loop after its commit, so never before this task ends.
  // One loop per journal.
  void defer_wake_to_task_end(EventLoop& loop);

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

  // Counters for benchmarks: commits executed, records they carried, and how many times a
  // queued record had to wake the writer from idle.
  std::uint64_t commits() const;
  std::uint64_t records_committed() const;
  std::uint64_t wakeups() const;
  // Whether the writer thread is asleep waiting for records (for tests of the wake-up rules).
  bool writer_waiting() const;
  // Pins the writer thread to `cpu` (config `runtime.journal_writer_cpu`, core/cpu_affinity.hpp).
  // Returns an empty string, or what went wrong. A read-only journal has no writer.
  std::string pin_writer(int cpu);

 private:
  using Op = std::function<void(sqlite3*)>;
  enum class Kind : std::uint8_t { order, transition, state_change, fill, event, op };
  // One queued record: its kind, where its data sits in the Queue's per-kind arrays, and its
  // callback. Per-kind arrays (not one fat struct) keep a slot small; slots and the strings in
  // them keep their capacity from batch to batch, so queuing a record copies into memory that is
  // already there.
  struct Entry {
    Kind kind;
    std::uint32_t index;  // into the array of `kind` (transition and state_change: `transitions`)
    Durable on_durable;
  };
  // A transition and, for an applied one recorded with record_transition, what it changed in the
  // order besides its state: all a transition row carries, so no whole order is copied.
  struct TransitionSlot {
    TransitionEvent ev;
    bool carries_order = false;
    std::string broker_order_id;
    std::int64_t filled_quantity = 0;
    Price average_fill_price;
    std::string last_message;
  };
  struct Queue {
    std::vector<Entry> entries;
    std::vector<OrderRecord> orders;
    std::vector<TransitionSlot> transitions;
    std::vector<Fill> fills;
    std::vector<JournalEvent> events;
    std::vector<Op> ops;
    std::size_t n_entries = 0, n_orders = 0, n_transitions = 0, n_fills = 0, n_events = 0, n_ops = 0;
    bool empty() const { return n_entries == 0; }
  };
  // The writer's prepared write statements, prepared once per journal.
  struct Statements;

  // Appends the queued record's Entry (mutex_ held; its data is already in its slot).
  Entry& add_entry(Kind kind, std::uint32_t index, Durable&& on_durable);
  // Mutex held, after queuing: whether the caller must notify wake_ (an idle writer, no
  // DeferWake alive or `force`); under a DeferWake, notes that the last one must.
  bool wake_locked(bool force);
  // Runs when the journal cannot take writes: answers on_durable at once.
  bool refuse_write(Durable& on_durable);
  // Queues one record: `queue_it` (run under mutex_) copies it into its slot and adds its Entry;
  // then the writer is woken if it must be. A read-only journal answers on_durable at once.
  template <typename QueueIt>
  void enqueue(Durable& on_durable, bool force_wake, QueueIt&& queue_it);
  void enqueue_op(Op op, Durable on_durable);
  void writer_loop();
  void write_batch(Queue& batch);
  void recycle(Queue& batch);
  template <typename T>
  T read(std::function<T(sqlite3*)> query);
  // The events selected by `sql`, whose one parameter is `param`.
  std::vector<JournalEvent> read_events(const char* sql, const std::string& param);

  std::string path_;
  JournalMode mode_;
  sqlite3* db_ = nullptr;
  std::unique_ptr<Statements> statements_;  // read_write only; used on the writer thread
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable drained_;
  Queue queue_;  // filled by callers under mutex_
  Queue batch_;  // the writer's; swapped with queue_ at the start of each commit
  bool committing_ = false;
  bool stopping_ = false;
  bool writer_idle_ = false;  // waiting on wake_
  // Live DeferWake objects. Atomic so that taking a hold costs no lock (it sits on the send path);
  // read under mutex_ by the enqueuers, and released under mutex_ (see ~DeferWake). A record
  // queued on another thread while a hold is being taken may still wake the writer at once:
  // harmless, the hold only saves time.
  std::atomic<int> wake_holds_{0};
  bool wake_deferred_ = false;
  // defer_wake_to_task_end's hold and the loop it waits for (loop thread only).
  std::optional<DeferWake> turn_hold_;
  EventLoop* turn_hold_loop_ = nullptr;
  static void end_turn_hold(void* journal);
  std::string last_error_;
  std::uint64_t commits_ = 0;
  std::uint64_t records_ = 0;
  std::uint64_t wakeups_ = 0;
  std::thread writer_;
};

}  // namespace backstop
