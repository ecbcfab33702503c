#pragma once
// Private to brokers/net: the Beast/Asio includes and the pieces the three clients share.
// Never include this from a public header (a Beast TU takes ~20 s to compile).
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "brokers/net/common.hpp"
#include "core/error.hpp"

namespace backstop::net::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;
using SteadyTime = std::chrono::steady_clock::time_point;

// One io_context on its own thread. stop_and_join() must run before anything the handlers touch
// is destroyed; handlers never run afterwards (pending ones are destroyed with the io_context).
class IoThread {
 public:
  explicit IoThread(std::string name);
  ~IoThread() { stop_and_join(); }
  IoThread(const IoThread&) = delete;
  IoThread& operator=(const IoThread&) = delete;

  asio::io_context& context() { return ioc_; }
  bool in_this_thread() const { return std::this_thread::get_id() == thread_.get_id(); }
  void stop_and_join();

 private:
  asio::io_context ioc_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::string name_;
  std::thread thread_;
};

}  // namespace backstop::net::detail

namespace backstop::net {
class LoopIo;
}  // namespace backstop::net

namespace backstop::net::detail {

// The io_context a LoopIo runs on the event loop's thread.
asio::io_context& context_of(LoopIo& io);

// The SSL_CTX built from TlsOptions, and the per-connection checks around the handshake.
class TlsContext {
 public:
  // Throws ConfigError when a CA or pinned certificate file cannot be loaded.
  TlsContext(const TlsOptions& options, std::string name);

  ssl::context& context() { return ctx_; }
  // Before the handshake: SNI, the name the certificate must carry, and the loud warning when
  // verification is off. Returns false with `error` set when OpenSSL refuses.
  bool prepare(SSL* ssl, const std::string& host, const std::string& where, std::string& error) const;
  // After the handshake: with a pin, the peer's leaf must be exactly the pinned certificate.
  bool check_pin(SSL* ssl, std::string& error) const;
  // Why OpenSSL refused the peer's certificate, if it did ("" otherwise).
  static std::string verify_failure(SSL* ssl);

 private:
  TlsOptions options_;
  std::string name_;
  ssl::context ctx_;
  std::shared_ptr<X509> pinned_;
};

// The transport of one client connection: TCP, or TLS over TCP, chosen once at construction.
// HttpClient's connections and HttpStream's runs both carry one.
struct ClientStream {
  ClientStream(asio::io_context& ioc, TlsContext* tls_context) {
    if (tls_context != nullptr) {
      tls.emplace(ioc, tls_context->context());
    } else {
      plain.emplace(ioc);
    }
  }
  beast::tcp_stream& tcp() { return tls ? beast::get_lowest_layer(*tls) : *plain; }
  // Calls f with whichever stream is in use (Beast's async operations are templates on it).
  template <class F>
  void with_stream(F&& f) {
    if (tls) {
      f(*tls);
    } else {
      f(*plain);
    }
  }

  std::optional<beast::tcp_stream> plain;
  std::optional<TlsStream> tls;
};

struct OpenResult {
  bool ok = false;
  bool timed_out = false;
  std::string error;  // one line: "connect 127.0.0.1:5000: Connection refused"
};

// Resolves url's host, connects `connection` and, when `tls` is given, performs the client handshake,
// all before `deadline`. Nothing of the caller's request has been written when this fails.
// `keepalive` is held until `done` runs (it owns the streams).
void async_open(asio::io_context& ioc, const Url& url, TlsContext* tls_context,
                beast::tcp_stream& connection, TlsStream* tls, SteadyTime deadline,
                std::shared_ptr<void> keepalive, std::function<void(OpenResult)> done);

// "Connection refused", "certificate verify failed (self-signed certificate)", ...
std::string describe(const beast::error_code& ec);

}  // namespace backstop::net::detail
