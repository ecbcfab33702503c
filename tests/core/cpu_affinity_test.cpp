#include "core/cpu_affinity.hpp"

#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/journal.hpp"

namespace backstop {
namespace {

// The calling thread's allowed CPUs, put back when the test ends (the test runner's thread is
// shared by every test in the program).
class KeepAffinity {
 public:
  KeepAffinity() { sched_getaffinity(0, sizeof saved_, &saved_); }
  ~KeepAffinity() { sched_setaffinity(0, sizeof saved_, &saved_); }
  // The highest CPU this thread may run on (a container may allow fewer than cpu_count()).
  int highest_allowed() const {
    for (int c = CPU_SETSIZE - 1; c >= 0; --c)
      if (CPU_ISSET(c, &saved_)) return c;
    return 0;
  }

 private:
  cpu_set_t saved_;
};

TEST(CpuAffinity, PinnedThreadRunsOnThatCpu) {
  KeepAffinity keep;
  const int cpu = keep.highest_allowed();
  ASSERT_EQ(pin_this_thread(cpu), "");
  // sched_setaffinity migrates the thread before it returns.
  EXPECT_EQ(current_cpu(), cpu);
  cpu_set_t now;
  ASSERT_EQ(sched_getaffinity(0, sizeof now, &now), 0);
  EXPECT_EQ(CPU_COUNT(&now), 1);
  EXPECT_TRUE(CPU_ISSET(cpu, &now));
}

// A thread inherits its creator's CPUs: the threads a pinned loop starts must give them back.
TEST(CpuAffinity, ThreadsStartedByAPinnedThreadCanGoBackToTheProcessCpus) {
  KeepAffinity keep;
  cpu_set_t before;
  ASSERT_EQ(sched_getaffinity(0, sizeof before, &before), 0);
  ASSERT_EQ(pin_this_thread(keep.highest_allowed()), "");
  int inherited = 0, after_unpin = 0;
  std::thread([&] {
    cpu_set_t s;
    sched_getaffinity(0, sizeof s, &s);
    inherited = CPU_COUNT(&s);
    unpin_this_thread();
    sched_getaffinity(0, sizeof s, &s);
    after_unpin = CPU_COUNT(&s);
  }).join();
  EXPECT_EQ(inherited, 1);
  EXPECT_EQ(after_unpin, CPU_COUNT(&before));
}

// A busy-polling loop's CPU is reserved: threads going back to the process's CPUs (the journal's
// writer, network threads) leave it out, so none waits out the spinning loop's time slice.
TEST(CpuAffinity, AReservedCpuIsLeftOutWhenThreadsGoBackToTheProcessCpus) {
  KeepAffinity keep;
  cpu_set_t before;
  ASSERT_EQ(sched_getaffinity(0, sizeof before, &before), 0);
  if (CPU_COUNT(&before) < 2) GTEST_SKIP() << "one CPU allowed: nothing to keep the others off";
  const int loop_cpu = keep.highest_allowed();
  ASSERT_EQ(reserve_cpu_for_this_thread(loop_cpu), "");
  const auto path = (std::filesystem::temp_directory_path() / ("backstop-reserve-" + std::to_string(::getpid()) + ".db")).string();
  std::vector<cpu_set_t> others;  // the journal's writer's CPUs, found by its thread name
  {
    Journal j(path);  // its writer starts on the reserved CPU (inherited) and moves off it
    j.record_event({1, "b", "k", {}, "{}"});
    j.flush();  // the writer has run
    // Only the writer is looked at: a thread the process did not start itself (ThreadSanitizer's
    // runtime starts one at the first thread creation) does not move off the CPU.
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
      std::ifstream comm(task.path() / "comm");
      std::string name;
      std::getline(comm, name);
      if (name != "bs-journal") continue;  // the name Journal gives its writer (journal.cpp)
      const pid_t tid = static_cast<pid_t>(std::stol(task.path().filename().string()));
      cpu_set_t s;
      if (sched_getaffinity(tid, sizeof s, &s) == 0) others.push_back(s);
    }
  }
  release_reserved_cpu();
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
  ASSERT_FALSE(others.empty()) << "the journal's writer";
  for (const cpu_set_t& s : others) {
    EXPECT_FALSE(CPU_ISSET(loop_cpu, &s));
    EXPECT_EQ(CPU_COUNT(&s), CPU_COUNT(&before) - 1);
  }
  // Released: back to every CPU of the process.
  int after_release = 0;
  std::thread([&] {
    unpin_this_thread();
    cpu_set_t s;
    sched_getaffinity(0, sizeof s, &s);
    after_release = CPU_COUNT(&s);
  }).join();
  EXPECT_EQ(after_release, CPU_COUNT(&before));
}

TEST(CpuAffinity, MissingCpuIsAnErrorNamingIt) {
  KeepAffinity keep;
  const int n = cpu_count();
  EXPECT_EQ(pin_this_thread(n), "CPU " + std::to_string(n) + " does not exist (this machine has CPUs 0-" +
                                    std::to_string(n - 1) + ")");
  EXPECT_NE(pin_this_thread(-1).find("CPU -1 does not exist"), std::string::npos);
  std::thread never_started;
  EXPECT_NE(pin_thread(never_started, 0).find("not running"), std::string::npos);
}

TEST(CpuAffinity, JournalWriterCanBePinned) {
  const auto path = (std::filesystem::temp_directory_path() / ("backstop-affinity-" + std::to_string(::getpid()) + ".db")).string();
  KeepAffinity keep;
  {
    Journal j(path);
    EXPECT_EQ(j.pin_writer(keep.highest_allowed()), "");
    EXPECT_NE(j.pin_writer(cpu_count()).find("does not exist"), std::string::npos);
    // Still committing after the move.
    j.record_event({1, "b", "k", {}, "{}"});
    j.flush();
    EXPECT_EQ(j.events("k").size(), 1u);
  }
  {
    Journal ro(path, JournalMode::read_only);
    EXPECT_NE(ro.pin_writer(0).find("read-only"), std::string::npos);
  }
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
}

}  // namespace
}  // namespace backstop
