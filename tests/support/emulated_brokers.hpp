#pragma once
// Both broker emulators in process over plain HTTP on loopback, and the real adapters pointed at
// them (directly, or through a FaultProxy), for tests and benchmarks that route across both.
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "brokers/ibkr/ibkr_broker.hpp"
#include "brokers/tradestation/tradestation_broker.hpp"
#include "emulators/ibkr/ibkr_gateway_emulator.hpp"
#include "emulators/tradestation/tradestation_emulator.hpp"

namespace backstop::testing_support {

struct AdapterTimeouts {
  std::chrono::milliseconds request{300};  // past it an order's outcome is unknown
};

class EmulatedBrokers {
 public:
  static constexpr const char* kTradeStationAccount = "SIM2784990M";

  EmulatedBrokers();  // starts both; prices move only on demand
  ~EmulatedBrokers();
  EmulatedBrokers(const EmulatedBrokers&) = delete;
  EmulatedBrokers& operator=(const EmulatedBrokers&) = delete;

  tradestation_emulator::TradeStationEmulator& tradestation() { return *ts_; }
  IbkrGatewayEmulator& ibkr() { return *ib_; }

  // Order placements per client order id, from each emulator's own log (cancels and replaces
  // excluded). Throws std::runtime_error when the log cannot be read.
  std::map<std::string, int> tradestation_placements() const;
  std::map<std::string, int> ibkr_placements() const;

  // Adapters named "ts" and "ib". `root_url` is the emulator's own or a proxy's in front of it
  // ("http://127.0.0.1:PORT"); `dir` holds the TradeStation refresh token file. With `loop_io`,
  // their REST requests run on the loop's thread, as `backstop run` has them.
  std::unique_ptr<tradestation::TradeStationBroker> tradestation_adapter(EventLoop& loop, const std::string& root_url,
                                                                         const std::filesystem::path& dir,
                                                                         AdapterTimeouts t = {},
                                                                         net::LoopIo* loop_io = nullptr) const;
  std::unique_ptr<IbkrBroker> ibkr_adapter(EventLoop& loop, const std::string& root_url, AdapterTimeouts t = {},
                                           net::LoopIo* loop_io = nullptr) const;

 private:
  std::unique_ptr<tradestation_emulator::TradeStationEmulator> ts_;
  std::unique_ptr<IbkrGatewayEmulator> ib_;
};

}  // namespace backstop::testing_support
