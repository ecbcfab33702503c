#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "command_runner.hpp"

namespace fs = std::filesystem;
namespace testing_support = backstop::testing_support;

namespace {

// Runs the backstop binary with a shell command line; stderr is merged into the output.
testing_support::CommandResult run_backstop(const std::string& args) {
  return testing_support::run_command(std::string(BACKSTOP_PATH) + " " + args);
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("backstop-cli-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

}  // namespace

TEST_F(CliTest, DemoRunsAndItsJournalReadsBack) {
  const std::string journal = (dir_ / "demo.db").string();
  const auto demo = run_backstop("demo --for 6s --seed 42 --journal " + journal);
  ASSERT_EQ(demo.exit_code, 0) << demo.out;
  EXPECT_NE(demo.out.find("Orders ("), std::string::npos) << demo.out;
  EXPECT_NE(demo.out.find("Faults injected"), std::string::npos) << demo.out;

  const auto listed = run_backstop("orders --json --journal " + journal);
  ASSERT_EQ(listed.exit_code, 0) << listed.out;
  const auto orders = nlohmann::json::parse(listed.out);
  ASSERT_TRUE(orders.is_array());
  int submitted_then_filled = 0, cancelled = 0;
  for (const auto& o : orders) {
    const auto& ts = o.at("timestamps");
    EXPECT_TRUE(ts.contains("created_at")) << o.dump();
    if (o.at("state") == "filled" && ts.contains("submitted_at") && ts.contains("filled_at")) {
      ++submitted_then_filled;
      EXPECT_LE(ts.at("submitted_at").get<std::string>(), ts.at("filled_at").get<std::string>());
      EXPECT_FALSE(o.at("fills").empty()) << o.dump();
    }
    if (o.at("state") == "cancelled") {
      ++cancelled;
      EXPECT_TRUE(ts.contains("cancelled_at"));
    }
  }
  EXPECT_GT(submitted_then_filled, 0) << listed.out;
  EXPECT_GT(cancelled, 0) << listed.out;
}

TEST_F(CliTest, DemoRefusesToOverwriteAJournal) {
  const std::string journal = (dir_ / "exists.db").string();
  std::FILE* f = std::fopen(journal.c_str(), "w");
  std::fputs("precious", f);
  std::fclose(f);
  const auto r = run_backstop("demo --for 1s --journal " + journal);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("already exists"), std::string::npos) << r.out;
}

TEST_F(CliTest, EveryCommandHasHelpAndBadInputGivesOneLine) {
  for (const char* cmd : {"--help", "demo --help", "orders --help"}) {
    const auto r = run_backstop(cmd);
    EXPECT_EQ(r.exit_code, 0) << cmd;
    EXPECT_NE(r.out.find("usage: backstop"), std::string::npos) << cmd;
  }
  auto r = run_backstop("demo --for soon");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("malformed duration \"soon\""), std::string::npos) << r.out;
  r = run_backstop("orders --journal " + (dir_ / "missing.db").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("no such file"), std::string::npos) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "one line: " << r.out;
  r = run_backstop("frobnicate");
  EXPECT_EQ(r.exit_code, 2);
  r = run_backstop("demo --faults sometimes --journal " + (dir_ / "x.db").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("unknown fault profile \"sometimes\""), std::string::npos) << r.out;
}

// Config `runtime`: the loop's thread is pinned where asked, and a CPU the machine lacks stops the
// run before anything is sent, naming the key.
TEST_F(CliTest, RunPlacesTheLoopThreadOrNamesTheBadCpu) {
  std::ifstream in(std::string(EXAMPLES_DIR) + "/sim.json");
  nlohmann::json cfg = nlohmann::json::parse(in, nullptr, true, /*ignore_comments=*/true);
  const auto write = [&](int cpu) {
    cfg["runtime"] = {{"loop_cpu", cpu}};
    const auto path = dir_ / ("cpu" + std::to_string(cpu) + ".json");
    std::ofstream(path) << cfg.dump();
    return path.string();
  };
  auto r = run_backstop("run --config " + write(1023) + " --for 1s --journal " + (dir_ / "a.db").string());
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("runtime.loop_cpu: CPU 1023 does not exist"), std::string::npos) << r.out;
  // A CPU this process may use (a container may not allow every CPU the machine has).
  cpu_set_t allowed;
  ASSERT_EQ(sched_getaffinity(0, sizeof allowed, &allowed), 0);
  int cpu = 0;
  while (cpu < CPU_SETSIZE - 1 && !CPU_ISSET(cpu, &allowed)) ++cpu;
  r = run_backstop("run --verbose --config " + write(cpu) + " --for 1s --journal " + (dir_ / "b.db").string());
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("event loop pinned to CPU " + std::to_string(cpu)), std::string::npos) << r.out;
}

// Found by the chaos test: `backstop run` ignored SIGTERM while it connected and recovered (up to
// 15 s + 120 s), so the driver's SIGTERM waited out its 10 s and ended in SIGKILL. Here the
// broker's gateway refuses every connection: start-up would wait its 15 s and exit 1 ("did not
// connect"); the signal after 2 s ends it at once, exit 0, with no order sent.
TEST_F(CliTest, RunStopsOnASignalDuringStartUp) {
  std::ifstream in(std::string(EXAMPLES_DIR) + "/ibkr-emulated.json");
  nlohmann::json cfg = nlohmann::json::parse(in, nullptr, true, /*ignore_comments=*/true);
  // A loopback port nothing listens on: bound, never listened to, closed.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int port = ntohs(addr.sin_port);
  ::close(fd);
  for (auto& b : cfg["brokers"]) b["base_url"] = "http://127.0.0.1:" + std::to_string(port) + "/v1/api";
  const auto path = dir_ / "unreachable.json";
  std::ofstream(path) << cfg.dump();
  // timeout(1) sends SIGTERM after 2 s; --preserve-status returns backstop's own exit status.
  auto r = testing_support::run_command("timeout --preserve-status -s TERM 2 " + std::string(BACKSTOP_PATH) +
                                        " run --config " + path.string() + " --journal " + (dir_ / "j.db").string());
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("stopped during start-up: no order was sent"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("did not connect"), std::string::npos) << r.out;
}

// The same demo through the real adapters, against each broker's protocol emulator started by
// the demo on the loopback port its example config names.
TEST_F(CliTest, DemoRunsThroughEachAdapterAgainstItsEmulator) {
  // (config, the final position line: each broker of the route, then Backstop's own record)
  const std::vector<std::pair<std::string, std::string>> runs = {
      {"tradestation-emulated.json", "Position at the broker: ts: flat   (Backstop's record: flat)"},
      {"ibkr-emulated.json", "Position at the broker: ib: flat   (Backstop's record: flat)"},
      // Both emulators at once: every order of the strategy at both brokers.
      {"dual-run-emulated.json", "Position at the broker: ib: flat ts: flat   (Backstop's record: flat)"},
  };
  for (const auto& [config, position_line] : runs) {
    const std::string journal = (dir_ / (config + ".db")).string();
    const auto demo = run_backstop("demo --for 8s --config " + std::string(EXAMPLES_DIR) + "/" + config + " --journal " +
                               journal);
    ASSERT_EQ(demo.exit_code, 0) << config << "\n" << demo.out;
    EXPECT_NE(demo.out.find(position_line), std::string::npos) << config << "\n" << demo.out;
    const auto listed = run_backstop("orders --json --journal " + journal);
    ASSERT_EQ(listed.exit_code, 0) << listed.out;
    EXPECT_FALSE(nlohmann::json::parse(listed.out).empty()) << config;
  }
}
