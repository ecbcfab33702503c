#pragma once
// The local API: REST (JSON) for orders, brackets, cancels, replaces, positions, brokers, stops
// and the reliability report; a Server-Sent-Events stream of what happens; the dashboard at `/`;
// Prometheus metrics at `/metrics`. Spec: api/openapi.yaml (also served at
// /api/v1/openapi.yaml).
//
// Threads: cpp-httplib serves each request on a pool thread. Those threads never touch routing
// objects: every read and every command is posted to the EventLoop and the HTTP thread waits,
// bounded, for the answer (503 when the loop does not answer in time). Events reach the stream
// through listeners that run on the loop thread and append to a buffer the HTTP threads read.
// The journal is the one shared object read from HTTP threads (the reliability report): its
// reads are queued to its own writer thread and are safe from any thread.
//
// Security: binds 127.0.0.1 unless configured otherwise, refuses a non-loopback bind unless
// api.allow_non_loopback; every request carries `Authorization: Bearer <token>`. The token is
// generated on first start into api.token_file (mode 0600) and never logged. Browsers cannot set
// headers on a page load or an EventSource, so `?token=` is accepted on exactly two routes: the
// dashboard page `/` and the event stream `/api/v1/events`. Everything that returns or changes
// data needs the header.
#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "config/config.hpp"
#include "core/event_loop.hpp"
#include "core/journal.hpp"
#include "core/market_data.hpp"
#include "routing/broker_health.hpp"
#include "routing/order_manager.hpp"
#include "routing/reconciler.hpp"
#include "routing/router.hpp"
#include "routing/stop_guard.hpp"

namespace backstop {

// What the API serves, by reference: every object must outlive the ApiServer. Listeners the
// server registers on them stay registered after it stops and then do nothing.
struct ApiContext {
  EventLoop& loop;
  OrderManager& orders;
  Router& router;
  BrokerHealth& health;
  StopGuard& guard;
  Reconciler& reconciler;
  Journal& journal;
  const Config& config;
};

struct ApiServerOptions {
  // How long an HTTP thread waits for the event loop to run its request (503 after).
  Duration loop_timeout{std::chrono::seconds(5)};
  // How long a submit/cancel/replace waits for the broker's answer before replying 202 with the
  // outcome still pending (the order's fate then shows in GET /orders and the event stream).
  Duration outcome_wait{std::chrono::seconds(3)};
  // Events kept for late subscribers and Last-Event-ID resume.
  std::size_t event_buffer = 5000;
  // How often stop verification states and reconciliation divergences are checked for changes
  // (neither has a listener).
  Duration poll_interval{std::chrono::milliseconds(200)};
  // A comment line on an idle event stream, so proxies and clients see the connection is alive.
  Duration sse_heartbeat{std::chrono::seconds(10)};
  // Tests: listen on this port instead of config.api.port (0 = any free port).
  std::optional<int> port;
  // HTTP threads. Each open event stream holds one; at most half of them may be streams, so a
  // dashboard left open in many tabs cannot starve the REST requests (503 beyond that).
  int threads = 16;
};

class ApiServer {
 public:
  ApiServer(ApiContext context, ApiServerOptions options = {});
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // On the loop thread (or while the loop is not running): reads or creates the token,
  // registers listeners, binds and starts serving. Throws Error (bad bind, token file with loose
  // permissions, port in use).
  void start();
  // Ends event streams, stops serving and joins the HTTP threads. Any thread but an HTTP one.
  void stop();

  int port() const;
  std::string url() const;
  const std::string& token_file() const;

  // Loop thread: a quote from any feed, served by GET /api/v1/quotes (last per symbol).
  void on_quote(const Quote& q);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The bearer token in `path`, created (32 random bytes, hex, mode 0600) when the file does not
// exist. Throws Error when the file is readable or writable by group or others, is not a
// regular file, is owned by another user, or holds no usable token.
std::string load_or_create_token(const std::string& path);
// Compares without an early exit, so the time taken does not reveal how much of a guess matched.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace backstop
