#include "core/cpu_affinity.hpp"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>

namespace backstop {

int cpu_count() {
  const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

namespace {

// The CPUs of the thread that pinned something first, read just before it did: the process's own
// (taskset's, a container's) before any pinning.
struct ProcessCpus {
  std::once_flag saved;
  cpu_set_t cpus;
  std::atomic<bool> known{false};  // set once `cpus` is written
};
ProcessCpus& process_cpus() {
  static ProcessCpus p;
  return p;
}
std::atomic<int> reserved_cpu{-1};  // reserve_cpu_for_this_thread(); -1: none

void remember_process_cpus() {
  ProcessCpus& p = process_cpus();
  std::call_once(p.saved, [&p] {
    if (::sched_getaffinity(0, sizeof p.cpus, &p.cpus) == 0) p.known.store(true, std::memory_order_release);
  });
}

std::string pin(pthread_t thread, int cpu) {
  remember_process_cpus();
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

std::string reserve_cpu_for_this_thread(int cpu) {
  auto err = pin(::pthread_self(), cpu);
  if (err.empty()) reserved_cpu.store(cpu, std::memory_order_release);
  return err;
}

void release_reserved_cpu() { reserved_cpu.store(-1, std::memory_order_release); }

std::string pin_thread(std::thread& thread, int cpu) {
  if (!thread.joinable()) return "cannot pin to CPU " + std::to_string(cpu) + ": the thread is not running";
  return pin(thread.native_handle(), cpu);
}

void unpin_this_thread() {
  ProcessCpus& p = process_cpus();
  // Never pinned: nothing saved, nothing to undo.
  if (!p.known.load(std::memory_order_acquire)) return;
  cpu_set_t set = p.cpus;
  const int reserved = reserved_cpu.load(std::memory_order_acquire);
  if (reserved >= 0 && reserved < CPU_SETSIZE && CPU_ISSET(reserved, &set) && CPU_COUNT(&set) > 1)
    CPU_CLR(reserved, &set);
  ::sched_setaffinity(0, sizeof set, &set);
}

int current_cpu() { return ::sched_getcpu(); }

}  // namespace backstop
