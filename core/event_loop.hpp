#pragma once
// The single thread that owns routing state. Tasks and timers run here one at a time; other
// threads (the journal's writer, adapters' network threads) hand results back with post().
// Timers read the injected Clock, so with a ManualClock a test runs a 5-minute timer at once.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>

#include "core/clock.hpp"

namespace backstop {

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

 private:
  bool run_one_ready();

  Clock& clock_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Task> posted_;
  std::multimap<Timestamp, std::pair<TimerId, Task>> timers_;
  TimerId next_timer_ = 1;
  int external_work_ = 0;
  bool stopped_ = false;
};

}  // namespace backstop
