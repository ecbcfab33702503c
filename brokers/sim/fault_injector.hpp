#pragma once
// Seeded fault injection shared by the simulated venue, SimBroker and the protocol emulators.
// Every fault injected is logged (and kept in memory) so that tests can assert that each one was
// detected or recovered from.
#include <cstdint>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "core/clock.hpp"

namespace backstop {

struct FaultProfile {
  std::string name = "none";
  double ghost_stop_rate = 0;        // stops accepted and listed as working that never trigger
  double reject_rate = 0;            // orders refused by the venue
  Duration ack_delay{0};             // added before every acknowledgement
  Duration ack_delay_jitter{0};      // plus a uniform random part up to this
  // Added before the answer to every query (an order, open orders, positions, fills): a broker
  // whose reads are paced (IBKR: some once per 5 s) makes a restart's recovery take that long.
  Duration query_delay{0};
  double drop_order_event_rate = 0;  // status events (ack, cancel) not delivered
  double drop_fill_event_rate = 0;   // fill events not delivered (the order still fills)
  double disconnect_rate = 0;        // per market tick, chance the connection drops
  Duration disconnect_length{std::chrono::seconds(2)};
  double lost_reply_rate = 0;        // request reaches the venue, its reply is lost: outcome unknown
  double stale_position_rate = 0;    // position queries answered from an old snapshot
  // Protocol-level faults of the emulators ("goaway_rate", "http_429_rate", ...), by name.
  std::map<std::string, double> extra;

  double extra_rate(const std::string& key) const {
    auto it = extra.find(key);
    return it == extra.end() ? 0.0 : it->second;
  }
  // Named built-in profiles: "none", "demo" (a little of everything), "ghost_stops" (every stop
  // is a ghost), "lossy_stream" (80 % of fill events dropped), "chaos".
  static FaultProfile named(const std::string& name);  // throws ConfigError for unknown names
};

struct FaultRecord {
  Timestamp at = 0;
  std::string kind;  // "ghost_stop", "reject", "ack_delay", "drop_fill_event", ...
  std::string order_id;
  std::string client_order_id;
  std::string detail;
};

class FaultInjector {
 public:
  FaultInjector(FaultProfile profile, std::uint64_t seed) : profile_(std::move(profile)), rng_(seed) {}

  // Readers and set_profile() must be serialized by the owner (emulators hold their venue mutex).
  const FaultProfile& profile() const { return profile_; }
  void set_profile(FaultProfile p) { profile_ = std::move(p); }
  // Draws once from the seeded generator: true with probability `rate`.
  bool roll(double rate);
  std::int64_t uniform(std::int64_t lo, std::int64_t hi);  // inclusive
  void record(FaultRecord record);  // logs at warn level and keeps it
  std::vector<FaultRecord> log() const;
  std::size_t count(const std::string& kind) const;
  std::size_t records() const;  // how many so far; owners persist when it has moved
  // The log of an earlier life of the same emulator, read back from its state file.
  void restore_log(std::vector<FaultRecord> log);

 private:
  FaultProfile profile_;
  std::mt19937_64 rng_;
  mutable std::mutex mutex_;  // emulators record from their server threads
  std::vector<FaultRecord> log_;
};

}  // namespace backstop
