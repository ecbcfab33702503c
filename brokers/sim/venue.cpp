#include "brokers/sim/venue.hpp"

#include <algorithm>

namespace backstop {

const char* to_string(VenueStatus s) {
  switch (s) {
    case VenueStatus::held: return "held";
    case VenueStatus::working: return "working";
    case VenueStatus::triggered: return "triggered";
    case VenueStatus::filled: return "filled";
    case VenueStatus::cancelled: return "cancelled";
    case VenueStatus::rejected: return "rejected";
  }
  return "?";
}

namespace {
// Ids count from the microsecond the venue opened (core/clock.hpp): a venue opened again after a
// restart does not repeat the first one's ids.
std::uint64_t first_id(const Clock& clock) {
  return std::max<std::uint64_t>(1'000'001, microseconds_since_2020(clock.now()));
}
}  // namespace

Venue::Venue(Clock& clock, FaultInjector& faults)
    : clock_(clock), faults_(faults), next_order_id_(first_id(clock)), next_execution_id_(next_order_id_) {}

bool is_open(VenueStatus s) {
  return s == VenueStatus::held || s == VenueStatus::working || s == VenueStatus::triggered;
}

const char* to_string(VenueEvent::Kind k) {
  switch (k) {
    case VenueEvent::Kind::accepted: return "accepted";
    case VenueEvent::Kind::rejected: return "rejected";
    case VenueEvent::Kind::activated: return "activated";
    case VenueEvent::Kind::triggered: return "triggered";
    case VenueEvent::Kind::fill: return "fill";
    case VenueEvent::Kind::cancelled: return "cancelled";
    case VenueEvent::Kind::replaced: return "replaced";
  }
  return "?";
}

void Venue::arrive(VenueArrival a, const OrderSpec& o) {
  ++changes_;
  if (arrival_listener_) arrival_listener_(a, o);
  arrivals_.push_back(std::move(a));
}

void Venue::add_instrument(const std::string& symbol, TickSize tick) { ticks_.insert_or_assign(symbol, tick); }

std::string Venue::check(const OrderSpec& o) const {
  if (auto e = validate(o); !e.empty()) return e;
  auto it = ticks_.find(o.symbol);
  if (it == ticks_.end()) return "unknown symbol " + o.symbol;
  const TickSize& tick = it->second;
  if (o.limit_price && !tick.is_on_tick(*o.limit_price))
    return "limit price " + o.limit_price->to_string() + " is not a multiple of tick " + tick.value().to_string();
  if (o.stop_price && !tick.is_on_tick(*o.stop_price))
    return "stop price " + o.stop_price->to_string() + " is not a multiple of tick " + tick.value().to_string();
  return {};
}

VenueOrder& Venue::create(const OrderSpec& o, const std::string& account, VenueStatus status) {
  VenueOrder v;
  v.id = std::to_string(next_order_id_++);
  v.client_order_id = o.client_order_id;
  v.account = account;
  v.symbol = o.symbol;
  v.side = o.side;
  v.quantity = o.quantity;
  v.type = o.type;
  v.limit_price = o.limit_price;
  v.stop_price = o.stop_price;
  v.tif = o.tif;
  v.outside_rth = o.outside_rth;
  v.status = status;
  v.created_at = v.updated_at = clock_.now();
  orders_.push_back(std::move(v));
  VenueOrder& ref = orders_.back();
  by_id_[ref.id] = orders_.size() - 1;
  if (!ref.client_order_id.empty()) by_client_id_[ref.client_order_id] = orders_.size() - 1;
  return ref;
}

void Venue::emit(VenueEvent::Kind kind, const VenueOrder& o, std::optional<VenueFill> fill) {
  ++changes_;  // every change to an order or a position is announced through here
  if (listener_) listener_(VenueEvent{kind, o, std::move(fill)});
}

void Venue::arm_ghost(VenueOrder& o) {
  if (!o.stop_price || !faults_.roll(faults_.profile().ghost_stop_rate)) return;
  o.ghost = true;
  faults_.record({clock_.now(), "ghost_stop", o.id, o.client_order_id,
                  "stop at " + o.stop_price->to_string() + " accepted and listed as working; it will never trigger"});
}

VenueSubmitResult Venue::submit(const OrderSpec& o, const std::string& account) {
  const Timestamp now = clock_.now();
  if (by_client_id_.count(o.client_order_id)) {
    arrive({now, o.client_order_id, {}, true}, o);
    return {false, {}, "duplicate client order id " + o.client_order_id};
  }
  if (auto why = check(o); !why.empty()) {
    arrive({now, o.client_order_id, {}, false}, o);
    return {false, {}, why};
  }
  VenueOrder& v = create(o, account, VenueStatus::working);
  arrive({now, o.client_order_id, v.id, false}, o);
  if (faults_.roll(faults_.profile().reject_rate)) {
    v.status = VenueStatus::rejected;
    v.reason = "simulated reject: order refused by venue risk check";
    faults_.record({now, "reject", v.id, v.client_order_id, v.reason});
    emit(VenueEvent::Kind::rejected, v);
    return {false, v.id, v.reason};
  }
  arm_ghost(v);
  emit(VenueEvent::Kind::accepted, v);
  // A marketable order fills against the last quote at once, as at a real venue.
  if (auto q = last_quote(v.symbol)) {
    std::map<Side, std::int64_t> liquidity{{Side::buy, q->ask_size}, {Side::sell, q->bid_size}};
    try_match(v, *q, liquidity);
  }
  return {true, v.id, {}};
}

VenueBracketResult Venue::submit_bracket(const BracketSpec& b, const std::string& account) {
  if (auto e = validate(b); !e.empty()) return {false, e, {}, {}, {}};
  for (const OrderSpec* leg : {&b.entry, &b.take_profit, &b.protective_stop}) {
    if (by_client_id_.count(leg->client_order_id)) {
      arrive({clock_.now(), leg->client_order_id, {}, true}, *leg);
      return {false, "duplicate client order id " + leg->client_order_id, {}, {}, {}};
    }
    if (auto why = check(*leg); !why.empty()) return {false, why, {}, {}, {}};
  }
  // Exits are created held first so that an entry filling at once activates them.
  const std::string group = "OCO-" + b.entry.client_order_id;
  VenueOrder& tp = create(b.take_profit, account, VenueStatus::held);
  VenueOrder& sl = create(b.protective_stop, account, VenueStatus::held);
  tp.oco_group = sl.oco_group = group;
  arm_ghost(sl);
  const std::string tp_id = tp.id, sl_id = sl.id;
  auto entry = submit(b.entry, account);
  if (!entry.accepted) {
    // The held exits die with their entry, and say so: a venue that answered the bracket with
    // three order ids (TradeStation's "Sent order") must also report the exits' end, or they stay
    // "submitted" at the client forever (found by the chaos test).
    for (const auto& id : {tp_id, sl_id}) {
      auto& child = orders_[by_id_.at(id)];
      child.status = VenueStatus::rejected;
      child.reason = "bracket entry refused: " + entry.reason;
      emit(VenueEvent::Kind::rejected, child);
    }
    return {false, entry.reason, entry.order_id, tp_id, sl_id};
  }
  for (const auto* leg : {&b.take_profit, &b.protective_stop}) {
    auto& child = orders_[by_id_.at(leg == &b.take_profit ? tp_id : sl_id)];
    child.parent_id = entry.order_id;
    arrive({child.created_at, child.client_order_id, child.id, false}, *leg);
    emit(VenueEvent::Kind::accepted, child);
  }
  // The entry may have filled inside submit(), before the children knew their parent.
  if (const auto* e = find(entry.order_id); e && e->status == VenueStatus::filled)
    on_order_filled(orders_[by_id_.at(entry.order_id)]);
  return {true, {}, entry.order_id, tp_id, sl_id};
}

VenueBracketResult Venue::submit_oco(const OrderSpec& a, const OrderSpec& b, const std::string& account) {
  for (const OrderSpec* leg : {&a, &b}) {
    if (by_client_id_.count(leg->client_order_id))
      return {false, "duplicate client order id " + leg->client_order_id, {}, {}, {}};
    if (auto why = check(*leg); !why.empty()) return {false, why, {}, {}, {}};
  }
  const std::string group = "OCO-" + a.client_order_id;
  VenueOrder& first = create(a, account, VenueStatus::working);
  VenueOrder& second = create(b, account, VenueStatus::working);
  first.oco_group = second.oco_group = group;
  arm_ghost(first);
  arm_ghost(second);
  arrive({first.created_at, first.client_order_id, first.id, false}, a);
  arrive({second.created_at, second.client_order_id, second.id, false}, b);
  for (VenueOrder* v : {&first, &second}) emit(VenueEvent::Kind::accepted, *v);
  return {true, {}, {}, first.id, second.id};
}

std::string Venue::cancel(const std::string& order_id, const std::string& reason) {
  auto it = by_id_.find(order_id);
  if (it == by_id_.end()) return "no such order " + order_id;
  VenueOrder& o = orders_[it->second];
  if (!is_open(o.status)) return "order " + order_id + " is already " + to_string(o.status);
  o.status = VenueStatus::cancelled;
  o.reason = reason;
  o.updated_at = clock_.now();
  emit(VenueEvent::Kind::cancelled, o);
  // Cancelling an entry that has not filled cancels its held exits.
  for (auto& child : orders_)
    if (child.parent_id == o.id && child.status == VenueStatus::held) cancel(child.id, "parent cancelled");
  return {};
}

std::string Venue::replace(const std::string& order_id, std::int64_t quantity,
                           std::optional<Price> limit_price, std::optional<Price> stop_price,
                           std::optional<TimeInForce> tif) {
  auto it = by_id_.find(order_id);
  if (it == by_id_.end()) return "no such order " + order_id;
  VenueOrder& o = orders_[it->second];
  if (!is_open(o.status)) return "order " + order_id + " is already " + to_string(o.status);
  if (quantity <= o.filled_quantity)
    return "new quantity " + std::to_string(quantity) + " is not above the filled quantity " +
           std::to_string(o.filled_quantity);
  const TickSize& tick = ticks_.at(o.symbol);
  if ((limit_price && !tick.is_on_tick(*limit_price)) || (stop_price && !tick.is_on_tick(*stop_price)))
    return "price not a multiple of tick " + tick.value().to_string();
  const bool needs_limit = o.type == OrderType::limit || o.type == OrderType::stop_limit;
  if (needs_limit != limit_price.has_value()) return "limit price required exactly for limit orders";
  if (o.stop_price.has_value() != stop_price.has_value()) return "stop price required exactly for stop orders";
  o.quantity = quantity;
  o.limit_price = limit_price;
  o.stop_price = stop_price;
  if (tif) o.tif = *tif;
  o.updated_at = clock_.now();
  emit(VenueEvent::Kind::replaced, o);
  if (auto q = last_quote(o.symbol)) {
    std::map<Side, std::int64_t> liquidity{{Side::buy, q->ask_size}, {Side::sell, q->bid_size}};
    try_match(o, *q, liquidity);
  }
  return {};
}

void Venue::on_quote(const Quote& q) {
  Quote& last = last_quotes_[q.symbol];
  // Partial updates keep the previous fields.
  if (q.bid) last.bid = q.bid, last.bid_size = q.bid_size;
  if (q.ask) last.ask = q.ask, last.ask_size = q.ask_size;
  if (q.last) last.last = q.last, last.last_size = q.last_size;
  last.symbol = q.symbol;
  last.at = q.at;
  last.source = q.source;
  // Displayed size is shared by every order on this tick: buyers take the ask, sellers the bid.
  std::map<Side, std::int64_t> liquidity{{Side::buy, last.ask_size}, {Side::sell, last.bid_size}};
  for (std::size_t i = 0; i < orders_.size(); ++i) {
    VenueOrder& o = orders_[i];
    if (o.symbol == q.symbol && (o.status == VenueStatus::working || o.status == VenueStatus::triggered))
      try_match(o, last, liquidity);
  }
}

void Venue::try_match(VenueOrder& o, const Quote& q, std::map<Side, std::int64_t>& liquidity) {
  const bool buy = o.side == Side::buy;
  const std::optional<Price> touch = buy ? q.ask : q.bid;  // price this order can trade at
  if (!touch) return;

  if (o.status == VenueStatus::working && o.stop_price) {
    // Stops trigger on the last trade when there is one, else on the touch.
    const Price ref = q.last.value_or(*touch);
    const bool crossed = buy ? ref >= *o.stop_price : ref <= *o.stop_price;
    if (!crossed) return;
    if (o.ghost) {
      if (!o.ghost_crossed_logged) {
        o.ghost_crossed_logged = true;
        ++changes_;
        faults_.record({clock_.now(), "ghost_stop_crossed", o.id, o.client_order_id,
                        "price " + ref.to_string() + " went through stop " + o.stop_price->to_string() +
                            "; the venue keeps listing it as working"});
      }
      return;
    }
    o.status = VenueStatus::triggered;
    o.triggered_at = o.updated_at = clock_.now();
    emit(VenueEvent::Kind::triggered, o);
  }

  const bool limited = o.type == OrderType::limit || o.type == OrderType::stop_limit;
  if (limited) {
    const bool marketable = buy ? *touch <= *o.limit_price : *touch >= *o.limit_price;
    if (!marketable) return;
  }
  std::int64_t& available = liquidity[o.side];
  std::int64_t qty = o.quantity - o.filled_quantity;
  if (available > 0) qty = std::min(qty, available);  // 0 = size not reported: unlimited
  if (qty <= 0) return;
  if (available > 0) available -= qty;
  execute(o, qty, *touch);
}

void Venue::execute(VenueOrder& o, std::int64_t qty, Price price) {
  const Timestamp now = clock_.now();
  o.average_fill_price = weighted_average(o.average_fill_price, o.filled_quantity, price, qty);
  o.filled_quantity += qty;
  o.updated_at = now;
  const bool complete = o.filled_quantity == o.quantity;
  if (complete) o.status = VenueStatus::filled;
  VenueFill fill{"E" + std::to_string(next_execution_id_++), o.id, qty, price, now};
  fills_.push_back(fill);

  auto& pos = positions_[o.symbol];
  pos.symbol = o.symbol;
  Position p{"", o.symbol, pos.quantity, pos.average_price};
  p.apply(o.side, qty, price);
  pos.quantity = p.quantity;
  pos.average_price = p.average_price;

  emit(VenueEvent::Kind::fill, o, fill);
  if (!o.oco_group.empty()) reduce_oco_siblings(o, qty);
  if (complete) on_order_filled(o);
}

void Venue::reduce_oco_siblings(const VenueOrder& o, std::int64_t qty) {
  for (auto& sib : orders_) {
    if (sib.id == o.id || sib.oco_group != o.oco_group || !is_open(sib.status)) continue;
    // One-cancels-other with reduction: the sibling shrinks by what this one filled.
    if (o.status == VenueStatus::filled || sib.quantity - qty <= sib.filled_quantity) {
      cancel(sib.id, "OCO sibling " + o.id + " filled");
    } else {
      sib.quantity -= qty;
      sib.updated_at = clock_.now();
      emit(VenueEvent::Kind::replaced, sib);
    }
  }
}

void Venue::on_order_filled(VenueOrder& o) {
  // Activate bracket exits held for this entry.
  for (std::size_t i = 0; i < orders_.size(); ++i) {
    VenueOrder& child = orders_[i];
    if (child.parent_id != o.id || child.status != VenueStatus::held) continue;
    child.status = VenueStatus::working;
    child.updated_at = clock_.now();
    emit(VenueEvent::Kind::activated, child);
  }
}

const VenueOrder* Venue::find(const std::string& order_id) const {
  auto it = by_id_.find(order_id);
  return it == by_id_.end() ? nullptr : &orders_[it->second];
}

const VenueOrder* Venue::find_by_client_id(const std::string& client_order_id) const {
  auto it = by_client_id_.find(client_order_id);
  return it == by_client_id_.end() ? nullptr : &orders_[it->second];
}

std::vector<VenueOrder> Venue::orders() const { return {orders_.begin(), orders_.end()}; }

std::vector<VenueOrder> Venue::open_orders() const {
  std::vector<VenueOrder> out;
  for_each_open_order([&](const VenueOrder& o) { out.push_back(o); });
  return out;
}

std::size_t Venue::open_order_count() const {
  std::size_t n = 0;
  for_each_open_order([&](const VenueOrder&) { ++n; });
  return n;
}

std::vector<VenuePosition> Venue::positions() const {
  std::vector<VenuePosition> out;
  for (const auto& [sym, p] : positions_)
    if (p.quantity != 0) out.push_back(p);
  return out;
}

std::optional<Quote> Venue::last_quote(const std::string& symbol) const {
  auto it = last_quotes_.find(symbol);
  if (it == last_quotes_.end()) return std::nullopt;
  return it->second;
}

}  // namespace backstop
