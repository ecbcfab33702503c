#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "brokers/net/test_certificate.hpp"
#include "brokers/net/websocket_client.hpp"
#include "net_test_support.hpp"

namespace backstop::net {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using testing::Await;

// A blocking echo server handling one connection at a time on its own thread. Messages:
// "cookie?" answers the upgrade request's Cookie header; "close-me" closes with code 4000;
// "silence" stops reading (so pings go unanswered); anything else is echoed.
class EchoServer {
 public:
  explicit EchoServer(const TestCertificate* cert = nullptr) : acceptor_(ioc_, {asio::ip::make_address("127.0.0.1"), 0}) {
    if (cert != nullptr) {
      tls_.emplace(asio::ssl::context::tls_server);
      tls_->use_certificate_chain_file(cert->cert_file.string());
      tls_->use_private_key_file(cert->key_file.string(), asio::ssl::context::pem);
    }
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { serve(); });
  }
  ~EchoServer() {
    stop_ = true;
    // Wake the blocking accept() with a throwaway connection.
    asio::io_context ioc;
    tcp::socket s(ioc);
    beast::error_code ignored;
    s.connect({asio::ip::make_address("127.0.0.1"), port_}, ignored);
    thread_.join();
  }
  int port() const { return port_; }

 private:
  void serve() {
    while (!stop_) {
      tcp::socket socket(ioc_);
      beast::error_code ec;
      acceptor_.accept(socket, ec);
      if (ec || stop_) return;
      try {
        if (tls_) {
          websocket::stream<beast::ssl_stream<tcp::socket>> ws(std::move(socket), *tls_);
          ws.next_layer().handshake(asio::ssl::stream_base::server);
          session(ws);
        } else {
          websocket::stream<tcp::socket> ws(std::move(socket));
          session(ws);
        }
      } catch (const std::exception&) {
        // The client went away; serve the next one.
      }
    }
  }

  template <class Ws>
  void session(Ws& ws) {
    std::string cookie;
    websocket::request_type upgrade;
    beast::flat_buffer buffer;
    beast::http::read(ws.next_layer(), buffer, upgrade);
    cookie = std::string(upgrade[beast::http::field::cookie]);
    ws.accept(upgrade);
    for (;;) {
      beast::flat_buffer in;
      ws.read(in);
      std::string text = beast::buffers_to_string(in.data());
      if (text == "close-me") {
        ws.close(websocket::close_reason(static_cast<websocket::close_code>(4000), "bye"));
        // Drain until the client's close answer arrives.
        beast::error_code ec;
        while (!ec) ws.read(in, ec);
        return;
      }
      if (text == "silence") {
        std::this_thread::sleep_for(1500ms);
        return;
      }
      ws.text(true);
      ws.write(asio::buffer(text == "cookie?" ? cookie : text));
    }
  }

  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  std::optional<asio::ssl::context> tls_;
  unsigned short port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

struct WsRecorder {
  std::mutex mutex;
  std::vector<std::string> messages;
  Await<bool> opened;
  Await<WebSocketClose> closed;
  std::atomic<int> message_count{0};
  std::function<void(const std::string&)> on_each;

  WebSocketHandlers handlers() {
    return {[this] { opened.set(true); },
            [this](std::string_view m) {
              {
                std::lock_guard lock(mutex);
                messages.emplace_back(m);
              }
              ++message_count;
              if (on_each) on_each(std::string(m));
            },
            [this](const WebSocketClose& c) { closed.set(c); }};
  }
  std::vector<std::string> snapshot() {
    std::lock_guard lock(mutex);
    return messages;
  }
  bool wait_for_messages(int n) {
    for (int i = 0; i < 500 && message_count.load() < n; ++i) std::this_thread::sleep_for(10ms);
    return message_count.load() >= n;
  }
};

WebSocketClient::Options ws_options(const std::string& scheme, int port) {
  WebSocketClient::Options o;
  o.url = scheme + "://127.0.0.1:" + std::to_string(port) + "/v1/api/ws";
  o.headers = {{"Cookie", R"(api={"session":"abc"})"}};
  o.name = "ws-test";
  return o;
}

TEST(WebSocket, EchoesInOrderAndSendsTheCookie) {
  EchoServer server;
  WebSocketClient ws(ws_options("ws", server.port()));
  WsRecorder rec;
  ws.connect(rec.handlers());
  ASSERT_TRUE(ws.send("queued before open"));  // goes out once the handshake completes
  ASSERT_TRUE(rec.opened.get());
  EXPECT_TRUE(ws.is_open());
  ws.send("cookie?");
  for (int i = 0; i < 20; ++i) ws.send("m" + std::to_string(i));
  ASSERT_TRUE(rec.wait_for_messages(22));
  auto got = rec.snapshot();
  EXPECT_EQ(got[0], "queued before open");
  EXPECT_EQ(got[1], R"(api={"session":"abc"})");
  for (int i = 0; i < 20; ++i) EXPECT_EQ(got[2 + i], "m" + std::to_string(i));
}

TEST(WebSocket, ServerCloseReportsCodeAndReason) {
  EchoServer server;
  WebSocketClient ws(ws_options("ws", server.port()));
  WsRecorder rec;
  ws.connect(rec.handlers());
  ASSERT_TRUE(rec.opened.get());
  ws.send("close-me");
  const WebSocketClose c = rec.closed.get();
  EXPECT_EQ(c.reason, WebSocketClose::Reason::closed_by_server);
  EXPECT_EQ(c.code, 4000);
  EXPECT_NE(c.message.find("bye"), std::string::npos);
  EXPECT_FALSE(ws.is_open());
  EXPECT_FALSE(ws.send("too late"));
}

TEST(WebSocket, UnansweredIdleTimeoutEndsTheConnection) {
  EchoServer server;
  auto o = ws_options("ws", server.port());
  o.idle_timeout = 400ms;
  WebSocketClient ws(std::move(o));
  WsRecorder rec;
  ws.connect(rec.handlers());
  ASSERT_TRUE(rec.opened.get());
  ws.send("silence");  // the server stops reading: our ping gets no pong
  const WebSocketClose c = rec.closed.get(3s);
  EXPECT_EQ(c.reason, WebSocketClose::Reason::idle_timeout) << c.message;
}

TEST(WebSocket, CloseSilencesAndConnectRestarts) {
  EchoServer server;
  WebSocketClient ws(ws_options("ws", server.port()));
  WsRecorder first;
  ws.connect(first.handlers());
  ASSERT_TRUE(first.opened.get());
  ws.close();
  EXPECT_FALSE(ws.is_open());

  WsRecorder second;
  ws.connect(second.handlers());
  ASSERT_TRUE(second.opened.get());
  ws.send("again");
  ASSERT_TRUE(second.wait_for_messages(1));
  EXPECT_EQ(second.snapshot()[0], "again");
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(first.message_count.load(), 0);
  EXPECT_FALSE(first.closed.is_set()) << "close() must not call on_close";
}

TEST(WebSocket, NothingListeningIsConnectFailed) {
  WebSocketClient ws(ws_options("ws", testing::closed_port()));
  WsRecorder rec;
  ws.connect(rec.handlers());
  EXPECT_EQ(rec.closed.get().reason, WebSocketClose::Reason::connect_failed);
}

TEST(WebSocket, WssWithPinnedCertificate) {
  testing::TempDir dir;
  const auto cert = make_self_signed_certificate(dir.path(), "gw");
  const auto other = make_self_signed_certificate(dir.path(), "other");
  EchoServer server(&cert);
  {
    auto o = ws_options("wss", server.port());
    o.tls.pinned_cert_file = other.cert_file.string();
    WebSocketClient ws(std::move(o));
    WsRecorder rec;
    ws.connect(rec.handlers());
    EXPECT_EQ(rec.closed.get().reason, WebSocketClose::Reason::connect_failed);
  }
  auto o = ws_options("wss", server.port());
  o.tls.pinned_cert_file = cert.cert_file.string();
  WebSocketClient ws(std::move(o));
  WsRecorder rec;
  ws.connect(rec.handlers());
  ASSERT_TRUE(rec.opened.get());
  ws.send("cookie?");
  ASSERT_TRUE(rec.wait_for_messages(1));
  EXPECT_EQ(rec.snapshot()[0], R"(api={"session":"abc"})");
}

}  // namespace
}  // namespace backstop::net
