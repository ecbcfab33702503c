#include "brokers/net/websocket_client.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <deque>
#include <mutex>

#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include "brokers/net/detail/asio.hpp"
#include "core/utf8.hpp"

namespace backstop::net {

using namespace detail;
namespace websocket = boost::beast::websocket;

const char* to_string(WebSocketClose::Reason r) {
  switch (r) {
    case WebSocketClose::Reason::closed_by_server: return "closed_by_server";
    case WebSocketClose::Reason::idle_timeout: return "idle_timeout";
    case WebSocketClose::Reason::connect_failed: return "connect_failed";
    case WebSocketClose::Reason::error: return "error";
  }
  return "?";
}

namespace {

// What WebSocketClient needs from a session, whatever its transport.
struct WsSession {
  virtual ~WsSession() = default;
  virtual void start() = 0;
  virtual void send(std::string text) = 0;
  virtual void close() = 0;  // close frame, then tear down
  virtual void abort() = 0;  // tear down now

  std::shared_ptr<WebSocketHandlers> handlers;
  std::shared_ptr<std::atomic<bool>> live = std::make_shared<std::atomic<bool>>(true);
  std::atomic<bool> open{false};
  std::atomic<bool> ended{false};
};

struct SessionContext {
  const WebSocketClient::Options& options;
  const Url& url;
  TlsContext* tls_context;
  asio::io_context& ioc;
};

template <class Ws>
class Session final : public WsSession, public std::enable_shared_from_this<Session<Ws>> {
 public:
  template <class... Args>
  Session(SessionContext c, Args&&... args) : ctx_(c), ws_(std::forward<Args>(args)...) {}

  void start() override {
    if (!live->load()) return;
    const SteadyTime deadline = std::chrono::steady_clock::now() + ctx_.options.connect_timeout;
    TlsStream* tls = nullptr;
    if constexpr (std::is_same_v<Ws, websocket::stream<TlsStream>>) tls = &ws_.next_layer();
    auto self = this->shared_from_this();
    async_open(ctx_.ioc, ctx_.url, ctx_.tls_context, beast::get_lowest_layer(ws_), tls, deadline,
               self, [this, self, deadline](OpenResult r) {
                 if (!r.ok) return end(WebSocketClose::Reason::connect_failed, 0, r.error);
                 handshake(deadline);
               });
  }

  void send(std::string text) override {
    outbox_.push_back(std::move(text));
    if (outbox_.size() == 1 && open.load()) write_next();
  }

  void close() override {
    if (!open.load() || closing_) return abort();
    closing_ = true;
    ws_.async_close(websocket::close_code::normal,
                    [self = this->shared_from_this()](const beast::error_code&) { self->abort(); });
  }

  void abort() override {
    if (ended.exchange(true)) return;
    open = false;
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).socket().shutdown(tcp::socket::shutdown_both, ignored);
    beast::get_lowest_layer(ws_).close();
  }

 private:
  void handshake(SteadyTime deadline) {
    // From here Beast's own WebSocket timeouts rule, not the TCP stream's.
    beast::get_lowest_layer(ws_).expires_never();
    websocket::stream_base::timeout t{};
    t.handshake_timeout = std::max<std::chrono::steady_clock::duration>(
        deadline - std::chrono::steady_clock::now(), std::chrono::milliseconds(1));
    t.idle_timeout = ctx_.options.idle_timeout.count() > 0
                         ? std::chrono::steady_clock::duration(ctx_.options.idle_timeout)
                         : websocket::stream_base::none();
    t.keep_alive_pings = ctx_.options.keepalive_pings && ctx_.options.idle_timeout.count() > 0;
    ws_.set_option(t);
    ws_.set_option(websocket::stream_base::decorator(
        [headers = ctx_.options.headers, agent = ctx_.options.user_agent](websocket::request_type& req) {
          req.set(http::field::user_agent, agent);
          for (const Header& h : headers) req.insert(h.name, h.value);
        }));
    std::string target = ctx_.url.target.empty() ? "/" : ctx_.url.target;
    ws_.async_handshake(ctx_.url.host_header(), target,
                        [self = this->shared_from_this()](const beast::error_code& ec) {
                          self->on_handshake(ec);
                        });
  }

  void on_handshake(const beast::error_code& ec) {
    if (ec) return end(WebSocketClose::Reason::connect_failed, 0, "WebSocket handshake: " + describe(ec));
    if (!live->load()) return abort();
    open = true;
    spdlog::info("{}: WebSocket open to {}{}", ctx_.options.name, ctx_.url.origin(),
                 loggable_target(ctx_.url.target));
    deliver([h = handlers] {
      if (h->on_open) h->on_open();
    });
    if (!outbox_.empty()) write_next();
    read();
  }

  void read() {
    ws_.async_read(inbox_, [self = this->shared_from_this()](const beast::error_code& ec, std::size_t) {
      self->on_read(ec);
    });
  }

  void on_read(const beast::error_code& ec) {
    if (ec) {
      if (ec == websocket::error::closed) {
        const auto& reason = ws_.reason();
        // The peer's own bytes: valid UTF-8 before they reach a message (core/utf8.hpp).
        std::string message = "close frame: " + std::string(reason.reason.c_str());
        make_valid_utf8(message);
        return end(WebSocketClose::Reason::closed_by_server, static_cast<int>(reason.code), std::move(message));
      }
      if (ec == beast::error::timeout) {
        return end(WebSocketClose::Reason::idle_timeout, 0,
                   "nothing received for " + std::to_string(ctx_.options.idle_timeout.count()) + " ms");
      }
      if (ec == asio::error::eof || ec == ssl::error::stream_truncated) {
        return end(WebSocketClose::Reason::closed_by_server, 0, "connection closed without a close frame");
      }
      return end(WebSocketClose::Reason::error, 0, describe(ec));
    }
    deliver([h = handlers, text = beast::buffers_to_string(inbox_.data())] {
      if (h->on_message) h->on_message(text);
    });
    inbox_.consume(inbox_.size());
    read();
  }

  void write_next() {
    ws_.text(true);
    ws_.async_write(asio::buffer(outbox_.front()),
                    [self = this->shared_from_this()](const beast::error_code& ec, std::size_t) {
                      if (ec) return self->end(WebSocketClose::Reason::error, 0, "write: " + describe(ec));
                      self->outbox_.pop_front();
                      if (!self->outbox_.empty()) self->write_next();
                    });
  }

  template <class F>
  void deliver(F f) {
    auto task = [l = live, f = std::move(f)]() mutable {
      if (l->load()) f();
    };
    if (ctx_.options.post) {
      ctx_.options.post(std::move(task));
    } else {
      task();
    }
  }

  void end(WebSocketClose::Reason reason, int code, std::string message) {
    const bool first = !ended.load();
    abort();
    if (!first || !live->load()) return;
    spdlog::warn("{}: WebSocket {}{} closed ({}): {}", ctx_.options.name, ctx_.url.origin(),
                 loggable_target(ctx_.url.target), to_string(reason), message);
    deliver([h = handlers, c = WebSocketClose{reason, code, std::move(message)}] {
      if (h->on_close) h->on_close(c);
    });
  }

  SessionContext ctx_;
  Ws ws_;
  beast::flat_buffer inbox_;
  std::deque<std::string> outbox_;
  bool closing_ = false;
};

}  // namespace

struct WebSocketClient::Impl {
  explicit Impl(Options o)
      : options(std::move(o)),
        url(Url::parse(options.url)),
        tls_context(url.tls() ? std::make_unique<TlsContext>(options.tls, options.name) : nullptr),
        io(options.name) {
    if (url.scheme != "ws" && url.scheme != "wss") {
      throw ConfigError("WebSocketClient: URL must be ws:// or wss://: " + options.url);
    }
  }
  ~Impl() {
    close();
    io.stop_and_join();
  }

  void close() {
    std::shared_ptr<WsSession> s;
    {
      std::lock_guard lock(mutex);
      s = std::move(current);
    }
    if (!s) return;
    s->live->store(false);
    asio::post(io.context(), [s] { s->close(); });
  }

  std::shared_ptr<WsSession> make_session() {
    SessionContext c{options, url, tls_context.get(), io.context()};
    if (tls_context) {
      return std::make_shared<Session<websocket::stream<TlsStream>>>(c, io.context(),
                                                                      tls_context->context());
    }
    return std::make_shared<Session<websocket::stream<beast::tcp_stream>>>(c, io.context());
  }

  Options options;
  Url url;
  std::unique_ptr<TlsContext> tls_context;
  IoThread io;
  std::mutex mutex;
  std::shared_ptr<WsSession> current;
};

WebSocketClient::WebSocketClient(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {}
WebSocketClient::~WebSocketClient() = default;

void WebSocketClient::connect(WebSocketHandlers handlers) {
  impl_->close();
  auto s = impl_->make_session();
  s->handlers = std::make_shared<WebSocketHandlers>(std::move(handlers));
  {
    std::lock_guard lock(impl_->mutex);
    impl_->current = s;
  }
  asio::post(impl_->io.context(), [s] { s->start(); });
}

bool WebSocketClient::send(std::string text) {
  std::shared_ptr<WsSession> s;
  {
    std::lock_guard lock(impl_->mutex);
    s = impl_->current;
  }
  if (!s || s->ended.load()) return false;
  asio::post(impl_->io.context(), [s, t = std::move(text)]() mutable { s->send(std::move(t)); });
  return true;
}

void WebSocketClient::close() { impl_->close(); }

bool WebSocketClient::is_open() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->current && impl_->current->open.load() && !impl_->current->ended.load();
}

}  // namespace backstop::net
