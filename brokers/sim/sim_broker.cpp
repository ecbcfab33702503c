#include "brokers/sim/sim_broker.hpp"

#include <algorithm>
#include <limits>

namespace backstop {

namespace {
OrderState to_state(const VenueOrder& v) {
  switch (v.status) {
    case VenueStatus::held:
    case VenueStatus::working:
    case VenueStatus::triggered:
      return v.filled_quantity > 0 ? OrderState::partially_filled : OrderState::submitted;
    case VenueStatus::filled: return OrderState::filled;
    case VenueStatus::cancelled: return OrderState::cancelled;
    case VenueStatus::rejected: return OrderState::rejected;
  }
  return OrderState::submitted;
}
}  // namespace

SimBroker::SimBroker(SimBrokerOptions options, EventLoop& loop, Venue& venue)
    : options_(std::move(options)), loop_(loop), venue_(venue) {
  venue_.set_listener(lifetime_.while_alive([this](const VenueEvent& ev) { on_venue_event(ev); }));
}

BrokerCapabilities SimBroker::capabilities() const {
  BrokerCapabilities c;
  c.brackets = c.client_order_ids = c.query_by_client_id = c.order_query = c.fill_query = true;
  c.native_stops = c.order_stream = c.quote_stream = c.replace = true;
  return c;
}

void SimBroker::start() {
  if (running_) return;
  running_ = true;
  tick_timer_ = loop_.call_after(options_.tick_interval, lifetime_.while_alive([this] { tick(); }));
}

void SimBroker::stop() {
  running_ = false;
  loop_.cancel(tick_timer_);
}

void SimBroker::tick() {
  if (!running_) return;
  const Timestamp now = loop_.now();
  auto& faults = venue_.faults();
  if (link_ == Link::down && now >= link_down_until_) {
    link_ = Link::up;
    faults.record({now, "reconnect", {}, {}, "link to " + options_.name + " restored"});
  } else if (link_ == Link::up && faults.roll(faults.profile().disconnect_rate)) {
    link_ = Link::down;
    link_down_until_ = now + faults.profile().disconnect_length.count();
    faults.record({now, "disconnect", {}, {}, "link to " + options_.name + " dropped"});
  }
  for (auto& path : paths_) {
    auto q = path->next(now);
    if (!q) continue;
    q->at = now;
    venue_.on_quote(*q);
    if (link_ == Link::up) last_message_at_ = now;
    if (quote_handler_ && (quote_symbols_.empty() ||
                           std::find(quote_symbols_.begin(), quote_symbols_.end(), q->symbol) != quote_symbols_.end()))
      quote_handler_(*q);  // market data keeps flowing from the venue's feed even when orders' link is down
  }
  tick_timer_ = loop_.call_after(options_.tick_interval, lifetime_.while_alive([this] { tick(); }));
}

void SimBroker::set_link_up(bool up) {
  if ((link_ == Link::up) == up) return;
  const Timestamp now = loop_.now();
  link_ = up ? Link::up : Link::down;
  link_down_until_ = up ? now : std::numeric_limits<Timestamp>::max();
  venue_.faults().record({now, up ? "reconnect" : "disconnect", {}, {},
                          "link to " + options_.name + (up ? " restored" : " dropped (on demand)")});
}

Duration SimBroker::ack_delay() {
  const auto& p = venue_.faults().profile();
  Duration d = p.ack_delay;
  if (p.ack_delay_jitter.count() > 0) d += Duration(venue_.faults().uniform(0, p.ack_delay_jitter.count()));
  return d;
}

void SimBroker::transmit(const char* what, std::function<void()> request, std::function<void()> reply,
                         std::function<void(const std::string&)> lost,
                         std::function<void(const std::string&)> not_sent) {
  if (link_ == Link::down) {
    not_sent(options_.name + ": not connected; " + what + " not sent");
    return;
  }
  const Duration delay = ack_delay();
  if (delay.count() > 0)
    venue_.faults().record({loop_.now(), "ack_delay", {}, {}, std::string(what) + " delayed " +
                                                                   std::to_string(delay.count() / 1'000'000) + " ms"});
  // A broker destroyed before its reply is due answers nothing (the loop may outlive it).
  loop_.call_after(delay, lifetime_.while_alive([this, what, request = std::move(request), reply = std::move(reply),
                                                 lost = std::move(lost)] {
    request();
    last_message_at_ = loop_.now();
    if (link_ == Link::down || venue_.faults().roll(venue_.faults().profile().lost_reply_rate)) {
      venue_.faults().record({loop_.now(), "reply_lost", {}, {}, std::string(what) + " reached the venue; its reply was lost"});
      lost(options_.name + ": connection lost before the reply to " + what);
      return;
    }
    reply();
  }));
}

void SimBroker::submit(const OrderSpec& order, CommandCallback done) {
  auto result = std::make_shared<VenueSubmitResult>();
  auto& faults = venue_.faults();
  const bool lose = faults.roll(faults.profile().extra_rate("sim_lost_order"));
  const bool alter = order.stop_price && faults.roll(faults.profile().extra_rate("sim_alter_stop_readback"));
  transmit(
      "submit",
      [this, order, result, lose, alter] {
        if (lose) {
          // Acknowledged with an id, never reaches the venue: no events, not listed, not found.
          *result = {true, "LOST" + std::to_string(++lost_sequence_), {}};
          venue_.faults().record({loop_.now(), "lost_order", result->order_id, order.client_order_id,
                                  "acknowledged, never reached the venue"});
          return;
        }
        *result = venue_.submit(order, options_.account);
        if (alter && result->accepted) {
          // The venue holds the stop as sent; queries show it one tick higher (one field differs).
          const Price tick = venue_.tick(order.symbol).value_or(TickSize(Price::parse("0.01"))).value();
          altered_stops_[result->order_id] = *order.stop_price + tick;
          venue_.faults().record({loop_.now(), "alter_stop_readback", result->order_id, order.client_order_id,
                                  "stop reads back as " + altered_stops_[result->order_id].to_string() +
                                      ", venue holds " + order.stop_price->to_string()});
        }
      },
      [done, result] {
        done(result->accepted ? CommandResult::accepted_as(result->order_id)
                              : CommandResult::rejected_by_broker(result->reason));
      },
      [done](const std::string& why) { done(CommandResult::unknown_because(why)); },
      [done](const std::string& why) { done(CommandResult::failed(why)); });
}

void SimBroker::submit_bracket(const BracketSpec& bracket, BracketCallback done) {
  auto result = std::make_shared<VenueBracketResult>();
  transmit(
      "bracket", [this, bracket, result] { *result = venue_.submit_bracket(bracket, options_.account); },
      [done, result] {
        done({result->accepted ? Outcome::accepted : Outcome::rejected, result->reason, result->entry_id,
              result->take_profit_id, result->stop_id});
      },
      [done](const std::string& why) { done({Outcome::unknown, why, {}, {}, {}}); },
      [done](const std::string& why) { done({Outcome::failed_locally, why, {}, {}, {}}); });
}

void SimBroker::cancel(const std::string& broker_order_id, CommandCallback done) {
  auto why = std::make_shared<std::string>();
  transmit(
      "cancel", [this, broker_order_id, why] { *why = venue_.cancel(broker_order_id); },
      [done, why, broker_order_id] {
        done(why->empty() ? CommandResult::accepted_as(broker_order_id) : CommandResult::rejected_by_broker(*why));
      },
      [done](const std::string& w) { done(CommandResult::unknown_because(w)); },
      [done](const std::string& w) { done(CommandResult::failed(w)); });
}

void SimBroker::replace(const std::string& broker_order_id, const OrderSpec& u, CommandCallback done) {
  auto why = std::make_shared<std::string>();
  transmit(
      "replace",
      [this, broker_order_id, u, why] {
        *why = venue_.replace(broker_order_id, u.quantity, u.limit_price, u.stop_price, u.tif);
      },
      [done, why, broker_order_id] {
        done(why->empty() ? CommandResult::accepted_as(broker_order_id) : CommandResult::rejected_by_broker(*why));
      },
      [done](const std::string& w) { done(CommandResult::unknown_because(w)); },
      [done](const std::string& w) { done(CommandResult::failed(w)); });
}

BrokerOrder SimBroker::to_broker_order(const VenueOrder& v) {
  BrokerOrder b;
  b.broker_order_id = v.id;
  b.client_order_id = v.client_order_id;
  b.symbol = v.symbol;
  b.side = v.side;
  b.quantity = v.quantity;
  b.type = v.type;
  b.limit_price = v.limit_price;
  b.stop_price = v.stop_price;
  b.tif = v.tif;
  b.outside_rth = v.outside_rth;
  b.state = to_state(v);
  b.broker_status = to_string(v.status);
  b.filled_quantity = v.filled_quantity;
  if (v.filled_quantity > 0) b.average_fill_price = v.average_fill_price;
  b.parent_broker_order_id = v.parent_id;
  return b;
}

BrokerOrder SimBroker::read_back(const VenueOrder& v) const {
  BrokerOrder b = to_broker_order(v);
  if (auto it = altered_stops_.find(v.id); it != altered_stops_.end()) b.stop_price = it->second;
  return b;
}

// Queries are answered from the venue's book, independently of the (lossy) event delivery.
void SimBroker::answer_query(std::function<void()> answer) {
  const Duration delay = venue_.faults().profile().query_delay;
  if (delay.count() <= 0) return answer();
  // A broker destroyed before its answer is due answers nothing (the loop may outlive it).
  loop_.call_after(delay, lifetime_.while_alive(std::move(answer)));
}

void SimBroker::query_order(const std::string& id, OrderQueryCallback done) {
  if (link_ == Link::down) return done({Outcome::failed_locally, options_.name + ": not connected", std::nullopt});
  answer_query([this, id, done = std::move(done)] {
    const VenueOrder* v = venue_.find(id);
    done({Outcome::accepted, {}, v ? std::optional(read_back(*v)) : std::nullopt});
  });
}

void SimBroker::query_by_client_id(const std::string& coid, OrderQueryCallback done) {
  if (link_ == Link::down) return done({Outcome::failed_locally, options_.name + ": not connected", std::nullopt});
  answer_query([this, coid, done = std::move(done)] {
    const VenueOrder* v = venue_.find_by_client_id(coid);
    done({Outcome::accepted, {}, v ? std::optional(read_back(*v)) : std::nullopt});
  });
}

void SimBroker::list_open_orders(OrdersCallback done) {
  if (link_ == Link::down) return done({Outcome::failed_locally, options_.name + ": not connected", {}});
  answer_query([this, done = std::move(done)] {
    OrdersResult r{Outcome::accepted, {}, {}};
    r.orders.reserve(venue_.open_order_count());
    venue_.for_each_open_order([&](const VenueOrder& v) { r.orders.push_back(read_back(v)); });
    done(std::move(r));
  });
}

void SimBroker::list_positions(PositionsCallback done) {
  if (link_ == Link::down) return done({Outcome::failed_locally, options_.name + ": not connected", {}});
  answer_query([this, done = std::move(done)] {
    auto current = venue_.positions();
    const std::vector<VenuePosition>* answer = &current;
    if (venue_.faults().roll(venue_.faults().profile().stale_position_rate)) {
      venue_.faults().record({loop_.now(), "stale_positions", {}, {}, "position query answered from an old snapshot"});
      answer = &last_positions_;
    } else {
      last_positions_ = current;
    }
    PositionsResult r{Outcome::accepted, {}, {}};
    for (const auto& p : *answer) r.positions.push_back({options_.name, p.symbol, p.quantity, p.average_price});
    done(std::move(r));
  });
}

void SimBroker::list_fills(FillsCallback done) {
  if (link_ == Link::down) return done({Outcome::failed_locally, options_.name + ": not connected", {}});
  answer_query([this, done = std::move(done)] {
    FillsResult r{Outcome::accepted, {}, {}};
    for (const auto& vf : venue_.fills()) {
      const VenueOrder* o = venue_.find(vf.order_id);
      r.fills.push_back({vf.execution_id, options_.name, o->client_order_id, o->id, o->symbol, o->side,
                         vf.quantity, vf.price, vf.at});
    }
    done(std::move(r));
  });
}

void SimBroker::subscribe_quotes(const std::vector<std::string>& symbols, QuoteHandler handler) {
  quote_symbols_ = symbols;
  quote_handler_ = std::move(handler);
}

BrokerHealthReport SimBroker::health() const {
  BrokerHealthReport h;
  h.connectivity = link_ == Link::up ? Connectivity::connected : Connectivity::disconnected;
  h.detail = link_ == Link::up ? "simulated venue" : "simulated disconnect";
  h.last_message_at = last_message_at_;
  return h;
}

std::optional<WireOrderView> SimBroker::preview(const OrderSpec& o) const {
  // The simulated venue takes the spec as it is: every field is read where it was put.
  WireOrderView v;
  v.stop_price = o.stop_price;
  v.limit_price = o.limit_price;
  v.tif_explicit = true;
  v.tif = o.tif;
  v.outside_rth = o.outside_rth;
  v.request = std::string(to_string(o.type)) + " " + to_string(o.side) + " " + std::to_string(o.quantity) + " " +
              o.symbol + (o.stop_price ? " stop " + o.stop_price->to_string() : "") + " tif " + to_string(o.tif);
  return v;
}

void SimBroker::on_venue_event(const VenueEvent& ev) {
  auto& faults = venue_.faults();
  const bool is_fill = ev.kind == VenueEvent::Kind::fill;
  const Timestamp now = loop_.now();
  if (link_ == Link::down) {
    faults.record({now, is_fill ? "drop_fill_event" : "drop_order_event", ev.order.id, ev.order.client_order_id,
                   std::string(to_string(ev.kind)) + " event lost while disconnected"});
    return;
  }
  if (faults.roll(is_fill ? faults.profile().drop_fill_event_rate : faults.profile().drop_order_event_rate)) {
    faults.record({now, is_fill ? "drop_fill_event" : "drop_order_event", ev.order.id, ev.order.client_order_id,
                   std::string(to_string(ev.kind)) + " event not delivered"});
    return;
  }
  OrderEvent out;
  out.broker_order_id = ev.order.id;
  out.client_order_id = ev.order.client_order_id;
  out.state = to_state(ev.order);
  out.broker_status = to_string(ev.order.status);
  out.message = ev.order.reason;
  out.at = now;
  switch (ev.kind) {
    case VenueEvent::Kind::rejected: out.kind = OrderEvent::Kind::rejected; break;
    case VenueEvent::Kind::cancelled: out.kind = OrderEvent::Kind::cancelled; break;
    case VenueEvent::Kind::triggered: out.kind = OrderEvent::Kind::triggered; break;
    case VenueEvent::Kind::fill: {
      out.kind = OrderEvent::Kind::fill;
      Fill f;
      f.execution_id = ev.fill->execution_id;
      f.broker = options_.name;
      f.client_order_id = ev.order.client_order_id;
      f.broker_order_id = ev.order.id;
      f.symbol = ev.order.symbol;
      f.side = ev.order.side;
      f.quantity = ev.fill->quantity;
      f.price = ev.fill->price;
      f.at = ev.fill->at;
      out.fill = f;
      break;
    }
    default: out.kind = OrderEvent::Kind::status; break;
  }
  // Deliver asynchronously, like a stream: never re-enter the caller of a venue operation.
  if (order_handler_)
    loop_.post(lifetime_.while_alive([this, out = std::move(out)] {
      if (order_handler_) order_handler_(out);
    }));
}

}  // namespace backstop
