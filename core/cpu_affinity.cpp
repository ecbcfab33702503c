#include "core/cpu_affinity.hpp"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <cstring>

namespace backstop {

int cpu_count() {
  const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

namespace {

std::string pin(pthread_t thread, int cpu) {
  const int n = cpu_count();
  if (cpu < 0 || cpu >= n || cpu >= CPU_SETSIZE)
    return "CPU " + std::to_string(cpu) + " does not exist (this machine has CPUs 0-" + std::to_string(n - 1) + ")";
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  // pthread_setaffinity_np returns the error number rather than setting errno.
  if (const int err = ::pthread_setaffinity_np(thread, sizeof set, &set); err != 0)
    return "cannot pin to CPU " + std::to_string(cpu) + ": " + std::strerror(err);
  return {};
}

}  // namespace

std::string pin_this_thread(int cpu) { return pin(::pthread_self(), cpu); }

std::string pin_thread(std::thread& thread, int cpu) {
  if (!thread.joinable()) return "cannot pin to CPU " + std::to_string(cpu) + ": the thread is not running";
  return pin(thread.native_handle(), cpu);
}

int current_cpu() { return ::sched_getcpu(); }

}  // namespace backstop
