// `backstop emulate tradestation ...`: runs the emulator in the foreground until SIGINT/SIGTERM.
#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>

#include "core/error.hpp"
#include "emulators/tradestation/tradestation_emulator.hpp"

namespace backstop::tradestation_emulator {

namespace {

constexpr const char* kUsage = R"(usage: backstop emulate tradestation [options]
  --port N                 listen port (default 8000; 0 = ephemeral)
  --host H                 listen address (default 127.0.0.1)
  --tls                    serve HTTPS with a self-signed certificate made at start-up
  --faults SPEC            fault profile: none|demo|ghost_stops|lossy_stream|chaos, optionally
                           followed by key=value overrides: demo,ts_goaway=0.01,ack_delay_ms=200
  --seed S                 seed of the random walk and of fault injection (default 1)
  --symbols A,B            symbols to emulate (default AAPL,ESZ26; ESZ26-style names are futures)
  --tick-ms N              random-walk tick interval, 0 = prices move only via /__emulator/quote
                           (default 500)
  --heartbeat-ms N         idle interval before a stream heartbeat (default 5000)
  --client-id ID           accepted OAuth client id (default backstop-emulator)
  --client-secret S        accepted client secret (default backstop-emulator-secret)
  --refresh-token T        initial refresh token (default backstop-emulator-refresh-token)
  --rotate-refresh-tokens  every refresh returns a new refresh token and retires the old one
  --token-lifetime-s N     access-token lifetime (default 1200)
  --replace-new-order-id   a replace places the change as a new order (a new OrderID in the
                           answer) and ends the old one UCH (Replaced); default: changed in place
  --state FILE             keep the broker-side state (orders, positions, cash, logs, tokens) in
                           FILE: restored at start when it exists, written before every answer
                           that shows a change, so the emulator survives kill -9 and a restart
)";

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    auto end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace

int run_tradestation_emulator(int argc, char** argv) {
  Options opt;
  opt.tick_interval = std::chrono::milliseconds(500);
  int port = 8000;
  int i = 1;
  // The lead's dispatcher may pass the whole command line.
  while (i < argc && (std::string(argv[i]) == "emulate" || std::string(argv[i]) == "tradestation"))
    ++i;
  try {
    for (; i < argc; ++i) {
      const std::string arg = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw ConfigError(arg + " needs a value");
        return argv[++i];
      };
      if (arg == "--help" || arg == "-h") {
        std::cout << kUsage;
        return 0;
      } else if (arg == "--port")
        port = std::stoi(value());
      else if (arg == "--host")
        opt.host = value();
      else if (arg == "--tls")
        opt.tls = true;
      else if (arg == "--replace-new-order-id")
        opt.replace_assigns_new_order_id = true;
      else if (arg == "--faults")
        opt.faults = parse_fault_spec(value());
      else if (arg == "--seed")
        opt.seed = std::stoull(value());
      else if (arg == "--symbols") {
        opt.symbols.clear();
        for (const auto& s : split_list(value())) opt.symbols.push_back(symbol_from_name(s));
      } else if (arg == "--tick-ms")
        opt.tick_interval = std::chrono::milliseconds(std::stoll(value()));
      else if (arg == "--heartbeat-ms")
        opt.heartbeat_interval = std::chrono::milliseconds(std::stoll(value()));
      else if (arg == "--client-id")
        opt.client_id = value();
      else if (arg == "--client-secret")
        opt.client_secret = value();
      else if (arg == "--refresh-token")
        opt.refresh_token = value();
      else if (arg == "--rotate-refresh-tokens")
        opt.rotate_refresh_tokens = true;
      else if (arg == "--state")
        opt.state_file = value();
      else if (arg == "--token-lifetime-s")
        opt.access_token_lifetime = std::chrono::seconds(std::stoll(value()));
      else
        throw ConfigError("unknown option " + arg);
    }
  } catch (const std::exception& e) {
    std::cerr << "backstop emulate tradestation: " << e.what() << "\n" << kUsage;
    return 2;
  }

  // Block the signals before any server thread starts, so that only sigwait() sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  TradeStationEmulator emulator(opt);
  try {
    emulator.start(port);
  } catch (const std::exception& e) {
    std::cerr << "backstop emulate tradestation: " << e.what() << "\n";
    return 1;
  }
  std::cout << "TradeStation v3 emulator on " << emulator.base_url() << "\n"
            << "  token URL     " << emulator.base_url() << "/oauth/token\n"
            << "  authorize URL " << emulator.base_url() << "/authorize\n"
            << "  API base      " << emulator.base_url() << "/v3\n"
            << "  client_id     " << opt.client_id << "\n"
            << "  client_secret " << opt.client_secret << "\n"
            << "  refresh_token " << opt.refresh_token << "\n"
            << "  faults        " << opt.faults.name << "\n"
            << "  state         "
            << (opt.state_file.empty() ? std::string("in memory only") : opt.state_file.string())
            << "\n"
            << "  control       " << emulator.base_url()
            << "/__emulator/{log,faults,quote,goaway}\n";
  if (opt.tls) std::cout << emulator.certificate_pem();
  std::cout.flush();
  int sig = 0;
  sigwait(&signals, &sig);
  std::cout << "stopping (signal " << sig << ")\n";
  emulator.stop();
  return 0;
}

}  // namespace backstop::tradestation_emulator
