// Kills a trading process with SIGKILL at seeded random moments, restarts it each time, and
// checks from the venue's own record that every order it received is in the journal and that
// no order reached it twice, and that the journal opens cleanly after every kill.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "core/journal.hpp"

namespace fs = std::filesystem;
using namespace backstop;

namespace {

pid_t spawn(const std::vector<std::string>& args) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

}  // namespace

TEST(CrashTest, SigkillAtRandomMomentsLosesNothingAndSendsNothingTwice) {
  const fs::path dir = fs::temp_directory_path() / ("backstop-crash-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string journal = (dir / "journal.db").string();
  const std::string venue_log = (dir / "venue.log").string();
  const std::string worker = CRASH_WORKER_PATH;
  constexpr int kKills = 25;
  constexpr int kTargetOrders = 100000;  // more than the killed runs can reach

  std::mt19937 rng(20261124);
  std::uniform_int_distribution<int> delay_ms(10, 250);
  int killed_mid_run = 0;
  for (int i = 0; i < kKills; ++i) {
    const pid_t pid = spawn({worker, journal, venue_log, std::to_string(kTargetOrders)});
    ASSERT_GT(pid, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) ++killed_mid_run;
    ASSERT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << "worker failed on its own, exit " << WEXITSTATUS(status);
    // The journal opens cleanly (integrity check included) after every kill.
    ASSERT_NO_THROW({ Journal j(journal); }) << "after kill " << i;
  }
  EXPECT_EQ(killed_mid_run, kKills);

  // A final run that is not killed resolves every order left open by the kills.
  std::size_t final_target = 0;
  {
    Journal j(journal);
    final_target = j.orders().size() + 20;
  }
  const pid_t pid = spawn({worker, journal, venue_log, std::to_string(final_target)});
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "final run status " << status;

  std::set<std::string> received;
  std::size_t arrivals = 0, duplicates = 0;
  {
    std::ifstream in(venue_log);
    std::string line;
    while (std::getline(in, line)) {
      const auto j = nlohmann::json::parse(line);
      ++arrivals;
      if (j.at("duplicate").get<bool>()) ++duplicates;
      EXPECT_TRUE(received.insert(j.at("coid").get<std::string>()).second) << "reached the venue twice: " << line;
    }
  }
  EXPECT_EQ(duplicates, 0u);
  Journal j(journal);
  std::set<std::string> journaled;
  std::size_t open = 0;
  for (const auto& o : j.orders()) {
    journaled.insert(o.spec.client_order_id);
    open += !o.is_terminal() && o.state != OrderState::submitted;
  }
  for (const auto& coid : received) EXPECT_TRUE(journaled.count(coid)) << coid << " reached the venue but is not in the journal";
  EXPECT_EQ(open, 0u) << "every order is resolved after the clean run";
  EXPECT_GT(arrivals, 50u) << "the kills left time to trade";
  std::cout << "[crash test] " << kKills << " kills, " << arrivals << " orders reached the venue, " << journaled.size()
            << " journaled\n";
  fs::remove_all(dir);
}
