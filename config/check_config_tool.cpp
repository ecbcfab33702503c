// Standalone `backstop-check-config FILE...`, for CI and scripts; the same command is
// `backstop check-config` in the main binary.
#include "config/check_config.hpp"

int main(int argc, char** argv) {
  // Report the command under the name users type in the main binary.
  char name[] = "check-config";
  if (argc > 0) argv[0] = name;
  return backstop::check_config_main(argc, argv);
}
