#pragma once
// A loopback emulator of the IBKR Client Portal gateway: HTTPS (self-signed, like the real
// gateway) under /v1/api plus the WebSocket at /v1/api/ws, over the shared simulated Venue, with
// the gateway's quirks and a set of injectable faults. Written from the official specs in
// ../shared/specs and ../shared/api-notes/IBKR.md, never from the adapter. See README.md.
//
//   IbkrGatewayEmulator emu(options);
//   emu.start();            // ephemeral port on 127.0.0.1
//   // https://127.0.0.1:<emu.port()>/v1/api/...   test control: /__emulator/...
//   emu.stop();
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "brokers/sim/fault_injector.hpp"
#include "core/price.hpp"

namespace backstop {

// One row of the emulator's fixed contract table.
struct IbkrEmulatorContract {
  std::int64_t conid = 0;
  std::string symbol;        // IBKR symbol ("AAPL", "ES")
  std::string venue_symbol;  // what the simulated venue trades ("AAPL", "ES-2026-12")
  std::string sec_type;      // "STK" or "FUT"
  std::string exchange;      // "NASDAQ", "CME"
  std::string listing_exchange;  // "NASDAQ.NMS", "CME"
  std::string company_name;
  std::string currency = "USD";
  Price tick = Price::parse("0.01");
  std::int64_t multiplier = 1;
  int price_decimals = 2;
  std::string expiry;  // futures: YYYYMMDD
  std::int64_t underlying_conid = 0;
  Price start_price;   // first quote and random-walk start
};

std::vector<IbkrEmulatorContract> default_ibkr_emulator_contracts();

struct IbkrEmulatorOptions {
  std::string bind_address = "127.0.0.1";
  bool tls = true;                  // the real gateway only speaks HTTPS
  std::string cert_pem_path;        // when set, the generated certificate is written here
  std::uint64_t seed = 1;
  FaultProfile faults;              // "none" by default
  std::chrono::milliseconds tick_interval{0};  // random-walk step; 0 = market moves only on demand
  bool initial_quotes = true;       // seed every contract with a quote at its start price
  bool start_logged_in = true;      // false: as if nobody has done the browser login (2FA) yet
  std::vector<std::string> accounts{"DU1234567"};
  std::string user_name = "bstpemu1";
  std::vector<IbkrEmulatorContract> contracts = default_ibkr_emulator_contracts();
  // Order-reply prompts that may appear ("o163" price cap, "o383" size, "o10331" stop warning
  // on place, "o0" on modify, "o354" no market data); each appears only where its condition
  // holds. Empty = none.
  std::set<std::string> prompts{"o163", "o383", "o10331", "o0"};
  // Pacing (api-notes 1.2). The per-endpoint windows (5 s for /iserver/account/orders ...) are
  // multiplied by pacing_window_scale so that tests need not wait 5 s.
  bool pacing = true;
  int global_requests_per_second = 10;
  double pacing_window_scale = 1.0;
  std::chrono::milliseconds cancel_delay{150};     // DELETE answers at once; cancel lands later
  std::chrono::milliseconds ws_ready_delay{150};   // before the "system" ready frame
  std::chrono::milliseconds ws_heartbeat_interval{10'000};
  std::chrono::milliseconds session_idle_timeout{360'000};  // ~6 min without requests (CAMPUS)
  std::chrono::milliseconds reply_ttl{60'000};
  std::chrono::milliseconds positions_cache_ttl{60'000};
  // When set, the broker's back end (venue, order ids, the emulator's logs) is written here after
  // every change and read back at start, so the process can be SIGKILLed and restarted like a
  // real gateway while the broker keeps its orders. Sessions and sockets are not kept.
  std::string state_file;
};

class IbkrGatewayEmulator {
 public:
  explicit IbkrGatewayEmulator(IbkrEmulatorOptions options = {});
  ~IbkrGatewayEmulator();
  IbkrGatewayEmulator(const IbkrGatewayEmulator&) = delete;
  IbkrGatewayEmulator& operator=(const IbkrGatewayEmulator&) = delete;

  // Binds to options.bind_address:port (0 = ephemeral) and serves on a background thread.
  void start(std::uint16_t port = 0);
  std::uint16_t port() const;
  void stop();  // idempotent; also called by the destructor

  // "https://127.0.0.1:PORT" (or http when tls is off); the API lives under /v1/api.
  std::string base_url() const;
  const std::string& certificate_pem() const;  // empty when tls is off

  // The same operations as the /__emulator control endpoints, in process.
  void login();           // the person completed the browser login and 2FA
  void logout();          // the whole session ends (API answers 401 / 302)
  void expire_session();  // brokerage session times out: authenticated=false, connected=true
  // Sets the top of book of a contract (by conid) and matches resting orders against it.
  void set_quote(std::int64_t conid, std::optional<Price> bid, std::optional<Price> ask,
                 std::optional<Price> last);
  void set_fault_profile(const FaultProfile& profile);
  std::vector<FaultRecord> fault_log() const;
  std::string log_json() const;  // the body of GET /__emulator/log

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// `backstop emulate ibkr --port N [--faults PROFILE] [--seed S] [--tls|--no-tls] [--tick-ms N]
//  [--cert-out PATH] [--logged-out] [--state FILE]`. argv[0] is the program (or subcommand) name. Runs until
// SIGINT/SIGTERM; returns the process exit code.
int run_ibkr_emulator(int argc, char** argv);

}  // namespace backstop
