#pragma once
// Counts heap allocations made by the calling thread while a CountAllocations is alive, so that a
// benchmark can state "allocation-free" as a measured figure (a counter), not a claim. Link
// allocation_counter.cpp into the benchmark: it replaces the global operator new (every
// allocation of the program still goes to malloc; only the count is added).
#include <cstdint>

namespace backstop::bench {

// Allocations counted on this thread so far.
std::uint64_t allocations_counted();

class CountAllocations {
 public:
  CountAllocations();
  ~CountAllocations();
  CountAllocations(const CountAllocations&) = delete;
  CountAllocations& operator=(const CountAllocations&) = delete;
};

}  // namespace backstop::bench
