#pragma once
// Types shared by the network clients (HttpClient, HttpStream, WebSocketClient): URLs, headers,
// TLS options and the delivery hook that lands completions on the caller's thread.
//
//   net::TlsOptions tls;                       // verification on, system CA store
//   tls.pinned_cert_file = "/etc/backstop/ibkr-gateway.pem";   // IBKR gateway self-signed cert
//   net::PostFn post = [&loop](auto f) { loop.post(std::move(f)); };
//
// No Beast or Asio here: this header is included widely.
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"  // constructors throw ConfigError

namespace backstop::net {

// Hands a completion to the thread that owns the caller's state (EventLoop::post). When empty,
// completions run directly on the client's I/O thread: they must not block, and must not destroy
// the client that called them (it cannot join its own thread).
using PostFn = std::function<void(std::function<void()>)>;

struct Header {
  std::string name;
  std::string value;
};
using Headers = std::vector<Header>;

// Case-insensitive lookup (HTTP header names are case-insensitive); the first match wins.
const std::string* find_header(const Headers& headers, std::string_view name);

// Header names whose values must never reach a log line.
bool is_secret_header(std::string_view name);

// Strips the query string, which can carry tokens (`?oauth_token=`), so targets are safe to log.
std::string_view loggable_target(std::string_view target);

struct TlsOptions {
  // Verification is on unless insecure_skip_verify. The default trust store is the system's.
  // ca_file: trust exactly the CAs in this PEM file instead of the system store.
  std::string ca_file;
  // pinned_cert_file: accept exactly this leaf certificate (PEM) and nothing else, whoever signed
  // it and whatever names it carries. For the IBKR gateway's self-signed certificate.
  std::string pinned_cert_file;
  // Accept any certificate. Every connection made with it logs a warning; never for real money.
  bool insecure_skip_verify = false;
};

// An http(s):// or ws(s):// URL. Throws ConfigError when it cannot be parsed.
struct Url {
  std::string scheme;  // http, https, ws or wss
  std::string host;    // without IPv6 brackets
  std::string port;    // always set (scheme default when absent)
  std::string target;  // path and query as written, without a trailing '/'; may be empty

  bool tls() const { return scheme == "https" || scheme == "wss"; }
  // host[:port] for the Host header (port omitted when it is the scheme's default).
  std::string host_header() const;
  std::string origin() const;  // scheme://host:port, for log lines

  static Url parse(std::string_view text);
};

}  // namespace backstop::net
