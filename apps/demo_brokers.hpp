#pragma once
// A broker a session runs on: the simulated venue in process, or a real adapter (TradeStation,
// IBKR) talking to that broker's protocol emulator, started here on the loopback port the config
// names. Either way the strategy, OrderManager, stop guard and reconciler are the same objects.
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "brokers/broker.hpp"
#include "brokers/sim/fault_injector.hpp"
#include "config/config.hpp"
#include "core/event_loop.hpp"

namespace backstop::net {
class LoopIo;
}  // namespace backstop::net

namespace backstop {

class DemoBroker {
 public:
  virtual ~DemoBroker() = default;
  virtual Broker& broker() = 0;
  virtual std::string description() const = 0;
  // Every fault the venue injected (the emulator's or the in-process venue's own record).
  virtual std::vector<FaultRecord> faults() const = 0;
  // Starts market data and connections; `ready` turns true once orders can be sent.
  virtual void start() = 0;
  bool ready() { return broker().health().connectivity == Connectivity::connected; }
  virtual void stop() = 0;
};

// With `start_emulator`, an adapter's protocol emulator is started on the loopback port of its
// base_url (ConfigError for a non-loopback URL); without, the adapter talks to its base_url.
// The simulated venue always runs in process. `faults` and `seed` drive venues and emulators.
// With `loop_io`, the adapters' REST requests run on the loop's thread (net/loop_io.hpp).
// With `state_file`, the simulated venue, or the emulator started here, keeps what a broker
// keeps (orders, fills, positions, ids) in that file and takes it up again when started on it,
// so that a process started again finds its broker as it left it, as with a real broker; empty:
// in memory only, a new broker every time. An unreadable file is an Error naming it.
std::unique_ptr<DemoBroker> make_demo_broker(const BrokerConfig& broker, const std::vector<Instrument>& instruments,
                                             EventLoop& loop, Clock& clock, FaultProfile faults, std::uint64_t seed,
                                             bool start_emulator = true, net::LoopIo* loop_io = nullptr,
                                             const std::filesystem::path& state_file = {});

}  // namespace backstop
