// net::LoopIo: HttpClient's I/O on the event loop's own thread (DESIGN.md, "Runtime shape").
// Against a cpp-httplib server on loopback; every test ends by itself within a few seconds.
#include <httplib.h>

#include <atomic>
#include <optional>
#include <thread>

#include <gtest/gtest.h>

#include "brokers/net/http_client.hpp"
#include "brokers/net/loop_io.hpp"
#include "core/clock.hpp"
#include "core/event_loop.hpp"
#include "net_test_support.hpp"

namespace backstop::net {
namespace {

using namespace std::chrono_literals;
using testing::Running;

struct Server {
  Server() : server(std::make_unique<httplib::Server>()) {
    (*server).Get("/api/echo", [this](const httplib::Request&, httplib::Response& res) {
      ++requests;
      res.set_content("hello", "text/plain");
    });
    (*server).Get("/api/slow", [this](const httplib::Request&, httplib::Response& res) {
      ++requests;
      std::this_thread::sleep_for(300ms);
      res.set_content("slow", "text/plain");
    });
  }
  std::atomic<int> requests{0};
  Running<httplib::Server> server;
};

HttpClient::Options on_loop(EventLoop& loop, LoopIo& io, int port) {
  HttpClient::Options o;
  o.base_url = "http://127.0.0.1:" + std::to_string(port) + "/api";
  o.name = "loop-io-test";
  o.loop_io = &io;
  o.post = [&loop](std::function<void()> f) { loop.post(std::move(f)); };
  return o;
}

// Runs `loop` until `done` (real time, at most `limit`).
bool run_until(EventLoop& loop, const std::function<bool()>& done, std::chrono::milliseconds limit = 5s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < end) loop.run_until(loop.now() + 10'000'000);
  return done();
}

TEST(LoopIo, RequestsRunOnTheLoopThreadOnlyWhileItRuns) {
  Server s;
  SystemClock clock;
  EventLoop loop(clock);
  LoopIo io(loop);
  HttpClient client(on_loop(loop, io, s.server.port()));
  std::optional<HttpResult> result;
  std::thread::id answered_on;
  client.request({"GET", "/echo", {}, "", 2s}, [&](HttpResult r) {
    answered_on = std::this_thread::get_id();
    result = std::move(r);
  });
  // No thread of the client's own: nothing is sent until the loop runs.
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(s.requests.load(), 0);
  ASSERT_TRUE(run_until(loop, [&] { return result.has_value(); }));
  ASSERT_TRUE(result->ok()) << result->error.message;
  EXPECT_EQ(result->response->status, 200);
  EXPECT_EQ(result->response->body, "hello");
  EXPECT_EQ(answered_on, std::this_thread::get_id());
  EXPECT_EQ(s.requests.load(), 1);
}

TEST(LoopIo, KeepAliveConnectionIsReusedAcrossRequests) {
  Server s;
  SystemClock clock;
  EventLoop loop(clock);
  LoopIo io(loop);
  HttpClient client(on_loop(loop, io, s.server.port()));
  for (int i = 0; i < 3; ++i) {
    std::optional<HttpResult> result;
    client.request({"GET", "/echo", {}, "", 2s}, [&](HttpResult r) { result = std::move(r); });
    ASSERT_TRUE(run_until(loop, [&] { return result.has_value(); }));
    ASSERT_TRUE(result->ok()) << result->error.message;
  }
  EXPECT_EQ(client.stats().connections_opened, 1u);
}

TEST(LoopIo, ServerThatNeverAnswersIsUnknownAfterTheTimeout) {
  testing::SilentServer silent;
  SystemClock clock;
  EventLoop loop(clock);
  LoopIo io(loop);
  HttpClient client(on_loop(loop, io, silent.port()));
  std::optional<HttpResult> result;
  client.request({"POST", "/orders", {}, "{}", 300ms}, [&](HttpResult r) { result = std::move(r); });
  ASSERT_TRUE(run_until(loop, [&] { return result.has_value(); }));
  ASSERT_FALSE(result->ok());
  EXPECT_EQ(result->error.state, SendState::unknown);
  EXPECT_TRUE(result->error.timed_out);
}

// The loop's io_context outlives the client: the aborted handlers of its request still run there,
// and must do nothing (AddressSanitizer reports a use after free otherwise).
TEST(LoopIo, ClientDestroyedWithARequestInFlightCallsNothingAfterwards) {
  Server s;
  SystemClock clock;
  EventLoop loop(clock);
  LoopIo io(loop);
  bool called = false;
  {
    HttpClient client(on_loop(loop, io, s.server.port()));
    client.request({"GET", "/slow", {}, "", 2s}, [&](HttpResult) { called = true; });
    ASSERT_TRUE(run_until(loop, [&] { return s.requests.load() == 1; }));  // written, answer pending
  }
  loop.run_until(loop.now() + 600'000'000);  // past the server's answer
  EXPECT_FALSE(called);
}

// A manual clock does not advance by itself: while a request is outstanding (external work),
// the idle loop waits for the network instead of jumping its clock past the answer.
TEST(LoopIo, ManualClockLoopWaitsForTheAnswerWithoutMovingTime) {
  Server s;
  ManualClock clock;
  EventLoop loop(clock);
  LoopIo io(loop);
  HttpClient client(on_loop(loop, io, s.server.port()));
  const Timestamp t0 = clock.now();
  std::optional<HttpResult> result;
  loop.add_external_work();
  client.request({"GET", "/echo", {}, "", 2s}, [&](HttpResult r) {
    result = std::move(r);
    loop.finish_external_work();
    loop.stop();
  });
  loop.run_until(t0 + 60'000'000'000LL);
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(result->ok()) << result->error.message;
  EXPECT_EQ(clock.now(), t0);
}

// A task posted from another thread wakes a loop waiting in the io_context at once, not at its
// deadline (10 s here).
TEST(LoopIo, PostFromAnotherThreadWakesTheWaitingLoop) {
  SystemClock clock;
  EventLoop loop(clock);
  LoopIo io(loop);
  std::thread poster([&] {
    std::this_thread::sleep_for(50ms);
    loop.post([&] { loop.stop(); });
  });
  const auto t0 = std::chrono::steady_clock::now();
  loop.run_until(loop.now() + 10'000'000'000LL);
  const auto took = std::chrono::steady_clock::now() - t0;
  poster.join();
  EXPECT_LT(took, 5s);
}

}  // namespace
}  // namespace backstop::net
