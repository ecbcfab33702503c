// TradeStation adapter: order-stream parsing throughput (JsonObjectSplitter + OrderFrameMapper on
// realistic v3 frames split at arbitrary chunk boundaries), and submit-to-ack over loopback
// against the emulator beside the raw round trip of a minimal net::HttpClient request to it.
#include <benchmark/benchmark.h>

#include <filesystem>
#include <future>
#include <random>

#include "brokers/net/http_client.hpp"
#include "brokers/net/json_object_splitter.hpp"
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
  std::size_t events = 0;
  for (auto _ : state) {
    net::JsonObjectSplitter splitter;
    ts::OrderFrameMapper mapper("ts", ts::SymbolMap{});
    std::vector<OrderEvent> out;
    for (std::size_t off = 0; off < data.size(); off += chunk) {
      splitter.feed(std::string_view(data).substr(off, chunk), [&](std::string_view obj) {
        const auto j = nlohmann::json::parse(obj);
        if (j.contains("OrderID")) mapper.on_order(j, 0, out);
      });
    }
    events += out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * data.size()));
  state.counters["events_per_pass"] = static_cast<double>(events) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_OrderStreamParse)->Arg(512)->Arg(16384)->Unit(benchmark::kMillisecond);

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
  ts::write_refresh_token(o.settings.refresh_token_file, lb.emu->options().refresh_token);
  ts::TradeStationBroker broker(o, loop);
  broker.start();
  auto run = [&](bool& flag) {
    while (!flag) loop.run_until(clock.now() + 1'000'000);
  };
  std::uint64_t n = 0;
  for (auto _ : state) {
    OrderSpec s;
    s.client_order_id = "b" + std::to_string(++n);
    s.symbol = "AAPL";
    s.quantity = 1;
    s.type = OrderType::limit;
    s.limit_price = Price::parse("100");
    bool done = false;
    broker.submit(s, [&](CommandResult r) {
      if (r.outcome != Outcome::accepted) state.SkipWithError(r.message.c_str());
      done = true;
    });
    run(done);
  }
  broker.stop();
}
BENCHMARK(BM_SubmitToAck)->Unit(benchmark::kMicrosecond)->Iterations(300);

void BM_RawHttpRoundTrip(benchmark::State& state) {
  Loopback lb;
  net::HttpClient::Options o;
  o.base_url = lb.emu->base_url();
  net::HttpClient http(o);
  for (auto _ : state) {
    std::promise<void> p;
    http.request({"GET", "/__emulator/faults", {}, {}, 5s}, [&](net::HttpResult) { p.set_value(); });
    p.get_future().wait();
  }
}
BENCHMARK(BM_RawHttpRoundTrip)->Unit(benchmark::kMicrosecond)->Iterations(300);

}  // namespace

BENCHMARK_MAIN();
