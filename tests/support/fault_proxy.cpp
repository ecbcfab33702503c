#include "fault_proxy.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <string_view>

namespace backstop::testing_support {

namespace {
constexpr int kPollMs = 5;

void reset_and_close(int fd) {
  // SO_LINGER 0: the peer sees a reset, as when a process dies, not an orderly end of stream.
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(fd);
}

bool write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

// "POST /v3/orderexecution/orders HTTP/1.1", "POST /iserver/account/DU1/orders ...",
// "POST /v3/orderexecution/ordergroups ...": a request that places orders.
bool is_order_post(std::string_view data) {
  if (data.substr(0, 5) != "POST ") return false;
  const auto line_end = data.find("\r\n");
  const std::string_view line = data.substr(0, line_end);
  return line.find("/orders") != std::string_view::npos || line.find("/ordergroups") != std::string_view::npos;
}

// The request line of a request that changes orders at the broker (place, modify, cancel, IBKR's
// reply confirming a placement), or empty. Previews (TradeStation orderconfirm, IBKR whatif) and
// reads are not: nothing changes at the broker if they are cut.
std::string_view order_command(std::string_view data) {
  if (data.substr(0, 5) != "POST " && data.substr(0, 4) != "PUT " && data.substr(0, 7) != "DELETE ") return {};
  const std::string_view line = data.substr(0, data.find("\r\n"));
  const bool orders = line.find("/order") != std::string_view::npos || line.find("/iserver/reply/") != std::string_view::npos;
  const bool preview = line.find("orderconfirm") != std::string_view::npos || line.find("whatif") != std::string_view::npos;
  return orders && !preview ? line.substr(0, line.rfind(" HTTP/")) : std::string_view();
}

// Whether a read from the client begins a request (rather than continuing a body).
bool starts_request(std::string_view data) {
  for (const char* method : {"GET ", "POST ", "PUT ", "DELETE ", "PATCH ", "HEAD ", "OPTIONS "})
    if (data.rfind(method, 0) == 0) return true;
  return false;
}

// A request whose answer may show an order placed: a POST placing orders, or IBKR's reply to a
// question about one (the order is placed when the question is answered).
bool may_place(std::string_view request_line) {
  return is_order_post(request_line) ||
         (request_line.rfind("POST ", 0) == 0 && request_line.find("/iserver/reply/") != std::string_view::npos);
}

// An answer (or the part of it in one read) naming a placed order's id.
bool shows_placement(std::string_view data) {
  return data.find("\"OrderID\"") != std::string_view::npos || data.find("\"order_id\"") != std::string_view::npos;
}
}  // namespace

const char* to_string(FaultProxy::Mode m) {
  switch (m) {
    case FaultProxy::Mode::pass: return "pass";
    case FaultProxy::Mode::dead: return "dead";
    case FaultProxy::Mode::stall: return "stall";
    case FaultProxy::Mode::http_503: return "http_503";
  }
  return "?";
}

FaultProxy::FaultProxy(std::uint16_t upstream_port) : upstream_port_(upstream_port) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 64) != 0)
    throw std::runtime_error(std::string("fault proxy: cannot listen: ") + std::strerror(errno));
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

FaultProxy::~FaultProxy() {
  stopping_.store(true);
  acceptor_.join();
  ::close(listen_fd_);
  std::lock_guard<std::mutex> lock(threads_mutex_);
  for (auto& t : threads_) t.join();
}

void FaultProxy::accept_loop() {
  while (!stopping_.load()) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 20) <= 0) continue;
    const int client = ::accept(listen_fd_, nullptr, nullptr);
    if (client < 0) continue;
    std::lock_guard<std::mutex> lock(threads_mutex_);
    threads_.emplace_back([this, client] { serve(client); });
  }
}

void FaultProxy::serve(int client) {
  int one = 1;
  ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  switch (mode_.load()) {
    case Mode::dead: return reset_and_close(client);
    case Mode::http_503: return answer_503(client);
    case Mode::stall:
      // Accepted, never answered, until the mode changes or the proxy stops.
      while (!stopping_.load() && mode_.load() == Mode::stall) ::usleep(kPollMs * 1000);
      return reset_and_close(client);
    case Mode::pass: break;
  }
  const int upstream = ::socket(AF_INET, SOCK_STREAM, 0);
  ::setsockopt(upstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(upstream_port_.load());
  if (::connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(upstream);
    return reset_and_close(client);
  }
  relay(client, upstream);
}

void FaultProxy::relay(int client, int upstream) {
  char buf[16384];
  bool swallowing = false;  // the reply to a delivered order POST is being dropped (lost_reply)
  // A placement went through while a `when_placed` hook was armed: its answer (and those to the
  // requests after it on this connection) is watched for a placed order.
  std::string watched_request;
  while (!stopping_.load()) {
    const Mode m = mode_.load();
    if (m == Mode::dead || m == Mode::http_503) break;  // the endpoint died under open connections
    if (m == Mode::stall) {  // frozen: nothing moves either way
      ::usleep(kPollMs * 1000);
      continue;
    }
    pollfd p[2] = {{client, POLLIN, 0}, {upstream, POLLIN, 0}};
    if (::poll(p, 2, kPollMs) <= 0) continue;
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t n = ::recv(client, buf, sizeof buf, 0);
      if (n <= 0) break;
      const bool order_post = is_order_post(std::string_view(buf, static_cast<std::size_t>(n)));
      if (lose_next_.load() && order_post) {
        lose_next_.store(false);
        swallowing = true;
      }
      if (!write_all(upstream, buf, static_cast<std::size_t>(n))) break;
      const std::string_view data(buf, static_cast<std::size_t>(n));
      std::function<void(const std::string&)> hook;
      const auto command = order_command(data);
      {
        std::lock_guard<std::mutex> lock(hook_mutex_);
        if (order_request_hook_ && hook_when_placed_) {
          // Each new request on the connection decides whether its answer is watched: a read's
          // answer (a live order list) names order ids too.
          if (starts_request(data))
            watched_request = may_place(command) ? std::string(command) : std::string();
        } else if (!command.empty()) {
          hook.swap(order_request_hook_);
        }
      }
      if (hook) hook(std::string(command));
    }
    if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t n = ::recv(upstream, buf, sizeof buf, 0);
      if (n <= 0) break;
      if (swallowing) {
        // The emulator has acted and answered; the client never hears it.
        replies_lost_.fetch_add(1);
        break;
      }
      if (!watched_request.empty() && shows_placement(std::string_view(buf, static_cast<std::size_t>(n)))) {
        std::function<void(const std::string&)> hook;
        {
          std::lock_guard<std::mutex> lock(hook_mutex_);
          if (hook_when_placed_) hook.swap(order_request_hook_);
        }
        if (hook) {
          hook(watched_request);  // the emulator has placed it; the client never hears so
          break;
        }
        watched_request.clear();  // disarmed meanwhile
      }
      if (!write_all(client, buf, static_cast<std::size_t>(n))) break;
    }
  }
  reset_and_close(client);
  ::close(upstream);
}

void FaultProxy::on_next_order_request(std::function<void(const std::string& request_line)> hook, bool when_placed) {
  std::lock_guard<std::mutex> lock(hook_mutex_);
  order_request_hook_ = std::move(hook);
  hook_when_placed_ = when_placed;
}

void FaultProxy::answer_503(int client) {
  // Read the request head (and its body, by Content-Length) before answering, as a load
  // balancer does; then close.
  std::string data;
  char buf[4096];
  while (!stopping_.load() && data.find("\r\n\r\n") == std::string::npos) {
    pollfd p{client, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) {
      if (mode_.load() != Mode::http_503) break;
      continue;
    }
    const ssize_t n = ::recv(client, buf, sizeof buf, 0);
    if (n <= 0) break;
    data.append(buf, static_cast<std::size_t>(n));
  }
  // A load balancer's own page, in Latin-1 as some still send (not UTF-8: "\xe9" alone): an
  // adapter that quotes the body in a message must not pass those bytes on to a JSON writer,
  // which throws on them (fuzz/README.md, finding 11).
  static constexpr std::string_view kBody =
      "<html><body><h1>503 Service indisponible</h1>D\xe9lai d'attente d\xe9pass\xe9.</body></html>";
  const std::string reply = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/html; charset=iso-8859-1\r\n"
                            "Content-Length: " + std::to_string(kBody.size()) +
                            "\r\nConnection: close\r\n\r\n" + std::string(kBody);
  write_all(client, reply.data(), reply.size());
  ::shutdown(client, SHUT_WR);
  ::close(client);
}

}  // namespace backstop::testing_support
