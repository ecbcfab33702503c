#include "routing/broker_health.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

using namespace backstop;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {
struct HealthHarness {
  HealthHarness()
      : dir(fs::temp_directory_path() / ("backstop-health-" + std::to_string(::getpid()))),
        loop(clock),
        journal((fs::create_directories(dir), (dir / "j.db").string())),
        health(loop, journal, settings()) {
    health.on_change([this](const HealthChange& c) { changes.push_back(c); });
  }
  ~HealthHarness() { fs::remove_all(dir); }
  static BrokerHealthSettings settings() {
    BrokerHealthSettings s;
    s.failure_threshold = 3;
    s.open_interval = 10s;
    s.half_open_probes = 1;
    s.latency_degraded = 1s;
    return s;
  }
  fs::path dir;
  ManualClock clock;
  EventLoop loop;
  Journal journal;
  BrokerHealth health;
  std::vector<HealthChange> changes;
};
}  // namespace

TEST(BrokerHealth, ConsecutiveFailuresOpenTheCircuitAndTheCoolDownLeadsToAProbe) {
  HealthHarness h;
  EXPECT_TRUE(h.health.admits("ib"));
  h.health.request_failed("ib", "timeout");
  h.health.request_failed("ib", "timeout");
  EXPECT_EQ(h.health.state("ib"), HealthState::degraded);
  EXPECT_EQ(h.health.circuit("ib"), Circuit::closed);
  h.health.request_failed("ib", "HTTP 503");
  EXPECT_EQ(h.health.circuit("ib"), Circuit::open);
  EXPECT_EQ(h.health.state("ib"), HealthState::down);
  EXPECT_FALSE(h.health.admits("ib")) << "no orders during the cool-down";
  h.clock.advance(10s);
  EXPECT_TRUE(h.health.admits("ib")) << "one probe";
  EXPECT_EQ(h.health.circuit("ib"), Circuit::half_open);
  EXPECT_FALSE(h.health.admits("ib")) << "only one probe in flight";
  h.health.request_succeeded("ib", 50ms);
  EXPECT_EQ(h.health.circuit("ib"), Circuit::closed);
  EXPECT_EQ(h.health.state("ib"), HealthState::up);
  EXPECT_TRUE(h.health.admits("ib"));
  h.journal.flush();
  EXPECT_EQ(h.journal.events("health_change").size(), h.changes.size());
  EXPECT_GE(h.changes.size(), 4u);  // degraded, down, half-open (degraded), up
}

TEST(BrokerHealth, AFailedProbeReopens) {
  HealthHarness h;
  h.health.disconnected("ts", "connection refused");
  EXPECT_EQ(h.health.circuit("ts"), Circuit::open);
  h.clock.advance(10s);
  ASSERT_TRUE(h.health.admits("ts"));
  h.health.request_failed("ts", "connection refused");
  EXPECT_EQ(h.health.circuit("ts"), Circuit::open);
  EXPECT_FALSE(h.health.admits("ts"));
}

TEST(BrokerHealth, StopFailuresAndSlowAnswersDegradeWithoutOpening) {
  HealthHarness h;
  h.health.request_succeeded("ib", 1500ms);
  EXPECT_EQ(h.health.state("ib"), HealthState::degraded);
  h.health.request_succeeded("ib", 20ms);
  EXPECT_EQ(h.health.state("ib"), HealthState::up);
  h.health.stop_failure("ib", "ghost stop S1");
  EXPECT_EQ(h.health.state("ib"), HealthState::degraded);
  EXPECT_EQ(h.health.circuit("ib"), Circuit::closed);
  h.health.request_succeeded("ib", 20ms);
  EXPECT_EQ(h.health.state("ib"), HealthState::degraded) << "a lost stop is not forgotten by a fast answer";
  EXPECT_TRUE(h.health.admits("ib"));
}
