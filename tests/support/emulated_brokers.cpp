#include "emulated_brokers.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <stdexcept>

#include "brokers/tradestation/ts_auth.hpp"

namespace backstop::testing_support {

using namespace std::chrono_literals;
using nlohmann::json;

EmulatedBrokers::EmulatedBrokers() {
  tradestation_emulator::Options to;
  to.tick_interval = 0ms;  // resting orders stay resting
  to.heartbeat_interval = 200ms;
  ts_ = std::make_unique<tradestation_emulator::TradeStationEmulator>(to);
  ts_->start(0);
  IbkrEmulatorOptions io;
  io.tls = false;  // a FaultProxy relays plain bytes
  io.pacing_window_scale = 0.02;
  io.global_requests_per_second = 1000;  // many sessions share one gateway; pacing is tested elsewhere
  io.prompts.clear();
  ib_ = std::make_unique<IbkrGatewayEmulator>(io);
  ib_->start();
}

EmulatedBrokers::~EmulatedBrokers() {
  ts_->stop();
  ib_->stop();
}

std::map<std::string, int> EmulatedBrokers::tradestation_placements() const {
  httplib::Client c("127.0.0.1", ts_->port());
  auto r = c.Get("/__emulator/log");
  if (!r) throw std::runtime_error("GET /__emulator/log from the TradeStation emulator: " + httplib::to_string(r.error()));
  std::map<std::string, int> n;
  const json log = json::parse(r->body);  // named: a range-for over a temporary's member dangles
  for (const auto& e : log["requests"]) {
    if (e.value("endpoint", "").rfind("POST", 0) != 0) continue;
    const std::string coid = e.value("OrderConfirmID", "");
    if (!coid.empty()) n[coid]++;
  }
  return n;
}

std::map<std::string, int> EmulatedBrokers::ibkr_placements() const {
  std::map<std::string, int> n;
  const json log = json::parse(ib_->log_json());
  for (const auto& e : log["orders"])
    if (e.value("stage", "") == "received") n[e.value("cOID", "")]++;
  return n;
}

std::unique_ptr<tradestation::TradeStationBroker> EmulatedBrokers::tradestation_adapter(
    EventLoop& loop, const std::string& root_url, const std::filesystem::path& dir, AdapterTimeouts t,
    net::LoopIo* loop_io) const {
  tradestation::TradeStationOptions o;
  o.name = "ts";
  o.account = kTradeStationAccount;
  o.settings.base_url = root_url + "/v3";
  o.settings.token_url = root_url + "/oauth/token";
  o.settings.client_id = ts_->options().client_id;
  o.settings.client_secret = ts_->options().client_secret;
  o.settings.refresh_token_file = (dir / "refresh-token").string();
  o.settings.stream_inactivity_timeout = 2s;
  o.reconnect_min = 50ms;
  o.reconnect_max = 500ms;
  o.order_timeout = t.request;
  o.read_timeout = t.request;
  o.symbols = {{"AAPL", "AAPL"}};
  o.loop_io = loop_io;
  tradestation::write_refresh_token(o.settings.refresh_token_file, ts_->options().refresh_token);
  return std::make_unique<tradestation::TradeStationBroker>(o, loop);
}

std::unique_ptr<IbkrBroker> EmulatedBrokers::ibkr_adapter(EventLoop& loop, const std::string& root_url,
                                                           AdapterTimeouts t, net::LoopIo* loop_io) const {
  IbkrBrokerOptions o;
  o.name = "ib";
  o.settings.base_url = root_url + "/v1/api";
  o.symbols = {{"AAPL", "AAPL"}};
  o.slow_endpoint_interval = 100ms;
  o.auth_poll_interval = 200ms;
  o.request_timeout = t.request;
  o.loop_io = loop_io;
  return std::make_unique<IbkrBroker>(o, loop);
}

}  // namespace backstop::testing_support
