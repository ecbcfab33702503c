#include "core/url.hpp"

#include <algorithm>
#include <cctype>

namespace backstop {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool fail(std::string* why, std::string reason) {
  if (why) *why = std::move(reason);
  return false;
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

// RFC 1123 host names and dotted IPv4; anything else (spaces, underscores, empty labels) is
// more likely a typo than a host.
bool valid_hostname(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  std::size_t label = 0;
  for (std::size_t i = 0; i < host.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(host[i]);
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    if (!std::isalnum(c) && c != '-') return false;
    if (c == '-' && (label == 0 || i + 1 == host.size() || host[i + 1] == '.')) return false;
    if (++label > 63) return false;
  }
  return label != 0;
}

bool valid_ipv6(std::string_view host) {
  if (host.find(':') == std::string_view::npos) return false;
  if (!std::all_of(host.begin(), host.end(),
                   [](unsigned char c) { return std::isxdigit(c) || c == ':' || c == '.'; }))
    return false;
  const auto first = host.find("::");  // at most one "::" abbreviation
  return first == std::string_view::npos || host.find("::", first + 1) == std::string_view::npos;
}

}  // namespace

bool is_loopback_host(std::string_view host_in) {
  const std::string host = lower(host_in);
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  // 127.0.0.0/8, written as a dotted quad.
  if (host.rfind("127.", 0) != 0) return false;
  int parts = 0;
  std::size_t start = 0;
  while (start <= host.size()) {
    const auto dot = host.find('.', start);
    const auto part = std::string_view(host).substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!all_digits(part) || part.size() > 3 || std::stoi(std::string(part)) > 255) return false;
    ++parts;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts == 4;
}

bool Url::is_loopback() const { return is_loopback_host(host); }

std::optional<Url> parse_url(std::string_view text, std::string* why, UrlForm form) {
  const auto sep = text.find("://");
  if (sep == std::string_view::npos || sep == 0) {
    fail(why, "not a URL");
    return std::nullopt;
  }
  Url url;
  url.scheme = lower(text.substr(0, sep));
  const bool http = url.scheme == "http" || url.scheme == "https";
  const bool ws = url.scheme == "ws" || url.scheme == "wss";
  if (!http && !(ws && form.websocket)) {
    fail(why, "unsupported scheme \"" + url.scheme + "\", expected " +
                  (form.websocket ? "http, https, ws or wss" : "http or https"));
    return std::nullopt;
  }
  std::string_view rest = text.substr(sep + 3);
  if (std::any_of(rest.begin(), rest.end(),
                  [](unsigned char c) { return std::isspace(c) || std::iscntrl(c); })) {
    fail(why, "not a URL: contains whitespace");
    return std::nullopt;
  }
  if (rest.find('#') != std::string_view::npos) {
    fail(why, "a fragment is not allowed in a URL");
    return std::nullopt;
  }
  if (const auto q = rest.find('?'); q != std::string_view::npos) {
    if (!form.query) {
      fail(why, "a query or fragment is not allowed here");
      return std::nullopt;
    }
    url.query = std::string(rest.substr(q));
    rest = rest.substr(0, q);
  }
  const auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  url.path = slash == std::string_view::npos ? "" : std::string(rest.substr(slash));
  // Credentials in a URL end up in logs; they belong in ${ENV} settings.
  if (authority.find('@') != std::string_view::npos) {
    fail(why, "credentials in the URL are not allowed");
    return std::nullopt;
  }
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) {
      fail(why, "not a URL: unclosed IPv6 address");
      return std::nullopt;
    }
    url.host = lower(authority.substr(1, close - 1));
    const auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        fail(why, "not a URL");
        return std::nullopt;
      }
      port_text = after.substr(1);
      if (port_text.empty()) port_text = "x";  // "host:" with no port is malformed
    }
    if (!valid_ipv6(url.host)) {
      fail(why, "not a URL: bad IPv6 address");
      return std::nullopt;
    }
  } else {
    const auto colon = authority.find(':');
    url.host = lower(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty()) port_text = "x";
    }
    if (url.host.empty()) {
      fail(why, "not a URL: no host");
      return std::nullopt;
    }
    if (!valid_hostname(url.host)) {
      fail(why, "not a URL: bad host name");
      return std::nullopt;
    }
  }
  if (!port_text.empty()) {
    if (!all_digits(port_text) || port_text.size() > 5 || std::stoi(std::string(port_text)) < 1 ||
        std::stoi(std::string(port_text)) > 65535) {
      fail(why, "not a URL: port must be 1-65535");
      return std::nullopt;
    }
    url.port = std::stoi(std::string(port_text));
  } else {
    url.port = url.tls() ? 443 : 80;
  }
  return url;
}

}  // namespace backstop
