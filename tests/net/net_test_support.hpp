#pragma once
// Loopback fixtures for the brokers/net tests: temp dirs, raw-socket servers that misbehave on
// purpose, and a wrapper that runs a cpp-httplib server on an ephemeral port.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>

namespace backstop::net::testing {

using namespace std::chrono_literals;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "backstop-net-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A listening socket on 127.0.0.1 with an ephemeral port.
inline int listen_loopback(int& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 16) != 0) {
    throw std::runtime_error("cannot listen on 127.0.0.1");
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  port = ntohs(addr.sin_port);
  return fd;
}

// A port nothing listens on (bound, then released).
inline int closed_port() {
  int port = 0;
  ::close(listen_loopback(port));
  return port;
}

// Listens but never accepts: the kernel completes the TCP handshake and buffers the request, and
// no answer ever comes. The shape of a hung broker.
class SilentServer {
 public:
  SilentServer() : fd_(listen_loopback(port_)) {}
  ~SilentServer() { ::close(fd_); }
  int port() const { return port_; }

 private:
  int port_ = 0;
  int fd_;
};

// Accepts connections one at a time, reads a request head, writes `reply` and closes.
class RawReplyServer {
 public:
  explicit RawReplyServer(std::string reply) : reply_(std::move(reply)), fd_(listen_loopback(port_)) {
    thread_ = std::thread([this] {
      for (;;) {
        const int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0 || stop_) {
          if (c >= 0) ::close(c);
          return;
        }
        std::string got;
        char buf[4096];
        while (got.find("\r\n\r\n") == std::string::npos) {
          const ssize_t n = ::recv(c, buf, sizeof buf, 0);
          if (n <= 0) break;
          got.append(buf, static_cast<std::size_t>(n));
        }
        ++requests_;
        ::send(c, reply_.data(), reply_.size(), MSG_NOSIGNAL);
        ::shutdown(c, SHUT_RDWR);
        ::close(c);
      }
    });
  }
  ~RawReplyServer() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);  // wakes accept()
    ::close(fd_);
    thread_.join();
  }
  int port() const { return port_; }
  int requests() const { return requests_; }

 private:
  std::string reply_;
  int port_ = 0;
  int fd_;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::thread thread_;
};

// Runs an httplib::Server or SSLServer on 127.0.0.1:<ephemeral> until destroyed.
template <class Server>
class Running {
 public:
  explicit Running(std::unique_ptr<Server> server) : server_(std::move(server)) {
    server_->set_keep_alive_timeout(1);  // so stop() never waits long on idle keep-alive threads
    port_ = server_->bind_to_any_port("127.0.0.1");
    if (port_ <= 0) throw std::runtime_error("httplib cannot bind");
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    // httplib's stop() is a no-op until the accept loop runs; without this wait a test that
    // never reaches the server would hang in the destructor.
    for (int i = 0; i < 500 && !server_->is_running(); ++i) std::this_thread::sleep_for(2ms);
  }
  ~Running() {
    server_->stop();
    thread_.join();
  }
  Server& operator*() { return *server_; }
  int port() const { return port_; }

 private:
  std::unique_ptr<Server> server_;
  int port_ = 0;
  std::thread thread_;
};

// Waits for a value set on another thread; fails the test instead of hanging.
template <class T>
class Await {
 public:
  void set(T value) {
    if (!done_.exchange(true)) promise_.set_value(std::move(value));
  }
  bool is_set() const { return done_.load(); }
  T get(std::chrono::milliseconds limit = 5s) {
    if (future_.wait_for(limit) != std::future_status::ready) {
      ADD_FAILURE() << "timed out waiting for a callback";
      return T{};
    }
    return future_.get();
  }

 private:
  std::promise<T> promise_;
  std::future<T> future_ = promise_.get_future();
  std::atomic<bool> done_{false};
};

}  // namespace backstop::net::testing
