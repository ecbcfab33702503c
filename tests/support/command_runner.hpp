#pragma once
// Runs a command line through the shell and collects what it printed, for the suites that test
// the built `backstop` binary end to end (tests/apps, tests/reliability).
#include <string>

namespace backstop::testing_support {

struct CommandResult {
  int exit_code = -1;  // -1 when the command did not exit normally (killed by a signal)
  std::string out;
};

enum class Stderr { merged, discarded };

// `command` is passed to /bin/sh as is; with Stderr::discarded only stdout is collected (for
// output that must parse on its own, such as JSON).
CommandResult run_command(const std::string& command, Stderr err = Stderr::merged);

}  // namespace backstop::testing_support
