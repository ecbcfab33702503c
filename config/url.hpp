#pragma once
// The one URL form broker settings accept: scheme://host[:port][/path]. Narrow on purpose: a
// base URL with credentials, a query or a fragment is a mistake in this file, not a feature.
#include <optional>
#include <string>
#include <string_view>

namespace backstop {

struct Url {
  std::string scheme;  // "http" or "https", lower case
  std::string host;    // lower case; IPv6 literals without brackets
  int port = 0;        // explicit port, or the scheme's default (80 / 443)
  std::string path;    // "" or starting with '/'

  bool is_https() const { return scheme == "https"; }
  bool is_loopback() const;
};

// Parses `text`; on failure returns nullopt and sets `why` to a reason that does not repeat the
// text (the caller decides whether the value may be shown).
std::optional<Url> parse_url(std::string_view text, std::string* why = nullptr);

// "localhost", 127.0.0.0/8 and ::1: addresses that never leave the machine.
bool is_loopback_host(std::string_view host);

}  // namespace backstop
