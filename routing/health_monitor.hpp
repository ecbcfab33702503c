#pragma once
// Health checks: every interval, each broker is asked a cheap independent question
// (Broker::check_health) and its stream state is read (Broker::health()). The answers feed
// BrokerHealth. A check not answered within the request timeout counts as failed when the
// timeout expires (a late answer is ignored), so a stalled broker is detected as fast as a dead
// one: new orders leave it within one check interval plus one request timeout.
#include <functional>
#include <map>
#include <memory>
#include <vector>
#include <string>

#include "brokers/broker.hpp"
#include "core/event_loop.hpp"
#include "routing/broker_health.hpp"

namespace backstop {

struct HealthMonitorSettings {
  Duration check_interval{std::chrono::seconds(2)};
  Duration request_timeout{std::chrono::seconds(3)};
};

class HealthMonitor {
 public:
  HealthMonitor(EventLoop& loop, BrokerHealth& health, HealthMonitorSettings settings);
  ~HealthMonitor();
  HealthMonitor(const HealthMonitor&) = delete;
  HealthMonitor& operator=(const HealthMonitor&) = delete;

  // The broker must outlive the monitor (or be removed by stop()).
  void watch(Broker& broker);
  void start();
  void stop();
  // Checks every broker now (e.g. right after a failed order), not waiting for the interval.
  void check_now();
  std::uint64_t checks_sent() const { return checks_sent_; }
  // A broker's stream came back after being down (observed at a check): the moment to
  // reconcile and re-verify its stops. `gap` is how long it was seen down (check resolution).
  using ReconnectListener = std::function<void(const std::string& broker, Duration gap)>;
  void on_reconnect(ReconnectListener l) { reconnect_listeners_.push_back(std::move(l)); }

 private:
  struct Watched {
    Broker* broker = nullptr;
    std::uint64_t generation = 0;  // identifies the check in flight; older answers are stale
    bool in_flight = false;
    Timestamp sent_at = 0;
    EventLoop::TimerId timeout_timer = 0;
    bool stream_was_down = false;
    Timestamp stream_down_since = 0;
    bool ever_up = false;
  };
  void check(Watched& w);
  void schedule();

  EventLoop& loop_;
  BrokerHealth& health_;
  HealthMonitorSettings settings_;
  std::map<std::string, Watched> brokers_;
  EventLoop::TimerId timer_ = 0;
  bool running_ = false;
  std::uint64_t checks_sent_ = 0;
  std::vector<ReconnectListener> reconnect_listeners_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace backstop
