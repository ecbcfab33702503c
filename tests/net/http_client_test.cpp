#include <httplib.h>

#include <mutex>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "brokers/net/http_client.hpp"
#include "brokers/net/test_certificate.hpp"
#include "core/clock.hpp"
#include "core/event_loop.hpp"
#include "net_test_support.hpp"

namespace backstop::net {
namespace {

using namespace std::chrono_literals;
using testing::Await;
using testing::Running;

// Records which client connection (remote port) carried each request.
struct Connections {
  std::mutex mutex;
  std::set<int> ports;
  void saw(const httplib::Request& r) {
    std::lock_guard lock(mutex);
    ports.insert(r.remote_port);
  }
  std::size_t count() {
    std::lock_guard lock(mutex);
    return ports.size();
  }
};

template <class Server>
void add_routes(Server& s, Connections& seen) {
  s.Get("/v1/api/echo", [&](const httplib::Request& req, httplib::Response& res) {
    seen.saw(req);
    // Reports whether secrets arrived, never their values.
    res.set_header("X-Had-Cookie", req.has_header("Cookie") ? req.get_header_value("Cookie") : "-");
    res.set_header("X-Query", req.get_param_value("q"));
    res.set_content("hello", "text/plain");
  });
  s.Post("/v1/api/orders", [&](const httplib::Request& req, httplib::Response& res) {
    seen.saw(req);
    res.status = 201;
    res.set_content(req.get_header_value("Content-Type") + "|" + req.body, "text/plain");
  });
  s.Get("/v1/api/missing", [&](const httplib::Request& req, httplib::Response& res) {
    seen.saw(req);
    res.status = 404;
    res.set_content(R"({"error":"no such order"})", "application/json");
  });
  s.Get("/v1/api/slow", [&](const httplib::Request& req, httplib::Response& res) {
    seen.saw(req);
    std::this_thread::sleep_for(150ms);
    res.set_content("slow", "text/plain");
  });
}

HttpResult call(HttpClient& client, HttpRequest req) {
  Await<HttpResult> done;
  client.request(std::move(req), [&](HttpResult r) { done.set(std::move(r)); });
  return done.get();
}

class PlainHttp : public ::testing::Test {
 protected:
  PlainHttp() : server(std::make_unique<httplib::Server>()) {}
  void SetUp() override { add_routes(*server, seen); }
  HttpClient::Options options() {
    HttpClient::Options o;
    o.base_url = "http://127.0.0.1:" + std::to_string(server.port()) + "/v1/api";
    o.name = "test";
    return o;
  }
  Connections seen;
  Running<httplib::Server> server;
};

TEST_F(PlainHttp, GetReturnsStatusHeadersAndBody) {
  HttpClient client(options());
  auto r = call(client, {"GET", "/echo?q=a%20b", {{"Cookie", "api=secret"}}, "", 2s});
  ASSERT_TRUE(r.ok()) << r.error.message;
  EXPECT_EQ(r.response->status, 200);
  EXPECT_EQ(r.response->body, "hello");
  ASSERT_NE(r.response->header("x-had-cookie"), nullptr);  // lookup is case-insensitive
  EXPECT_EQ(*r.response->header("X-Had-Cookie"), "api=secret");
  EXPECT_EQ(*r.response->header("X-Query"), "a b");
}

TEST_F(PlainHttp, PostSendsBodyWithJsonContentTypeByDefault) {
  HttpClient client(options());
  auto r = call(client, {"POST", "/orders", {}, R"({"cOID":"x1"})", 2s});
  ASSERT_TRUE(r.ok()) << r.error.message;
  EXPECT_EQ(r.response->status, 201);
  EXPECT_EQ(r.response->body, R"(application/json|{"cOID":"x1"})");
}

TEST_F(PlainHttp, ErrorStatusIsADefinitiveAnswerNotANetworkError) {
  HttpClient client(options());
  auto r = call(client, {"GET", "/missing", {}, "", 2s});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.response->status, 404);
  EXPECT_EQ(r.response->body, R"({"error":"no such order"})");
}

TEST_F(PlainHttp, KeepAliveReusesOneConnection) {
  HttpClient client(options());
  for (int i = 0; i < 5; ++i) {
    auto r = call(client, {"GET", "/echo", {}, "", 2s});
    ASSERT_TRUE(r.ok()) << r.error.message;
  }
  EXPECT_EQ(seen.count(), 1u);
  EXPECT_EQ(client.stats().connections_opened, 1u);
  EXPECT_EQ(client.stats().requests_completed, 5u);
}

TEST_F(PlainHttp, PoolNeverOpensMoreThanMaxConnections) {
  auto o = options();
  o.max_connections = 3;
  HttpClient client(std::move(o));
  constexpr int n = 9;
  std::atomic<int> ok{0}, finished{0};
  Await<bool> all_done;
  for (int i = 0; i < n; ++i) {
    client.request({"GET", "/slow", {}, "", 3s}, [&](HttpResult r) {
      if (r.ok() && r.response->status == 200) ++ok;
      if (++finished == n) all_done.set(true);
    });
  }
  EXPECT_TRUE(all_done.get());
  EXPECT_EQ(ok.load(), n);
  EXPECT_EQ(seen.count(), 3u);  // three connections, each carrying three requests in turn
}

TEST_F(PlainHttp, StaleKeepAliveConnectionIsReplacedForTheNextRequest) {
  HttpClient client(options());
  ASSERT_TRUE(call(client, {"GET", "/echo", {}, "", 2s}).ok());
  std::this_thread::sleep_for(1500ms);  // past the server's 1 s keep-alive: it closes the socket
  auto r = call(client, {"POST", "/orders", {}, "{}", 2s});  // not idempotent: must not hit the dead socket
  ASSERT_TRUE(r.ok()) << r.error.message;
  EXPECT_EQ(client.stats().connections_opened, 2u);
}

TEST_F(PlainHttp, CompletionsArriveThroughPostOnTheLoopThread) {
  SystemClock clock;
  EventLoop loop(clock);
  auto o = options();
  o.post = [&loop](std::function<void()> f) { loop.post(std::move(f)); };
  HttpClient client(std::move(o));
  std::thread::id ran_on;
  int status = 0;
  loop.add_external_work();
  client.request({"GET", "/echo", {}, "", 2s}, [&](HttpResult r) {
    ran_on = std::this_thread::get_id();
    status = r.ok() ? r.response->status : -1;
    loop.finish_external_work();
    loop.stop();
  });
  loop.run_until(clock.now() + 5'000'000'000LL);
  EXPECT_EQ(ran_on, std::this_thread::get_id());
  EXPECT_EQ(status, 200);
}

TEST_F(PlainHttp, ShutdownFailsNewRequestsAsNotSent) {
  HttpClient client(options());
  client.shutdown();
  auto r = call(client, {"POST", "/orders", {}, "{}", 2s});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error.state, SendState::not_sent);
}

TEST_F(PlainHttp, ShutdownDuringAWrittenRequestIsUnknown) {
  HttpClient client(options());
  Await<HttpResult> done;
  client.request({"GET", "/slow", {}, "", 3s}, [&](HttpResult r) { done.set(std::move(r)); });
  std::this_thread::sleep_for(50ms);  // the request is on the wire, the server is sleeping
  client.shutdown();
  auto r = done.get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error.state, SendState::unknown);
}

// --- failure classification against misbehaving servers ---

HttpClient::Options plain_options(int port) {
  HttpClient::Options o;
  o.base_url = "http://127.0.0.1:" + std::to_string(port);
  o.name = "test";
  return o;
}

TEST(HttpFailures, NothingListeningIsNotSent) {
  HttpClient client(plain_options(testing::closed_port()));
  auto r = call(client, {"POST", "/orders", {}, "{}", 2s});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error.state, SendState::not_sent);
  EXPECT_FALSE(r.error.timed_out);
  EXPECT_NE(r.error.message.find("connect"), std::string::npos) << r.error.message;
}

TEST(HttpFailures, ServerThatNeverAnswersIsUnknownAfterTheTimeout) {
  testing::SilentServer silent;
  HttpClient client(plain_options(silent.port()));
  const auto t0 = std::chrono::steady_clock::now();
  auto r = call(client, {"POST", "/orders", {}, "{}", 300ms});
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error.state, SendState::unknown);
  EXPECT_TRUE(r.error.timed_out);
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 2s);
}

TEST(HttpFailures, GarbledReplyIsUnknown) {
  testing::RawReplyServer garbage("this is not HTTP\r\n\r\n");
  HttpClient client(plain_options(garbage.port()));
  auto r = call(client, {"POST", "/orders", {}, "{}", 2s});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error.state, SendState::unknown);
}

TEST(HttpFailures, DisconnectMidResponseIsUnknown) {
  testing::RawReplyServer cut("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"orderId\":");
  HttpClient client(plain_options(cut.port()));
  auto r = call(client, {"POST", "/orders", {}, "{}", 2s});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error.state, SendState::unknown);
  EXPECT_FALSE(r.error.timed_out);
}

TEST(HttpFailures, QueuedRequestThatNeverGetsAConnectionIsNotSent) {
  testing::SilentServer silent;
  auto o = plain_options(silent.port());
  o.max_connections = 1;
  HttpClient client(std::move(o));
  Await<HttpResult> first, second;
  client.request({"GET", "/a", {}, "", 1s}, [&](HttpResult r) { first.set(std::move(r)); });
  client.request({"POST", "/b", {}, "{}", 200ms}, [&](HttpResult r) { second.set(std::move(r)); });
  auto r2 = second.get();
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.error.state, SendState::not_sent);  // it waited for the pool and never left
  EXPECT_TRUE(r2.error.timed_out);
  auto r1 = first.get();
  EXPECT_EQ(r1.error.state, SendState::unknown);
}

// net::Url is core/url.hpp's parser in its wider form, seen as the clients need it: the port as
// text, path and query joined into the request target without a trailing '/'.
TEST(HttpFailures, UrlsComeFromTheOneParser) {
  Url u = Url::parse("WSS://LocalHost:5000/v1/api/ws/?oauth_token=x");
  EXPECT_EQ(u.scheme, "wss");
  EXPECT_EQ(u.host, "localhost");
  EXPECT_EQ(u.port, "5000");
  EXPECT_EQ(u.target, "/v1/api/ws?oauth_token=x");
  EXPECT_TRUE(u.tls());
  u = Url::parse("https://127.0.0.1/v3/");
  EXPECT_EQ(u.port, "443");
  EXPECT_EQ(u.target, "/v3");
  EXPECT_EQ(u.host_header(), "127.0.0.1");
  u = Url::parse("http://[::1]:8080");
  EXPECT_EQ(u.target, "");
  EXPECT_EQ(u.host_header(), "[::1]:8080");
  try {
    Url::parse("https://user:secret@example.com/v3");
    FAIL() << "credentials accepted";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("credentials in the URL are not allowed"), std::string::npos) << what;
    EXPECT_EQ(what.find("secret"), std::string::npos) << what;  // never repeated: it would reach a log
  }
  try {
    Url::parse("ftp://127.0.0.1/x");
    FAIL() << "ftp accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), "invalid URL 'ftp://127.0.0.1/x': unsupported scheme \"ftp\", expected http, https, ws or wss");
  }
}

TEST(HttpFailures, BadBaseUrlIsAConfigError) {
  HttpClient::Options o;
  o.base_url = "ftp://127.0.0.1/x";
  EXPECT_THROW(HttpClient{o}, ConfigError);
  o.base_url = "https://127.0.0.1:5000";
  o.tls.pinned_cert_file = "/nonexistent/cert.pem";
  EXPECT_THROW(HttpClient{o}, ConfigError);
}

// --- TLS ---

class Tls : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir = new testing::TempDir;
    cert = new TestCertificate(make_self_signed_certificate(dir->path(), "server"));
    other = new TestCertificate(make_self_signed_certificate(dir->path(), "other"));
  }
  static void TearDownTestSuite() {
    delete cert;
    delete other;
    delete dir;
  }
  Tls()
      : server(std::make_unique<httplib::SSLServer>(cert->cert_file.c_str(), cert->key_file.c_str())) {
    add_routes(*server, seen);
  }
  HttpClient::Options options(const std::string& host = "127.0.0.1") {
    HttpClient::Options o;
    o.base_url = "https://" + host + ":" + std::to_string(server.port()) + "/v1/api";
    o.name = "tls-test";
    return o;
  }

  static testing::TempDir* dir;
  static TestCertificate* cert;
  static TestCertificate* other;
  Connections seen;
  Running<httplib::SSLServer> server;
};
testing::TempDir* Tls::dir = nullptr;
TestCertificate* Tls::cert = nullptr;
TestCertificate* Tls::other = nullptr;

TEST_F(Tls, PinnedCertificateIsAcceptedAndConnectionsAreReused) {
  auto o = options();
  o.tls.pinned_cert_file = cert->cert_file.string();
  HttpClient client(std::move(o));
  for (int i = 0; i < 3; ++i) {
    auto r = call(client, {"GET", "/echo", {}, "", 3s});
    ASSERT_TRUE(r.ok()) << r.error.message;
    EXPECT_EQ(r.response->body, "hello");
  }
  EXPECT_EQ(client.stats().connections_opened, 1u);
}

TEST_F(Tls, WrongPinnedCertificateIsRefusedAsNotSent) {
  auto o = options();
  o.tls.pinned_cert_file = other->cert_file.string();
  HttpClient client(std::move(o));
  auto r = call(client, {"POST", "/orders", {}, "{}", 3s});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error.state, SendState::not_sent);
  EXPECT_NE(r.error.message.find("TLS"), std::string::npos) << r.error.message;
  EXPECT_EQ(seen.count(), 0u);
}

TEST_F(Tls, CaFileVerificationAcceptsByIpAndByName) {
  for (const std::string host : {"127.0.0.1", "localhost"}) {
    auto o = options(host);
    o.tls.ca_file = cert->cert_file.string();
    HttpClient client(std::move(o));
    auto r = call(client, {"GET", "/echo", {}, "", 3s});
    ASSERT_TRUE(r.ok()) << host << ": " << r.error.message;
  }
}

TEST_F(Tls, CaFileOfAnotherAuthorityIsRefused) {
  auto o = options();
  o.tls.ca_file = other->cert_file.string();
  HttpClient client(std::move(o));
  auto r = call(client, {"GET", "/echo", {}, "", 3s});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error.state, SendState::not_sent);
}

TEST_F(Tls, SystemStoreRefusesASelfSignedCertificateByDefault) {
  HttpClient client(options());
  auto r = call(client, {"GET", "/echo", {}, "", 3s});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error.state, SendState::not_sent);
  EXPECT_NE(r.error.message.find("certificate"), std::string::npos) << r.error.message;
}

TEST_F(Tls, InsecureSkipVerifyConnectsAnyway) {
  auto o = options();
  o.tls.insecure_skip_verify = true;
  HttpClient client(std::move(o));
  auto r = call(client, {"GET", "/echo", {}, "", 3s});
  ASSERT_TRUE(r.ok()) << r.error.message;
}

TEST_F(Tls, PlainHttpToATlsServerIsNotAResponse) {
  HttpClient::Options o;
  o.base_url = "http://127.0.0.1:" + std::to_string(server.port());
  HttpClient client(std::move(o));
  auto r = call(client, {"GET", "/v1/api/echo", {}, "", 2s});
  EXPECT_FALSE(r.ok());
}

}  // namespace
}  // namespace backstop::net
