#include "brokers/sim/fault_injector.hpp"

#include <spdlog/spdlog.h>

#include "core/error.hpp"

namespace backstop {

FaultProfile FaultProfile::named(const std::string& name) {
  using std::chrono::milliseconds;
  FaultProfile p;
  p.name = name;
  if (name == "none") return p;
  if (name == "demo") {
    p.ghost_stop_rate = 0.5;
    p.reject_rate = 0.05;
    p.ack_delay = milliseconds(20);
    p.ack_delay_jitter = milliseconds(30);
    p.drop_fill_event_rate = 0.2;
    p.drop_order_event_rate = 0.1;
    p.stale_position_rate = 0.1;
    p.lost_reply_rate = 0.03;
    return p;
  }
  if (name == "ghost_stops") {
    p.ghost_stop_rate = 1.0;
    return p;
  }
  if (name == "lossy_stream") {
    p.drop_fill_event_rate = 0.8;
    p.drop_order_event_rate = 0.3;
    return p;
  }
  if (name == "chaos") {
    p.ghost_stop_rate = 0.3;
    p.reject_rate = 0.1;
    p.ack_delay = milliseconds(50);
    p.ack_delay_jitter = milliseconds(500);
    p.drop_order_event_rate = 0.3;
    p.drop_fill_event_rate = 0.5;
    p.disconnect_rate = 0.01;
    p.lost_reply_rate = 0.05;
    p.stale_position_rate = 0.3;
    return p;
  }
  throw ConfigError("unknown fault profile \"" + name +
                    "\" (known: none, demo, ghost_stops, lossy_stream, chaos)");
}

bool FaultInjector::roll(double rate) {
  if (rate <= 0) return false;
  std::lock_guard lock(mutex_);
  if (rate >= 1) return true;
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng_) < rate;
}

std::int64_t FaultInjector::uniform(std::int64_t lo, std::int64_t hi) {
  std::lock_guard lock(mutex_);
  return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng_);
}

void FaultInjector::record(FaultRecord r) {
  spdlog::warn("fault injected: {} order={} coid={} {}", r.kind, r.order_id, r.client_order_id,
               r.detail);
  std::lock_guard lock(mutex_);
  log_.push_back(std::move(r));
}

std::vector<FaultRecord> FaultInjector::log() const {
  std::lock_guard lock(mutex_);
  return log_;
}

std::size_t FaultInjector::count(const std::string& kind) const {
  std::lock_guard lock(mutex_);
  std::size_t n = 0;
  for (const auto& r : log_) n += r.kind == kind;
  return n;
}

std::size_t FaultInjector::records() const {
  std::lock_guard lock(mutex_);
  return log_.size();
}

void FaultInjector::restore_log(std::vector<FaultRecord> log) {
  std::lock_guard lock(mutex_);
  log_ = std::move(log);
}

}  // namespace backstop
