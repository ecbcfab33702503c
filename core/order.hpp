#pragma once
// What a strategy asks for, independent of any broker's wire format.
#include <optional>
#include <string>
#include <string_view>

#include "core/clock.hpp"
#include "core/price.hpp"

namespace backstop {

enum class Side { buy, sell };
enum class OrderType { market, limit, stop, stop_limit };
// GTC is the default for protective stops: a DAY stop silently expiring overnight is one of the
// ways a "working" stop stops working.
enum class TimeInForce { day, gtc, ioc, fok };

// Client order ids are at most 22 characters: TradeStation's OrderConfirmID limit, and the
// common floor of every broker Backstop speaks to.
constexpr std::size_t kMaxClientOrderIdLength = 22;

struct OrderSpec {
  std::string client_order_id;
  std::string symbol;  // Backstop instrument symbol
  Side side = Side::buy;
  std::int64_t quantity = 0;
  OrderType type = OrderType::market;
  std::optional<Price> limit_price;  // limit and stop_limit
  std::optional<Price> stop_price;   // stop and stop_limit
  TimeInForce tif = TimeInForce::day;
  bool outside_rth = false;
  std::string parent_client_order_id;  // set on bracket children
  std::string oco_group;               // exits of one bracket share a group
  // The route (the strategy's name in the config) that sent it, set by the Router; journaled, so
  // that a strategy owns its orders again after a restart. Never sent to a broker.
  std::string strategy;

  bool is_stop() const { return type == OrderType::stop || type == OrderType::stop_limit; }
};

// Entry plus its two exits. The exits are sent only once the entry fills and cancel each
// other (one-cancels-other): a take-profit fill must cancel the stop, and vice versa.
struct BracketSpec {
  OrderSpec entry;
  OrderSpec take_profit;     // limit on the opposite side
  OrderSpec protective_stop; // stop on the opposite side
};

// Builders for the common shapes; the client order id is left empty for the router to assign.
OrderSpec market_order(std::string symbol, Side side, std::int64_t qty, TimeInForce tif = TimeInForce::day);
OrderSpec limit_order(std::string symbol, Side side, std::int64_t qty, Price limit, TimeInForce tif = TimeInForce::day);
OrderSpec stop_order(std::string symbol, Side side, std::int64_t qty, Price stop, TimeInForce tif = TimeInForce::gtc);

// Client order ids of a bracket's three legs.
struct BracketIds {
  std::string entry, take_profit, protective_stop;
};

// Client order ids, broker symbols and account ids are printable ASCII (0x20-0x7E) at every broker
// Backstop speaks to; a value that is not would be refused or changed by the broker, and invalid
// UTF-8 makes a JSON writer (nlohmann's dump()) throw. "" when `value` is printable, else
// "<field> has a byte outside printable ASCII (0xNN at offset K)".
std::string unprintable_ascii_problem(std::string_view field, std::string_view value);
// How an order is named in a message: its client order id, or "(no id)" / "(id not printable)"
// (an id outside printable ASCII is not repeated into logs).
std::string order_name_for_messages(const OrderSpec& spec);

// Checks the spec is complete and consistent; returns an empty string when it is, or the
// first problem, naming the field ("order X: stop_price is required for a stop order").
std::string validate(const OrderSpec& spec);
std::string validate(const BracketSpec& bracket);

Side opposite(Side s);
const char* to_string(Side s);
const char* to_string(OrderType t);
const char* to_string(TimeInForce t);
std::optional<Side> side_from_string(const std::string& s);
std::optional<OrderType> order_type_from_string(const std::string& s);
std::optional<TimeInForce> tif_from_string(const std::string& s);

// Generates unique client order ids of at most 22 characters: a per-process prefix (so that two
// runs of Backstop never collide) and a sequence number.
class ClientOrderIdGenerator {
 public:
  // `prefix` is at most 10 characters of [A-Za-z0-9]; longer prefixes are truncated.
  explicit ClientOrderIdGenerator(std::string prefix);
  // A prefix derived from the current time, unique across restarts of one installation.
  static std::string time_prefix(Timestamp now);
  std::string next();
  const std::string& prefix() const { return prefix_; }
  // How many ids next() has handed out: the latest is "<prefix>-<sequence()>".
  std::uint64_t sequence() const { return sequence_; }

 private:
  std::string prefix_;
  std::uint64_t sequence_ = 0;
};

}  // namespace backstop
