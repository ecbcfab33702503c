#pragma once
// Broker health as a circuit breaker. Each broker's state (up, degraded, down) comes from what
// Backstop observes of it: request outcomes and latency, connectivity and auth, stream liveness,
// and stop failures (verification failures, ghost stops). The circuit is closed while the broker
// is usable, opens after consecutive failures (new orders go elsewhere), and after a cool-down
// goes half-open: a limited number of probe requests decide whether it closes again.
// Every change of state is an event, journaled, and passed to listeners.
#include <functional>
#include <map>
#include <string>

#include "core/event_loop.hpp"
#include "core/journal.hpp"

namespace backstop {

enum class Circuit { closed, open, half_open };
enum class HealthState { up, degraded, down };
const char* to_string(Circuit c);
const char* to_string(HealthState s);

struct BrokerHealthSettings {
  int failure_threshold = 3;                        // consecutive failures that open the circuit
  Duration open_interval{std::chrono::seconds(10)};  // cool-down before probing
  int half_open_probes = 1;                         // successes needed to close again
  Duration latency_degraded{std::chrono::milliseconds(1000)};
  Duration stream_silence_degraded{std::chrono::seconds(30)};
};

struct HealthChange {
  std::string broker;
  HealthState from, to;
  Circuit circuit;
  Timestamp at;
  std::string reason;
};

class BrokerHealth {
 public:
  using Listener = std::function<void(const HealthChange&)>;

  BrokerHealth(EventLoop& loop, Journal& journal, BrokerHealthSettings settings = {});

  // Observations.
  void request_succeeded(const std::string& broker, Duration latency);
  void request_failed(const std::string& broker, const std::string& why);  // failed locally or unknown
  void disconnected(const std::string& broker, const std::string& why);
  void stream_message(const std::string& broker);  // any stream traffic (heartbeats included)
  void stop_failure(const std::string& broker, const std::string& why);  // ghost stop, verification failure

  // May a new order go to this broker now? Closed: yes. Open: no. Half-open: only as a probe,
  // up to the configured number in flight.
  bool admits(const std::string& broker);
  HealthState state(const std::string& broker) const;
  Circuit circuit(const std::string& broker) const;
  void on_change(Listener l) { listeners_.push_back(std::move(l)); }

 private:
  struct Entry {
    Circuit circuit = Circuit::closed;
    HealthState state = HealthState::up;
    int consecutive_failures = 0;
    int probes_in_flight = 0;
    int probe_successes = 0;
    Timestamp opened_at = 0;
    Timestamp last_stream_message = 0;
    bool degraded_by_stops = false;
    bool slow = false;
  };
  Entry& entry(const std::string& broker) { return brokers_[broker]; }
  void set(const std::string& broker, Entry& e, Circuit c, HealthState s, const std::string& reason);
  void open(const std::string& broker, Entry& e, const std::string& reason);
  HealthState derived_state(const Entry& e) const;

  EventLoop& loop_;
  Journal& journal_;
  BrokerHealthSettings settings_;
  std::map<std::string, Entry> brokers_;
  std::vector<Listener> listeners_;
};

}  // namespace backstop
