#pragma once
// Small helpers shared by the `backstop` subcommands: argument reading with clear errors.
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/clock.hpp"

namespace backstop::cli {

// A bad command line; main prints "backstop <cmd>: <message>" and exits 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Args {
 public:
  Args(int argc, char** argv, int first) : args_(argv + first, argv + argc) {}
  bool flag(const std::string& name);  // removes it when present
  std::optional<std::string> value(const std::string& name);  // --name VALUE or --name=VALUE
  std::vector<std::string> positional() const { return args_; }
  // Fails on anything not consumed by flag()/value().
  void expect_no_more() const;

 private:
  std::vector<std::string> args_;
};

// "20s", "1500ms", "2m", "1h" -> nanoseconds. Throws UsageError naming the text.
Duration parse_duration(const std::string& text);

}  // namespace backstop::cli
