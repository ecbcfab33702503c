#pragma once
// Thread placement. On the 2-core CI VM the journal disk's interrupts are all delivered to one CPU
// (/proc/interrupts); a loop thread running there has its submit path interrupted by the journal's
// own fsync completions, which is most of the router's and the tick path's p99
// (bench/PERFORMANCE.md, 2026-12-01). Pinning the event loop's thread (and, if wanted, the
// journal's writer) to chosen CPUs is how a deployment keeps it off such a CPU: config
// `runtime.loop_cpu` and `runtime.journal_writer_cpu`. Linux only.
#include <string>
#include <thread>

namespace backstop {

// How many CPUs this process may be placed on (numbered 0..n-1 by the kernel; the count online).
int cpu_count();
// Pins the calling thread to `cpu`. Returns an empty string, or what went wrong, naming the CPU.
std::string pin_this_thread(int cpu);
// The same for another thread, through its handle.
std::string pin_thread(std::thread& thread, int cpu);
// Gives the calling thread back the CPUs the process had before anything was pinned. A new thread
// inherits its creator's CPUs, so every thread the pinned loop thread starts (network I/O, the
// API's listener and its workers, in-process emulators) would otherwise share the loop's one CPU
// with it. Called first thing in those threads. Nothing to do if nothing was ever pinned.
void unpin_this_thread();
// The CPU the calling thread runs on now (for tests and logs); -1 if unknown.
int current_cpu();

}  // namespace backstop
