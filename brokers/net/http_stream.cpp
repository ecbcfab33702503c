#include "brokers/net/http_stream.hpp"

#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <limits>
#include <mutex>

#include "brokers/net/detail/asio.hpp"

namespace backstop::net {

using namespace detail;

const char* to_string(StreamEnd::Reason r) {
  switch (r) {
    case StreamEnd::Reason::ended_by_server: return "ended_by_server";
    case StreamEnd::Reason::inactivity_timeout: return "inactivity_timeout";
    case StreamEnd::Reason::connect_failed: return "connect_failed";
    case StreamEnd::Reason::error: return "error";
  }
  return "?";
}

namespace {

// One start() .. end. `live` is cleared by close() on the caller's thread, so callbacks already
// posted to the caller's loop are dropped there.
struct StreamRun : ClientStream, std::enable_shared_from_this<StreamRun> {
  using ClientStream::ClientStream;

  beast::flat_buffer buffer;
  http::request<http::empty_body> request;
  http::response_parser<http::buffer_body> parser;
  std::array<char, 64 * 1024> chunk{};
  std::shared_ptr<HttpStreamHandlers> handlers;
  std::shared_ptr<std::atomic<bool>> live = std::make_shared<std::atomic<bool>>(true);
  std::atomic<bool> ended{false};
  int status = 0;
  std::string target;
};

}  // namespace

struct HttpStream::Impl {
  explicit Impl(Options o)
      : options(std::move(o)),
        url(Url::parse(options.base_url)),
        tls_context(url.tls() ? std::make_unique<TlsContext>(options.tls, options.name) : nullptr),
        io(options.name) {
    if (url.scheme != "http" && url.scheme != "https") {
      throw ConfigError("HttpStream: base URL must be http:// or https://: " + options.base_url);
    }
  }
  ~Impl() {
    close();
    io.stop_and_join();
  }

  template <class F>
  void deliver(const std::shared_ptr<StreamRun>& run, F f) {
    auto task = [live = run->live, f = std::move(f)]() mutable {
      if (live->load()) f();
    };
    if (options.post) {
      options.post(std::move(task));
    } else {
      task();
    }
  }

  void close() {
    std::shared_ptr<StreamRun> run;
    {
      std::lock_guard lock(mutex);
      run = std::move(current);
    }
    if (!run) return;
    run->live->store(false);
    asio::post(io.context(), [run] {
      beast::error_code ignored;
      run->tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
      run->tcp().close();
    });
  }

  // --- I/O thread ---

  void begin(const std::shared_ptr<StreamRun>& run, Headers headers) {
    if (!run->live->load()) return;  // closed before it began
    auto& req = run->request;
    req.version(11);
    req.method(http::verb::get);
    req.target(run->target);
    req.set(http::field::host, url.host_header());
    req.set(http::field::user_agent, options.user_agent);
    for (const Header& h : headers) req.insert(h.name, h.value);
    req.keep_alive(true);
    run->parser.body_limit(std::numeric_limits<std::uint64_t>::max());  // a stream never ends by size
    run->parser.header_limit(64 * 1024);
    const SteadyTime deadline = std::chrono::steady_clock::now() + options.connect_timeout;
    async_open(io.context(), url, tls_context.get(), run->tcp(), run->tls ? &*run->tls : nullptr,
               deadline, run, [this, run, deadline](OpenResult r) {
                 if (!r.ok) return end(run, StreamEnd::Reason::connect_failed, r.error);
                 if (!run->live->load()) return end(run, StreamEnd::Reason::error, "closed");
                 // Until the status line, the connect timeout still rules.
                 run->tcp().expires_at(deadline);
                 run->with_stream([&](auto& stream) {
                   http::async_write(stream, run->request,
                                     [this, run](const beast::error_code& ec, std::size_t) {
                                       if (ec) return end(run, StreamEnd::Reason::error, "write: " + describe(ec));
                                       read_header(run);
                                     });
                 });
               });
  }

  void read_header(const std::shared_ptr<StreamRun>& run) {
    run->with_stream([&](auto& stream) {
      http::async_read_header(stream, run->buffer, run->parser,
                              [this, run](const beast::error_code& ec, std::size_t) {
                                if (ec) {
                                  return end(run, StreamEnd::Reason::error,
                                             "waiting for the status line: " + describe(ec));
                                }
                                const auto& msg = run->parser.get();
                                run->status = static_cast<int>(msg.result_int());
                                spdlog::info("{}: GET {} -> {} (streaming)", options.name,
                                             loggable_target(run->target), run->status);
                                Headers headers;
                                for (const auto& f : msg) {
                                  headers.push_back({std::string(f.name_string()), std::string(f.value())});
                                }
                                deliver(run, [h = run->handlers, status = run->status,
                                              headers = std::move(headers)] {
                                  if (h->on_status) h->on_status(status, headers);
                                });
                                read_body(run);
                              });
    });
  }

  void read_body(const std::shared_ptr<StreamRun>& run) {
    if (run->parser.is_done()) return end(run, StreamEnd::Reason::ended_by_server, "end of body");
    auto& body = run->parser.get().body();
    body.data = run->chunk.data();
    body.size = run->chunk.size();
    // The timer restarts with every read, so it measures silence, not the stream's age.
    run->tcp().expires_after(options.inactivity_timeout);
    run->with_stream([&](auto& stream) {
      http::async_read_some(stream, run->buffer, run->parser,
                            [this, run](beast::error_code ec, std::size_t) { on_body(run, ec); });
    });
  }

  void on_body(const std::shared_ptr<StreamRun>& run, beast::error_code ec) {
    const std::size_t got = run->chunk.size() - run->parser.get().body().size;
    if (got > 0) {
      deliver(run, [h = run->handlers, bytes = std::string(run->chunk.data(), got)] {
        if (h->on_data) h->on_data(bytes);
      });
    }
    if (ec == http::error::need_buffer) ec = {};
    if (!ec) return read_body(run);
    if (ec == beast::error::timeout) {
      return end(run, StreamEnd::Reason::inactivity_timeout,
                 "no data for " + std::to_string(options.inactivity_timeout.count()) + " ms");
    }
    if (ec == http::error::end_of_stream || ec == asio::error::eof ||
        ec == http::error::partial_message || ec == ssl::error::stream_truncated) {
      // The server closed the connection (with or without finishing the body).
      return end(run, StreamEnd::Reason::ended_by_server, "connection closed by the server: " + describe(ec));
    }
    end(run, StreamEnd::Reason::error, describe(ec));
  }

  void end(const std::shared_ptr<StreamRun>& run, StreamEnd::Reason reason, std::string message) {
    if (run->ended.exchange(true)) return;
    beast::error_code ignored;
    run->tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
    run->tcp().close();
    if (!run->live->load()) return;  // close(): the caller asked for silence
    const auto level = reason == StreamEnd::Reason::ended_by_server ? spdlog::level::info
                                                                    : spdlog::level::warn;
    spdlog::log(level, "{}: stream GET {} ended ({}): {}", options.name,
                loggable_target(run->target), to_string(reason), message);
    StreamEnd e{reason, run->status, std::move(message)};
    deliver(run, [h = run->handlers, e = std::move(e)] {
      if (h->on_end) h->on_end(e);
    });
  }

  Options options;
  Url url;
  std::unique_ptr<TlsContext> tls_context;
  IoThread io;
  std::mutex mutex;
  std::shared_ptr<StreamRun> current;
};

HttpStream::HttpStream(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {}
HttpStream::~HttpStream() = default;

void HttpStream::start(std::string target, Headers headers, HttpStreamHandlers handlers) {
  impl_->close();
  auto run = std::make_shared<StreamRun>(impl_->io.context(), impl_->tls_context.get());
  run->target = impl_->url.target + target;
  if (run->target.empty()) run->target = "/";
  run->handlers = std::make_shared<HttpStreamHandlers>(std::move(handlers));
  {
    std::lock_guard lock(impl_->mutex);
    impl_->current = run;
  }
  asio::post(impl_->io.context(), [impl = impl_.get(), run, h = std::move(headers)]() mutable {
    impl->begin(run, std::move(h));
  });
}

void HttpStream::close() { impl_->close(); }

bool HttpStream::running() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->current && !impl_->current->ended.load() && impl_->current->live->load();
}

}  // namespace backstop::net
