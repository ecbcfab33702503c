// `backstop emulate ibkr ...`: the IBKR gateway emulator as a foreground process.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <pthread.h>

#include <iostream>
#include <string>

#include "core/error.hpp"
#include "emulators/ibkr/ibkr_gateway_emulator.hpp"

namespace backstop {

namespace {
void usage(const char* argv0) {
  std::cerr << "usage: " << argv0
            << " [--port N] [--faults PROFILE] [--seed S] [--tls|--no-tls] [--tick-ms N]\n"
               "          [--cert-out PATH] [--logged-out] [--no-pacing] [--bind ADDRESS] [--state FILE]\n"
               "  Serves the IBKR Client Portal Web API under /v1/api (WebSocket /v1/api/ws) over\n"
               "  the simulated venue; test control under /__emulator (see emulators/ibkr/README.md).\n"
               "  PROFILE: none, demo, ghost_stops, lossy_stream, chaos.\n"
               "  --state FILE: keep the broker's orders, fills and logs in FILE (read back at start),\n"
               "  so the emulator can be killed and restarted like a real gateway.\n";
}
}  // namespace

int run_ibkr_emulator(int argc, char** argv) {
  IbkrEmulatorOptions options;
  options.tick_interval = std::chrono::milliseconds(250);  // a moving market by default
  std::uint16_t port = 5000;  // the real gateway's default listenPort
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw ConfigError(arg + " needs a value");
        return argv[++i];
      };
      if (arg == "--port") port = static_cast<std::uint16_t>(std::stoi(value()));
      else if (arg == "--faults") options.faults = FaultProfile::named(value());
      else if (arg == "--seed") options.seed = std::stoull(value());
      else if (arg == "--tls") options.tls = true;
      else if (arg == "--no-tls") options.tls = false;
      else if (arg == "--tick-ms") options.tick_interval = std::chrono::milliseconds(std::stoll(value()));
      else if (arg == "--cert-out") options.cert_pem_path = value();
      else if (arg == "--logged-out") options.start_logged_in = false;
      else if (arg == "--no-pacing") options.pacing = false;
      else if (arg == "--bind") options.bind_address = value();
      else if (arg == "--state") options.state_file = value();
      else if (arg == "--help" || arg == "-h") {
        usage(argv[0]);
        return 0;
      } else {
        throw ConfigError("unknown argument " + arg);
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    usage(argv[0]);
    return 2;
  }

  // Block the stop signals in every thread (the server thread inherits the mask) and wait for
  // them here.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  try {
    IbkrGatewayEmulator emulator(options);
    emulator.start(port);
    std::cout << "IBKR gateway emulator: " << emulator.base_url() << "/v1/api (faults: " << options.faults.name
              << ", seed " << options.seed << ", tick " << options.tick_interval.count() << " ms)" << std::endl;
    if (!options.cert_pem_path.empty()) std::cout << "certificate written to " << options.cert_pem_path << std::endl;
    if (!options.state_file.empty()) std::cout << "broker state kept in " << options.state_file << std::endl;
    int sig = 0;
    sigwait(&signals, &sig);
    std::cout << "stopping (signal " << sig << ")" << std::endl;
    emulator.stop();
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace backstop
