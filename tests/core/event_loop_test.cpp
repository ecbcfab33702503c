#include "core/event_loop.hpp"
#include "core/error.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace backstop;
using namespace std::chrono_literals;

TEST(EventLoop, ManualClockRunsLongTimersAtOnce) {
  ManualClock clock;
  EventLoop loop(clock);
  const Timestamp start = clock.now();
  std::vector<int> order;
  loop.call_after(5min, [&] { order.push_back(300); });
  loop.call_after(30s, [&] { order.push_back(30); });
  const auto cancelled = loop.call_after(60s, [&] { order.push_back(60); });
  loop.cancel(cancelled);
  loop.post([&] { order.push_back(0); });
  loop.run();
  EXPECT_EQ(order, (std::vector<int>{0, 30, 300}));
  EXPECT_EQ(clock.now() - start, to_ns(5min));
}

TEST(EventLoop, RunUntilStopsAtTheDeadline) {
  ManualClock clock;
  EventLoop loop(clock);
  int ticks = 0;
  std::function<void()> tick = [&] {
    ++ticks;
    loop.call_after(1s, tick);
  };
  loop.call_after(1s, tick);
  loop.run_until(clock.now() + to_ns(10s) + 1);
  EXPECT_EQ(ticks, 10);
}

TEST(EventLoop, WaitsForExternalWorkInsteadOfJumpingTime) {
  ManualClock clock;
  EventLoop loop(clock);
  bool timer_fired = false;
  bool result_seen = false;
  loop.call_after(1h, [&] { timer_fired = true; });
  loop.add_external_work();
  std::thread worker([&] {
    std::this_thread::sleep_for(20ms);
    loop.post([&] {
      result_seen = true;
      EXPECT_FALSE(timer_fired) << "the clock jumped past outstanding work";
    });
    loop.finish_external_work();
  });
  loop.run();
  worker.join();
  EXPECT_TRUE(result_seen);
  EXPECT_TRUE(timer_fired);
}

TEST(EventLoop, StopIsHonoured) {
  ManualClock clock;
  EventLoop loop(clock);
  int n = 0;
  std::function<void()> tick = [&] {
    if (++n == 3) loop.stop();
    loop.call_after(1s, tick);
  };
  loop.post(tick);
  loop.run();
  EXPECT_EQ(n, 3);
}

// Hooks registered inside a task run once that task has returned (or thrown), before the next
// task; outside a task (or on another thread) nothing is registered.
TEST(EventLoop, TaskEndHooksRunAfterTheTaskThatRegisteredThem) {
  ManualClock clock;
  EventLoop loop(clock);
  std::vector<std::string> log;
  auto hook = [](void* arg) { static_cast<std::vector<std::string>*>(arg)->push_back("hook"); };
  EXPECT_FALSE(loop.in_task());
  EXPECT_FALSE(loop.at_task_end(hook, &log));
  bool other_thread_in_task = true, other_thread_registered = true;
  loop.post([&] {
    EXPECT_TRUE(loop.in_task());
    EXPECT_TRUE(loop.at_task_end(hook, &log));
    std::thread other([&] {
      other_thread_in_task = loop.in_task();
      other_thread_registered = loop.at_task_end(hook, &log);
    });
    other.join();
    loop.run_ready();  // a nested turn (as tests do) does not end the outer task
    log.push_back("task 1 end");
  });
  loop.post([&] { log.push_back("task 2"); });  // runs in task 1's nested turn
  loop.run_ready();
  EXPECT_FALSE(other_thread_in_task);
  EXPECT_FALSE(other_thread_registered);
  EXPECT_EQ(log, (std::vector<std::string>{"task 2", "task 1 end", "hook"}));
  loop.post([&] {
    loop.at_task_end(hook, &log);
    throw std::runtime_error("task 3 failed");
  });
  EXPECT_THROW(loop.run_ready(), std::runtime_error);
  EXPECT_EQ(log, (std::vector<std::string>{"task 2", "task 1 end", "hook", "hook"}));
  EXPECT_FALSE(loop.in_task());
}

// A LoopWaiter that counts how the loop used it; its poll() tells the test the loop is spinning.
class CountingWaiter final : public LoopWaiter {
 public:
  std::size_t poll() override {
    polled.fetch_add(1);
    return 0;
  }
  void wait_for(std::chrono::nanoseconds max) override {
    waits.push_back(max);
    if (on_wait) on_wait();
  }
  void wake() override { wakes.fetch_add(1); }
  std::atomic<int> polled{0}, wakes{0};
  std::vector<std::chrono::nanoseconds> waits;  // loop thread
  std::function<void()> on_wait;                // loop thread
};

// A post that arrives while the idle loop spins is run without the loop ever sleeping and
// without the poster waking anything (no system call on either side).
TEST(BusyPoll, PostWhileSpinningNeedsNoWakeUpAndNoSleep) {
  ManualClock clock;
  EventLoop loop(clock);
  CountingWaiter waiter;
  loop.set_waiter(&waiter);
  loop.set_busy_poll(1h);  // longer than the test: only the post can end the spin
  bool ran = false;
  loop.add_external_work();
  std::thread worker([&] {
    while (waiter.polled.load() == 0) std::this_thread::yield();  // the loop is spinning now
    loop.post([&] {
      ran = true;
      loop.finish_external_work();  // on the loop's thread, in a task: no signal needed
    });
  });
  loop.run();
  worker.join();
  loop.set_waiter(nullptr);
  EXPECT_TRUE(ran);
  EXPECT_TRUE(waiter.waits.empty()) << "the loop slept";
  EXPECT_EQ(waiter.wakes.load(), 0) << "a spinning loop was woken through the waiter";
  EXPECT_EQ(loop.signals(), 1u);  // the post
}

// A spin that sees nothing ends, and the loop then sleeps for the rest of the wait as before.
TEST(BusyPoll, NothingArrivingMeansASleepAfterTheSpin) {
  ManualClock clock;
  EventLoop loop(clock);
  CountingWaiter waiter;
  loop.set_waiter(&waiter);
  loop.set_busy_poll(std::chrono::microseconds(1));
  bool ran = false;
  loop.add_external_work();
  waiter.on_wait = [&] {  // the external work finishes while the loop sleeps
    loop.post([&] { ran = true; });
    loop.finish_external_work();
  };
  loop.run();
  loop.set_waiter(nullptr);
  EXPECT_TRUE(ran);
  ASSERT_EQ(waiter.waits.size(), 1u);
  // A loop with external work waits 20 ms at a time (event_loop.cpp); the spin took its part.
  EXPECT_LT(waiter.waits[0], std::chrono::milliseconds(20));
  EXPECT_GT(waiter.waits[0], std::chrono::milliseconds(19));
  EXPECT_GE(waiter.wakes.load(), 1) << "a post to a sleeping loop wakes it";
}

// A waiter that sleeps until woken, and counts the sleeps no wake-up ended (capped at 2 s, so a
// lost wake-up costs the test 2 s instead of the whole wait).
class BlockingWaiter final : public LoopWaiter {
 public:
  std::size_t poll() override { return 0; }
  void wait_for(std::chrono::nanoseconds max) override {
    std::unique_lock lock(mutex_);
    const bool woken = cv_.wait_for(lock, std::min<std::chrono::nanoseconds>(max, 2s), [&] { return woken_; });
    if (!woken && max > 2s) ++unwoken;
    woken_ = false;
  }
  void wake() override {
    std::lock_guard lock(mutex_);
    woken_ = true;
    cv_.notify_one();
  }
  int unwoken = 0;  // loop thread

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool woken_ = false;
};

// Posts from another thread racing the loop into and out of its spin: each one ends the wait,
// whichever phase it lands in (during the spin it needs no wake-up; after it, it must wake).
TEST(BusyPoll, NoWakeUpIsLostAroundTheSpin) {
  SystemClock clock;
  EventLoop loop(clock);
  BlockingWaiter waiter;
  loop.set_waiter(&waiter);
  loop.set_busy_poll(std::chrono::microseconds(2));
  int ran = 0;
  for (int i = 0; i < 500; ++i) {
    loop.restart();
    std::thread worker([&] {
      loop.post([&] {
        ++ran;
        loop.stop();
      });
    });
    loop.run_until(clock.now() + 60'000'000'000);
    worker.join();
  }
  loop.set_waiter(nullptr);
  EXPECT_EQ(ran, 500);
  EXPECT_EQ(waiter.unwoken, 0) << "a post did not end the loop's wait";
}

TEST(Timestamps, FormatAndParse) {
  const Timestamp t = parse_timestamp("2026-11-24T02:10:58.123456Z");
  EXPECT_EQ(format_timestamp(t), "2026-11-24T02:10:58.123456Z");
  EXPECT_EQ(parse_timestamp("2026-11-24T02:10:58Z"), parse_timestamp("2026-11-23T21:10:58-05:00"));
  EXPECT_THROW(parse_timestamp("yesterday"), ParseError);
  EXPECT_THROW(parse_timestamp("2026-11-24T02:10:58+0500"), ParseError);
}
