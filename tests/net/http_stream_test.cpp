#include <httplib.h>

#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "brokers/net/http_stream.hpp"
#include "brokers/net/test_certificate.hpp"
#include "net_test_support.hpp"

namespace backstop::net {
namespace {

using namespace std::chrono_literals;
using testing::Await;
using testing::Running;

// What one stream run delivered, in arrival order.
struct Recorder {
  std::mutex mutex;
  int status = 0;
  bool data_before_status = false;
  std::vector<std::string> objects;
  std::size_t chunks = 0;
  JsonObjectSplitter splitter;
  Await<StreamEnd> ended;
  Await<bool> first_object;

  HttpStreamHandlers handlers() {
    return {
        [this](int s, const Headers&) {
          std::lock_guard lock(mutex);
          status = s;
        },
        [this](std::string_view bytes) {
          std::lock_guard lock(mutex);
          if (status == 0) data_before_status = true;
          ++chunks;
          splitter.feed(bytes, [&](std::string_view o) {
            objects.emplace_back(o);
            first_object.set(true);
          });
        },
        [this](const StreamEnd& e) { ended.set(e); },
    };
  }
  std::vector<std::string> snapshot() {
    std::lock_guard lock(mutex);
    return objects;
  }
};

// Pieces written as separate HTTP chunks, cut through the middle of objects and strings.
const std::vector<std::string> kPieces = {
    R"({"OrderID":"1","Status":"ACK","StatusDescription":"a } and a \")",
    R"( quote"}
{"Heartbeat":1,"Timestamp":"2021-03-02T18:01:23Z"}
{"StreamStatus":"End)",
    R"(Snapshot"}
{"Or)",
    R"(derID":"2","Legs":[{"Symbol":"MSFT"}]})"
    "\n",
};

template <class Server>
std::shared_ptr<std::atomic<bool>> add_stream_routes(Server& s) {
  // Shared with the handlers stored in the server, so it outlives its handler threads.
  auto release = std::make_shared<std::atomic<bool>>(false);
  s.Get("/v3/stream/orders", [](const httplib::Request&, httplib::Response& res) {
    res.set_chunked_content_provider("application/vnd.tradestation.streams.v3+json",
                                     [](std::size_t, httplib::DataSink& sink) {
                                       for (const auto& p : kPieces) {
                                         sink.write(p.data(), p.size());
                                         std::this_thread::sleep_for(20ms);
                                       }
                                       sink.done();
                                       return true;
                                     });
  });
  s.Get("/v3/stream/stalls", [release](const httplib::Request&, httplib::Response& res) {
    res.set_chunked_content_provider("application/json", [release](std::size_t, httplib::DataSink& sink) {
      const std::string hb = "{\"Heartbeat\":1}\n";
      sink.write(hb.data(), hb.size());
      // Then silence, like a dropped TCP path; bounded so the server can always stop.
      for (int i = 0; i < 300 && !release->load(); ++i) std::this_thread::sleep_for(10ms);
      return false;
    });
  });
  s.Get("/v3/stream/denied", [](const httplib::Request&, httplib::Response& res) {
    res.status = 401;
    res.set_content(R"({"Error":"Unauthorized","Message":"token expired"})", "application/json");
  });
  return release;
}

class Streams : public ::testing::Test {
 protected:
  Streams() : server(std::make_unique<httplib::Server>()) { release = add_stream_routes(*server); }
  ~Streams() override { release->store(true); }
  HttpStream::Options options() {
    HttpStream::Options o;
    o.base_url = "http://127.0.0.1:" + std::to_string(server.port()) + "/v3";
    o.name = "stream-test";
    return o;
  }
  Running<httplib::Server> server;
  std::shared_ptr<std::atomic<bool>> release;
};

const std::vector<std::string> kExpected = {
    R"({"OrderID":"1","Status":"ACK","StatusDescription":"a } and a \" quote"})",
    R"({"Heartbeat":1,"Timestamp":"2021-03-02T18:01:23Z"})",
    R"({"StreamStatus":"EndSnapshot"})",
    R"({"OrderID":"2","Legs":[{"Symbol":"MSFT"}]})",
};

TEST_F(Streams, DeliversChunksIncrementallyAndObjectsSplitAcrossThem) {
  HttpStream stream(options());
  Recorder rec;
  stream.start("/stream/orders", {{"Authorization", "Bearer t"}}, rec.handlers());
  const StreamEnd end = rec.ended.get();
  EXPECT_EQ(end.reason, StreamEnd::Reason::ended_by_server) << end.message;
  EXPECT_EQ(end.status, 200);
  EXPECT_EQ(rec.status, 200);
  EXPECT_FALSE(rec.data_before_status);
  EXPECT_GE(rec.chunks, kPieces.size());  // delivered as they came, not at the end
  EXPECT_EQ(rec.snapshot(), kExpected);
  EXPECT_FALSE(stream.running());
}

TEST_F(Streams, InactivityTimeoutTearsDownASilentStream) {
  auto o = options();
  o.inactivity_timeout = 300ms;
  HttpStream stream(std::move(o));
  Recorder rec;
  const auto t0 = std::chrono::steady_clock::now();
  stream.start("/stream/stalls", {}, rec.handlers());
  const StreamEnd end = rec.ended.get();
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(end.reason, StreamEnd::Reason::inactivity_timeout) << end.message;
  EXPECT_EQ(rec.snapshot(), std::vector<std::string>{R"({"Heartbeat":1})"});
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 2s);
}

TEST_F(Streams, ErrorStatusIsReportedWithItsBody) {
  HttpStream stream(options());
  Recorder rec;
  stream.start("/stream/denied", {}, rec.handlers());
  const StreamEnd end = rec.ended.get();
  EXPECT_EQ(rec.status, 401);
  EXPECT_EQ(end.status, 401);
  EXPECT_EQ(end.reason, StreamEnd::Reason::ended_by_server);
  ASSERT_EQ(rec.snapshot().size(), 1u);
  EXPECT_EQ(rec.snapshot()[0], R"({"Error":"Unauthorized","Message":"token expired"})");
}

TEST_F(Streams, CloseSilencesTheRunAndStartRestarts) {
  auto o = options();
  o.inactivity_timeout = 2s;
  HttpStream stream(std::move(o));
  Recorder first;
  stream.start("/stream/stalls", {}, first.handlers());
  EXPECT_TRUE(first.first_object.get());
  EXPECT_TRUE(stream.running());
  stream.close();
  EXPECT_FALSE(stream.running());

  Recorder second;
  stream.start("/stream/orders", {}, second.handlers());
  EXPECT_EQ(second.ended.get().reason, StreamEnd::Reason::ended_by_server);
  EXPECT_EQ(second.snapshot(), kExpected);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(first.snapshot().size(), 1u);  // nothing more from the closed run
  EXPECT_FALSE(first.ended.is_set()) << "close() must not call on_end";
}

TEST(StreamFailures, NothingListeningIsConnectFailed) {
  HttpStream::Options o;
  o.base_url = "http://127.0.0.1:" + std::to_string(testing::closed_port());
  HttpStream stream(std::move(o));
  Recorder rec;
  stream.start("/x", {}, rec.handlers());
  const StreamEnd end = rec.ended.get();
  EXPECT_EQ(end.reason, StreamEnd::Reason::connect_failed);
  EXPECT_EQ(end.status, 0);
}

TEST(StreamTls, PinnedStreamDeliversObjects) {
  testing::TempDir dir;
  const auto cert = make_self_signed_certificate(dir.path());
  Running<httplib::SSLServer> server(
      std::make_unique<httplib::SSLServer>(cert.cert_file.c_str(), cert.key_file.c_str()));
  add_stream_routes(*server);
  HttpStream::Options o;
  o.base_url = "https://127.0.0.1:" + std::to_string(server.port()) + "/v3";
  o.tls.pinned_cert_file = cert.cert_file.string();
  HttpStream stream(std::move(o));
  Recorder rec;
  stream.start("/stream/orders", {}, rec.handlers());
  EXPECT_EQ(rec.ended.get().reason, StreamEnd::Reason::ended_by_server);
  EXPECT_EQ(rec.snapshot(), kExpected);
}

}  // namespace
}  // namespace backstop::net
