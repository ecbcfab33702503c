#include "brokers/broker.hpp"

namespace backstop {

const char* to_string(Outcome o) {
  switch (o) {
    case Outcome::failed_locally: return "failed_locally";
    case Outcome::accepted: return "accepted";
    case Outcome::rejected: return "rejected";
    case Outcome::unknown: return "unknown";
  }
  return "?";
}

const char* to_string(OrderEvent::Kind k) {
  switch (k) {
    case OrderEvent::Kind::status: return "status";
    case OrderEvent::Kind::fill: return "fill";
    case OrderEvent::Kind::triggered: return "triggered";
    case OrderEvent::Kind::rejected: return "rejected";
    case OrderEvent::Kind::cancelled: return "cancelled";
  }
  return "?";
}

const char* to_string(Connectivity c) {
  switch (c) {
    case Connectivity::connected: return "connected";
    case Connectivity::degraded: return "degraded";
    case Connectivity::disconnected: return "disconnected";
    case Connectivity::not_authenticated: return "not_authenticated";
  }
  return "?";
}

// Defaults: an adapter that does not implement an operation fails it locally and says so,
// rather than pretending an empty answer.
void Broker::submit_bracket(const BracketSpec&, BracketCallback done) {
  done({Outcome::failed_locally, name() + ": brackets are not supported", {}, {}, {}});
}
void Broker::replace(const std::string&, const OrderSpec&, CommandCallback done) {
  done(CommandResult::failed(name() + ": replace is not supported"));
}
void Broker::query_order(const std::string&, OrderQueryCallback done) {
  done({Outcome::failed_locally, name() + ": order query is not supported", std::nullopt});
}
void Broker::query_by_client_id(const std::string&, OrderQueryCallback done) {
  done({Outcome::failed_locally, name() + ": query by client order id is not supported", std::nullopt});
}
void Broker::list_open_orders(OrdersCallback done) {
  done({Outcome::failed_locally, name() + ": listing orders is not supported", {}});
}
void Broker::list_positions(PositionsCallback done) {
  done({Outcome::failed_locally, name() + ": listing positions is not supported", {}});
}
void Broker::list_fills(FillsCallback done) {
  done({Outcome::failed_locally, name() + ": listing fills is not supported", {}});
}
void Broker::check_health(CommandCallback done) {
  list_positions([done = std::move(done)](PositionsResult r) {
    CommandResult c;
    c.outcome = r.outcome;
    c.message = std::move(r.message);
    done(std::move(c));
  });
}
void Broker::subscribe_quotes(const std::vector<std::string>&, QuoteHandler) {}

}  // namespace backstop
