#pragma once
// A deterministic simulated exchange: it matches market, limit, stop and stop-limit orders and
// brackets (entry plus OCO exits) against a price path, with partial fills limited by displayed
// size. SimBroker and the protocol emulators put their own faces on it; the venue itself knows
// nothing about any wire format.
//
// Not thread-safe: its owner serializes calls (SimBroker on its event loop, emulators with a
// mutex). Listeners are called synchronously from submit/cancel/on_quote.
#include <cstdint>
#include <deque>
#include <functional>
#include <map>

#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "brokers/sim/fault_injector.hpp"
#include "core/fill.hpp"
#include "core/market_data.hpp"
#include "core/order.hpp"

namespace backstop {

enum class VenueStatus {
  held,       // bracket exit waiting for its entry to fill
  working,    // resting; for stops, not yet triggered
  triggered,  // a stop whose price was reached, now working as market/limit
  filled,
  cancelled,
  rejected,
};
const char* to_string(VenueStatus s);
bool is_open(VenueStatus s);

struct VenueOrder {
  std::string id;  // venue-assigned, numeric text
  std::string client_order_id;
  std::string account;
  std::string symbol;
  Side side = Side::buy;
  std::int64_t quantity = 0;
  OrderType type = OrderType::market;
  std::optional<Price> limit_price;
  std::optional<Price> stop_price;
  TimeInForce tif = TimeInForce::day;
  bool outside_rth = false;
  std::string parent_id;  // bracket exits: the entry's id
  std::string oco_group;  // members cancel each other
  VenueStatus status = VenueStatus::working;
  std::int64_t filled_quantity = 0;
  Price average_fill_price;
  std::string reason;  // reject or cancel reason
  bool ghost = false;  // fault: listed as working, never triggers
  bool ghost_crossed_logged = false;
  Timestamp created_at = 0;
  Timestamp updated_at = 0;
  Timestamp triggered_at = 0;
};

struct VenueFill {
  std::string execution_id;
  std::string order_id;
  std::int64_t quantity = 0;
  Price price;
  Timestamp at = 0;
};

struct VenueEvent {
  enum class Kind { accepted, rejected, activated, triggered, fill, cancelled, replaced };
  Kind kind;
  VenueOrder order;  // snapshot after the event
  std::optional<VenueFill> fill;
};
const char* to_string(VenueEvent::Kind k);

// One line per request that reached the venue, kept so tests can prove no order arrived twice.
struct VenueArrival {
  Timestamp at = 0;
  std::string client_order_id;
  std::string order_id;  // empty when refused
  bool duplicate = false;
};

struct VenueSubmitResult {
  bool accepted = false;
  std::string order_id;
  std::string reason;  // when refused
};

struct VenueBracketResult {
  bool accepted = false;
  std::string reason;
  std::string entry_id, take_profit_id, stop_id;
};

struct VenuePosition {
  std::string symbol;
  std::int64_t quantity = 0;
  Price average_price;
};

class Venue {
 public:
  using Listener = std::function<void(const VenueEvent&)>;

  // Order and execution ids count up from the microsecond the venue opened (counted from 2020;
  // never below 1000001), as a real broker's never repeat: a venue opened again after its
  // process ended, with nothing of the first kept (no state file), hands out none the first one
  // gave, so the journal of the earlier run cannot take a new order's fill for an old one's.
  // They would meet only if the earlier venue had handed out more than one id per microsecond
  // of its life.
  Venue(Clock& clock, FaultInjector& faults);

  void add_instrument(const std::string& symbol, TickSize tick);
  bool has_instrument(const std::string& symbol) const { return ticks_.count(symbol) != 0; }
  std::optional<TickSize> tick(const std::string& symbol) const {
    auto it = ticks_.find(symbol);
    return it == ticks_.end() ? std::nullopt : std::optional<TickSize>(it->second);
  }
  void set_listener(Listener l) { listener_ = std::move(l); }
  // Called for every request that reaches the venue (accepted, refused or duplicate), before the
  // venue acts on it: emulators and tests persist it as the venue's own record of what arrived.
  using ArrivalListener = std::function<void(const VenueArrival&, const OrderSpec&)>;
  void set_arrival_listener(ArrivalListener l) { arrival_listener_ = std::move(l); }

  VenueSubmitResult submit(const OrderSpec& order, const std::string& account = {});
  // Entry plus take-profit and stop, the exits held until the entry fills and linked OCO.
  VenueBracketResult submit_bracket(const BracketSpec& bracket, const std::string& account = {});
  // Exits given as an OCO pair (no entry), e.g. protecting an existing position.
  VenueBracketResult submit_oco(const OrderSpec& a, const OrderSpec& b, const std::string& account = {});
  // Returns an empty string on success, else why not.
  std::string cancel(const std::string& order_id, const std::string& reason = "cancelled by user");
  std::string replace(const std::string& order_id, std::int64_t quantity,
                      std::optional<Price> limit_price, std::optional<Price> stop_price,
                      std::optional<TimeInForce> tif = std::nullopt);

  // Matches resting orders of the quote's symbol against it.
  void on_quote(const Quote& quote);

  const VenueOrder* find(const std::string& order_id) const;
  const VenueOrder* find_by_client_id(const std::string& client_order_id) const;
  std::vector<VenueOrder> orders() const;        // all, in arrival order
  std::vector<VenueOrder> open_orders() const;   // held, working, triggered
  // Calls f(order) for each open order, in arrival order, without copying them: SimBroker lists
  // them on every reconciliation cycle, and a copy of 10,000 was ~6 MB each second.
  template <typename F>
  void for_each_open_order(F&& f) const {
    for (const auto& o : orders_)
      if (is_open(o.status)) f(o);
  }
  std::size_t open_order_count() const;
  std::vector<VenuePosition> positions() const;  // non-zero only
  const std::vector<VenueArrival>& arrivals() const { return arrivals_; }
  const std::vector<VenueFill>& fills() const { return fills_; }
  std::optional<Quote> last_quote(const std::string& symbol) const;
  FaultInjector& faults() { return faults_; }
  Clock& clock() { return clock_; }

  // The venue's durable record (orders, fills, positions, arrivals, last quotes, id counters),
  // so that an emulator process killed and restarted keeps what a real broker keeps. Instruments
  // and listeners are configuration, not state: the owner sets them up again before restoring.
  // venue_state.cpp; restore_state throws Error naming the key that is wrong.
  nlohmann::json save_state() const;
  void restore_state(const nlohmann::json& state);
  // The same state as text (exactly save_state().dump()) and read back from text, without a
  // document of the whole state: one record's at a time. For a venue of thousands of orders
  // (the in-process venue of `backstop run` keeps its state beside the journal), where the whole
  // document cost ~6 times the text's size in memory (bench/memory_bench.cpp).
  void write_state_text(std::string& out) const;
  void restore_state_text(std::string_view text);  // throws Error as restore_state does
  // Moves on every change of that record; owners persist when it has moved.
  std::uint64_t changes() const { return changes_; }

 private:
  void install(std::deque<VenueOrder> orders, std::vector<VenueFill> fills, std::map<std::string, VenuePosition> positions,
               std::vector<VenueArrival> arrivals, std::map<std::string, Quote> quotes, std::uint64_t next_order_id,
               std::uint64_t next_execution_id);
  std::string check(const OrderSpec& o) const;
  VenueOrder& create(const OrderSpec& o, const std::string& account, VenueStatus status);
  void emit(VenueEvent::Kind kind, const VenueOrder& o, std::optional<VenueFill> fill = std::nullopt);
  void try_match(VenueOrder& o, const Quote& q, std::map<Side, std::int64_t>& liquidity);
  void execute(VenueOrder& o, std::int64_t qty, Price price);
  void on_order_filled(VenueOrder& o);
  void reduce_oco_siblings(const VenueOrder& o, std::int64_t qty);
  void arm_ghost(VenueOrder& o);

  Clock& clock_;
  FaultInjector& faults_;
  Listener listener_;
  ArrivalListener arrival_listener_;
  void arrive(VenueArrival a, const OrderSpec& o);
  std::map<std::string, TickSize> ticks_;
  std::map<std::string, Quote> last_quotes_;
  std::deque<VenueOrder> orders_;  // arrival order; deque keeps references valid on growth
  std::map<std::string, std::size_t> by_id_;             // id -> index
  std::map<std::string, std::size_t> by_client_id_;      // client order id -> index
  std::map<std::string, VenuePosition> positions_;
  std::vector<VenueArrival> arrivals_;
  std::vector<VenueFill> fills_;
  std::uint64_t next_order_id_;
  std::uint64_t next_execution_id_;
  std::uint64_t changes_ = 0;
};

}  // namespace backstop
