// The `backstop` command line.
#include <iostream>
#include <map>
#include <vector>

#include "apps/cli.hpp"
#include "apps/commands.hpp"
#include "brokers/tradestation/ts_auth.hpp"
#include "config/check_config.hpp"
#include "emulators/ibkr/ibkr_gateway_emulator.hpp"
#include "emulators/tradestation/tradestation_emulator.hpp"
#include "core/error.hpp"

namespace {
constexpr const char* kUsage = R"(usage: backstop COMMAND [OPTIONS]

Commands:
  demo          run a bracket strategy on the simulated venue with faults and print a summary
  run           run the configured strategies on their routes until stopped
  orders        list the orders of a journal (--json for scripts)
  compare       compare brokers' reliability from a journal (table, JSON or HTML)
  check-config  validate config files without connecting anything
  emulate       serve an emulated broker on loopback: `emulate tradestation|ibkr --help`
  auth          first authorization with a broker: `auth tradestation --config FILE`

Run `backstop COMMAND --help` for a command's options.
)";
}  // namespace

int main(int argc, char** argv) {
  using Command = int (*)(backstop::cli::Args&);
  const std::map<std::string, Command> commands = {
      {"demo", backstop::demo_main},
      {"run", backstop::run_main},
      {"orders", backstop::orders_main},
      {"compare", backstop::compare_main},
  };
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h" ||
      std::string(argv[1]) == "help") {
    std::cout << kUsage;
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  // check-config parses its own arguments (it is also a standalone tool).
  if (name == "check-config") return backstop::check_config_main(argc - 1, argv + 1);
  if (name == "auth") {
    if (argc > 2 && std::string(argv[2]) == "tradestation") return auth_tradestation_main(argc - 2, argv + 2);
    std::cerr << "backstop auth: name a broker: tradestation (IBKR logs in through its gateway's web page)\n";
    return 2;
  }
  if (name == "emulate") {
    const std::string which = argc > 2 ? argv[2] : "";
    // Each emulator parses its own options; its argv[0] is the command as the user typed it.
    std::string self = "backstop emulate " + which;
    std::vector<char*> rest = {self.data()};
    for (int i = 3; i < argc; ++i) rest.push_back(argv[i]);
    rest.push_back(nullptr);
    const int n = static_cast<int>(rest.size()) - 1;
    if (which == "tradestation") return backstop::tradestation_emulator::run_tradestation_emulator(n, rest.data());
    if (which == "ibkr") return backstop::run_ibkr_emulator(n, rest.data());
    std::cerr << "backstop emulate: name a broker: tradestation or ibkr (e.g. backstop emulate ibkr --help)\n";
    return 2;
  }
  auto it = commands.find(name);
  if (it == commands.end()) {
    std::cerr << "backstop: unknown command \"" << name << "\" (run backstop --help)\n";
    return 2;
  }
  backstop::cli::Args args(argc, argv, 2);
  try {
    return it->second(args);
  } catch (const backstop::cli::UsageError& e) {
    std::cerr << "backstop " << name << ": " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "backstop " << name << ": " << e.what() << "\n";
    return 1;
  }
}
