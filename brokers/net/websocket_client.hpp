#pragma once
// WebSocket client (ws:// or wss://), for the IBKR gateway's /v1/api/ws.
//
//   net::WebSocketClient::Options o;
//   o.url = "wss://127.0.0.1:5000/v1/api/ws";
//   o.headers = {{"Cookie", "api={\"session\":\"" + session + "\"}"}};
//   o.tls.pinned_cert_file = cert_path;
//   o.post = [&loop](auto f) { loop.post(std::move(f)); };
//   net::WebSocketClient ws(std::move(o));
//   ws.connect({.on_open = [&] { ... wait for the system/success frame before subscribing ... },
//               .on_message = [&](std::string_view text) { ... },
//               .on_close = [&](const net::WebSocketClose& c) { ... reconnect policy ... }});
//   ws.send("tic");
//
// Like HttpStream: no reconnect policy; close() suppresses every further callback of that
// connection; connect() again to restart (after on_close or close()).
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "brokers/net/common.hpp"

namespace backstop::net {

struct WebSocketClose {
  enum class Reason {
    closed_by_server,  // a close frame or EOF from the server; code/text when a frame came
    idle_timeout,      // nothing received for Options::idle_timeout (keep-alive pings unanswered)
    connect_failed,    // resolve, connect, TLS or WebSocket handshake failed
    error,
  };
  Reason reason = Reason::error;
  int code = 0;  // WebSocket close code when the server sent one
  std::string message;
};
const char* to_string(WebSocketClose::Reason r);

struct WebSocketHandlers {
  std::function<void()> on_open;
  std::function<void(std::string_view message)> on_message;  // text or binary payload
  std::function<void(const WebSocketClose& close)> on_close;  // once per connection, unless close()
};

class WebSocketClient {
 public:
  struct Options {
    std::string url;  // ws://host:port/path or wss://host:port/path?query
    Headers headers;  // added to the upgrade request (Cookie, Authorization)
    TlsOptions tls;
    PostFn post;  // where handlers run; empty: on the I/O thread
    std::string name = "ws";
    std::chrono::milliseconds connect_timeout{10'000};  // whole opening handshake
    // Zero: none. Otherwise the connection ends when nothing arrives for this long; with
    // keepalive_pings a ping goes out after half of it so a healthy idle server answers.
    std::chrono::milliseconds idle_timeout{0};
    bool keepalive_pings = true;
    std::string user_agent = "backstop";
  };

  // Throws ConfigError for a bad URL or unreadable certificate files.
  explicit WebSocketClient(Options options);
  ~WebSocketClient();  // closes
  WebSocketClient(const WebSocketClient&) = delete;
  WebSocketClient& operator=(const WebSocketClient&) = delete;

  // Opens a connection (closing any current one first). Thread-safe.
  void connect(WebSocketHandlers handlers);
  // Queues a text message; messages go out in order. False when no connection is open or
  // opening (the message is dropped). Thread-safe.
  bool send(std::string text);
  // Sends a close frame and tears down; no further callback of this connection is delivered.
  // Thread-safe, idempotent.
  void close();
  bool is_open() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace backstop::net
