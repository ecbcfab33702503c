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
// Pins the calling thread to `cpu` and keeps the process's other threads off it from then on:
// unpin_this_thread() leaves a reserved CPU out (while another CPU remains). For a busy-polling
// loop (config `runtime.busy_poll_us` with `runtime.loop_cpu`), which does not give its CPU up
// while it spins: a thread the kernel places on that CPU (a wake-up is often placed on the
// waker's CPU) waits for the loop's whole time slice, milliseconds (bench/PERFORMANCE.md,
// 2026-12-01, "busy polling on CPU 0").
std::string reserve_cpu_for_this_thread(int cpu);
// Ends the reservation (tests: a session's loop keeps its CPU for the process's life).
void release_reserved_cpu();
// Gives the calling thread back the CPUs the process had before anything was pinned, less a
// reserved one. A new thread inherits its creator's CPUs, so every thread the pinned loop thread
// starts (the journal's writer, network I/O, the API's listener and its workers, in-process
// emulators) would otherwise share the loop's one CPU with it. Called first thing in those
// threads. Nothing to do if nothing was ever pinned.
void unpin_this_thread();
// The CPU the calling thread runs on now (for tests and logs); -1 if unknown.
int current_cpu();

}  // namespace backstop
