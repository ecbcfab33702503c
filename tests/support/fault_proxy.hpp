#pragma once
// A loopback TCP proxy in front of an emulator that fails the way a broker's endpoint does:
// the process dies (connections reset, new ones refused), it stalls (connections accepted and
// never answered, open ones frozen), or a load balancer answers 503 to everything. It can also
// lose exactly one reply: the next order POST reaches the emulator (which acts on it) and its
// answer never comes back, so the client cannot know what happened.
//
// Test support only: plain HTTP/WebSocket bytes, one thread per connection.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace backstop::testing_support {

class FaultProxy {
 public:
  enum class Mode { pass, dead, stall, http_503 };

  explicit FaultProxy(std::uint16_t upstream_port);  // listens on 127.0.0.1, ephemeral port
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  std::uint16_t port() const { return port_; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  // Takes effect on open connections too (within a few milliseconds).
  void set_mode(Mode m) { mode_.store(m); }
  Mode mode() const { return mode_.load(); }
  // The next POST whose request line names an order endpoint is delivered and its reply dropped.
  void lose_next_order_reply() { lose_next_.store(true); }
  int replies_lost() const { return replies_lost_.load(); }
  // Runs `hook` (once, on a relay thread, with the request line, e.g. "DELETE /v3/orderexecution/
  // orders/12") right after the next request that changes orders (place, modify, cancel, IBKR's
  // reply confirming a placement) has been passed on to the emulator, before its answer: the
  // chaos driver kills the emulator there, so that it dies with an order request in flight that
  // it has most likely not read yet.
  //
  // With `when_placed`, the hook waits instead for the emulator's answer that shows an order
  // placed (an order id: TradeStation "OrderID", IBKR "order_id", after any of IBKR's questions
  // and their replies), runs in its place, and the client's connection is reset: the answer never
  // arrives. The emulator has then taken the order and written it down; the driver kills it there,
  // as a broker that dies with its answer on the way. The request line is the placement's (or
  // the reply's). Either way it replaces an earlier hook.
  void on_next_order_request(std::function<void(const std::string& request_line)> hook, bool when_placed = false);
  void clear_order_request_hook() { on_next_order_request(nullptr); }
  // The emulator behind it was restarted on another port: new connections go there.
  void set_upstream(std::uint16_t port) { upstream_port_.store(port); }

 private:
  void accept_loop();
  void serve(int client);
  void relay(int client, int upstream);
  void answer_503(int client);

  std::atomic<std::uint16_t> upstream_port_;
  std::uint16_t port_ = 0;
  int listen_fd_ = -1;
  std::atomic<Mode> mode_{Mode::pass};
  std::atomic<bool> lose_next_{false};
  std::mutex hook_mutex_;
  std::function<void(const std::string&)> order_request_hook_;
  bool hook_when_placed_ = false;
  std::atomic<int> replies_lost_{0};
  std::atomic<bool> stopping_{false};
  std::mutex threads_mutex_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

const char* to_string(FaultProxy::Mode m);

}  // namespace backstop::testing_support
