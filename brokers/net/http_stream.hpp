#pragma once
// A long-lived streaming GET (TradeStation chunked JSON streams): reports the status line first,
// then hands over body bytes as they arrive, until the server ends the body, an error, the
// inactivity timeout, or close().
//
//   net::HttpStream::Options o;
//   o.base_url = "https://sim-api.tradestation.com/v3";
//   o.post = [&loop](auto f) { loop.post(std::move(f)); };
//   net::HttpStream stream(std::move(o));
//   net::JsonObjectSplitter splitter;
//   stream.start("/brokerage/stream/accounts/123/orders", {{"Authorization", "Bearer " + token}},
//                {.on_status = [](int status, const net::Headers&) { ... },
//                 .on_data = [&](std::string_view bytes) {
//                   splitter.feed(bytes, [&](std::string_view object) { handle(object); });
//                 },
//                 .on_end = [&](const net::StreamEnd& end) { schedule_reconnect(end); }});
//
// No reconnect policy here: on on_end the adapter decides, then calls start() again (with a fresh
// token; reset its splitter). close() (any thread) ends the current run and suppresses every
// further callback of that run, on_end included: the caller already knows why it ended.
// Bodies of non-2xx answers are delivered through on_data too, then on_end.
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "brokers/net/common.hpp"
#include "brokers/net/json_object_splitter.hpp"

namespace backstop::net {

struct StreamEnd {
  enum class Reason {
    ended_by_server,     // the body ended cleanly (or the server closed the connection)
    inactivity_timeout,  // no byte for Options::inactivity_timeout
    connect_failed,      // resolve, connect or TLS handshake failed; nothing was sent
    error,               // read/write error, malformed HTTP
  };
  Reason reason = Reason::error;
  int status = 0;  // HTTP status if the status line was read, else 0
  std::string message;
};
const char* to_string(StreamEnd::Reason r);

struct HttpStreamHandlers {
  std::function<void(int status, const Headers& headers)> on_status;  // once, before any data
  std::function<void(std::string_view bytes)> on_data;  // view valid during the call only
  std::function<void(const StreamEnd& end)> on_end;     // once per run, unless close()
};

class HttpStream {
 public:
  struct Options {
    std::string base_url;
    TlsOptions tls;
    PostFn post;  // where handlers run; empty: on the I/O thread
    std::string name = "stream";
    std::chrono::milliseconds connect_timeout{10'000};  // until the status line
    std::chrono::milliseconds inactivity_timeout{30'000};
    std::string user_agent = "backstop";
  };

  // Throws ConfigError for a bad base URL or unreadable certificate files.
  explicit HttpStream(Options options);
  ~HttpStream();  // closes
  HttpStream(const HttpStream&) = delete;
  HttpStream& operator=(const HttpStream&) = delete;

  // Starts a run (closing any current one first). Thread-safe.
  void start(std::string target, Headers headers, HttpStreamHandlers handlers);
  // Ends the current run; no callback of that run is delivered after close() returns (one
  // already executing on another thread may finish). Thread-safe, idempotent.
  void close();
  // True between start() and the run's end (as seen from the I/O thread).
  bool running() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace backstop::net
