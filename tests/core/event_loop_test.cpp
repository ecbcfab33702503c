#include "core/event_loop.hpp"
#include "core/error.hpp"

#include <gtest/gtest.h>

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

TEST(Timestamps, FormatAndParse) {
  const Timestamp t = parse_timestamp("2026-11-24T02:10:58.123456Z");
  EXPECT_EQ(format_timestamp(t), "2026-11-24T02:10:58.123456Z");
  EXPECT_EQ(parse_timestamp("2026-11-24T02:10:58Z"), parse_timestamp("2026-11-23T21:10:58-05:00"));
  EXPECT_THROW(parse_timestamp("yesterday"), ParseError);
  EXPECT_THROW(parse_timestamp("2026-11-24T02:10:58+0500"), ParseError);
}
