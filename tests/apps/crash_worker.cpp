// A trading process for the crash test: it submits orders to the simulated venue through the
// real OrderManager and journal until the journal holds --orders orders. The venue's record of
// what reached it is an append-only file that survives the process, so the test can kill this
// worker with SIGKILL at any instant and check, from the venue's side, that nothing was lost or
// sent twice. On start the venue is rebuilt from that file (the venue outlives its clients), and
// the journal is recovered and resolved against it before anything new is sent.
#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "brokers/sim/sim_broker.hpp"
#include "routing/order_manager.hpp"

using namespace backstop;

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: crash_worker JOURNAL VENUE_LOG TARGET_ORDERS\n";
    return 2;
  }
  const std::string journal_path = argv[1], venue_log = argv[2];
  const std::size_t target = std::stoul(argv[3]);
  spdlog::set_level(spdlog::level::err);

  SystemClock clock;
  EventLoop loop(clock);
  FaultInjector faults(FaultProfile{}, 1);
  Venue venue(clock, faults);
  venue.add_instrument("AAPL", TickSize(Price::parse("0.01")));

  // Rebuild the venue's book from its own log.
  {
    std::ifstream in(venue_log);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      const auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded()) continue;  // a torn last line cannot happen with one write(), but be safe
      if (j.value("duplicate", false)) continue;
      OrderSpec o = limit_order("AAPL", Side::buy, 1, Price::parse("1"));
      o.client_order_id = j.at("coid").get<std::string>();
      venue.submit(o);
    }
  }
  const int fd = ::open(venue_log.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (fd < 0) return 3;
  venue.set_arrival_listener([fd](const VenueArrival& a, const OrderSpec&) {
    const std::string line = nlohmann::json{{"coid", a.client_order_id}, {"duplicate", a.duplicate}}.dump() + "\n";
    // One write() per arrival: a SIGKILL cannot tear it.
    if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) std::abort();
  });

  Journal journal(journal_path);
  ClientOrderIdGenerator ids(ClientOrderIdGenerator::time_prefix(clock.now()));
  OrderManagerOptions opt;
  opt.resolve_retry_interval = std::chrono::milliseconds(1);
  opt.resolve_attempts = 2;
  OrderManager orders(loop, journal, ids, opt);
  SimBroker sim(SimBrokerOptions{}, loop, venue);
  orders.add_broker(sim);

  std::function<void()> send_next = [&] {
    if (orders.orders().size() >= target) {
      loop.stop();
      return;
    }
    orders.submit("sim", limit_order("AAPL", Side::buy, 1, Price::parse("1")),
                  [&](const CommandResult&) { loop.post(send_next); });
  };
  orders.recover([&](std::size_t, std::size_t unresolved) {
    if (unresolved != 0) {
      std::cerr << "unresolved orders after recovery\n";
      std::exit(4);
    }
    loop.post(send_next);
  });
  loop.run();
  journal.flush();
  ::close(fd);
  return 0;
}
