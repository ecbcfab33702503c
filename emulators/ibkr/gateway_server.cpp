// Transport for the IBKR gateway emulator: one Boost.Beast server on one port, HTTPS (or plain
// HTTP) plus the WebSocket upgrade at /v1/api/ws, all on a single io_context thread. Behaviour
// lives in GatewayCore; this file only moves bytes.
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <deque>
#include <fstream>
#include <thread>
#include <type_traits>

#include "core/cpu_affinity.hpp"
#include "core/error.hpp"
#include "emulators/ibkr/gateway_core.hpp"
#include "emulators/ibkr/ibkr_gateway_emulator.hpp"
#include "brokers/net/test_certificate.hpp"

namespace backstop {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using ibkr_emulator::GatewayCore;

namespace {

using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

template <class Stream>
constexpr bool kIsTls = std::is_same_v<Stream, TlsStream>;

template <class Stream>
class WsSession : public std::enable_shared_from_this<WsSession<Stream>> {
 public:
  WsSession(Stream&& stream, GatewayCore& core) : ws_(std::move(stream)), core_(core) {}

  void run(http::request<http::string_body> req) {
    cookie_ = std::string(req[http::field::cookie]);
    beast::get_lowest_layer(ws_).expires_never();
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_.async_accept(req, [self = this->shared_from_this()](beast::error_code ec) { self->on_accept(ec); });
  }

 private:
  // The core's handle on this socket. It may outlive the session, hence the weak pointer.
  struct Peer final : ibkr_emulator::WsPeer {
    std::weak_ptr<WsSession> session;
    void send(std::string text) override {
      if (auto s = session.lock())
        asio::post(s->ws_.get_executor(), [s, t = std::move(text)]() mutable { s->enqueue(std::move(t)); });
    }
    void close() override {
      if (auto s = session.lock()) asio::post(s->ws_.get_executor(), [s] { s->begin_close(); });
    }
  };

  void on_accept(beast::error_code ec) {
    if (ec) return;
    auto peer = std::make_shared<Peer>();
    peer->session = this->shared_from_this();
    handle_ = core_.ws_open(peer, cookie_);
    if (handle_ == 0) {
      begin_close();
      return;
    }
    do_read();
  }

  void do_read() {
    ws_.async_read(buffer_, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) {
        self->core_.ws_closed(self->handle_);
        return;
      }
      std::string text = beast::buffers_to_string(self->buffer_.data());
      self->buffer_.consume(self->buffer_.size());
      self->core_.ws_text(self->handle_, text);
      self->do_read();
    });
  }

  void enqueue(std::string text) {
    if (closing_) return;
    queue_.push_back(std::move(text));
    if (!writing_) write_next();
  }

  void write_next() {
    writing_ = true;
    ws_.text(true);
    ws_.async_write(asio::buffer(queue_.front()), [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return;
      self->queue_.pop_front();
      if (!self->queue_.empty()) {
        self->write_next();
        return;
      }
      self->writing_ = false;
      if (self->close_after_write_) self->begin_close();
    });
  }

  void begin_close() {
    if (closing_) return;
    if (writing_) {  // one write at a time: close once the queue drains
      close_after_write_ = true;
      return;
    }
    closing_ = true;
    ws_.async_close(websocket::close_code::going_away, [self = this->shared_from_this()](beast::error_code) {});
  }

  websocket::stream<Stream> ws_;
  GatewayCore& core_;
  beast::flat_buffer buffer_;
  std::string cookie_;
  std::uint64_t handle_ = 0;
  std::deque<std::string> queue_;
  bool writing_ = false;
  bool closing_ = false;
  bool close_after_write_ = false;
};

template <class Stream>
class HttpSession : public std::enable_shared_from_this<HttpSession<Stream>> {
 public:
  template <class... Args>
  HttpSession(GatewayCore& core, tcp::socket&& socket, Args&... args)
      : stream_(std::move(socket), args...), core_(core), delay_timer_(stream_.get_executor()) {}

  void run() {
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(30));
    if constexpr (kIsTls<Stream>) {
      stream_.async_handshake(ssl::stream_base::server, [self = this->shared_from_this()](beast::error_code ec) {
        if (!ec) self->do_read();
      });
    } else {
      do_read();
    }
  }

 private:
  void do_read() {
    req_ = {};
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(120));
    http::async_read(stream_, buffer_, req_, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
      self->on_read(ec);
    });
  }

  void on_read(beast::error_code ec) {
    if (ec) {
      do_shutdown();
      return;
    }
    const std::string target(req_.target());
    if (websocket::is_upgrade(req_) && target.rfind("/v1/api/ws", 0) == 0) {
      if (!core_.logged_in()) {
        // No gateway login at all: refuse the upgrade like any other API call.
        respond(ibkr_emulator::HttpResponse{401, "application/json", "", {}, {}});
        return;
      }
      std::make_shared<WsSession<Stream>>(std::move(stream_), core_)->run(std::move(req_));
      return;
    }
    ibkr_emulator::HttpRequest r;
    r.method = std::string(req_.method_string());
    r.target = target;
    for (const auto& f : req_) {
      std::string name(f.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      r.headers[name] = std::string(f.value());
    }
    r.body = req_.body();
    respond(core_.handle(r));
  }

  void respond(ibkr_emulator::HttpResponse r) {
    auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(r.status), req_.version());
    res->set(http::field::server, "Backstop IBKR gateway emulator");
    res->set(http::field::content_type, r.content_type);
    for (const auto& [k, v] : r.headers) res->set(k, v);
    res->keep_alive(req_.keep_alive());
    res->body() = std::move(r.body);
    res->prepare_payload();
    if (r.delay.count() > 0) {
      delay_timer_.expires_after(r.delay);
      delay_timer_.async_wait([self = this->shared_from_this(), res](beast::error_code) { self->write(res); });
    } else {
      write(res);
    }
  }

  void write(std::shared_ptr<http::response<http::string_body>> res) {
    http::async_write(stream_, *res, [self = this->shared_from_this(), res](beast::error_code ec, std::size_t) {
      if (ec || !res->keep_alive()) {
        self->do_shutdown();
        return;
      }
      self->do_read();
    });
  }

  void do_shutdown() {
    if constexpr (kIsTls<Stream>) {
      beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(2));
      stream_.async_shutdown([self = this->shared_from_this()](beast::error_code) {});
    } else {
      beast::error_code ec;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    }
  }

  Stream stream_;
  GatewayCore& core_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> req_;
  asio::steady_timer delay_timer_;
};

}  // namespace

struct IbkrGatewayEmulator::Impl {
  explicit Impl(IbkrEmulatorOptions o) : options(std::move(o)), core(options) {}

  IbkrEmulatorOptions options;
  GatewayCore core;
  net::SelfSignedPem cert;  // PEM, generated at start-up: no key material is ever committed
  ssl::context ssl_ctx{ssl::context::tls_server};
  // Declared after the core and TLS context so that pending sessions die first.
  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  asio::steady_timer poll_timer{ioc};
  std::thread thread;
  std::uint16_t port = 0;
  bool running = false;

  void accept() {
    acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec) return;  // acceptor closed
      // Without TCP_NODELAY, a small write waits (Nagle) until the previous one is ACKed, and a
      // client that is only reading delays its ACK by 40 ms. That hit the first response of every
      // TLS connection (queued behind the TLS 1.3 session tickets written just before it) and
      // back-to-back WebSocket frames. Each of our writes is a whole message: send it at once.
      beast::error_code nodelay_ec;
      socket.set_option(tcp::no_delay(true), nodelay_ec);
      if (options.tls)
        std::make_shared<HttpSession<TlsStream>>(core, std::move(socket), ssl_ctx)->run();
      else
        std::make_shared<HttpSession<PlainStream>>(core, std::move(socket))->run();
      accept();
    });
  }

  void poll() {
    // Timers (cancels landing, ready frames, heartbeats, market ticks) at 10 ms resolution.
    poll_timer.expires_after(std::chrono::milliseconds(10));
    poll_timer.async_wait([this](beast::error_code ec) {
      if (ec) return;
      core.poll();
      poll();
    });
  }
};

std::vector<IbkrEmulatorContract> default_ibkr_emulator_contracts() {
  IbkrEmulatorContract aapl;
  aapl.conid = 265598;  // AAPL's real conid (SPEC229 examples)
  aapl.symbol = aapl.venue_symbol = "AAPL";
  aapl.sec_type = "STK";
  aapl.exchange = "NASDAQ";
  aapl.listing_exchange = "NASDAQ.NMS";
  aapl.company_name = "APPLE INC";
  aapl.start_price = Price::parse("190.00");

  IbkrEmulatorContract msft = aapl;
  msft.conid = 272093;
  msft.symbol = msft.venue_symbol = "MSFT";
  msft.company_name = "MICROSOFT CORP";
  msft.start_price = Price::parse("420.00");

  IbkrEmulatorContract es;
  es.conid = 495512557;  // E-mini S&P 500 front month; underlying index conid 11004968 [SPEC229]
  es.symbol = "ES";
  es.venue_symbol = "ES-2026-12";
  es.sec_type = "FUT";
  es.exchange = "CME";
  es.listing_exchange = "CME";
  es.company_name = "E-mini S&P 500";
  es.tick = Price::parse("0.25");
  es.multiplier = 50;
  es.expiry = "20261218";
  es.underlying_conid = 11004968;
  es.start_price = Price::parse("6000.00");
  return {aapl, msft, es};
}

IbkrGatewayEmulator::IbkrGatewayEmulator(IbkrEmulatorOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

IbkrGatewayEmulator::~IbkrGatewayEmulator() { stop(); }

void IbkrGatewayEmulator::start(std::uint16_t port) {
  Impl& i = *impl_;
  if (i.running) return;
  if (i.options.tls) {
    // The real gateway serves HTTPS with a self-signed certificate (api-notes IBKR.md 1.0).
    i.cert = net::make_self_signed_pem("Backstop IBKR emulator");
    i.ssl_ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3);
    i.ssl_ctx.use_certificate_chain(asio::buffer(i.cert.cert_pem));
    i.ssl_ctx.use_private_key(asio::buffer(i.cert.key_pem), ssl::context::pem);
    if (!i.options.cert_pem_path.empty()) {
      std::ofstream out(i.options.cert_pem_path, std::ios::trunc);
      out << i.cert.cert_pem;
      if (!out) throw Error("cannot write certificate to " + i.options.cert_pem_path);
    }
  }
  const tcp::endpoint ep(asio::ip::make_address(i.options.bind_address), port);
  i.acceptor.open(ep.protocol());
  i.acceptor.set_option(asio::socket_base::reuse_address(true));
  i.acceptor.bind(ep);
  i.acceptor.listen();
  i.port = i.acceptor.local_endpoint().port();
  i.accept();
  i.poll();
  i.running = true;
  i.thread = std::thread([&i] {
    unpin_this_thread();  // in process with `backstop run --emulate`: not on a pinned loop's CPU
    i.ioc.run();
  });
}

std::uint16_t IbkrGatewayEmulator::port() const { return impl_->port; }

void IbkrGatewayEmulator::stop() {
  Impl& i = *impl_;
  if (!i.running) return;
  i.running = false;
  asio::post(i.ioc, [&i] {
    beast::error_code ec;
    i.acceptor.close(ec);
    i.poll_timer.cancel();
  });
  i.ioc.stop();
  if (i.thread.joinable()) i.thread.join();
}

std::string IbkrGatewayEmulator::base_url() const {
  return std::string(impl_->options.tls ? "https://" : "http://") + impl_->options.bind_address + ":" +
         std::to_string(impl_->port);
}

const std::string& IbkrGatewayEmulator::certificate_pem() const { return impl_->cert.cert_pem; }
void IbkrGatewayEmulator::login() { impl_->core.login(); }
void IbkrGatewayEmulator::logout() { impl_->core.logout(); }
void IbkrGatewayEmulator::expire_session() { impl_->core.expire_session("in-process expire_session()"); }
void IbkrGatewayEmulator::set_quote(std::int64_t conid, std::optional<Price> bid, std::optional<Price> ask,
                                    std::optional<Price> last) {
  if (auto why = impl_->core.set_quote(conid, bid, ask, last); !why.empty()) throw Error(why);
}
void IbkrGatewayEmulator::set_fault_profile(const FaultProfile& profile) { impl_->core.set_fault_profile(profile); }
std::vector<FaultRecord> IbkrGatewayEmulator::fault_log() const { return impl_->core.fault_log(); }
std::string IbkrGatewayEmulator::log_json() const { return impl_->core.log().dump(2); }

}  // namespace backstop
