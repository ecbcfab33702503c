#include "brokers/net/http_client.hpp"

#include <poll.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <vector>

#include "brokers/net/detail/asio.hpp"
#include "core/lifetime.hpp"

namespace backstop::net {

using namespace detail;

const char* to_string(SendState s) {
  switch (s) {
    case SendState::not_sent: return "not_sent";
    case SendState::unknown: return "unknown";
  }
  return "?";
}

namespace {

// One request through its life: queued, on a connection, completed.
struct Call {
  http::verb verb = http::verb::get;
  std::string method;
  std::string target;  // base path + request target
  Headers headers;
  std::string body;
  SteadyTime started;
  SteadyTime deadline;
  ResponseCallback done;
  bool retried = false;
  std::unique_ptr<asio::steady_timer> queue_timer;

  // Safe to send twice: a request lost to a stale keep-alive connection may be retried.
  bool idempotent() const {
    return verb == http::verb::get || verb == http::verb::head || verb == http::verb::options;
  }
};

struct Connection : ClientStream {
  enum class Phase { idle, connecting, writing, reading };

  using ClientStream::ClientStream;

  // An idle keep-alive connection has nothing to read; readable means the server closed it (or
  // sent junk), so it must not carry a request that cannot be retried.
  bool still_usable() {
    if (!tcp().socket().is_open()) return false;
    pollfd p{tcp().socket().native_handle(), POLLIN | POLLRDHUP, 0};
    return ::poll(&p, 1, 0) == 0;
  }

  beast::flat_buffer buffer;
  http::request<http::string_body> request;
  std::optional<http::response_parser<http::string_body>> parser;
  std::shared_ptr<Call> call;
  Phase phase = Phase::idle;
  bool open = false;
  bool reused = false;  // the current call is not this connection's first
};

}  // namespace

struct HttpClient::Impl {
  explicit Impl(Options o)
      : options(std::move(o)),
        url(Url::parse(options.base_url)),
        tls_context(url.tls() ? std::make_shared<TlsContext>(options.tls, options.name) : nullptr),
        own_io(options.loop_io == nullptr ? std::make_unique<IoThread>(options.name) : nullptr),
        ioc(own_io ? own_io->context() : context_of(*options.loop_io)) {
    if (url.scheme != "http" && url.scheme != "https") {
      throw ConfigError("HttpClient: base URL must be http:// or https://: " + options.base_url);
    }
    if (options.max_connections == 0) options.max_connections = 1;
  }

  ~Impl() {
    dropping = true;
    if (own_io) {
      own_io->stop_and_join();  // its handlers die with its io_context
      return;
    }
    // On the loop's io_context, which lives on: end every operation in progress. Their handlers
    // still run (aborted) and do nothing (`lifetime`); the connections they hold close with them.
    for (auto& conn : connections) {
      beast::error_code ignored;
      conn->tcp().socket().cancel(ignored);
      conn->tcp().close();
    }
    for (auto& call : queue)
      if (call->queue_timer) call->queue_timer->cancel();
  }

  // Every handler this client gives the io_context: with a LoopIo it may run after the client is
  // gone.
  template <typename F>
  auto guarded(F f) const {
    return lifetime.while_alive(std::move(f));
  }

  // --- any thread ---

  void deliver(std::shared_ptr<Call> call, HttpResult result) {
    if (!call->done || dropping) return;
    auto task = [done = std::move(call->done), r = std::move(result)]() mutable { done(std::move(r)); };
    if (options.post) {
      options.post(std::move(task));
    } else {
      task();
    }
  }

  // --- I/O thread from here on ---

  void fail(const std::shared_ptr<Call>& call, SendState state, bool timed_out, std::string why) {
    ++failed;
    spdlog::warn("{}: {} {} failed ({}): {}", options.name, call->method,
                 loggable_target(call->target), to_string(state), why);
    HttpResult r;
    r.error.state = state;
    r.error.timed_out = timed_out;
    r.error.message = call->method + " " + std::string(loggable_target(call->target)) + ": " + why;
    deliver(call, std::move(r));
  }

  void dispatch(std::shared_ptr<Call> call) {
    if (shut_down) return fail(call, SendState::not_sent, false, "client shut down");
    queue.push_back(call);
    pump();
    if (!call->done || std::find(queue.begin(), queue.end(), call) == queue.end()) return;
    // Still waiting for a free connection: the request's deadline covers the wait too.
    call->queue_timer = std::make_unique<asio::steady_timer>(ioc, call->deadline);
    call->queue_timer->async_wait(guarded([this, weak = std::weak_ptr<Call>(call)](const beast::error_code& ec) {
      auto c = weak.lock();
      if (ec || !c) return;
      auto it = std::find(queue.begin(), queue.end(), c);
      if (it == queue.end()) return;
      queue.erase(it);
      fail(c, SendState::not_sent, true, "no connection became free before the timeout");
    }));
  }

  // Hands queued calls to idle connections, opening new ones up to the limit.
  void pump() {
    while (!queue.empty()) {
      if (std::chrono::steady_clock::now() >= queue.front()->deadline) {
        auto call = std::move(queue.front());
        queue.pop_front();
        if (call->queue_timer) call->queue_timer->cancel();
        fail(call, SendState::not_sent, true, "no connection became free before the timeout");
        continue;
      }
      std::shared_ptr<Connection> conn = take_idle();
      if (!conn) {
        if (connections.size() >= options.max_connections) return;
        conn = std::make_shared<Connection>(ioc, tls_context.get());
        connections.push_back(conn);
      }
      auto call = std::move(queue.front());
      queue.pop_front();
      if (call->queue_timer) call->queue_timer->cancel();
      run(conn, std::move(call));
    }
  }

  std::shared_ptr<Connection> take_idle() {
    for (auto it = connections.begin(); it != connections.end();) {
      auto& c = *it;
      if (c->phase != Connection::Phase::idle || !c->open) {
        ++it;
        continue;
      }
      if (c->still_usable()) return c;
      spdlog::debug("{}: dropping a keep-alive connection the server closed", options.name);
      c->tcp().close();
      it = connections.erase(it);
    }
    return nullptr;
  }

  void discard(const std::shared_ptr<Connection>& conn) {
    beast::error_code ignored;
    conn->tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
    conn->tcp().close();
    conn->open = false;
    conn->call.reset();
    auto it = std::find(connections.begin(), connections.end(), conn);
    if (it != connections.end()) connections.erase(it);
  }

  void run(const std::shared_ptr<Connection>& conn, std::shared_ptr<Call> call) {
    conn->call = std::move(call);
    if (conn->open) {
      conn->reused = true;
      conn->tcp().expires_at(conn->call->deadline);
      return write(conn);
    }
    conn->reused = false;
    conn->phase = Connection::Phase::connecting;
    // The TLS context is kept alive with the connection: the opening may outlive the client.
    async_open(ioc, url, tls_context.get(), conn->tcp(), conn->tls ? &*conn->tls : nullptr, conn->call->deadline,
               std::make_shared<std::pair<std::shared_ptr<Connection>, std::shared_ptr<TlsContext>>>(conn, tls_context),
               guarded([this, conn](OpenResult r) {
                 auto c = conn->call;
                 if (r.ok && shut_down) {
                   r.ok = false;
                   r.error = "client shut down";
                 }
                 if (!r.ok) {
                   discard(conn);
                   fail(c, SendState::not_sent, r.timed_out, r.error);
                   return pump();
                 }
                 conn->open = true;
                 ++connections_opened;
                 write(conn);
               }));
  }

  void write(const std::shared_ptr<Connection>& conn) {
    Call& call = *conn->call;
    auto& req = conn->request;
    req = {};
    req.version(11);
    req.method(call.verb);
    req.target(call.target);
    req.set(http::field::host, url.host_header());
    req.set(http::field::user_agent, options.user_agent);
    for (const Header& h : call.headers) req.insert(h.name, h.value);
    if (!call.body.empty() && find_header(call.headers, "Content-Type") == nullptr) {
      req.set(http::field::content_type, "application/json");
    }
    req.body() = std::move(call.body);
    req.keep_alive(true);
    req.prepare_payload();
    conn->phase = Connection::Phase::writing;
    conn->with_stream([&](auto& stream) {
      http::async_write(stream, req, guarded([this, conn](const beast::error_code& ec, std::size_t written) {
                          on_written(conn, ec, written);
                        }));
    });
  }

  void on_written(const std::shared_ptr<Connection>& conn, const beast::error_code& ec,
                  std::size_t written) {
    if (ec) {
      auto call = conn->call;
      discard(conn);
      const bool stale = conn->reused && written == 0;
      if (stale && call->idempotent() && !call->retried) return retry(call);
      // Not one byte accepted by the socket: the server cannot have seen the request.
      fail(call, written == 0 ? SendState::not_sent : SendState::unknown,
           ec == beast::error::timeout, "write: " + describe(ec));
      return pump();
    }
    conn->phase = Connection::Phase::reading;
    conn->parser.emplace();
    conn->parser->header_limit(64 * 1024);
    conn->parser->body_limit(options.max_body_bytes);
    if (conn->call->verb == http::verb::head) conn->parser->skip(true);
    conn->with_stream([&](auto& stream) {
      http::async_read(stream, conn->buffer, *conn->parser,
                       guarded([this, conn](const beast::error_code& rec, std::size_t) { on_read(conn, rec); }));
    });
  }

  void retry(const std::shared_ptr<Call>& call) {
    spdlog::debug("{}: {} {}: keep-alive connection was stale, retrying on a new one",
                  options.name, call->method, loggable_target(call->target));
    call->retried = true;
    queue.push_front(call);
    pump();
  }

  void on_read(const std::shared_ptr<Connection>& conn, const beast::error_code& ec) {
    auto call = conn->call;
    if (ec) {
      const bool got_some = conn->parser->got_some();
      discard(conn);
      // A keep-alive connection the server closed just as we reused it: the request hit a closed
      // socket. Only safe to send again when sending twice does no harm.
      const bool stale = conn->reused && !got_some &&
                         (ec == http::error::end_of_stream || ec == asio::error::connection_reset ||
                          ec == asio::error::eof || ec == ssl::error::stream_truncated);
      if (stale && call->idempotent() && !call->retried) return retry(call);
      fail(call, SendState::unknown, ec == beast::error::timeout,
           (got_some ? "reading the response: " : "waiting for the response: ") + describe(ec));
      return pump();
    }
    auto message = conn->parser->release();
    HttpResult r;
    r.response.emplace();
    r.response->status = static_cast<int>(message.result_int());
    for (const auto& field : message) {
      r.response->headers.push_back({std::string(field.name_string()), std::string(field.value())});
    }
    r.response->body = std::move(message.body());
    ++completed;
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - call->started)
                        .count();
    spdlog::debug("{}: {} {} -> {} ({} ms)", options.name, call->method,
                  loggable_target(call->target), r.response->status, ms);
    if (message.keep_alive() && !shut_down) {
      conn->tcp().expires_never();
      conn->call.reset();
      conn->phase = Connection::Phase::idle;
    } else {
      discard(conn);
    }
    deliver(call, std::move(r));
    pump();
  }

  void shutdown_now() {
    shut_down = true;
    auto waiting = std::move(queue);
    queue.clear();
    for (auto& call : waiting) {
      if (call->queue_timer) call->queue_timer->cancel();
      fail(call, SendState::not_sent, false, "client shut down");
    }
    // Busy connections complete their calls through the error path (classified by phase).
    for (auto& conn : std::vector<std::shared_ptr<Connection>>(connections)) {
      if (conn->phase == Connection::Phase::idle) {
        discard(conn);
      } else {
        beast::error_code ignored;
        conn->tcp().socket().cancel(ignored);
        conn->tcp().close();
      }
    }
  }

  Options options;
  Url url;
  std::string base_path = url.target;
  std::shared_ptr<TlsContext> tls_context;
  std::unique_ptr<IoThread> own_io;  // none with a LoopIo
  asio::io_context& ioc;             // own_io's, or the loop's
  Lifetime lifetime;                 // handlers given to ioc do nothing once the client is gone
  // I/O thread only:
  std::vector<std::shared_ptr<Connection>> connections;
  std::deque<std::shared_ptr<Call>> queue;
  bool shut_down = false;
  // Any thread:
  std::atomic<bool> dropping{false};
  std::atomic<std::uint64_t> connections_opened{0}, completed{0}, failed{0};
};

HttpClient::HttpClient(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {}
HttpClient::~HttpClient() = default;

void HttpClient::request(HttpRequest request, ResponseCallback done) {
  auto call = std::make_shared<Call>();
  call->method = std::move(request.method);
  call->target = impl_->base_path + request.target;
  if (call->target.empty()) call->target = "/";
  call->headers = std::move(request.headers);
  call->body = std::move(request.body);
  call->started = std::chrono::steady_clock::now();
  const auto timeout = request.timeout.count() > 0 ? request.timeout : impl_->options.default_timeout;
  call->deadline = call->started + timeout;
  call->done = std::move(done);
  call->verb = http::string_to_verb(call->method);
  if (call->verb == http::verb::unknown) {
    Impl& impl = *impl_;
    asio::post(impl.ioc, impl.guarded([&impl, call] {
      impl.fail(call, SendState::not_sent, false, "unsupported HTTP method");
    }));
    return;
  }
  asio::post(impl_->ioc, impl_->guarded([impl = impl_.get(), call] { impl->dispatch(call); }));
}

void HttpClient::shutdown() {
  asio::post(impl_->ioc, impl_->guarded([impl = impl_.get()] { impl->shutdown_now(); }));
}

HttpClientStats HttpClient::stats() const {
  return {impl_->connections_opened.load(), impl_->completed.load(), impl_->failed.load()};
}

const Url& HttpClient::base_url() const { return impl_->url; }

}  // namespace backstop::net
