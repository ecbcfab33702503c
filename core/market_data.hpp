#pragma once
#include <optional>
#include <string>

#include "core/clock.hpp"
#include "core/price.hpp"

namespace backstop {

// One top-of-book update. Any field may be absent in a partial update.
struct Quote {
  std::string symbol;
  std::optional<Price> bid;
  std::optional<Price> ask;
  std::optional<Price> last;
  std::int64_t bid_size = 0;
  std::int64_t ask_size = 0;
  std::int64_t last_size = 0;
  Timestamp at = 0;
  std::string source;  // which feed produced it (a broker name, "sim", ...)
};

// An aggregated interval of trades.
struct Bar {
  std::string symbol;
  Timestamp start = 0;
  Duration length{0};
  Price open, high, low, close;
  std::int64_t volume = 0;
};

}  // namespace backstop
