// TradeStation adapter: order-stream parsing throughput (JsonObjectSplitter + OrderFrameMapper on
// realistic v3 frames split at arbitrary chunk boundaries), and submit-to-ack over loopback
// against the emulator beside two floors on the same emulator: a net::HttpClient request
// (BM_RawHttpRoundTrip) and the same order POST sent by a bare synchronous Beast client
// (BM_MinimalBeastRoundTrip).
#include <benchmark/benchmark.h>

#include <filesystem>
#include <future>
#include <optional>
#include <random>

#include "bench/iteration_times.hpp"
#include "bench/minimal_beast_client.hpp"
#include "brokers/net/http_client.hpp"
#include "brokers/net/json_object_splitter.hpp"
#include "brokers/net/loop_io.hpp"
#include "brokers/tradestation/tradestation_broker.hpp"
#include "brokers/tradestation/ts_auth.hpp"
#include "brokers/tradestation/ts_wire.hpp"
#include "core/event_loop.hpp"
#include "emulators/tradestation/tradestation_emulator.hpp"

using namespace backstop;
namespace ts = backstop::tradestation;
using namespace std::chrono_literals;

namespace {

// A day's worth of frames: per order OPN, ACK, ACK with fill, FPR, FLL, FLL with ClosedDateTime,
// with heartbeats in between, in the shape of the spec's Order1 (numbers as strings).
std::string make_frames(int orders) {
  std::string out;
  const char* statuses[] = {"OPN", "ACK", "ACK", "FPR", "FLL", "FLL"};
  for (int i = 0; i < orders; ++i) {
    for (int s = 0; s < 6; ++s) {
      const int exec = s < 2 ? 0 : s == 2 || s == 3 ? 40 : 100;
      std::string f = R"({"AccountID":"SIM2784990M","CommissionFee":"0","Currency":"USD","Duration":"GTC+",)"
                      R"("GoodTillDate":"2027-02-22T00:00:00Z","Legs":[{"AssetType":"STOCK","BuyOrSell":"Buy",)"
                      R"("ExecQuantity":")" + std::to_string(exec) +
                      R"(","ExecutionPrice":"190.01","OpenOrClose":"Open","QuantityOrdered":"100",)"
                      R"("QuantityRemaining":")" + std::to_string(100 - exec) +
                      R"(","Symbol":"AAPL"}],"LimitPrice":"190.05","OpenedDateTime":"2026-11-24T14:30:00Z",)"
                      R"("OrderID":")" + std::to_string(900000000 + i) +
                      R"(","OrderType":"Limit","PriceUsedForBuyingPower":"190.05","Routing":"Intelligent",)"
                      R"("Status":")" + statuses[s] + R"(","StatusDescription":"status text","FilledPrice":"190.01",)"
                      R"("AdvancedOptions":"","UnbundledRouteFee":"0")";
      if (s == 5) f += R"(,"ClosedDateTime":"2026-11-24T14:30:01Z")";
      f += "}\n";
      out += f;
    }
    if (i % 10 == 0) out += "{\"Heartbeat\":1,\"Timestamp\":\"2026-11-24T14:30:00Z\"}\n";
  }
  return out;
}

void BM_OrderStreamParse(benchmark::State& state) {
  const std::string data = make_frames(1000);
  const std::size_t chunk = static_cast<std::size_t>(state.range(0));
  std::size_t events = 0, frames = 0;
  for (auto _ : state) {
    net::JsonObjectSplitter splitter;
    ts::OrderFrameMapper mapper("ts", ts::SymbolMap{});
    std::vector<OrderEvent> out;
    for (std::size_t off = 0; off < data.size(); off += chunk) {
      splitter.feed(std::string_view(data).substr(off, chunk), [&](std::string_view obj) {
        ++frames;  // every object the stream carries, heartbeats included: each is parsed
        const auto j = nlohmann::json::parse(obj);
        if (j.contains("OrderID")) mapper.on_order(j, 0, out);
      });
    }
    events += out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * data.size()));
  state.counters["events_per_pass"] = static_cast<double>(events) / static_cast<double>(state.iterations());
  state.counters["frames_per_s"] = benchmark::Counter(static_cast<double>(frames), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_OrderStreamParse)->Arg(512)->Arg(16384)->Unit(benchmark::kMillisecond);

// Every round-trip benchmark's order: a 1-share AAPL limit at 100 under a fresh client order id.
OrderSpec bench_order(const char* prefix, std::uint64_t n) {
  OrderSpec s;
  s.client_order_id = prefix + std::to_string(n);
  s.symbol = "AAPL";
  s.quantity = 1;
  s.type = OrderType::limit;
  s.limit_price = Price::parse("100");
  return s;
}

struct Loopback {
  Loopback() {
    tradestation_emulator::Options o;
    o.tick_interval = 0ms;
    emu = std::make_unique<tradestation_emulator::TradeStationEmulator>(o);
    emu->start(0);
    dir = std::filesystem::temp_directory_path() / ("ts-bench-" + std::to_string(std::random_device{}()));
    std::filesystem::create_directories(dir);
  }
  ~Loopback() {
    emu->stop();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::unique_ptr<tradestation_emulator::TradeStationEmulator> emu;
  std::filesystem::path dir;
};

void BM_SubmitToAck(benchmark::State& state) {
  Loopback lb;
  SystemClock clock;
  EventLoop loop(clock);
  ts::TradeStationOptions o;
  o.account = "SIM2784990M";
  o.settings.base_url = lb.emu->base_url() + "/v3";
  o.settings.token_url = lb.emu->base_url() + "/oauth/token";
  o.settings.client_id = lb.emu->options().client_id;
  o.settings.client_secret = lb.emu->options().client_secret;
  o.settings.refresh_token_file = (lb.dir / "rt").string();
  o.order_stream = false;
  // /1: REST on the loop's thread, as `backstop run` has it; /0: on a network thread of its own.
  std::optional<net::LoopIo> loop_io;
  if (state.range(0) != 0) o.loop_io = &loop_io.emplace(loop);
  ts::write_refresh_token(o.settings.refresh_token_file, lb.emu->options().refresh_token);
  ts::TradeStationBroker broker(o, loop);
  broker.start();
  // The completion callback stops the loop: without that, run_until() would sleep out the rest
  // of its 1 ms slice after the ack and every iteration would measure at least 1 ms.
  auto run = [&](bool& flag) {
    loop.restart();
    while (!flag) loop.run_until(clock.now() + 1'000'000);
  };
  // Access token first, as in production (and as the floor below does): the timed loop measures
  // orders only, not the start-up refresh the first submit would otherwise wait for.
  const Timestamp ready_by = clock.now() + 10'000'000'000;
  while (broker.health().connectivity != Connectivity::connected && clock.now() < ready_by)
    loop.run_until(clock.now() + 1'000'000);
  if (broker.health().connectivity != Connectivity::connected) {
    state.SkipWithError("adapter did not connect");
    return;
  }
  std::uint64_t n = 0;
  bench::IterationTimes times;
  for (auto _ : state) {
    times.start();
    const OrderSpec s = bench_order("b", ++n);
    bool done = false;
    broker.submit(s, [&](CommandResult r) {
      if (r.outcome != Outcome::accepted) state.SkipWithError(r.message.c_str());
      done = true;
      loop.stop();
    });
    run(done);
    times.stop();
  }
  broker.stop();
  times.report(state);
}
BENCHMARK(BM_SubmitToAck)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond)->Iterations(300)->UseRealTime();

void BM_RawHttpRoundTrip(benchmark::State& state) {
  Loopback lb;
  net::HttpClient::Options o;
  o.base_url = lb.emu->base_url();
  net::HttpClient http(o);
  bench::IterationTimes times;
  for (auto _ : state) {
    times.start();
    std::promise<void> p;
    http.request({"GET", "/__emulator/faults", {}, {}, 5s}, [&](net::HttpResult) { p.set_value(); });
    p.get_future().wait();
    times.stop();
  }
  times.report(state);
}
BENCHMARK(BM_RawHttpRoundTrip)->Unit(benchmark::kMicrosecond)->Iterations(300)->UseRealTime();

// Between the floor and the adapter: the adapter's own order POST sent by net::HttpClient alone
// (its connection pool), the answer handed back either to a thread waiting on it (/0), or, as
// the adapter's is, to an EventLoop the benchmark thread runs, from the client's own I/O thread
// (/1) or with the I/O on the loop's thread (/2, net::LoopIo). What the adapter costs above /1 or
// /2 is its own work per order; /1 above /2 is the two thread hand-offs.
void BM_HttpClientOrderRoundTrip(benchmark::State& state) {
  Loopback lb;
  const bool via_loop = state.range(0) != 0;
  SystemClock clock;
  EventLoop loop(clock);
  std::optional<net::LoopIo> loop_io;
  net::HttpClient::Options ho;
  ho.base_url = lb.emu->base_url();
  if (via_loop) ho.post = [&loop](std::function<void()> f) { loop.post(std::move(f)); };
  if (state.range(0) == 2) ho.loop_io = &loop_io.emplace(loop);
  net::HttpClient http(ho);
  const auto& eo = lb.emu->options();
  std::promise<std::string> token_answer;
  http.request({"POST", "/oauth/token", {{"Content-Type", "application/x-www-form-urlencoded"}},
                "grant_type=refresh_token&client_id=" + eo.client_id + "&client_secret=" + eo.client_secret +
                    "&refresh_token=" + eo.refresh_token,
                5s},
               [&](net::HttpResult r) {
                 token_answer.set_value(r.ok() ? r.response->body : std::string());
                 loop.stop();
               });
  if (via_loop) loop.run_until(clock.now() + 5'000'000'000);  // the token's answer is a loop task
  const std::string token_body = token_answer.get_future().get();
  const auto token = nlohmann::json::parse(token_body, nullptr, false);
  if (token.is_discarded() || !token.contains("access_token")) {
    state.SkipWithError("token refresh refused");
    return;
  }
  const net::Headers headers{{"Authorization", "Bearer " + token.at("access_token").get<std::string>()},
                             {"Content-Type", "application/json"}};
  const ts::SymbolMap symbols;
  std::uint64_t n = 0;
  bench::IterationTimes times;
  for (auto _ : state) {
    times.start();
    const OrderSpec s = bench_order("h", ++n);
    net::HttpRequest req{"POST", "/v3/orderexecution/orders", headers,
                         ts::order_request(s, "SIM2784990M", symbols).text, 5s};
    if (via_loop) {
      bool done = false;
      http.request(std::move(req), [&](net::HttpResult r) {
        if (!r.ok() || r.response->status != 200) state.SkipWithError("order not placed");
        done = true;
        loop.stop();
      });
      loop.restart();
      while (!done) loop.run_until(clock.now() + 1'000'000);
    } else {
      std::promise<void> answered;
      http.request(std::move(req), [&](net::HttpResult r) {
        if (!r.ok() || r.response->status != 200) state.SkipWithError("order not placed");
        answered.set_value();
      });
      answered.get_future().wait();
    }
    times.stop();
  }
  times.report(state);
}
BENCHMARK(BM_HttpClientOrderRoundTrip)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond)->Iterations(300)->UseRealTime();

// The floor: the adapter's own request (POST /v3/orderexecution/orders, the body order_request()
// writes for the same OrderSpec, Bearer token) from a bare synchronous Beast client on one
// persistent connection. The access token is fetched once, before the timed loop, as the adapter
// does in start().
void BM_MinimalBeastRoundTrip(benchmark::State& state) {
  Loopback lb;
  namespace http = boost::beast::http;
  const auto& eo = lb.emu->options();
  bench::MinimalBeastClient client("127.0.0.1", static_cast<std::uint16_t>(lb.emu->port()), false);
  const auto token = client.request(
      http::verb::post, "/oauth/token", {{"Content-Type", "application/x-www-form-urlencoded"}},
      "grant_type=refresh_token&client_id=" + eo.client_id + "&client_secret=" + eo.client_secret +
          "&refresh_token=" + eo.refresh_token);
  if (token.result_int() != 200) {
    state.SkipWithError("token refresh refused");
    return;
  }
  const bench::MinimalBeastClient::Headers headers{
      {"Authorization", "Bearer " + nlohmann::json::parse(token.body()).at("access_token").get<std::string>()},
      {"Content-Type", "application/json"}};
  const ts::SymbolMap symbols;
  client.use_async(state.range(0) != 0);
  const auto opened_before = client.connections_opened();
  std::uint64_t n = 0;
  bench::IterationTimes times;
  for (auto _ : state) {
    times.start();
    const OrderSpec s = bench_order("m", ++n);
    const auto res = client.request(http::verb::post, "/v3/orderexecution/orders", headers,
                                    ts::order_request(s, "SIM2784990M", symbols).text);
    // 200 with Errors is a refusal (api-notes section 3); Orders alone is the ack.
    if (res.result_int() != 200 || res.body().find("\"Errors\"") != std::string::npos) {
      state.SkipWithError(("order not placed: " + res.body()).c_str());
      break;
    }
    times.stop();
  }
  // cpp-httplib ends a keep-alive connection after a fixed number of requests; the adapter's
  // client reconnects just the same, so the floor keeps that cost.
  state.counters["reconnects"] = static_cast<double>(client.connections_opened() - opened_before);
  times.report(state);
}
BENCHMARK(BM_MinimalBeastRoundTrip)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond)->Iterations(300)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
