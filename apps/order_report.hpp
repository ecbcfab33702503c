#pragma once
// Renders orders, fills and transitions for people (a table) and for scripts (JSON). Used by
// `backstop demo`'s summary and by `backstop orders`.
#include <nlohmann/json.hpp>
#include <ostream>
#include <vector>

#include "core/journal.hpp"

namespace backstop {

// One order with its lifecycle timestamps (ISO-8601), its transitions and its fills.
nlohmann::json order_to_json(const OrderRecord& o, const std::vector<TransitionRow>& transitions,
                             const std::vector<Fill>& fills);
// Every order in the journal, in creation order.
nlohmann::json journal_orders_json(Journal& journal);

// A fixed-width table; times are shown relative to `origin` when it is non-zero.
void print_order_table(std::ostream& out, const std::vector<OrderRecord>& orders, Timestamp origin);
void print_fills(std::ostream& out, const std::vector<Fill>& fills, Timestamp origin);

}  // namespace backstop
