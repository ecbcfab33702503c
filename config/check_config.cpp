#include "config/check_config.hpp"

#include <iostream>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace backstop {

namespace {

void usage(std::ostream& os, const std::string& name) {
  os << "usage: backstop " << name << " [--help] FILE...\n"
     << "\n"
     << "Checks Backstop config files: JSON syntax, types, unknown keys, ${ENV} references,\n"
     << "URLs, secret file permissions and references between sections. Prints every\n"
     << "problem as \"FILE: path: reason\".\n"
     << "\n"
     << "Exit status: 0 when every file is valid, 1 when any has errors, 2 on usage errors.\n";
}

}  // namespace

int check_config_main(int argc, char** argv, std::ostream& out, std::ostream& err) {
  const std::string name = argc > 0 && argv[0] ? argv[0] : "check-config";
  std::vector<std::string> files;
  bool options_done = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (!options_done && (arg == "--help" || arg == "-h")) {
      usage(out, name);
      return 0;
    }
    if (!options_done && arg == "--") {
      options_done = true;
      continue;
    }
    if (!options_done && arg.size() > 1 && arg[0] == '-') {
      err << name << ": unknown option " << arg << "\n";
      usage(err, name);
      return 2;
    }
    files.push_back(arg);
  }
  if (files.empty()) {
    err << name << ": no config file given\n";
    usage(err, name);
    return 2;
  }
  int status = 0;
  for (const auto& file : files) {
    const LoadResult result = load_config_file(file);
    if (result.ok()) {
      const Config& cfg = *result.config;
      out << file << ": ok (" << cfg.brokers.size() << (cfg.brokers.size() == 1 ? " broker, " : " brokers, ")
          << cfg.strategies.size() << (cfg.strategies.size() == 1 ? " strategy, " : " strategies, ")
          << cfg.routes.size() << (cfg.routes.size() == 1 ? " route)" : " routes)") << "\n";
      continue;
    }
    status = 1;
    for (const auto& issue : result.issues) out << file << ": " << issue.to_string() << "\n";
  }
  return status;
}

int check_config_main(int argc, char** argv) { return check_config_main(argc, argv, std::cout, std::cerr); }

}  // namespace backstop
