#include "routing/health_monitor.hpp"

namespace backstop {

HealthMonitor::HealthMonitor(EventLoop& loop, BrokerHealth& health, HealthMonitorSettings settings)
    : loop_(loop), health_(health), settings_(settings) {}

HealthMonitor::~HealthMonitor() { stop(); }

void HealthMonitor::watch(Broker& broker) { brokers_[broker.name()].broker = &broker; }

void HealthMonitor::start() {
  if (running_) return;
  running_ = true;
  check_now();
}

void HealthMonitor::stop() {
  running_ = false;
  loop_.cancel(timer_);
  timer_ = 0;
  for (auto& [name, w] : brokers_) {
    loop_.cancel(w.timeout_timer);
    w.timeout_timer = 0;
    w.in_flight = false;
    ++w.generation;
  }
}

void HealthMonitor::check_now() {
  if (!running_) return;
  for (auto& [name, w] : brokers_) check(w);
  schedule();
}

void HealthMonitor::schedule() {
  loop_.cancel(timer_);
  timer_ = loop_.call_after(settings_.check_interval, [this] {
    timer_ = 0;
    check_now();
  });
}

void HealthMonitor::check(Watched& w) {
  const std::string name = w.broker->name();
  const BrokerHealthReport report = w.broker->health();
  const bool stream_up =
      report.connectivity == Connectivity::connected || report.connectivity == Connectivity::degraded;
  health_.stream_connected(name, stream_up, report.detail);
  if (!stream_up && !w.stream_was_down) w.stream_down_since = loop_.now();
  // The first check of a broker that was never connected is start-up, not a reconnect.
  if (stream_up && w.stream_was_down && w.ever_up)
    for (auto& l : reconnect_listeners_) l(name, Duration(loop_.now() - w.stream_down_since));
  w.ever_up = w.ever_up || stream_up;
  w.stream_was_down = !stream_up;
  if (w.in_flight) return;  // the previous check is still within its timeout
  w.in_flight = true;
  w.sent_at = loop_.now();
  const std::uint64_t generation = ++w.generation;
  ++checks_sent_;
  std::weak_ptr<bool> alive = alive_;
  w.timeout_timer = loop_.call_after(settings_.request_timeout, [this, alive, name, generation] {
    if (alive.expired()) return;
    Watched& x = brokers_.at(name);
    if (x.generation != generation || !x.in_flight) return;
    x.in_flight = false;
    x.timeout_timer = 0;
    ++x.generation;  // the answer, if it ever comes, is stale
    health_.check_failed(name, "no answer within " + std::to_string(to_ns(settings_.request_timeout) / 1'000'000) + " ms");
  });
  w.broker->check_health([this, alive, name, generation](CommandResult r) {
    if (alive.expired()) return;
    Watched& x = brokers_.at(name);
    if (x.generation != generation || !x.in_flight) return;
    x.in_flight = false;
    loop_.cancel(x.timeout_timer);
    x.timeout_timer = 0;
    if (r.outcome == Outcome::accepted)
      health_.check_succeeded(name, Duration(loop_.now() - x.sent_at));
    else
      health_.check_failed(name, r.message.empty() ? to_string(r.outcome) : r.message);
  });
}

}  // namespace backstop
