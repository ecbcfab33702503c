#pragma once
// A loopback server that speaks the TradeStation Web API v3 wire protocol (OAuth token flow,
// order execution, brokerage reads, chunked JSON streams) over the shared simulated Venue, with
// TradeStation's documented quirks and injectable faults. Written from the official spec and
// ../shared/api-notes/TRADESTATION.md; it shares no wire-format code with the adapter.
//
// Tests use it in-process (start(0) picks an ephemeral port); users run it through
// `backstop emulate tradestation`. The test-control API lives under /__emulator (README.md).
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "brokers/sim/fault_injector.hpp"
#include "core/price.hpp"

namespace backstop::tradestation_emulator {

struct EmulatedSymbol {
  std::string symbol;   // TradeStation spelling: "AAPL", "ESZ26"
  bool future = false;  // AssetType FUTURE instead of STOCK
  Price tick = Price::parse("0.01");
  Price start = Price::parse("100");
  std::int64_t multiplier = 1;  // contract size, for market value and P&L
};

struct EmulatedAccount {
  std::string id = "SIM2784990M";  // SIM ids look like this ([LEAN] tests)
  std::string type = "Margin";     // Cash | Margin | Futures | DVP
  Price cash = Price::from_integer(100'000);
};

struct Options {
  std::string host = "127.0.0.1";
  std::uint64_t seed = 1;
  FaultProfile faults;  // FaultProfile::named("none") by default; ts_* keys in `extra`
  std::vector<EmulatedSymbol> symbols;    // empty = AAPL and ESZ26 (see default_symbols())
  std::vector<EmulatedAccount> accounts;  // empty = one Margin and one Futures account
  // Random-walk tick per symbol; 0 = prices move only through POST /__emulator/quote.
  std::chrono::milliseconds tick_interval{0};
  // "sent after 5 seconds on an idle stream" [DOC-STREAM]; tests shorten it.
  std::chrono::milliseconds heartbeat_interval{5000};
  // DELETE answers at once; the venue cancels this much later (UCN, then CAN on the stream).
  std::chrono::milliseconds cancel_delay{20};
  // How long a stream stalled by the ts_stall fault stays silent before the server drops it.
  std::chrono::milliseconds stall_length{60'000};

  // OAuth. Access tokens live 20 minutes [DOC-AUTH]; refresh tokens rotate only on request.
  std::string client_id = "backstop-emulator";
  std::string client_secret = "backstop-emulator-secret";
  std::string refresh_token = "backstop-emulator-refresh-token";
  std::chrono::seconds access_token_lifetime{1200};
  bool rotate_refresh_tokens = false;
  std::vector<std::string> redirect_uris;  // empty = any http://localhost or http://127.0.0.1 URI

  // SIM frame quirks ([LEAN] tests, api-notes section 5); on by default so that clients meet them.
  bool fill_on_ack_frame = true;        // a fill first appears on an ACK frame, then FLL
  bool resend_terminal_frames = true;   // FLL/OUT first without ClosedDateTime, then with it
  bool closed_time_on_stop_hit = true;  // STP frames carry ClosedDateTime though not terminal
  // A replace as a new order: the answer's OrderID names a new order carrying the change, the old
  // one ends "UCH" (Replaced, a cancelled status). Whether TradeStation keeps the OrderID is not
  // documented (its answer carries one; api-notes section 3): off, the order is changed in place.
  // Applies to a standalone order nothing has filled (a bracket or OCO member, or a partly filled
  // order, is changed in place either way).
  bool replace_assigns_new_order_id = false;

  bool tls = false;  // HTTPS with a self-signed certificate generated at start()

  // Broker-side state (venue, orders, cash, positions, request and fault logs, issued tokens)
  // kept in this file, so that the emulator can be killed (SIGKILL) and restarted like a real
  // broker's back end. start() restores from it when it exists (a file that cannot be read or
  // parsed throws Error naming it); every change is written before any answer or stream frame
  // shows it. Empty = in memory only.
  std::filesystem::path state_file;
};

std::vector<EmulatedSymbol> default_symbols();
// "ESZ26" style names (root, month code, two-digit year) are futures, anything else a stock.
EmulatedSymbol symbol_from_name(const std::string& name);
// "demo" or "demo,ts_goaway=0.01,ack_delay_ms=200": a named profile plus overrides.
FaultProfile parse_fault_spec(const std::string& spec);  // throws ConfigError

class TradeStationEmulator {
 public:
  explicit TradeStationEmulator(Options options = {});
  ~TradeStationEmulator();
  TradeStationEmulator(const TradeStationEmulator&) = delete;
  TradeStationEmulator& operator=(const TradeStationEmulator&) = delete;

  // Restores Options::state_file if set, then binds and starts serving in background threads;
  // port 0 picks an ephemeral port. Throws Error when the port cannot be bound or the state file
  // cannot be read; such an emulator is not started and should be discarded.
  void start(int port = 0);
  int port() const;
  // Sends GoAway on every open stream, then shuts the server down. Idempotent.
  void stop();

  std::string base_url() const;         // "http://127.0.0.1:PORT" (https with tls)
  std::string certificate_pem() const;  // the self-signed certificate when tls, else empty
  const Options& options() const;
  std::vector<FaultRecord> fault_log() const;  // every fault injected so far

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// `backstop emulate tradestation --port N [--faults PROFILE] [--seed S] [--tls]
//  [--symbols AAPL,ESZ26] [--tick-ms N] ...`; runs until SIGINT/SIGTERM. Leading "emulate" and
// "tradestation" arguments are skipped, so the lead can pass the whole command line.
int run_tradestation_emulator(int argc, char** argv);

}  // namespace backstop::tradestation_emulator
