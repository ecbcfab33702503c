#pragma once
// The one interface every broker adapter implements. Routing code names no broker.
//
// Every call is asynchronous: it returns at once and completes through its callback on the
// owning EventLoop's thread. Command outcomes are three-valued (DESIGN.md): failed locally
// (never left the process), a broker answer (accepted or rejected), or unknown (timeout,
// disconnect, garbled reply). Unknown is never failure: the caller resolves it by querying the
// order by client order id before anything is sent again.
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/fill.hpp"
#include "core/lifecycle.hpp"
#include "core/market_data.hpp"
#include "core/order.hpp"

namespace backstop {

enum class Outcome {
  failed_locally,   // the request never left the process (validation, not connected, unsupported)
  accepted,         // the broker answered yes
  rejected,         // the broker answered no; message holds its words
  unknown,          // no definitive answer; the order may or may not be live
};
const char* to_string(Outcome o);

struct CommandResult {
  Outcome outcome = Outcome::unknown;
  std::string broker_order_id;  // on accepted submits
  std::string message;          // reject reason, local error, or why the outcome is unknown
  int http_status = 0;          // when there was one

  static CommandResult failed(std::string why) { return {Outcome::failed_locally, {}, std::move(why), 0}; }
  static CommandResult accepted_as(std::string id) { return {Outcome::accepted, std::move(id), {}, 0}; }
  static CommandResult rejected_by_broker(std::string why) { return {Outcome::rejected, {}, std::move(why), 0}; }
  static CommandResult unknown_because(std::string why) { return {Outcome::unknown, {}, std::move(why), 0}; }
};

struct BracketResult {
  Outcome outcome = Outcome::unknown;  // of the bracket as a whole
  std::string message;
  std::string entry_id, take_profit_id, stop_id;  // broker order ids when accepted
};

// How an order looks at the broker, read back through a query (not the event stream). Stop
// verification compares these fields with what was sent.
struct BrokerOrder {
  std::string broker_order_id;
  std::string client_order_id;
  std::string symbol;  // Backstop symbol (the adapter maps back)
  Side side = Side::buy;
  std::int64_t quantity = 0;
  OrderType type = OrderType::market;
  std::optional<Price> limit_price;
  std::optional<Price> stop_price;
  TimeInForce tif = TimeInForce::day;
  bool outside_rth = false;
  OrderState state = OrderState::submitted;  // mapped lifecycle state
  std::string broker_status;                 // the broker's own status text, kept verbatim
  std::int64_t filled_quantity = 0;
  std::optional<Price> average_fill_price;
  std::string parent_broker_order_id;
};

struct OrderQueryResult {
  Outcome outcome = Outcome::unknown;  // accepted = the query got an answer (order may be absent)
  std::string message;
  std::optional<BrokerOrder> order;  // absent: the broker says it has no such order
};

struct OrdersResult {
  Outcome outcome = Outcome::unknown;
  std::string message;
  std::vector<BrokerOrder> orders;
};

struct FillsResult {
  Outcome outcome = Outcome::unknown;
  std::string message;
  std::vector<Fill> fills;  // executions the broker reports for the session/day
};

struct PositionsResult {
  Outcome outcome = Outcome::unknown;
  std::string message;
  std::vector<Position> positions;
};

// Pushed by the broker (stream, callback). Streams are lossy: never the only source of truth.
struct OrderEvent {
  enum class Kind { status, fill, triggered, rejected, cancelled };
  Kind kind = Kind::status;
  std::string broker_order_id;
  std::string client_order_id;
  OrderState state = OrderState::submitted;
  std::string broker_status;
  std::string message;
  std::optional<Fill> fill;  // for Kind::fill
  Timestamp at = 0;
};
const char* to_string(OrderEvent::Kind k);

// What an adapter can do. Everything defaults to unsupported, so a missing capability is never
// read as "the broker has no orders".
struct BrokerCapabilities {
  bool brackets = false;
  bool client_order_ids = false;     // broker refuses a duplicate client order id
  bool query_by_client_id = false;
  bool order_query = false;
  bool fill_query = false;
  bool native_stops = false;
  bool order_stream = false;
  bool quote_stream = false;
  bool replace = false;
};

// What the broker will read from the request its adapter builds for an order. The stop guard
// lints this, per broker, before a stop is sent: the stop price must sit in the field that broker
// reads (IBKR Client Portal STP reads `price`, not `auxPrice`), time in force must be explicit, and
// so on. Adapters fill it from the exact request body they would send.
struct WireOrderView {
  std::optional<Price> stop_price;   // as that broker will read it
  std::optional<Price> limit_price;  // as that broker will read it
  bool tif_explicit = false;         // the request names a time in force (no broker default)
  std::optional<TimeInForce> tif;
  std::optional<bool> outside_rth;
  bool manual_indicator_required = false;  // e.g. IBKR for US futures
  bool manual_indicator_set = false;
  std::string request;  // the wire body, for the lint message
};

enum class Connectivity { connected, degraded, disconnected, not_authenticated };
const char* to_string(Connectivity c);

struct BrokerHealthReport {
  Connectivity connectivity = Connectivity::disconnected;
  std::string detail;  // one line a person can act on ("gateway session not authenticated: open https://localhost:5000")
  Timestamp last_message_at = 0;  // last anything received from the broker
  int consecutive_errors = 0;
};

class Broker {
 public:
  using CommandCallback = std::function<void(CommandResult)>;
  using BracketCallback = std::function<void(BracketResult)>;
  using OrderQueryCallback = std::function<void(OrderQueryResult)>;
  using OrdersCallback = std::function<void(OrdersResult)>;
  using PositionsCallback = std::function<void(PositionsResult)>;
  using FillsCallback = std::function<void(FillsResult)>;
  using OrderEventHandler = std::function<void(const OrderEvent&)>;
  using QuoteHandler = std::function<void(const Quote&)>;

  virtual ~Broker() = default;

  virtual const std::string& name() const = 0;
  virtual BrokerCapabilities capabilities() const { return {}; }

  // Starts connecting/authenticating; the broker reports readiness through health().
  virtual void start() {}
  virtual void stop() {}

  virtual void submit(const OrderSpec& order, CommandCallback done) = 0;
  virtual void submit_bracket(const BracketSpec& bracket, BracketCallback done);
  virtual void cancel(const std::string& broker_order_id, CommandCallback done) = 0;
  // `updated` carries every field (some brokers need all of them repeated on modify).
  virtual void replace(const std::string& broker_order_id, const OrderSpec& updated,
                       CommandCallback done);

  virtual void query_order(const std::string& broker_order_id, OrderQueryCallback done);
  virtual void query_by_client_id(const std::string& client_order_id, OrderQueryCallback done);
  virtual void list_open_orders(OrdersCallback done);
  virtual void list_positions(PositionsCallback done);
  // Executions as the broker records them: the truth a missed fill event is recovered from.
  virtual void list_fills(FillsCallback done);
  // Recovery after a restart: this order, sent by an earlier process, may be at the broker with
  // its outcome unknown. Brokers whose order reads do not carry the client order id
  // (TradeStation) remember it so that query_by_client_id can find it by its details.
  virtual void expect_unknown(const OrderSpec& /*order*/, Timestamp /*sent_at*/) {}
  // Recovery after a restart: the journal ties this broker order id to this client order id (an
  // order of an earlier process, ended or not). A broker that finds unknown outcomes by their
  // details (TradeStation) must never give this id to another order: two orders of the same
  // details, one acknowledged and one whose request never arrived, would otherwise share one
  // order and count its fills twice.
  virtual void remember_order(const std::string& /*client_order_id*/, const std::string& /*broker_order_id*/) {}
  // A cheap, independent request that proves the broker answers and will take orders, for the
  // router's health checks. accepted: healthy; anything else: why not. The default lists
  // positions; adapters override it with their lightest authenticated endpoint within the
  // broker's rate limits.
  virtual void check_health(CommandCallback done);

  // One handler each; later calls replace earlier ones.
  virtual void subscribe_order_events(OrderEventHandler handler) = 0;
  virtual void subscribe_quotes(const std::vector<std::string>& symbols, QuoteHandler handler);

  virtual BrokerHealthReport health() const = 0;

  // The wire view of an order as this adapter would send it; nullopt when the adapter cannot
  // show it (the lint then checks the intent only).
  virtual std::optional<WireOrderView> preview(const OrderSpec&) const { return std::nullopt; }
};

}  // namespace backstop
