#pragma once
// The `backstop` subcommands. Each returns the process exit code; a bad command line throws
// cli::UsageError (exit 2), any other error is printed in one line by main (exit 1).
#include "apps/cli.hpp"

namespace backstop {

int demo_main(cli::Args& args);
int run_main(cli::Args& args);
int orders_main(cli::Args& args);
int compare_main(cli::Args& args);

}  // namespace backstop
