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
#include <string_view>
#include <vector>

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
  // A dedicated health check (HealthMonitor). A failed check opens the circuit at once: it is
  // the signal that moves new orders to the next broker within one check interval plus one
  // request timeout. While open, checks are the only probes: after the cool-down a successful
  // check half-opens the circuit and enough of them close it, so no real order is risked on a
  // broker that has not answered yet.
  void check_succeeded(const std::string& broker, Duration latency);
  void check_failed(const std::string& broker, const std::string& why);
  // The broker's event stream (orders, fills) is connected or not. A broker without its stream
  // still takes orders and answers queries, so this degrades it rather than opening the circuit.
  void stream_connected(const std::string& broker, bool connected, const std::string& detail);

  // May a new order go to this broker now? Closed: yes. Open: no. Half-open: only as a probe,
  // up to the configured number in flight.
  bool admits(const std::string& broker);
  // Will the router send a new order here? Only with the circuit closed: half-open brokers are
  // probed by health checks, not by orders.
  bool takes_orders(const std::string& broker) const { return circuit(broker) == Circuit::closed; }
  // The same question about one broker, its entry found once. Entries are never removed, so a
  // view stays valid for the BrokerHealth's life: the router keeps one per broker of its routes
  // and asks it for every order, where a lookup by name was most of the question's cost.
  class View {
   public:
    bool takes_orders() const { return *circuit_ == Circuit::closed; }

   private:
    friend class BrokerHealth;
    explicit View(const Circuit& circuit) : circuit_(&circuit) {}
    const Circuit* circuit_;
  };
  View view(const std::string& broker) { return View(entry(broker).circuit); }
  // Brokers seen so far.
  std::vector<std::string> brokers() const;
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
    bool stream_down = false;
  };
  Entry& entry(const std::string& broker) { return brokers_[broker]; }
  // `reason` is copied only when something changed: most answers change nothing, and the path of
  // every order's answer should not build a string for nothing.
  void set(const std::string& broker, Entry& e, Circuit c, HealthState s, std::string_view reason);
  void open(const std::string& broker, Entry& e, std::string_view reason);
  HealthState derived_state(const Entry& e) const;

  EventLoop& loop_;
  Journal& journal_;
  BrokerHealthSettings settings_;
  std::map<std::string, Entry> brokers_;
  std::vector<Listener> listeners_;
};

}  // namespace backstop
