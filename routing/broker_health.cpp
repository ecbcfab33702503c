#include "routing/broker_health.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace backstop {

const char* to_string(Circuit c) {
  switch (c) {
    case Circuit::closed: return "closed";
    case Circuit::open: return "open";
    case Circuit::half_open: return "half_open";
  }
  return "?";
}

const char* to_string(HealthState s) {
  switch (s) {
    case HealthState::up: return "up";
    case HealthState::degraded: return "degraded";
    case HealthState::down: return "down";
  }
  return "?";
}

BrokerHealth::BrokerHealth(EventLoop& loop, Journal& journal, BrokerHealthSettings settings)
    : loop_(loop), journal_(journal), settings_(settings) {}

HealthState BrokerHealth::derived_state(const Entry& e) const {
  if (e.circuit == Circuit::open) return HealthState::down;
  if (e.circuit == Circuit::half_open || e.degraded_by_stops || e.slow || e.stream_down || e.consecutive_failures > 0)
    return HealthState::degraded;
  return HealthState::up;
}

void BrokerHealth::set(const std::string& broker, Entry& e, Circuit c, HealthState s, std::string_view reason) {
  const HealthState before = e.state;
  const Circuit circuit_before = e.circuit;
  e.circuit = c;
  e.state = s;
  if (before == s && circuit_before == c) return;
  const HealthChange change{broker, before, s, c, loop_.now(), std::string(reason)};
  spdlog::warn("broker {}: {} -> {} (circuit {}): {}", broker, to_string(before), to_string(s), to_string(c), reason);
  journal_.record_event({change.at, broker, "health_change", {},
                         nlohmann::json{{"from", to_string(before)}, {"to", to_string(s)},
                                        {"circuit", to_string(c)}, {"reason", change.reason}}
                             .dump()});
  for (auto& l : listeners_) l(change);
}

void BrokerHealth::open(const std::string& broker, Entry& e, std::string_view reason) {
  e.opened_at = loop_.now();
  e.probes_in_flight = e.probe_successes = 0;
  set(broker, e, Circuit::open, HealthState::down, reason);
}

void BrokerHealth::request_succeeded(const std::string& broker, Duration latency) {
  Entry& e = entry(broker);
  e.consecutive_failures = 0;
  e.slow = latency > settings_.latency_degraded;
  if (e.circuit == Circuit::half_open) {
    if (e.probes_in_flight > 0) --e.probes_in_flight;
    if (++e.probe_successes >= settings_.half_open_probes) {
      Entry closed = e;
      closed.circuit = Circuit::closed;
      set(broker, e, Circuit::closed, derived_state(closed), "probe succeeded; circuit closed");
      return;
    }
  }
  set(broker, e, e.circuit, derived_state(e), e.slow ? "slow answers" : "answering");
}

void BrokerHealth::request_failed(const std::string& broker, const std::string& why) {
  Entry& e = entry(broker);
  ++e.consecutive_failures;
  if (e.circuit == Circuit::half_open) return open(broker, e, "probe failed: " + why);
  if (e.circuit == Circuit::closed && e.consecutive_failures >= settings_.failure_threshold)
    return open(broker, e, std::to_string(e.consecutive_failures) + " consecutive failures, last: " + why);
  set(broker, e, e.circuit, derived_state(e), why);
}

void BrokerHealth::disconnected(const std::string& broker, const std::string& why) {
  Entry& e = entry(broker);
  if (e.circuit != Circuit::open) open(broker, e, "disconnected: " + why);
}

void BrokerHealth::stream_message(const std::string& broker) { entry(broker).last_stream_message = loop_.now(); }

void BrokerHealth::stop_failure(const std::string& broker, const std::string& why) {
  Entry& e = entry(broker);
  e.degraded_by_stops = true;  // a broker that lost a stop stays degraded until a person clears it
  set(broker, e, e.circuit, derived_state(e), "stop failure: " + why);
}

bool BrokerHealth::admits(const std::string& broker) {
  Entry& e = entry(broker);
  if (e.circuit == Circuit::open) {
    if (loop_.now() - e.opened_at < settings_.open_interval.count()) return false;
    set(broker, e, Circuit::half_open, HealthState::degraded, "cool-down over; probing");
  }
  if (e.circuit == Circuit::half_open) {
    if (e.probes_in_flight >= settings_.half_open_probes) return false;
    ++e.probes_in_flight;
    return true;
  }
  // A silent stream is a degraded broker, not a closed circuit: orders can still be placed and
  // read back by query.
  if (e.last_stream_message != 0 && loop_.now() - e.last_stream_message > settings_.stream_silence_degraded.count())
    set(broker, e, e.circuit, HealthState::degraded, "stream silent");
  return true;
}

void BrokerHealth::check_succeeded(const std::string& broker, Duration latency) {
  Entry& e = entry(broker);
  if (e.circuit == Circuit::open) {
    if (loop_.now() - e.opened_at < settings_.open_interval.count()) return;  // still cooling down
    e.probe_successes = 0;
    set(broker, e, Circuit::half_open, HealthState::degraded, "cool-down over; health check answered");
  }
  e.consecutive_failures = 0;
  e.slow = latency > settings_.latency_degraded;
  if (e.circuit == Circuit::half_open) {
    if (++e.probe_successes < settings_.half_open_probes) return;
    Entry closed = e;
    closed.circuit = Circuit::closed;
    set(broker, e, Circuit::closed, derived_state(closed), "health checks answered; circuit closed");
    return;
  }
  set(broker, e, e.circuit, derived_state(e), e.slow ? "slow answers" : "answering");
}

void BrokerHealth::check_failed(const std::string& broker, const std::string& why) {
  Entry& e = entry(broker);
  ++e.consecutive_failures;
  if (e.circuit == Circuit::open) {
    e.opened_at = loop_.now();  // the cool-down counts from the latest failed check
    return;
  }
  open(broker, e, "health check failed: " + why);
}

void BrokerHealth::stream_connected(const std::string& broker, bool connected, const std::string& detail) {
  Entry& e = entry(broker);
  if (e.stream_down == !connected) return;
  e.stream_down = !connected;
  set(broker, e, e.circuit, derived_state(e), connected ? "stream connected" : "stream down: " + detail);
}

std::vector<std::string> BrokerHealth::brokers() const {
  std::vector<std::string> out;
  for (const auto& [name, e] : brokers_) out.push_back(name);
  return out;
}

HealthState BrokerHealth::state(const std::string& broker) const {
  auto it = brokers_.find(broker);
  return it == brokers_.end() ? HealthState::up : it->second.state;
}

Circuit BrokerHealth::circuit(const std::string& broker) const {
  auto it = brokers_.find(broker);
  return it == brokers_.end() ? Circuit::closed : it->second.circuit;
}

}  // namespace backstop
