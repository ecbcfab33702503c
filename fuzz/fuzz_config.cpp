// Config loader (config/: load_config_text). A config is untrusted text a person typed.
// Properties:
//  - load_config_text never throws: every problem becomes an issue with a message;
//  - ok() exactly when there are no issues; value() throws ConfigError exactly when not ok;
//  - loading is deterministic (the same text gives the same issues);
//  - a syntax error is one whole-file issue with a line and column.
#include <cstdint>
#include <string>

#include "config/config.hpp"
#include "fuzz/fuzz_support.hpp"

using namespace backstop;
using backstop::fuzz::printable;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  LoadOptions options;
  // A fixed environment: ${TS_KEY} and friends expand; anything else is unset.
  options.env = [](const std::string& name) -> std::optional<std::string> {
    if (name == "TS_KEY" || name == "TS_SECRET" || name == "IBKR_ACCOUNT") return "value-of-" + name;
    if (name == "EMPTY") return std::string();
    return std::nullopt;
  };
  LoadResult r;
  try {
    r = load_config_text(text, "<fuzz>", options);
  } catch (const std::exception& e) {
    FUZZ_CHECK(false, "load_config_text threw: %s", printable(e.what()).c_str());
  }
  FUZZ_CHECK(r.ok() == r.issues.empty(), "ok() %d with %zu issues", r.ok(), r.issues.size());
  for (const auto& issue : r.issues) FUZZ_CHECK(!issue.message.empty(), "issue at %s without a message", issue.path.c_str());
  bool threw = false;
  try {
    (void)r.value();
  } catch (const ConfigError&) {
    threw = true;
  }
  FUZZ_CHECK(threw != r.ok(), "value() %s for a result with %zu issues", threw ? "threw" : "returned", r.issues.size());
  if (r.issues.size() == 1 && r.issues[0].path.empty() && r.issues[0].message.rfind("line ", 0) == 0)
    FUZZ_CHECK(r.issues[0].message.find(", column ") != std::string::npos, "syntax error without a column");

  const LoadResult again = load_config_text(text, "<fuzz>", options);
  FUZZ_CHECK(again.issues == r.issues, "loading the same text twice gave different issues");
  return 0;
}
