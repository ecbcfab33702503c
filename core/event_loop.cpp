#include "core/event_loop.hpp"

#include <algorithm>
#include <limits>

namespace backstop {

// [[gnu::hot]]: on every order's submit path (see routing/router.cpp).

[[gnu::hot]] void EventLoop::post(Task task) {
  std::unique_lock lock(mutex_);
  posted_.push_back(std::move(task));
  // From a task on the loop's own thread: the loop looks at posted_ before it waits again.
  if (in_task()) return;
  wake(lock);
}

void EventLoop::wake(std::unique_lock<std::mutex>& lock) {
  signals_.fetch_add(1, std::memory_order_release);
  if (spinning_) return;  // the spinning loop sees signals_ move: no system call
  if (LoopWaiter* w = waiter_.load(std::memory_order_acquire)) {
    // Under the lock: set_waiter() cannot remove (and its owner destroy) the waiter meanwhile.
    w->wake();
    return;
  }
  lock.unlock();
  wake_.notify_one();
}

void EventLoop::set_waiter(LoopWaiter* waiter) {
  std::lock_guard lock(mutex_);
  waiter_.store(waiter, std::memory_order_release);
}

namespace {
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}
}  // namespace

bool EventLoop::spin(std::unique_lock<std::mutex>& lock, LoopWaiter* waiter, std::chrono::nanoseconds spin) {
  // spinning_ is set and cleared under the lock, where posters read it: a post either finds it
  // set (and only bumps signals_, which the loop watches) or comes before it was set (then the
  // caller saw the post before waiting) or after it was cleared (then it wakes the sleep below).
  const std::uint64_t seen = signals_.load(std::memory_order_relaxed);
  spinning_ = true;
  lock.unlock();
  const auto until = std::chrono::steady_clock::now() + spin;
  bool arrived = false;
  for (std::uint32_t i = 1;; ++i) {
    if (signals_.load(std::memory_order_acquire) != seen) {
      arrived = true;
      break;
    }
    // Network completions on this thread; a poll is a system call, so not on every turn.
    if (waiter != nullptr && i % 16 == 0 && waiter->poll() > 0) {
      arrived = true;
      break;
    }
    if (i % 64 == 0 && std::chrono::steady_clock::now() >= until) break;
    cpu_relax();
  }
  lock.lock();
  spinning_ = false;
  return arrived || signals_.load(std::memory_order_relaxed) != seen;
}

void EventLoop::wait(std::unique_lock<std::mutex>& lock, std::chrono::nanoseconds max) {
  LoopWaiter* w = waiter_.load(std::memory_order_acquire);
  if (busy_poll_.count() > 0) {
    const auto spun = std::min(max, busy_poll_);
    if (spin(lock, w, spun)) return;  // the caller looks at what arrived
    max -= spun;
    if (max.count() <= 0) return;
  }
  if (w == nullptr) {
    wake_.wait_for(lock, max);
    return;
  }
  // A post between the caller's checks and this wait is not lost: its wake() makes wait_for()
  // return at once.
  lock.unlock();
  w->wait_for(max);
  lock.lock();
}

EventLoop::TimerId EventLoop::call_at(Timestamp when, Task task) {
  std::lock_guard lock(mutex_);
  const TimerId id = next_timer_++;
  timers_.emplace(when, std::make_pair(id, std::move(task)));
  return id;
}

void EventLoop::cancel(TimerId id) {
  std::lock_guard lock(mutex_);
  for (auto it = timers_.begin(); it != timers_.end(); ++it) {
    if (it->second.first == id) {
      timers_.erase(it);
      return;
    }
  }
}

void EventLoop::add_external_work() {
  std::lock_guard lock(mutex_);
  ++external_work_;
}

void EventLoop::finish_external_work() {
  std::unique_lock lock(mutex_);
  --external_work_;
  if (in_task()) return;  // as post(): the loop looks again before it waits
  wake(lock);
}

[[gnu::hot]] bool EventLoop::run_one_ready() {
  Task task;
  {
    std::lock_guard lock(mutex_);
    if (!posted_.empty()) {
      task = std::move(posted_.front());
      posted_.pop_front();
    } else if (!timers_.empty() && timers_.begin()->first <= clock_.now()) {
      task = std::move(timers_.begin()->second.second);
      timers_.erase(timers_.begin());
    } else {
      return false;
    }
  }
  if (task_depth_++ == 0) task_thread_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  try {
    task();
  } catch (...) {
    end_task();
    throw;
  }
  end_task();
  return true;
}

void EventLoop::end_task() {
  if (--task_depth_ > 0) return;
  task_thread_.store(std::thread::id(), std::memory_order_relaxed);
  // Hooks run outside any task: one that registers again is refused and acts at once.
  for (std::size_t i = 0; i < task_end_.size(); ++i) task_end_[i].first(task_end_[i].second);
  task_end_.clear();
}

bool EventLoop::at_task_end(void (*fn)(void*), void* arg) {
  if (!in_task()) return false;  // true only on the loop thread, inside a task
  task_end_.emplace_back(fn, arg);
  return true;
}

void EventLoop::forget_task_end(void* arg) {
  if (!in_task()) return;  // the list is the loop thread's, and empty between tasks
  std::erase_if(task_end_, [arg](const auto& hook) { return hook.second == arg; });
}

[[gnu::hot]] std::size_t EventLoop::run_ready() {
  std::size_t n = 0;
  for (;;) {
    while (run_one_ready()) ++n;
    // Network completions ready now may post more.
    LoopWaiter* w = waiter_.load(std::memory_order_acquire);
    if (w == nullptr || w->poll() == 0) return n;
  }
}

void EventLoop::run_until(Timestamp deadline) {
  // Network I/O on this thread is served between tasks at least this often, so a long run of
  // posted tasks does not starve it.
  constexpr int kTasksBetweenPolls = 32;
  for (;;) {
    LoopWaiter* waiter = waiter_.load(std::memory_order_acquire);
    int since_poll = 0;
    while (run_one_ready()) {
      if (waiter != nullptr && ++since_poll == kTasksBetweenPolls) {
        since_poll = 0;
        waiter->poll();
      }
      std::lock_guard lock(mutex_);
      if (stopped_) break;
    }
    if (waiter != nullptr) waiter->poll();  // network completions: tasks they post run next turn
    std::unique_lock lock(mutex_);
    if (stopped_) return;
    if (!posted_.empty()) continue;
    const Timestamp now = clock_.now();
    if (now >= deadline) return;
    const bool has_timer = !timers_.empty();
    const Timestamp next = has_timer ? std::min(deadline, timers_.begin()->first) : deadline;
    if (has_timer && next <= now) continue;
    if (clock_.advances_by_itself()) {
      // Real time: sleep until the next timer, woken early by post() or finish_external_work().
      wait(lock, std::chrono::nanoseconds(next - now));
    } else if (external_work_ > 0) {
      // Another thread will post back; wait for it rather than jumping time past its result.
      wait(lock, std::chrono::milliseconds(20));
    } else if (!has_timer && deadline == std::numeric_limits<Timestamp>::max()) {
      return;  // nothing left that could ever run
    } else {
      lock.unlock();
      clock_.sleep_until(next);
    }
  }
}

void EventLoop::run() {
  // With a real clock an idle loop would otherwise wait forever.
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (stopped_ || (posted_.empty() && timers_.empty() && external_work_ == 0)) return;
    }
    run_until(clock_.now() + 10'000'000);
  }
}

void EventLoop::stop() {
  std::unique_lock lock(mutex_);
  stopped_ = true;
  if (in_task()) return;  // as post(): the loop looks again before it waits
  wake(lock);
}

void EventLoop::restart() {
  std::lock_guard lock(mutex_);
  stopped_ = false;
}

}  // namespace backstop
