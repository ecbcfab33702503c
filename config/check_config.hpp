#pragma once
// `backstop check-config FILE...`: validates config files and prints every problem found.
#include <iosfwd>

namespace backstop {

// argv[0] is the command's name (e.g. "check-config"); the rest are its arguments.
// Exit status: 0 all files valid, 1 some file has errors, 2 usage error.
int check_config_main(int argc, char** argv);
// Same, writing results to `out` and usage errors to `err` (for tests and embedding).
int check_config_main(int argc, char** argv, std::ostream& out, std::ostream& err);

}  // namespace backstop
