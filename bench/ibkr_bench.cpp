// IBKR adapter benchmarks: `sor` message parsing (merge + mapping) and submit-to-ack over loopback
// TLS against the in-process gateway emulator, beside two floors on the same server: a
// net::HttpClient request (BM_RawHttpRoundTrip) and the same order POST sent by a bare
// synchronous Beast client over TLS (BM_MinimalBeastRoundTrip).
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>

#include <nlohmann/json.hpp>

#include "bench/iteration_times.hpp"
#include "bench/minimal_beast_client.hpp"
#include "brokers/ibkr/ibkr_broker.hpp"
#include "brokers/ibkr/ibkr_wire.hpp"
#include "brokers/net/http_client.hpp"
#include "brokers/net/loop_io.hpp"
#include "core/event_loop.hpp"
#include "emulators/ibkr/ibkr_gateway_emulator.hpp"

namespace {

using namespace backstop;
using namespace std::chrono_literals;

std::string sor_frame(int first_id, int n, bool full) {
  nlohmann::json args = nlohmann::json::array();
  for (int i = 0; i < n; ++i) {
    nlohmann::json o = {{"acct", "DU1234567"}, {"orderId", first_id + i}, {"status", "Submitted"},
                        {"filledQuantity", 0.0}, {"remainingQuantity", 100.0}};
    if (full) {
      o.update({{"conid", 265598}, {"ticker", "AAPL"}, {"origOrderType", "STOP"}, {"orderType", "Stop"},
                {"side", "SELL"}, {"timeInForce", "GTC"}, {"price", "185.00"}, {"totalSize", 100.0},
                {"order_ref", "BS" + std::to_string(first_id + i)}, {"outsideRTH", false},
                {"sizeAndFills", "0/100"}, {"listingExchange", "NASDAQ.NMS"}, {"secType", "STK"}});
    }
    args.push_back(o);
  }
  return nlohmann::json{{"topic", "sor"}, {"args", args}}.dump();
}

// Full list once, then a stream of one-order deltas: parse, merge, map to BrokerOrder.
void BM_SorParseMerge(benchmark::State& state) {
  ibkr::SorMerger merger;
  const std::map<std::int64_t, std::string> symbols{{265598, "AAPL"}};
  auto first = nlohmann::json::parse(sor_frame(1000, 50, true));
  merger.apply(first["args"]);
  std::vector<std::string> deltas;
  for (int i = 0; i < 50; ++i) deltas.push_back(sor_frame(1000 + i, 1, false));
  std::size_t k = 0, bytes = 0;
  for (auto _ : state) {
    const std::string& text = deltas[k++ % deltas.size()];
    bytes += text.size();
    auto j = nlohmann::json::parse(text);
    for (auto id : merger.apply(j["args"])) {
      auto b = ibkr::order_from_json(*merger.find(id), symbols);
      benchmark::DoNotOptimize(b);
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  // One `sor` message per iteration (items_per_second says the same; named for the report).
  state.counters["frames_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SorParseMerge);

struct Loopback {
  Loopback() {
    IbkrEmulatorOptions eo;
    eo.pacing = false;
    eo.prompts.clear();
    emu = std::make_unique<IbkrGatewayEmulator>(eo);
    emu->start();
    cert = std::filesystem::temp_directory_path() / ("ibkr-bench-" + std::to_string(::getpid()) + ".pem");
    std::ofstream(cert) << emu->certificate_pem();
  }
  ~Loopback() {
    emu->stop();
    std::filesystem::remove(cert);
  }
  // Callbacks that complete a timed step call loop.stop(), so that run_until() returns at once
  // instead of sleeping out the rest of its 1 ms slice (which put a 1 ms floor under every
  // iteration of the loop-driven benchmarks).
  template <class P>
  bool run_until(P pred, std::chrono::milliseconds limit = 10s) {
    loop.restart();
    const Timestamp deadline = clock.now() + std::chrono::nanoseconds(limit).count();
    while (!pred()) {
      if (clock.now() >= deadline) return false;
      loop.run_until(std::min(deadline, clock.now() + 1'000'000));
    }
    return true;
  }
  SystemClock clock;
  EventLoop loop{clock};
  std::unique_ptr<IbkrGatewayEmulator> emu;
  std::filesystem::path cert;
};

void BM_SubmitToAck(benchmark::State& state) {
  Loopback lb;
  IbkrBrokerOptions o;
  o.settings.base_url = lb.emu->base_url() + "/v1/api";
  o.settings.tls.pinned_cert_file = lb.cert.string();
  o.global_requests_per_second = 100000;  // emulator pacing is off: measure the adapter, not the limit
  o.use_websocket = false;
  // /1: REST on the loop's thread, as `backstop run` has it; /0: on a network thread of its own.
  std::optional<net::LoopIo> loop_io;
  if (state.range(0) != 0) o.loop_io = &loop_io.emplace(lb.loop);
  IbkrBroker broker(o, lb.loop);
  broker.start();
  if (!lb.run_until([&] { return broker.health().connectivity == Connectivity::connected; })) {
    state.SkipWithError("adapter did not connect");
    return;
  }
  int n = 0;
  bench::IterationTimes times;
  for (auto _ : state) {
    times.start();
    OrderSpec s;
    s.client_order_id = "BN" + std::to_string(::getpid() % 100000) + "x" + std::to_string(++n);
    s.symbol = "AAPL";
    s.side = Side::buy;
    s.quantity = 1;
    s.type = OrderType::limit;
    s.limit_price = Price::parse("180.00");
    s.tif = TimeInForce::day;
    std::optional<CommandResult> r;
    broker.submit(s, [&](CommandResult c) {
      r = std::move(c);
      lb.loop.stop();
    });
    lb.run_until([&] { return r.has_value(); });
    if (!r || r->outcome != Outcome::accepted) {
      state.SkipWithError("submit not accepted");
      break;
    }
    times.stop();
  }
  broker.stop();
  times.report(state);
}
BENCHMARK(BM_SubmitToAck)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_RawHttpRoundTrip(benchmark::State& state) {
  Loopback lb;
  net::HttpClient::Options ho;
  ho.base_url = lb.emu->base_url() + "/v1/api";
  ho.tls.pinned_cert_file = lb.cert.string();
  ho.post = [&lb](std::function<void()> f) { lb.loop.post(std::move(f)); };
  net::HttpClient http(ho);
  bench::IterationTimes times;
  for (auto _ : state) {
    times.start();
    std::optional<net::HttpResult> r;
    http.request({"POST", "/iserver/auth/status", {}, {}, 5s}, [&](net::HttpResult x) {
      r = std::move(x);
      lb.loop.stop();
    });
    lb.run_until([&] { return r.has_value(); });
    if (!r || !r->ok()) {
      state.SkipWithError("request failed");
      break;
    }
    times.stop();
  }
  times.report(state);
}
BENCHMARK(BM_RawHttpRoundTrip)->Unit(benchmark::kMicrosecond)->UseRealTime();

// The floor: the adapter's own request (POST /iserver/account/{acct}/orders, the ticket
// build_ticket() makes for the same OrderSpec) over TLS from a bare synchronous Beast client on
// one persistent connection. /iserver/accounts is queried once first, as the adapter does in
// start() (the gateway refuses orders before it).
void BM_MinimalBeastRoundTrip(benchmark::State& state) {
  Loopback lb;
  namespace http = boost::beast::http;
  bench::MinimalBeastClient client("127.0.0.1", lb.emu->port(), true);
  const auto accounts = client.request(http::verb::get, "/v1/api/iserver/accounts");
  if (accounts.result_int() != 200) {
    state.SkipWithError("GET /iserver/accounts failed");
    return;
  }
  const IbkrBrokerOptions defaults;
  const std::string account = "DU1234567";
  const bench::MinimalBeastClient::Headers headers{{"Content-Type", "application/json"}};
  const auto opened_before = client.connections_opened();
  int n = 0;
  bench::IterationTimes times;
  for (auto _ : state) {
    times.start();
    OrderSpec s;
    s.client_order_id = "BM" + std::to_string(::getpid() % 100000) + "x" + std::to_string(++n);
    s.symbol = "AAPL";
    s.side = Side::buy;
    s.quantity = 1;
    s.type = OrderType::limit;
    s.limit_price = Price::parse("180.00");
    s.tif = TimeInForce::day;
    const ibkr::TicketInput in{&s, 265598, account, false, defaults.manual_indicator, defaults.ext_operator, true};
    const auto res = client.request(http::verb::post, "/v1/api/iserver/account/" + account + "/orders", headers,
                                    nlohmann::json{{"orders", nlohmann::json::array({ibkr::build_ticket(in)})}}.dump());
    // Accepted: [{"order_id":...}]; a refusal is an object with "error" (or a reply prompt).
    if (res.result_int() != 200 || res.body().find("\"order_id\"") == std::string::npos) {
      state.SkipWithError(("order not placed: " + res.body()).c_str());
      break;
    }
    times.stop();
  }
  state.counters["reconnects"] = static_cast<double>(client.connections_opened() - opened_before);
  times.report(state);
}
BENCHMARK(BM_MinimalBeastRoundTrip)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
