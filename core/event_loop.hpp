#pragma once
// The single thread that owns routing state. Tasks and timers run here one at a time; other
// threads (the journal's writer, adapters' network threads) hand results back with post().
// Timers read the injected Clock, so with a ManualClock a test runs a 5-minute timer at once.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "core/clock.hpp"

namespace backstop {

// What an idle loop waits in, when network I/O runs on the loop's own thread (net::LoopIo: one
// io_context owns routing state and the adapters' requests, as DESIGN.md's runtime shape has it).
// Without one, the loop waits on its condition variable and network threads post results to it.
class LoopWaiter {
 public:
  virtual ~LoopWaiter() = default;
  // Loop thread: runs what is ready now (network completions) without blocking; how many ran.
  virtual std::size_t poll() = 0;
  // Loop thread: blocks until something is ready (and runs it), wake() is called, or `max` has
  // passed, whichever is first.
  virtual void wait_for(std::chrono::nanoseconds max) = 0;
  // Any thread: makes a wait_for() in progress, or the next one, return.
  virtual void wake() = 0;
};

class EventLoop {
 public:
  using Task = std::function<void()>;
  using TimerId = std::uint64_t;

  explicit EventLoop(Clock& clock) : clock_(clock) {}
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  Clock& clock() { return clock_; }
  Timestamp now() const { return clock_.now(); }

  // Thread-safe.
  void post(Task task);
  // Loop thread only.
  TimerId call_at(Timestamp when, Task task);
  TimerId call_after(Duration delay, Task task) { return call_at(now() + delay.count(), std::move(task)); }
  void cancel(TimerId id);

  // Outstanding work on another thread whose result will be posted back (a journal commit,
  // a network request). While any is outstanding, an idle loop waits for it instead of jumping
  // a manual clock ahead. Thread-safe.
  void add_external_work();
  void finish_external_work();

  // Runs tasks and timers until stop() or the clock reaches `deadline`.
  void run_until(Timestamp deadline);
  // Runs everything ready now without waiting; returns how many tasks ran.
  std::size_t run_ready();
  // Runs until no task, timer or external work is left (or stop()).
  void run();
  // Makes run()/run_until() return as soon as the current task ends; stays stopped until
  // restart(). Thread-safe.
  void stop();
  void restart();

  // Whether the calling thread is running one of this loop's tasks or timers right now.
  bool in_task() const { return task_thread_.load(std::memory_order_relaxed) == std::this_thread::get_id(); }
  // Inside a task on the loop's thread: `fn(arg)` runs right after the outermost running task
  // returns (or throws), before the next one. Returns false, doing nothing, anywhere else. For
  // work worth doing once per turn rather than once per call (the journal wakes its writer once
  // for all the records a task queued). A plain function and pointer: registering allocates
  // nothing once the list has grown.
  bool at_task_end(void (*fn)(void*), void* arg);
  // Drops the hooks registered with `arg` (its owner is going away before the task ends).
  void forget_task_end(void* arg);

  // Busy polling (config `runtime.busy_poll_us`): an idle loop keeps its thread running for up to
  // `spin` before it sleeps, watching for posts from other threads (and, with a waiter, polling
  // network I/O) without a system call. A sleeping thread is woken through the kernel (a futex or
  // eventfd and an interrupt to its CPU: microseconds on a VM) and resumes with cold caches; a
  // spinning one picks a post up within a fraction of a microsecond, and whoever posts skips the
  // wake-up. It costs a CPU kept busy while idle, so it is off (0) by default. Each wait spins
  // once, then sleeps for the rest of it. Loop thread, while the loop is not running.
  void set_busy_poll(std::chrono::nanoseconds spin) { busy_poll_ = spin; }
  // How many times other threads have signalled this loop (a post, stop(), finished external
  // work). Lock-free: what a spinning loop watches.
  std::uint64_t signals() const { return signals_.load(std::memory_order_acquire); }

  // Installs (or, with nullptr, removes) what the idle loop waits in. Loop thread, while the loop
  // is not running. Once removed, no other thread is still waking it: it may be destroyed.
  void set_waiter(LoopWaiter* waiter);

 private:
  bool run_one_ready();
  void end_task();
  // After a change another thread's wait must see (a post, a stop). Called with `lock` on
  // mutex_ held; may release it.
  void wake(std::unique_lock<std::mutex>& lock);
  // Waits at most `max` for a post, a stop or (with a waiter) network I/O. `lock` is held on
  // entry and on return.
  void wait(std::unique_lock<std::mutex>& lock, std::chrono::nanoseconds max);
  // The busy-polling part of wait(): spins up to `spin` with the lock released; true if another
  // thread signalled or network I/O ran meanwhile. `lock` is held on entry and on return.
  bool spin(std::unique_lock<std::mutex>& lock, LoopWaiter* waiter, std::chrono::nanoseconds spin);

  Clock& clock_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Task> posted_;
  std::multimap<Timestamp, std::pair<TimerId, Task>> timers_;
  TimerId next_timer_ = 1;
  int external_work_ = 0;
  bool stopped_ = false;
  // The thread running a task (none between tasks): read by in_task() on any thread.
  std::atomic<std::thread::id> task_thread_{};
  int task_depth_ = 0;  // loop thread only: a task may run the loop itself (run_ready in a test)
  std::vector<std::pair<void (*)(void*), void*>> task_end_;  // loop thread only
  std::atomic<LoopWaiter*> waiter_{nullptr};
  std::chrono::nanoseconds busy_poll_{0};
  bool spinning_ = false;                  // mutex_: the loop is spinning, no wake-up needed
  std::atomic<std::uint64_t> signals_{0};  // bumped under mutex_ by every wake()
};

}  // namespace backstop
