#pragma once
// The floor for the adapters' submit-to-ack benchmarks: a bare, synchronous Boost.Beast HTTP/1.1
// client. One persistent connection with TCP_NODELAY, http::write then http::read on the calling
// thread; no pool, no I/O thread, no timers, no callbacks. Whatever an adapter costs above this
// on the same request to the same emulator is the adapter's (and net::HttpClient's) overhead.
//
// Benchmarks only: it throws on any error, and it does not verify the TLS peer (the handshake
// happens once, outside the timed loop, so verification would not change the figure).
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace backstop::bench {

class MinimalBeastClient {
 public:
  using Response = boost::beast::http::response<boost::beast::http::string_body>;
  using Headers = std::vector<std::pair<std::string, std::string>>;

  MinimalBeastClient(std::string host, std::uint16_t port, bool tls)
      : host_(std::move(host)), port_(std::to_string(port)), tls_(tls) {
    ssl_ctx_.set_verify_mode(boost::asio::ssl::verify_none);
    open();
  }

  ~MinimalBeastClient() { close(); }
  MinimalBeastClient(const MinimalBeastClient&) = delete;
  MinimalBeastClient& operator=(const MinimalBeastClient&) = delete;

  Response request(boost::beast::http::verb verb, const std::string& target, const Headers& headers = {},
                   std::string body = {}) {
    namespace http = boost::beast::http;
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, host_ + ":" + port_);
    for (const auto& [name, value] : headers) req.set(name, value);
    req.body() = std::move(body);
    req.keep_alive(true);
    req.prepare_payload();
    if (!open_) open();
    boost::beast::error_code ec;
    Response res = exchange(req, ec);
    if (ec && reused_) {
      // The server closed the idle keep-alive connection between two requests (both emulators
      // time idle connections out): reconnect and send again. Only a benchmark may do this
      // blindly for a POST: both emulators answer every request they have read.
      open();
      res = exchange(req, ec);
    }
    if (ec) throw std::runtime_error("minimal Beast client: " + target + ": " + ec.message());
    // Connection: close (cpp-httplib does it every keep_alive_max_count requests): the next
    // request needs a new connection, exactly as it does for the adapter's client.
    if (res.keep_alive()) {
      reused_ = true;
    } else {
      close();
    }
    return res;
  }

  std::uint64_t connections_opened() const { return opened_; }
  // Asynchronous writes and reads, completed by io_context::run() on the calling thread.
  void use_async(bool on) { async_ = on; }

 private:
  template <class Request>
  Response exchange(const Request& req, boost::beast::error_code& ec) {
    namespace http = boost::beast::http;
    Response res;
    auto run = [&](auto& stream) {
      if (!async_) {
        http::write(stream, req, ec);
        if (!ec) http::read(stream, buffer_, res, ec);
        return;
      }
      // The same exchange as Asio completions run by this thread (no other thread involved).
      http::async_write(stream, req, [&](boost::beast::error_code wec, std::size_t) {
        ec = wec;
        if (!ec) http::async_read(stream, buffer_, res, [&](boost::beast::error_code rec, std::size_t) { ec = rec; });
      });
      ioc_.restart();
      ioc_.run();
    };
    if (tls_) {
      run(*tls_stream_);
    } else {
      run(*plain_);
    }
    return res;
  }

  void open() {
    namespace asio = boost::asio;
    using tcp = asio::ip::tcp;
    close();
    tcp::resolver resolver(ioc_);
    const auto endpoints = resolver.resolve(host_, port_);
    buffer_.clear();
    if (tls_) {
      tls_stream_.emplace(ioc_, ssl_ctx_);
      asio::connect(tls_stream_->next_layer(), endpoints);
      // Requests are single small writes that must leave at once; never wait for an ACK.
      tls_stream_->next_layer().set_option(tcp::no_delay(true));
      tls_stream_->handshake(asio::ssl::stream_base::client);
    } else {
      plain_.emplace(ioc_);
      asio::connect(*plain_, endpoints);
      plain_->set_option(tcp::no_delay(true));
    }
    open_ = true;
    reused_ = false;
    ++opened_;
  }

  void close() {
    boost::beast::error_code ignored;
    if (tls_stream_) {
      tls_stream_->next_layer().close(ignored);  // no close_notify: the benchmark is over
      tls_stream_.reset();
    }
    if (plain_) {
      plain_->close(ignored);
      plain_.reset();
    }
    open_ = false;
  }

  std::string host_, port_;
  bool tls_;
  boost::asio::io_context ioc_;
  boost::asio::ssl::context ssl_ctx_{boost::asio::ssl::context::tls_client};
  std::optional<boost::asio::ip::tcp::socket> plain_;
  // beast::ssl_stream, not asio's ssl::stream: it coalesces Beast's header and body buffers into one
  // TLS record, as net::HttpClient's TlsStream does.
  std::optional<boost::beast::ssl_stream<boost::asio::ip::tcp::socket>> tls_stream_;
  boost::beast::flat_buffer buffer_;
  bool open_ = false;
  bool reused_ = false;
  bool async_ = false;
  std::uint64_t opened_ = 0;
};

}  // namespace backstop::bench
