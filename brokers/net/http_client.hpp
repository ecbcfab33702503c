#pragma once
// Asynchronous HTTP/1.1 client for one origin (TCP or TLS), with keep-alive connection reuse.
//
//   net::HttpClient::Options o;
//   o.base_url = "https://127.0.0.1:5000/v1/api";
//   o.tls.pinned_cert_file = cert_path;
//   o.post = [&loop](auto f) { loop.post(std::move(f)); };
//   net::HttpClient http(std::move(o));
//   http.request({"POST", "/iserver/account/U1/orders", {{"Cookie", c}}, body, 10s},
//                [](net::HttpResult r) {
//                  if (r.ok()) { /* r.response->status, ->body: a definitive broker answer */ }
//                  else if (r.error.not_sent()) { /* Outcome::failed_locally: it never left */ }
//                  else { /* Outcome::unknown: resolve by client order id, never resend blindly */ }
//                });
//
// Targets are appended to the base URL's path ("/v1/api" + "/iserver/..."). Only method, target
// (without query) and status are logged: never header values or bodies.
// The client owns one I/O thread, or, given a LoopIo, runs on the event loop's thread (then only
// call it, and destroy it, on that thread). Destroying it drops the callbacks of unfinished
// requests without calling them; call shutdown() first to have them completed with errors instead.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "brokers/net/common.hpp"

namespace backstop::net {

class LoopIo;

// Whether a failed request can have reached the server. Drives the three-valued outcome.
enum class SendState {
  not_sent,  // resolve/connect/TLS handshake failed, or timed out while waiting for a connection:
             // the request certainly never left the process
  unknown,   // the request was written (wholly or partly), then timeout, disconnect or a garbled
             // reply: the server may have acted on it
};
const char* to_string(SendState s);

struct NetError {
  SendState state = SendState::unknown;
  bool timed_out = false;
  std::string message;  // one line: what failed and where ("connect 127.0.0.1:5000: refused")

  bool not_sent() const { return state == SendState::not_sent; }
};

struct HttpResponse {
  int status = 0;
  Headers headers;
  std::string body;

  const std::string* header(std::string_view name) const { return find_header(headers, name); }
};

// Either a complete response (any status: a 4xx/5xx is still a definitive answer) or an error.
struct HttpResult {
  std::optional<HttpResponse> response;
  NetError error;  // meaningful only when !ok()

  bool ok() const { return response.has_value(); }
};

struct HttpRequest {
  std::string method = "GET";  // GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS
  std::string target;          // appended to the base URL's path; may carry a query
  Headers headers;             // sent as given (Cookie, Authorization, Content-Type, ...)
  std::string body;            // Content-Type defaults to application/json when a body is set
  // Whole-request deadline: waiting for a connection, connecting, writing and reading.
  // Zero means Options::default_timeout.
  std::chrono::milliseconds timeout{0};
};

using ResponseCallback = std::function<void(HttpResult)>;

struct HttpClientStats {
  std::uint64_t connections_opened = 0;
  std::uint64_t requests_completed = 0;  // a response was read
  std::uint64_t requests_failed = 0;
};

class HttpClient {
 public:
  struct Options {
    std::string base_url;  // http://host:port/path or https://host:port/path
    TlsOptions tls;
    PostFn post;                  // where callbacks run; empty: on the I/O thread
    // I/O on the event loop's thread (loop_io.hpp) instead of a thread of the client's own.
    LoopIo* loop_io = nullptr;
    std::string name = "http";    // prefix of log lines ("ibkr", "tradestation")
    std::size_t max_connections = 4;
    std::chrono::milliseconds default_timeout{10'000};
    std::size_t max_body_bytes = 64u << 20;
    std::string user_agent = "backstop";
  };

  // Throws ConfigError for a bad base URL or unreadable CA / pinned certificate file.
  explicit HttpClient(Options options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Thread-safe. `done` is called exactly once (unless the client is destroyed first).
  void request(HttpRequest request, ResponseCallback done);

  // Fails every queued and in-flight request (not_sent or unknown as classified) and refuses new
  // ones with not_sent. Thread-safe; returns at once.
  void shutdown();

  HttpClientStats stats() const;
  const Url& base_url() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace backstop::net
