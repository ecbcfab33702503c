#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>

#include <cstdio>

#include "brokers/net/detail/asio.hpp"
#include "core/cpu_affinity.hpp"
#include "core/error.hpp"

namespace backstop::net::detail {

IoThread::IoThread(std::string name)
    : work_(asio::make_work_guard(ioc_)), name_(std::move(name)) {
  thread_ = std::thread([this] {
    unpin_this_thread();  // not on the event loop's CPU, if that thread started this one
    for (;;) {
      try {
        ioc_.run();
        return;
      } catch (const std::exception& e) {
        // A throwing user callback (delivered on this thread) must not kill every connection.
        spdlog::error("{}: exception escaped a network callback: {}", name_, e.what());
      }
    }
  });
}

void IoThread::stop_and_join() {
  work_.reset();
  ioc_.stop();
  if (thread_.joinable()) {
    if (in_this_thread()) {
      thread_.detach();  // destroyed from one of its own callbacks: cannot join itself
    } else {
      thread_.join();
    }
  }
}

namespace {

bool is_ip_literal(const std::string& host) {
  beast::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

std::shared_ptr<X509> load_certificate(const std::string& file) {
  std::FILE* f = std::fopen(file.c_str(), "rb");
  if (f == nullptr) throw ConfigError("tls.pinned_cert_file: cannot open '" + file + "'");
  X509* cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  if (cert == nullptr) {
    throw ConfigError("tls.pinned_cert_file: '" + file + "' holds no PEM certificate");
  }
  return std::shared_ptr<X509>(cert, X509_free);
}

}  // namespace

TlsContext::TlsContext(const TlsOptions& options, std::string name)
    : options_(options), name_(std::move(name)), ctx_(ssl::context::tls_client) {
  ctx_.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  if (options_.insecure_skip_verify) {
    ctx_.set_verify_mode(ssl::verify_none);
    return;
  }
  ctx_.set_verify_mode(ssl::verify_peer);
  if (!options_.pinned_cert_file.empty()) {
    pinned_ = load_certificate(options_.pinned_cert_file);
    // The pin replaces chain and name checks: only the leaf matters, and it must be this one.
    // check_pin() repeats the comparison after the handshake in case a callback is skipped.
    ctx_.set_verify_callback([pinned = pinned_](bool, ssl::verify_context& vc) {
      X509_STORE_CTX* store = vc.native_handle();
      if (X509_STORE_CTX_get_error_depth(store) != 0) return true;
      X509* cert = X509_STORE_CTX_get_current_cert(store);
      return cert != nullptr && X509_cmp(cert, pinned.get()) == 0;
    });
    return;
  }
  beast::error_code ec;
  if (!options_.ca_file.empty()) {
    ctx_.load_verify_file(options_.ca_file, ec);
    if (ec) throw ConfigError("tls.ca_file: cannot load '" + options_.ca_file + "': " + ec.message());
  } else {
    ctx_.set_default_verify_paths(ec);
    if (ec) throw ConfigError("TLS: cannot load the system CA store: " + ec.message());
  }
}

bool TlsContext::prepare(SSL* ssl, const std::string& host, const std::string& where,
                         std::string& error) const {
  const bool ip = is_ip_literal(host);
  // SNI carries host names only (RFC 6066 forbids IP literals).
  if (!ip && SSL_set_tlsext_host_name(ssl, host.c_str()) != 1) {
    error = "TLS: cannot set SNI for " + host;
    return false;
  }
  if (options_.insecure_skip_verify) {
    spdlog::warn(
        "{}: TLS certificate verification is DISABLED for {} (insecure_skip_verify): anyone on "
        "the path can read and alter orders. Use tls.pinned_cert_file or tls.ca_file instead.",
        name_, where);
    return true;
  }
  if (pinned_) return true;
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  const int rc = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str())
                    : X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
  if (rc != 1) {
    error = "TLS: cannot set the expected certificate name " + host;
    return false;
  }
  return true;
}

bool TlsContext::check_pin(SSL* ssl, std::string& error) const {
  if (!pinned_) return true;
  X509* peer = SSL_get1_peer_certificate(ssl);
  const bool same = peer != nullptr && X509_cmp(peer, pinned_.get()) == 0;
  if (peer != nullptr) X509_free(peer);
  if (!same) error = "TLS: the server's certificate is not the pinned one (" + options_.pinned_cert_file + ")";
  return same;
}

std::string TlsContext::verify_failure(SSL* ssl) {
  const long result = SSL_get_verify_result(ssl);
  if (result == X509_V_OK) return {};
  return X509_verify_cert_error_string(result);
}

std::string describe(const beast::error_code& ec) {
  if (ec == beast::error::timeout) return "timed out";
  return ec.message();
}

namespace {

// The state of one async_open, kept alive by its handlers.
struct Opener : std::enable_shared_from_this<Opener> {
  Opener(asio::io_context& ioc, const Url& u, TlsContext* ctx, beast::tcp_stream& stream, TlsStream* s,
         SteadyTime d, std::shared_ptr<void> k, std::function<void(OpenResult)> cb)
      : resolver(ioc), timer(ioc), url(u), tls_context(ctx), connection(stream), tls(s), deadline(d),
        keepalive(std::move(k)), done(std::move(cb)) {}

  void start() {
    // The resolver has no timeout of its own; a timer cancels it at the deadline.
    timer.expires_at(deadline);
    timer.async_wait([self = shared_from_this()](const beast::error_code& ec) {
      if (!ec) {
        self->resolve_timed_out = true;
        self->resolver.cancel();
      }
    });
    resolver.async_resolve(url.host, url.port,
                           [self = shared_from_this()](const beast::error_code& ec,
                                                       tcp::resolver::results_type results) {
                             self->timer.cancel();
                             self->on_resolved(ec, std::move(results));
                           });
  }

  void on_resolved(const beast::error_code& ec, tcp::resolver::results_type results) {
    if (ec) return finish(resolve_timed_out, "resolve " + url.host + ": " +
                                                 (resolve_timed_out ? "timed out" : describe(ec)));
    connection.expires_at(deadline);
    connection.async_connect(results, [self = shared_from_this()](const beast::error_code& cec,
                                                            const tcp::endpoint&) {
      self->on_connected(cec);
    });
  }

  void on_connected(const beast::error_code& ec) {
    const std::string where = url.host + ":" + url.port;
    if (ec) return finish(ec == beast::error::timeout, "connect " + where + ": " + describe(ec));
    connection.socket().set_option(tcp::no_delay(true));
    if (tls == nullptr) return finish(false, {});
    std::string error;
    if (!tls_context->prepare(tls->native_handle(), url.host, where, error)) {
      return finish(false, error);
    }
    tls->async_handshake(ssl::stream_base::client,
                         [self = shared_from_this(), where](const beast::error_code& hec) {
                           self->on_handshake(hec, where);
                         });
  }

  void on_handshake(const beast::error_code& ec, const std::string& where) {
    if (ec) {
      std::string why = describe(ec);
      const std::string verify = TlsContext::verify_failure(tls->native_handle());
      if (!verify.empty()) why += " (" + verify + ")";
      return finish(ec == beast::error::timeout, "TLS handshake with " + where + ": " + why);
    }
    std::string error;
    if (!tls_context->check_pin(tls->native_handle(), error)) return finish(false, error);
    finish(false, {});
  }

  void finish(bool timed_out, std::string error) {
    OpenResult r;
    r.ok = error.empty();
    r.timed_out = timed_out;
    r.error = std::move(error);
    if (!r.ok) connection.close();
    auto cb = std::move(done);
    auto hold = std::move(keepalive);
    cb(std::move(r));
  }

  tcp::resolver resolver;
  asio::steady_timer timer;
  Url url;
  TlsContext* tls_context;
  beast::tcp_stream& connection;
  TlsStream* tls;
  SteadyTime deadline;
  std::shared_ptr<void> keepalive;
  std::function<void(OpenResult)> done;
  bool resolve_timed_out = false;
};

}  // namespace

void async_open(asio::io_context& ioc, const Url& url, TlsContext* tls_context,
                beast::tcp_stream& connection, TlsStream* tls, SteadyTime deadline,
                std::shared_ptr<void> keepalive, std::function<void(OpenResult)> done) {
  std::make_shared<Opener>(ioc, url, tls_context, connection, tls, deadline, std::move(keepalive),
                           std::move(done))
      ->start();
}

}  // namespace backstop::net::detail
