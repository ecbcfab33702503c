#include "brokers/tradestation/ts_auth.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <charconv>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "brokers/net/http_client.hpp"
#include "core/error.hpp"

namespace backstop::tradestation {

std::string form_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string url_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size()) {
      unsigned v = 0;
      if (std::sscanf(std::string(s.substr(i + 1, 2)).c_str(), "%2x", &v) == 1) {
        out += static_cast<char>(v);
        i += 2;
      } else {
        out += '%';
      }
    } else {
      out += s[i];
    }
  }
  return out;
}

std::optional<std::string> query_param(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view part = query.substr(0, amp);
    const auto eq = part.find('=');
    if (part.substr(0, eq) == key) return url_decode(eq == std::string_view::npos ? "" : part.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

std::optional<std::string> read_refresh_token(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  std::string t = ss.str();
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
  std::size_t b = 0;
  while (b < t.size() && std::isspace(static_cast<unsigned char>(t[b]))) ++b;
  t.erase(0, b);
  if (t.empty()) return std::nullopt;
  return t;
}

void write_refresh_token(const std::string& path, const std::string& token) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::string tmpl = (dir / (target.filename().string() + ".tmp.XXXXXX")).string();
  const int fd = ::mkstemp(tmpl.data());  // created 0600
  if (fd < 0) throw Error("refresh token file " + path + ": cannot create temp file: " + std::strerror(errno));
  auto fail = [&](const char* what) {
    const int e = errno;
    ::close(fd);
    ::unlink(tmpl.c_str());
    throw Error("refresh token file " + path + ": " + what + ": " + std::strerror(e));
  };
  if (::fchmod(fd, 0600) != 0) fail("chmod");
  const std::string data = token + "\n";
  std::size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write");
    }
    off += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) fail("fsync");
  ::close(fd);
  if (::rename(tmpl.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmpl.c_str());
    throw Error("refresh token file " + path + ": rename: " + std::strerror(e));
  }
  // The rename itself must survive a crash too.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

TokenResponse parse_token_response(const std::string& body) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(body);
  } catch (const std::exception&) {
    throw ParseError("token response is not JSON");
  }
  if (!j.is_object() || !j.contains("access_token") || !j["access_token"].is_string())
    throw ParseError("token response has no access_token");
  TokenResponse t;
  t.access_token = j["access_token"].get<std::string>();
  if (j.contains("refresh_token") && j["refresh_token"].is_string()) t.refresh_token = j["refresh_token"].get<std::string>();
  // The access token's life in seconds (1200 for TradeStation). Anything that is not a whole number
  // of seconds from 1 to a day is the documented default: a garbled value must neither throw past
  // the refresh's handler (std::stoll) nor overflow the nanosecond expiry computed from it.
  constexpr std::int64_t kDefaultLife = 1200, kLongestLife = 24 * 3600;
  t.expires_in = kDefaultLife;
  if (auto it = j.find("expires_in"); it != j.end()) {
    std::int64_t v = 0;
    if (it->is_number_integer()) {
      v = it->is_number_unsigned() && it->get<std::uint64_t>() > static_cast<std::uint64_t>(kLongestLife)
              ? 0
              : it->get<std::int64_t>();
    } else if (it->is_number_float()) {
      const double d = it->get<double>();
      if (d >= 1 && d <= kLongestLife) v = static_cast<std::int64_t>(d);
    } else if (it->is_string()) {
      const auto& text = it->get_ref<const std::string&>();
      const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
      if (r.ec != std::errc() || r.ptr != text.data() + text.size()) v = 0;
    }
    if (v >= 1 && v <= kLongestLife) t.expires_in = v;
  }
  return t;
}

std::string authorize_endpoint(const std::string& token_url) {
  std::string base = token_url;
  const std::string suffix = "/oauth/token";
  if (base.size() >= suffix.size() && base.compare(base.size() - suffix.size(), suffix.size(), suffix) == 0)
    base.resize(base.size() - suffix.size());
  return base + "/authorize";
}

std::string authorize_url(const TradeStationSettings& s, const std::string& state) {
  // audience is required (api-notes section 1).
  return authorize_endpoint(s.token_url) + "?response_type=code&client_id=" + form_encode(s.client_id) +
         "&audience=" + form_encode(kAudience) + "&redirect_uri=" + form_encode(s.redirect_uri) +
         "&scope=" + form_encode(kScopes) + "&state=" + form_encode(state);
}

namespace {
std::string random_state() {
  std::random_device rd;
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 32; ++i) s += hex[rd() & 15];
  return s;
}

// Synchronous POST to the token endpoint (the command line has no event loop).
net::HttpResult post_form(const TradeStationSettings& s, const std::string& body) {
  const net::Url url = net::Url::parse(s.token_url);
  net::HttpClient::Options o;
  o.base_url = url.origin();
  o.name = "tradestation-auth";
  o.tls.ca_file = s.tls.ca_file;
  o.tls.pinned_cert_file = s.tls.pinned_cert_file;
  o.tls.insecure_skip_verify = !s.tls.verifies_peer();
  net::HttpClient client(std::move(o));
  std::promise<net::HttpResult> p;
  auto f = p.get_future();
  client.request({"POST", url.target, {{"Content-Type", "application/x-www-form-urlencoded"}}, body,
                  std::chrono::seconds(30)},
                 [&p](net::HttpResult r) { p.set_value(std::move(r)); });
  return f.get();
}

void reply(int fd, int status, const std::string& text) {
  const std::string resp = "HTTP/1.1 " + std::to_string(status) + (status == 200 ? " OK" : " Bad Request") +
                           "\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: " +
                           std::to_string(text.size()) + "\r\n\r\n" + text;
  [[maybe_unused]] auto n = ::send(fd, resp.data(), resp.size(), MSG_NOSIGNAL);
}
}  // namespace

std::string authorize(const TradeStationSettings& s, const AuthorizeOptions& options) {
  if (s.refresh_token_file.empty()) return "refresh_token_file is not configured";
  net::Url redirect;
  try {
    redirect = net::Url::parse(s.redirect_uri);
  } catch (const std::exception& e) {
    return std::string("redirect_uri: ") + e.what();
  }
  // The callback carries the code: listen on loopback only.
  if (redirect.scheme != "http" || (redirect.host != "127.0.0.1" && redirect.host != "localhost"))
    return "redirect_uri must be http://127.0.0.1:PORT/... or http://localhost:PORT/... (got " + s.redirect_uri + ")";
  const std::string path = redirect.target.empty() ? "/" : redirect.target;

  const int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (lfd < 0) return std::string("socket: ") + std::strerror(errno);
  int one = 1;
  ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(std::stoi(redirect.port)));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(lfd, 4) != 0) {
    const std::string why = std::strerror(errno);
    ::close(lfd);
    return "cannot listen on " + s.redirect_uri + ": " + why;
  }
  const std::string state = random_state();
  const std::string url = authorize_url(s, state);
  if (options.on_url) options.on_url(url);
  else std::cout << "Open this URL in a browser and sign in to TradeStation:\n\n  " << url << "\n\nWaiting for the redirect to "
                 << s.redirect_uri << " ...\n" << std::flush;

  std::string code, error;
  const auto deadline = std::chrono::steady_clock::now() + options.timeout;
  while (code.empty() && error.empty()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      error = "timed out waiting for the browser redirect";
      break;
    }
    pollfd pfd{lfd, POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(std::min<long long>(left.count(), 1000))) <= 0) continue;
    const int cfd = ::accept(lfd, nullptr, nullptr);
    if (cfd < 0) continue;
    std::string req;
    char buf[4096];
    while (req.find("\r\n\r\n") == std::string::npos && req.size() < 65536) {
      pollfd cp{cfd, POLLIN, 0};
      if (::poll(&cp, 1, 2000) <= 0) break;
      const ssize_t n = ::recv(cfd, buf, sizeof buf, 0);
      if (n <= 0) break;
      req.append(buf, static_cast<std::size_t>(n));
    }
    // "GET /callback?code=...&state=... HTTP/1.1"
    const auto sp1 = req.find(' ');
    const auto sp2 = sp1 == std::string::npos ? sp1 : req.find(' ', sp1 + 1);
    if (sp2 == std::string::npos) {
      ::close(cfd);
      continue;
    }
    const std::string target = req.substr(sp1 + 1, sp2 - sp1 - 1);
    const auto q = target.find('?');
    if (target.substr(0, q) != path) {  // favicon and the like
      reply(cfd, 404, "not found\n");
      ::close(cfd);
      continue;
    }
    const std::string query = q == std::string::npos ? "" : target.substr(q + 1);
    if (query_param(query, "state").value_or("") != state) {
      // Not our request (CSRF or a stale tab): refuse it and keep waiting for the real one.
      reply(cfd, 400, "state mismatch: this is not the authorization Backstop started\n");
      ::close(cfd);
      spdlog::warn("tradestation auth: callback with a wrong state ignored");
      continue;
    }
    if (auto e = query_param(query, "error")) {
      error = "authorization refused: " + *e + " " + query_param(query, "error_description").value_or("");
      reply(cfd, 400, error + "\n");
    } else if (auto c = query_param(query, "code"); c && !c->empty()) {
      code = *c;
      reply(cfd, 200, "Backstop received the authorization; you can close this tab.\n");
    } else {
      error = "callback without code";
      reply(cfd, 400, error + "\n");
    }
    ::close(cfd);
  }
  ::close(lfd);
  if (!error.empty()) return error;

  std::string body = "grant_type=authorization_code&client_id=" + form_encode(s.client_id) +
                     "&code=" + form_encode(code) + "&redirect_uri=" + form_encode(s.redirect_uri);
  if (!s.client_secret.empty()) body += "&client_secret=" + form_encode(s.client_secret);
  const net::HttpResult r = post_form(s, body);
  if (!r.ok()) return "code exchange failed: " + r.error.message;
  if (r.response->status != 200)
    return "code exchange refused: HTTP " + std::to_string(r.response->status);  // body may echo secrets: not shown
  TokenResponse t;
  try {
    t = parse_token_response(r.response->body);
  } catch (const std::exception& e) {
    return std::string("code exchange: ") + e.what();
  }
  if (t.refresh_token.empty()) return "code exchange returned no refresh_token (is offline_access granted?)";
  try {
    write_refresh_token(s.refresh_token_file, t.refresh_token);
  } catch (const std::exception& e) {
    return e.what();
  }
  return {};
}

}  // namespace backstop::tradestation

int auth_tradestation_main(int argc, char** argv) {
  using namespace backstop;
  std::string config_path, broker_name;
  long timeout_s = 300;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "auth" || a == "tradestation") && config_path.empty()) continue;  // `backstop auth tradestation`
    if (a == "--config" && i + 1 < argc) config_path = argv[++i];
    else if (a == "--broker" && i + 1 < argc) broker_name = argv[++i];
    else if (a == "--timeout" && i + 1 < argc) {
      const std::string_view v = argv[++i];
      const auto r = std::from_chars(v.data(), v.data() + v.size(), timeout_s);
      if (r.ec != std::errc() || r.ptr != v.data() + v.size() || timeout_s <= 0) {
        std::cerr << "backstop auth tradestation: --timeout takes whole seconds above 0, got \"" << v << "\"\n";
        return 2;
      }
    }
    else if (a == "--help" || a == "-h") {
      std::cout << "usage: backstop auth tradestation --config FILE [--broker NAME] [--timeout SECONDS]\n";
      return 0;
    } else if (i > 0 || a.starts_with("-")) {
      std::cerr << "backstop auth tradestation: unknown argument " << a << "\n";
      return 2;
    }
  }
  if (config_path.empty()) {
    std::cerr << "usage: backstop auth tradestation --config FILE [--broker NAME]\n";
    return 2;
  }
  const LoadResult loaded = load_config_file(config_path);
  if (!loaded.ok()) {
    for (const auto& issue : loaded.issues) std::cerr << config_path << ": " << issue.to_string() << "\n";
    return 2;
  }
  const BrokerConfig* chosen = nullptr;
  for (const auto& b : loaded.config->brokers)
    if (b.kind == BrokerKind::tradestation && (broker_name.empty() || b.name == broker_name)) {
      chosen = &b;
      break;
    }
  if (!chosen) {
    std::cerr << config_path << ": no tradestation broker" << (broker_name.empty() ? "" : " named " + broker_name) << "\n";
    return 2;
  }
  tradestation::AuthorizeOptions o;
  o.timeout = std::chrono::seconds(timeout_s);
  const std::string err = tradestation::authorize(*chosen->tradestation(), o);
  if (!err.empty()) {
    std::cerr << "backstop auth tradestation: " << err << "\n";
    return 1;
  }
  std::cout << "Refresh token stored in " << chosen->tradestation()->refresh_token_file << " (mode 0600).\n";
  return 0;
}
