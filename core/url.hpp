#pragma once
// URLs as Backstop takes them: scheme://host[:port][/path][?query]. One parser for every user: the
// config's broker settings take the narrow form (http or https, no query: a base URL with a query
// is a mistake in the file, not a feature) and the network clients a wider one (ws and wss too, a
// query kept in the target). Never credentials (they would end up in logs) nor a fragment.
#include <optional>
#include <string>
#include <string_view>

namespace backstop {

struct Url {
  std::string scheme;  // "http", "https" (and "ws", "wss" where UrlForm::websocket), lower case
  std::string host;    // lower case; IPv6 literals without brackets
  int port = 0;        // explicit port, or the scheme's default (80 / 443)
  std::string path;    // "" or starting with '/'
  std::string query;   // "" or starting with '?' (only where UrlForm::query)

  bool tls() const { return scheme == "https" || scheme == "wss"; }
  bool is_loopback() const;
};

// What a caller accepts beyond scheme://host[:port][/path] over http or https.
struct UrlForm {
  bool websocket = false;  // ws:// and wss://
  bool query = false;      // a ?query after the path
};

// Parses `text`; on failure returns nullopt and sets `why` to a reason that does not repeat the
// text (the caller decides whether the value may be shown).
std::optional<Url> parse_url(std::string_view text, std::string* why = nullptr, UrlForm form = {});

// "localhost", 127.0.0.0/8 and ::1: addresses that never leave the machine.
bool is_loopback_host(std::string_view host);

}  // namespace backstop
