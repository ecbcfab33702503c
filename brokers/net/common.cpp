#include "brokers/net/common.hpp"

#include <algorithm>
#include <cctype>

#include "core/error.hpp"

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
  auto bad = [&](const char* why) {
    return ConfigError("invalid URL '" + std::string(text) + "': " + why);
  };
  Url url;
  const auto sep = text.find("://");
  if (sep == std::string_view::npos) throw bad("expected scheme://host[:port][/path]");
  for (char c : text.substr(0, sep)) {
    url.scheme.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  if (url.scheme != "http" && url.scheme != "https" && url.scheme != "ws" && url.scheme != "wss") {
    throw bad("scheme must be http, https, ws or wss");
  }
  std::string_view rest = text.substr(sep + 3);
  const auto slash = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, slash);
  std::string_view target = slash == std::string_view::npos ? "" : rest.substr(slash);
  if (authority.find('@') != std::string_view::npos) throw bad("credentials in URLs are not supported");
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {  // [::1]:5000
    const auto close = authority.find(']');
    if (close == std::string_view::npos) throw bad("unclosed '['");
    url.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') throw bad("junk after ']'");
      port = after.substr(1);
    }
  } else {
    const auto colon = authority.rfind(':');
    url.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (url.host.empty()) throw bad("missing host");
  if (port.empty()) port = default_port(url.scheme);
  if (!std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      port.size() > 5 || std::stoi(std::string(port)) > 65535 || std::stoi(std::string(port)) == 0) {
    throw bad("invalid port");
  }
  url.port = std::string(port);
  while (!target.empty() && target.back() == '/') target.remove_suffix(1);
  url.target = std::string(target);
  return url;
}

}  // namespace backstop::net
