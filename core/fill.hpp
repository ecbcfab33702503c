#pragma once
// Fills and positions. Brokers repeat fill reports (stream replays after reconnect, snapshots,
// cumulative quantities); a fill is identified by its execution id and counts once.
#include <string>
#include <unordered_set>

#include "core/clock.hpp"
#include "core/order.hpp"
#include "core/price.hpp"

namespace backstop {

struct Fill {
  std::string execution_id;  // the broker's id for this execution
  std::string broker;
  std::string client_order_id;
  std::string broker_order_id;
  std::string symbol;
  Side side = Side::buy;
  std::int64_t quantity = 0;
  Price price;
  Timestamp at = 0;
  // The order's filled quantity once this execution counts, when the broker names its executions
  // by it (IBKR's and TradeStation's order updates, and a broker's order view read back); 0 when
  // it does not. One execution can reach us under two names (a stream's and a read-back's): its
  // cumulative quantity tells that it is already counted, whatever its name.
  std::int64_t cumulative_quantity = 0;
};

// Remembers which executions have been counted.
class FillLedger {
 public:
  // True the first time an execution id is seen for a broker; false for every repeat.
  bool record(const Fill& fill);
  bool seen(const std::string& broker, const std::string& execution_id) const;
  std::size_t size() const { return seen_.size(); }

 private:
  std::unordered_set<std::string> seen_;  // broker + '\x1f' + execution id
};

struct Position {
  std::string broker;
  std::string symbol;
  std::int64_t quantity = 0;  // signed: long > 0, short < 0
  Price average_price;        // of the open quantity

  // Applies a fill: adds to or reduces the position; the average moves only when adding.
  void apply(Side side, std::int64_t qty, Price price);
};

}  // namespace backstop
