#include "brokers/net/common.hpp"

#include <algorithm>
#include <cctype>

#include "core/error.hpp"
#include "core/url.hpp"

namespace backstop::net {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view default_port(std::string_view scheme) {
  return (scheme == "https" || scheme == "wss") ? "443" : "80";
}

}  // namespace

const std::string* find_header(const Headers& headers, std::string_view name) {
  for (const Header& h : headers) {
    if (iequals(h.name, name)) return &h.value;
  }
  return nullptr;
}

bool is_secret_header(std::string_view name) {
  return iequals(name, "Authorization") || iequals(name, "Cookie") ||
         iequals(name, "Set-Cookie") || iequals(name, "Proxy-Authorization");
}

std::string_view loggable_target(std::string_view target) {
  return target.substr(0, target.find('?'));
}

std::string Url::host_header() const {
  const bool ipv6 = host.find(':') != std::string::npos;
  std::string h = ipv6 ? "[" + host + "]" : host;
  if (port != default_port(scheme)) h += ":" + port;
  return h;
}

std::string Url::origin() const {
  const bool ipv6 = host.find(':') != std::string::npos;
  return scheme + "://" + (ipv6 ? "[" + host + "]" : host) + ":" + port;
}

Url Url::parse(std::string_view text) {
  // The one URL parser (core/url.hpp), in its wider form: WebSocket schemes and a query.
  std::string why;
  const auto parsed = parse_url(text, &why, UrlForm{.websocket = true, .query = true});
  if (!parsed) {
    // The text is shown unless it may hold credentials (which the parser refuses anyway).
    const bool may_show = text.find('@') == std::string_view::npos;
    throw ConfigError("invalid URL" + (may_show ? " '" + std::string(text) + "'" : std::string()) + ": " + why);
  }
  Url url;
  url.scheme = parsed->scheme;
  url.host = parsed->host;
  url.port = std::to_string(parsed->port);
  std::string_view path = parsed->path;
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  url.target = std::string(path) + parsed->query;
  return url;
}

}  // namespace backstop::net
