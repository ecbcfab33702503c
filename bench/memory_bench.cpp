// Memory: resident size with 10,000 working orders, measured two ways.
//  - BM_SessionResidentWithWorkingOrders: a trading session in this process, in the shape
//    `backstop run` builds (journal, OrderManager, BrokerHealth, Router, StopGuard, SimBroker
//    venue), on a manual clock: nothing waits, only the memory is of interest. Counters read from
//    /proc/self/status (VmRSS now, VmHWM peak), before and after.
//  - BM_BackstopRunResidentWithWorkingOrders: the product itself. `backstop run` (the program
//    built beside this one) is started on a journal holding the working orders and on the
//    simulated venue's state file holding the same orders as resting (what a restart with that
//    many orders out finds: recovery resolves every one at the broker, the stop guard watches the
//    stops, reconciliation compares them every second), and its /proc/<pid>/status is sampled
//    while it runs.
#include <benchmark/benchmark.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "brokers/sim/sim_broker.hpp"
#include "brokers/sim/state_file.hpp"
#include "routing/router.hpp"
#include "routing/stop_guard.hpp"

using namespace backstop;
namespace fs = std::filesystem;

namespace {

// kB of a /proc/<pid>/status field ("VmRSS", "VmHWM"); 0 once the process is gone.
double status_kib(const std::string& field, const std::string& pid = "self") {
  std::ifstream in("/proc/" + pid + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0) return std::stod(line.substr(field.size() + 1));
  return 0;
}

// A trading session in the shape `backstop run` builds (journal, OrderManager, BrokerHealth,
// Router, StopGuard, SimBroker venue) on a manual clock, and `working` orders placed through it:
// half resting limit buys, half sell stops (each watched by the guard), all far below the market
// (`highest` and the 500 ticks under it), so that none fills or triggers.
struct SessionWithOrders {
  SessionWithOrders(const std::string& journal_path, const std::string& route_name)
      : faults(FaultProfile{}, 1),
        venue(clock, faults),
        loop(clock),
        sim(options(), loop, venue),
        journal(journal_path),
        ids("MEM"),
        orders(loop, journal, ids),
        health(loop, journal),
        router(loop, orders, health, journal, risk(), {{"AAPL", aapl()}}),
        guard(loop, orders, journal, {}, {{"AAPL", aapl()}}),
        route(route_name) {
    orders.add_broker(sim);
    RouteConfig r;
    r.strategy = route_name;
    r.brokers = {"sim"};
    router.add_route(r);
    venue.add_instrument("AAPL", TickSize(Price::parse("0.01")));
    Quote q;
    q.symbol = "AAPL";
    q.bid = Price::parse("100.00");
    q.ask = Price::parse("100.02");
    q.last = Price::parse("100.01");
    venue.on_quote(q);
    router.on_quote(q);
  }
  static SimBrokerOptions options() {
    SimBrokerOptions so;
    so.name = "sim";
    return so;
  }
  static Instrument aapl() {
    Instrument i;
    i.symbol = "AAPL";
    return i;
  }
  static RiskConfig risk() {
    RiskConfig r;
    r.max_orders_per_second = 1e12;
    return r;
  }
  // "" once all `working` are working at the venue and durable, else what went wrong.
  std::string place(int working, Price highest) {
    for (int i = 0; i < working; ++i) {
      const Price p = highest - Price::parse("0.01") * (i % 500);
      router.submit(route, i % 2 ? limit_order("AAPL", Side::buy, 1, p) : stop_order("AAPL", Side::sell, 1, p));
      if (i % 1000 == 999) {
        journal.flush();
        loop.run_until(clock.now() + 1);
      }
    }
    journal.flush();
    for (int i = 0; i < 10; ++i) loop.run_until(clock.now() + 1'000'000);
    journal.flush();
    if (orders.working_orders().size() == static_cast<std::size_t>(working)) return {};
    return "working orders: " + std::to_string(orders.working_orders().size()) + " of " + std::to_string(working);
  }

  ManualClock clock;
  FaultInjector faults;
  Venue venue;
  EventLoop loop;
  SimBroker sim;
  Journal journal;
  ClientOrderIdGenerator ids;
  OrderManager orders;
  BrokerHealth health;
  Router router;
  StopGuard guard;
  std::string route;
};

void BM_SessionResidentWithWorkingOrders(benchmark::State& state) {
  const auto working = static_cast<int>(state.range(0));
  for (auto _ : state) {
    const double before = status_kib("VmRSS");
    const std::string path =
        (fs::temp_directory_path() / ("backstop-bench-memory-" + std::to_string(::getpid()) + ".db")).string();
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(path + suffix);
    double after = 0;
    {
      SessionWithOrders s(path, "s");
      if (auto why = s.place(working, Price::parse("90.00")); !why.empty()) state.SkipWithError(why.c_str());
      after = status_kib("VmRSS");
    }
    for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(path + suffix);
    state.counters["rss_before_MiB"] = before / 1024;
    state.counters["rss_with_orders_MiB"] = after / 1024;
    state.counters["peak_MiB"] = status_kib("VmHWM") / 1024;
  }
}
BENCHMARK(BM_SessionResidentWithWorkingOrders)->Arg(10'000)->Iterations(1)->Unit(benchmark::kMillisecond);

#ifdef BACKSTOP_PROGRAM  // the product's path, given by bench/CMakeLists.txt when it is built

// A journal with `working` orders and the simulated venue's state file with the same orders
// resting, as `backstop run` keeps them for its broker "sim" (apps/session.cpp: the state file
// beside the journal). At 1.00-5.99, far from the venue's prices (its random walk starts near
// 100). Sent for a route the run's config has no strategy for: the run's strategy (a breakout
// trader) would take orders of its own route as its entries and exits again
// (StrategyRunner::adopt_recovered_orders), and cancel one as an entry that timed out.
// Returns "" or what went wrong.
std::string prepare_working_orders(const std::string& journal_path, int working) {
  SessionWithOrders s(journal_path, "resting");
  if (auto why = s.place(working, Price::parse("5.99")); !why.empty()) return why;
  write_state_file(journal_path + ".sim.broker-state.json", s.venue.save_state());
  return {};
}

std::string read_all(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The embedded default (config/examples/sim.json, read from the source tree) on this journal,
// without injected faults: the figure is the orders' memory, not a fault's.
nlohmann::json run_config(const std::string& journal_path) {
  auto config = nlohmann::json::parse(read_all(BACKSTOP_SOURCE_DIR "/config/examples/sim.json"), nullptr,
                                      /*allow_exceptions=*/true, /*ignore_comments=*/true);
  config["journal"]["path"] = journal_path;
  for (auto& broker : config["brokers"]) broker["faults"] = "none";
  return config;
}

void BM_BackstopRunResidentWithWorkingOrders(benchmark::State& state) {
  using Steady = std::chrono::steady_clock;
  const auto working = static_cast<int>(state.range(0));
  const fs::path dir = fs::temp_directory_path() / ("backstop-bench-run-memory-" + std::to_string(::getpid()));
  for (auto _ : state) {
    fs::remove_all(dir);
    fs::create_directories(dir);
    const std::string journal = (dir / "journal.db").string();
    if (auto why = prepare_working_orders(journal, working); !why.empty()) {
      state.SkipWithError(why.c_str());
      break;
    }
    const fs::path config = dir / "config.json", out = dir / "run.out", err = dir / "run.err";
    std::ofstream(config) << run_config(journal).dump(2);
    const pid_t pid = ::fork();
    if (pid == 0) {
      // The child: stdout and stderr to files, then the product.
      if (!std::freopen(out.c_str(), "w", stdout) || !std::freopen(err.c_str(), "w", stderr)) ::_exit(126);
      ::execl(BACKSTOP_PROGRAM, BACKSTOP_PROGRAM, "run", "--config", config.c_str(), "--for", "10s",
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    // Sampled every 50 ms until it exits: the largest VmRSS once it is running (after start-up:
    // recovery and the first reconciliation), and its VmHWM (the peak, start-up included).
    const std::string pid_text = std::to_string(pid);
    double rss_running = 0, hwm = 0;
    bool running = false;  // its "running;" line is out
    int status = 0;
    const auto deadline = Steady::now() + std::chrono::seconds(120);
    bool exited = false;
    while (!exited) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      const double rss = status_kib("VmRSS", pid_text), peak = status_kib("VmHWM", pid_text);
      running = running || read_all(out).find("running;") != std::string::npos;
      if (running) rss_running = std::max(rss_running, rss);
      hwm = std::max(hwm, peak);
      exited = ::waitpid(pid, &status, WNOHANG) == pid;
      if (!exited && Steady::now() > deadline) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        state.SkipWithError("backstop run did not stop within 120 s");
        break;
      }
    }
    const std::string stdout_text = read_all(out);
    // "stopped: N orders this run, W working at the brokers, G ghost stops, D divergences"
    static const std::regex kStopped(R"(stopped: \d+ orders this run, (\d+) working at the brokers, \d+ ghost stops, (\d+) divergences)");
    std::smatch m;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !std::regex_search(stdout_text, m, kStopped)) {
      const std::string why = "backstop run failed (status " + std::to_string(status) + "): " + stdout_text + read_all(err);
      state.SkipWithError(why.substr(0, 2000).c_str());
      break;
    }
    // The prepared orders ("MEM-..."), as the run left them in the journal: all still working
    // (the strategy trades beside them with orders of its own, which come and go).
    std::size_t prepared_working = 0;
    std::string first_not_working;
    for (const OrderRecord& o : Journal(journal, JournalMode::read_only).orders()) {
      if (o.spec.client_order_id.rfind("MEM-", 0) != 0) continue;
      if (is_working(o.state)) {
        ++prepared_working;
      } else if (first_not_working.empty()) {
        first_not_working = o.spec.client_order_id + " " + to_string(o.state) + ": " + o.last_message;
      }
    }
    if (prepared_working != static_cast<std::size_t>(working) || std::stoll(m[2]) != 0) {
      state.SkipWithError(("after the run: " + std::to_string(prepared_working) + " of the " +
                           std::to_string(working) + " orders working (" + first_not_working + "); " + m.str(0))
                              .c_str());
      break;
    }
    state.counters["rss_running_MiB"] = rss_running / 1024;
    state.counters["peak_MiB"] = hwm / 1024;
    state.counters["working_after_run"] = static_cast<double>(std::stoll(m[1]));
  }
  fs::remove_all(dir);
}
BENCHMARK(BM_BackstopRunResidentWithWorkingOrders)->Arg(10'000)->Iterations(1)->Unit(benchmark::kMillisecond);
#endif

}  // namespace

BENCHMARK_MAIN();
