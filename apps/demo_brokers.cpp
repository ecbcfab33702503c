#include "apps/demo_brokers.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>

#include <spdlog/spdlog.h>

#include "brokers/ibkr/ibkr_broker.hpp"
#include "brokers/sim/sim_broker.hpp"
#include "brokers/sim/state_file.hpp"
#include "brokers/tradestation/tradestation_broker.hpp"
#include "core/url.hpp"
#include "core/error.hpp"
#include "emulators/ibkr/ibkr_gateway_emulator.hpp"
#include "emulators/tradestation/tradestation_emulator.hpp"

namespace backstop {

namespace {

const Price kStartPrice = Price::parse("232.86");

Url loopback_url(const BrokerConfig& b, const std::string& base_url) {
  auto url = parse_url(base_url);
  if (!url || !url->is_loopback())
    throw ConfigError("brokers[" + b.name + "].base_url: the demo starts the " + to_string(b.kind) +
                      " emulator itself and needs a loopback URL, got \"" + base_url + "\"");
  return *url;
}

class SimDemoBroker final : public DemoBroker {
 public:
  SimDemoBroker(const BrokerConfig& b, const std::vector<Instrument>& instruments, EventLoop& loop, Clock& clock,
                FaultProfile profile, std::uint64_t seed, std::filesystem::path state_file)
      : loop_(loop), faults_(std::move(profile), seed), venue_(clock, faults_), sim_(options(b), loop, venue_),
        name_(b.name), state_file_(std::move(state_file)) {
    std::uint64_t path_seed = seed;
    for (const auto& inst : instruments) {
      venue_.add_instrument(inst.symbol, inst.tick_size);
      sim_.add_price_path(std::make_unique<RandomWalkPath>(
          RandomWalkParams{inst.symbol, kStartPrice, inst.tick_size, 1, 2, 400}, path_seed++));
    }
    if (state_file_.empty()) return;
    const auto refuse = [&](const std::string& why) {
      return Error("brokers[" + name_ + "]: " + why + " (move the file away to start a new venue)");
    };
    std::optional<std::string> state;
    try {
      state = read_state_text(state_file_);  // its error names the file
    } catch (const Error& e) {
      throw refuse(e.what());
    }
    try {
      // Read record by record, never as a whole document (Venue::restore_state_text); its error
      // names the part that is wrong, or says the text is not JSON.
      if (state) venue_.restore_state_text(*state);
    } catch (const Error& e) {
      throw refuse("state file " + state_file_.string() + ": " + e.what());
    }
    saved_changes_ = venue_.changes();
  }
  ~SimDemoBroker() override {
    // Not saved here: a process that ends without stop() is one that was killed, as far as its
    // broker knows. The timer holds `this`, and the loop may outlive this broker.
    if (save_timer_ != 0) loop_.cancel(save_timer_);
  }
  static SimBrokerOptions options(const BrokerConfig& b) {
    SimBrokerOptions o;
    o.name = b.name;
    o.account = b.account;
    o.tick_interval = b.sim()->tick;
    return o;
  }
  Broker& broker() override { return sim_; }
  std::string description() const override { return "the simulated venue, in process"; }
  std::vector<FaultRecord> faults() const override { return faults_.log(); }
  void start() override {
    sim_.start();
    if (!state_file_.empty()) schedule_save();
  }
  void stop() override {
    sim_.stop();
    if (save_timer_ != 0) loop_.cancel(save_timer_);
    save_timer_ = 0;
    save();
  }

 private:
  // The venue's changes are written at most every kSaveInterval, on the loop: a process killed
  // in between loses at most that much of its venue's record (a venue that lost an order it
  // acknowledged is what reconciliation reports). Each write replaces the file whole and costs
  // the loop in proportion to the venue's record (bench/submit_path_bench.cpp,
  // BM_SimVenueStateSave: ~1 ms at 100 orders, ~10 ms at 1,000, ~150 ms at 10,000), so the next
  // write waits at least 20 times as long as the last one took: at most ~5% of the loop's time.
  static constexpr Duration kSaveInterval = std::chrono::milliseconds(100);
  static constexpr int kSaveSpacing = 20;
  void schedule_save(Duration delay = kSaveInterval) {
    save_timer_ = loop_.call_after(delay, [this] {
      const auto t0 = std::chrono::steady_clock::now();
      save();
      const auto took = std::chrono::duration_cast<Duration>(std::chrono::steady_clock::now() - t0);
      schedule_save(std::max<Duration>(kSaveInterval, took * kSaveSpacing));
    });
  }
  void save() {
    if (state_file_.empty() || venue_.changes() == saved_changes_) return;
    try {
      venue_.write_state_text(state_text_);  // no document of the whole state (Venue::write_state_text)
      write_state_text(state_file_, state_text_);
      saved_changes_ = venue_.changes();
      save_failing_ = false;
    } catch (const Error& e) {
      if (!save_failing_) spdlog::error("broker {}: the simulated venue's state is not saved: {}", name_, e.what());
      save_failing_ = true;  // said once until a write succeeds again
    }
  }

  EventLoop& loop_;
  FaultInjector faults_;
  Venue venue_;
  SimBroker sim_;
  std::string name_;
  std::filesystem::path state_file_;
  std::string state_text_;  // the last state written, its buffer reused by the next write
  std::uint64_t saved_changes_ = 0;
  bool save_failing_ = false;
  EventLoop::TimerId save_timer_ = 0;
};

class TradeStationDemoBroker final : public DemoBroker {
 public:
  TradeStationDemoBroker(const BrokerConfig& b, const std::vector<Instrument>& instruments, EventLoop& loop,
                         FaultProfile profile, std::uint64_t seed, bool start_emulator, net::LoopIo* loop_io,
                         const std::filesystem::path& state_file) {
    const auto& s = *b.tradestation();
    std::map<std::string, std::string> symbols;
    for (const auto& inst : instruments) symbols[inst.symbol] = inst.symbol_at(b.name);
    adapter_options_ = tradestation::options_from_config(b, symbols);
    adapter_options_.loop_io = loop_io;
    if (start_emulator) start_emulator_for(b, s, instruments, std::move(profile), seed, state_file);
    adapter_ = std::make_unique<tradestation::TradeStationBroker>(adapter_options_, loop);
  }
  void start_emulator_for(const BrokerConfig& b, const TradeStationSettings& s, const std::vector<Instrument>& instruments,
                          FaultProfile profile, std::uint64_t seed, const std::filesystem::path& state_file) {
    const Url url = loopback_url(b, s.base_url);
    tradestation_emulator::Options o;
    o.state_file = state_file;
    o.seed = seed;
    o.faults = std::move(profile);
    o.tick_interval = std::chrono::milliseconds(100);
    o.heartbeat_interval = std::chrono::milliseconds(1000);
    o.symbols.clear();
    for (const auto& inst : instruments)
      o.symbols.push_back({inst.symbol_at(b.name), inst.is_future(), inst.tick_size.value(), kStartPrice, inst.multiplier});
    const bool futures = !instruments.empty() && instruments.front().is_future();
    o.accounts = {{b.account, futures ? "Futures" : "Margin", Price::from_integer(1'000'000)}};
    o.client_id = s.client_id;
    if (!s.client_secret.empty()) o.client_secret = s.client_secret;
    // The emulator accepts the refresh token the config's file holds; a first run writes one.
    std::ifstream in(s.refresh_token_file);
    std::string token;
    if (in && std::getline(in, token) && !token.empty()) {
      o.refresh_token = token;
    } else {
      const int fd = ::open(s.refresh_token_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (fd < 0) throw ConfigError("brokers[" + b.name + "].refresh_token_file: cannot create " + s.refresh_token_file);
      const std::string line = o.refresh_token + "\n";
      if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
        ::close(fd);
        throw ConfigError("brokers[" + b.name + "].refresh_token_file: cannot write " + s.refresh_token_file);
      }
      ::close(fd);
    }
    emulator_ = std::make_unique<tradestation_emulator::TradeStationEmulator>(o);
    emulator_->start(url.port);
  }
  ~TradeStationDemoBroker() override {
    adapter_.reset();
    if (emulator_) emulator_->stop();
  }
  Broker& broker() override { return *adapter_; }
  std::string description() const override {
    return emulator_ ? "the TradeStation v3 adapter against its emulator at " + emulator_->base_url()
                     : "the TradeStation v3 adapter at " + adapter_options_.settings.base_url;
  }
  std::vector<FaultRecord> faults() const override { return emulator_ ? emulator_->fault_log() : std::vector<FaultRecord>{}; }
  void start() override { adapter_->start(); }
  void stop() override { adapter_->stop(); }

 private:
  tradestation::TradeStationOptions adapter_options_;
  std::unique_ptr<tradestation_emulator::TradeStationEmulator> emulator_;  // null: a real endpoint
  std::unique_ptr<tradestation::TradeStationBroker> adapter_;
};

class IbkrDemoBroker final : public DemoBroker {
 public:
  IbkrDemoBroker(const BrokerConfig& b, const std::vector<Instrument>& instruments, EventLoop& loop,
                 FaultProfile profile, std::uint64_t seed, bool start_emulator, net::LoopIo* loop_io,
                 const std::filesystem::path& state_file) {
    const auto& s = *b.ibkr();
    if (start_emulator) start_emulator_for(b, s, std::move(profile), seed, state_file);
    IbkrBrokerOptions a;
    a.name = b.name;
    a.account = b.account;
    a.settings = s;
    a.symbols.clear();
    for (const auto& inst : instruments) a.symbols[inst.symbol] = inst.symbol_at(b.name);
    a.manual_indicator = !instruments.empty() && instruments.front().is_us_future();
    a.loop_io = loop_io;
    base_url_ = s.base_url;
    adapter_ = std::make_unique<IbkrBroker>(a, loop);
  }
  void start_emulator_for(const BrokerConfig& b, const IbkrSettings& s, FaultProfile profile, std::uint64_t seed,
                          const std::filesystem::path& state_file) {
    const Url url = loopback_url(b, s.base_url);
    IbkrEmulatorOptions o;
    o.state_file = state_file.string();
    o.tls = url.scheme == "https";
    if (o.tls) o.cert_pem_path = s.tls.pinned_cert_file;  // the adapter pins what the emulator serves
    o.seed = seed;
    o.faults = std::move(profile);
    o.tick_interval = std::chrono::milliseconds(100);
    if (!b.account.empty()) o.accounts = {b.account};
    emulator_ = std::make_unique<IbkrGatewayEmulator>(o);
    emulator_->start(static_cast<std::uint16_t>(url.port));
  }
  ~IbkrDemoBroker() override {
    adapter_.reset();
    if (emulator_) emulator_->stop();
  }
  Broker& broker() override { return *adapter_; }
  std::string description() const override {
    return emulator_ ? "the IBKR Client Portal adapter against its gateway emulator at " + emulator_->base_url()
                     : "the IBKR Client Portal adapter at " + base_url_;
  }
  std::vector<FaultRecord> faults() const override { return emulator_ ? emulator_->fault_log() : std::vector<FaultRecord>{}; }
  void start() override { adapter_->start(); }
  void stop() override { adapter_->stop(); }

 private:
  std::string base_url_;
  std::unique_ptr<IbkrGatewayEmulator> emulator_;  // null: a real gateway
  std::unique_ptr<IbkrBroker> adapter_;
};

}  // namespace

std::unique_ptr<DemoBroker> make_demo_broker(const BrokerConfig& b, const std::vector<Instrument>& instruments,
                                             EventLoop& loop, Clock& clock, FaultProfile faults, std::uint64_t seed,
                                             bool start_emulator, net::LoopIo* loop_io,
                                             const std::filesystem::path& state_file) {
  switch (b.kind) {
    case BrokerKind::sim:
      return std::make_unique<SimDemoBroker>(b, instruments, loop, clock, std::move(faults), seed, state_file);
    case BrokerKind::tradestation:
      return std::make_unique<TradeStationDemoBroker>(b, instruments, loop, std::move(faults), seed, start_emulator,
                                                      loop_io, state_file);
    case BrokerKind::ibkr:
      return std::make_unique<IbkrDemoBroker>(b, instruments, loop, std::move(faults), seed, start_emulator, loop_io,
                                              state_file);
  }
  throw ConfigError("brokers[" + b.name + "]: unknown kind");
}

}  // namespace backstop
