#include "core/lifecycle.hpp"

#include <spdlog/spdlog.h>

namespace backstop {

// [[gnu::hot]]: on every order's submit path (see routing/router.cpp).

namespace {
using S = OrderState;
constexpr std::array<const char*, kOrderStateCount> kNames = {
    "pre_sent", "pending", "submitted", "partially_filled", "filled",
    "pending_cancel", "cancelled", "rejected", "failed", "held"};

constexpr std::size_t idx(S s) { return static_cast<std::size_t>(s); }

// kAllowed[from][to]. After a crash an order in pre_sent or pending may turn out to be in any
// state at the broker, so those rows allow every resolution.
constexpr auto make_table() {
  std::array<std::array<bool, kOrderStateCount>, kOrderStateCount> t{};
  auto allow = [&t](S from, std::initializer_list<S> tos) {
    for (S to : tos) t[idx(from)][idx(to)] = true;
  };
  allow(S::pre_sent, {S::pending, S::submitted, S::partially_filled, S::filled, S::cancelled,
                      S::rejected, S::failed});
  allow(S::pending, {S::submitted, S::partially_filled, S::filled, S::pending_cancel,
                     S::cancelled, S::rejected, S::failed});
  allow(S::submitted, {S::partially_filled, S::filled, S::pending_cancel, S::cancelled,
                       S::rejected});
  allow(S::partially_filled, {S::partially_filled, S::filled, S::pending_cancel, S::cancelled});
  // A cancel can lose the race with a fill, or be refused (order goes back to working).
  allow(S::pending_cancel, {S::cancelled, S::filled, S::partially_filled, S::submitted});
  // Held (protection `local`): journaled, never sent. When it triggers it is sent like a new order
  // (back to pre_sent: durable before send, and a crash after that is resolved by client order id
  // like any other). Cancelled locally; failed when it cannot be sent.
  allow(S::pre_sent, {S::held});
  allow(S::held, {S::pre_sent, S::cancelled, S::failed});
  return t;
}
constexpr auto kAllowed = make_table();
}  // namespace

const char* to_string(OrderState s) { return kNames[idx(s)]; }

std::optional<OrderState> order_state_from_string(const std::string& s) {
  for (std::size_t i = 0; i < kNames.size(); ++i)
    if (s == kNames[i]) return static_cast<OrderState>(i);
  return std::nullopt;
}

bool is_terminal(OrderState s) {
  return s == S::filled || s == S::cancelled || s == S::rejected || s == S::failed;
}

bool is_working(OrderState s) {
  return s == S::submitted || s == S::partially_filled || s == S::pending_cancel;
}

bool is_legal_transition(OrderState from, OrderState to) { return kAllowed[idx(from)][idx(to)]; }

std::string timestamp_name(OrderState s) {
  if (s == S::pre_sent) return "created_at";
  if (s == S::pending) return "sent_at";
  return std::string(to_string(s)) + "_at";
}

namespace {
// Moves `o` to `to` when the table allows it; true if applied.
bool apply_transition(OrderRecord& o, OrderState to, Timestamp at, std::string_view reason) {
  if (!is_legal_transition(o.state, to)) {
    spdlog::warn("order {}: refused illegal transition {} -> {} ({})", o.spec.client_order_id,
                 to_string(o.state), to_string(to), reason);
    return false;
  }
  o.state = to;
  if (o.state_times[idx(to)] == 0) o.state_times[idx(to)] = at;
  return true;
}
}  // namespace

TransitionEvent OrderRecord::transition(OrderState to, Timestamp at, std::string reason) {
  TransitionEvent ev{spec.client_order_id, state, to, at, std::move(reason), false};
  ev.applied = apply_transition(*this, to, at, ev.reason);
  return ev;
}

[[gnu::hot]] void OrderRecord::transition(OrderState to, Timestamp at, std::string_view reason, TransitionEvent& ev) {
  ev.client_order_id.assign(spec.client_order_id);
  ev.reason.assign(reason);
  ev.from = state;
  ev.to = to;
  ev.at = at;
  ev.applied = apply_transition(*this, to, at, ev.reason);
}

void OrderRecord::add_fill(std::int64_t quantity, Price price) {
  average_fill_price = weighted_average(average_fill_price, filled_quantity, price, quantity);
  filled_quantity += quantity;
}

}  // namespace backstop
