#pragma once
// The order lifecycle: states, the transition table, and the record each order carries.
// Every state change goes through OrderRecord::transition, which refuses what the table does not
// allow and reports the attempt either way, so the journal holds refused transitions too.
#include <array>
#include <optional>
#include <string>
#include <string_view>

#include "core/clock.hpp"
#include "core/order.hpp"

namespace backstop {

enum class OrderState {
  pre_sent,          // created and journaled; not yet known to have left the process
  pending,           // request sent, no broker answer yet (outcome may be unknown)
  submitted,         // broker acknowledged; working
  partially_filled,  // working with some quantity filled
  filled,            // terminal
  pending_cancel,    // cancel sent; broker cancels asynchronously and the order may still fill
  cancelled,         // terminal (also covers expiry)
  rejected,          // terminal: the broker refused it
  failed,            // terminal: never reached the broker (failed locally, or resolution proved
                     // after a crash that the broker never received it)
  held,              // protection `local`: a stop Backstop holds instead of the broker. Nothing is
                     // at the broker; when the stop triggers, the same order (same client order
                     // id) is sent as a market order (a limit order for a stop-limit) and goes
                     // on through pre_sent. Last in the enum: the journal's columns follow it.
};
constexpr std::size_t kOrderStateCount = 10;

const char* to_string(OrderState s);
std::optional<OrderState> order_state_from_string(const std::string& s);
bool is_terminal(OrderState s);
// Working at the broker: could still fill. A held order is not (it is not at any broker), though
// it is open: it can still be sent and fill.
bool is_working(OrderState s);
bool is_legal_transition(OrderState from, OrderState to);

struct TransitionEvent {
  std::string client_order_id;
  OrderState from;
  OrderState to;
  Timestamp at;
  std::string reason;
  bool applied;  // false: refused by the transition table, recorded but not applied
};

struct OrderRecord {
  OrderSpec spec;
  std::string broker;           // where it was routed
  std::string broker_order_id;  // empty until acknowledged
  OrderState state = OrderState::pre_sent;
  std::int64_t filled_quantity = 0;
  Price average_fill_price;
  std::string last_message;  // broker's reject or status text
  // One timestamp per state reached (0 = never). Index by OrderState.
  std::array<Timestamp, kOrderStateCount> state_times{};

  Timestamp time_of(OrderState s) const { return state_times[static_cast<std::size_t>(s)]; }
  bool is_terminal() const { return backstop::is_terminal(state); }
  std::int64_t remaining_quantity() const { return spec.quantity - filled_quantity; }

  // Applies `to` when the table allows it; returns the event to journal either way.
  TransitionEvent transition(OrderState to, Timestamp at, std::string reason = {});
  // The same, written into `ev` (every field set): an event reused by the caller keeps its
  // strings' capacity, so a hot path (a local stop's release) makes its transition without
  // allocating for the client order id and the reason.
  void transition(OrderState to, Timestamp at, std::string_view reason, TransitionEvent& ev);
  // Records a fill's quantity and price into the running average.
  void add_fill(std::int64_t quantity, Price price);
};

// Name of the timestamp column/key for a state ("submitted" -> "submitted_at").
std::string timestamp_name(OrderState s);

}  // namespace backstop
