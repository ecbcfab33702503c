#include "command_runner.hpp"

#include <sys/wait.h>

#include <array>
#include <cstdio>

namespace backstop::testing_support {

CommandResult run_command(const std::string& command, Stderr err) {
  const std::string line = command + (err == Stderr::merged ? " 2>&1" : " 2>/dev/null");
  FILE* p = ::popen(line.c_str(), "r");
  if (p == nullptr) return {-1, "cannot start: " + line};
  CommandResult r;
  std::array<char, 4096> buf{};
  while (std::size_t n = std::fread(buf.data(), 1, buf.size(), p)) r.out.append(buf.data(), n);
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace backstop::testing_support
