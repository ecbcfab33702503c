#include "core/fill.hpp"

namespace backstop {

namespace {
std::string key(const std::string& broker, const std::string& id) { return broker + '\x1f' + id; }
}  // namespace

bool FillLedger::record(const Fill& fill) {
  return seen_.insert(key(fill.broker, fill.execution_id)).second;
}

bool FillLedger::seen(const std::string& broker, const std::string& execution_id) const {
  return seen_.count(key(broker, execution_id)) != 0;
}

void Position::apply(Side side, std::int64_t qty, Price price) {
  const std::int64_t delta = side == Side::buy ? qty : -qty;
  const std::int64_t next = quantity + delta;
  const bool adding = quantity == 0 || (quantity > 0) == (delta > 0);
  if (adding) {
    average_price = weighted_average(average_price, quantity < 0 ? -quantity : quantity, price, qty);
  } else if (next == 0) {
    average_price = Price();
  } else if ((next > 0) != (quantity > 0)) {
    average_price = price;  // flipped through zero: the remainder opened at this price
  }
  quantity = next;
}

}  // namespace backstop
