#include "routing/strategies/mean_reversion.hpp"

namespace backstop {

void MeanReversion::on_order_update(StrategyContext& ctx, const OrderRecord& o) {
  const std::string& id = o.spec.client_order_id;
  if (id == entry_ && o.state == OrderState::filled && stop_.empty()) {
    // In the market: protect first, then aim for the average.
    const Instrument* inst = ctx.instrument(p_.symbol);
    const Side exit_side = opposite(o.spec.side);
    const int dir = o.spec.side == Side::buy ? 1 : -1;
    const Price stop_price = inst->tick_size.round_down(o.average_fill_price) - inst->tick_size.value() * (dir * p_.stop_loss_ticks);
    stop_ = ctx.submit(stop_order(p_.symbol, exit_side, o.filled_quantity, stop_price, p_.exit_tif));
    // No average yet (an entry taken up after a restart fills before `lookback` quotes): aim for
    // the stretch the entry was made on.
    const Price target = mids_.size() >= p_.lookback
                             ? average_
                             : o.average_fill_price + inst->tick_size.value() * (dir * p_.entry_distance_ticks);
    target_ = ctx.submit(limit_order(p_.symbol, exit_side, o.filled_quantity, inst->tick_size.nearest(target), p_.exit_tif));
    return;
  }
  if (id == entry_ && o.is_terminal() && o.filled_quantity == 0) {
    entry_.clear();
    idle_since_ = ctx.now();
    return;
  }
  // One exit done: cancel the other. Both over: ready for the next trade.
  if ((id == stop_ || id == target_) && (o.state == OrderState::filled || o.filled_quantity > 0)) {
    const std::string& other = id == stop_ ? target_ : stop_;
    // Working at the broker, or held by Backstop (protection `local`): either would still fire.
    if (const OrderRecord* r = ctx.order(other);
        r && (is_working(r->state) || r->state == OrderState::held) && r->state != OrderState::pending_cancel)
      ctx.cancel(other);
  }
  const OrderRecord* s = stop_.empty() ? nullptr : ctx.order(stop_);
  const OrderRecord* t = target_.empty() ? nullptr : ctx.order(target_);
  if (s && t && s->is_terminal() && t->is_terminal()) {
    entry_.clear();
    stop_.clear();
    target_.clear();
    trail_requested_.reset();
    idle_since_ = ctx.now();
  }
}

void MeanReversion::on_resume(StrategyContext& ctx, const std::vector<const OrderRecord*>& orders) {
  // An earlier run's trade: an entry not yet answered, or the two exits of a filled one. Taken
  // up so that the exit left when the other fills is cancelled (the one-cancels-other this
  // strategy keeps itself), and no second entry goes out while one is in flight.
  std::vector<const OrderRecord*> ended;
  for (const OrderRecord* o : orders) {
    if (o->spec.symbol != p_.symbol) continue;
    if (o->spec.is_stop())
      stop_ = o->spec.client_order_id;
    else if (o->spec.type == OrderType::limit)
      target_ = o->spec.client_order_id;
    else
      entry_ = o->spec.client_order_id;
    if (o->is_terminal()) ended.push_back(o);
  }
  // What ended while Backstop was down, no update told this strategy: handled now as the update
  // would have been. An entry that filled gets its exits (else its position would have no stop),
  // an exit that filled has its partner cancelled (a stop left after the target filled would
  // open a position the other way), and a trade that is over frees the strategy for the next.
  for (const OrderRecord* o : ended) on_order_update(ctx, *o);
}

void MeanReversion::on_quote(StrategyContext& ctx, const Quote& q) {
  if (q.symbol != p_.symbol || !q.bid || !q.ask) return;
  const Instrument* inst = ctx.instrument(p_.symbol);
  if (!inst) return;
  const Price mid = Price::from_units((q.bid->units() + q.ask->units()) / 2);
  if (p_.trail_ticks > 0 && !stop_.empty()) trail(ctx, mid);
  mids_.push_back(mid);
  if (mids_.size() > p_.lookback) mids_.pop_front();
  if (mids_.size() < p_.lookback) return;
  std::int64_t sum = 0;
  for (const Price& m : mids_) sum += m.units();
  average_ = Price::from_units(sum / static_cast<std::int64_t>(mids_.size()));

  if (!entry_.empty() || ctx.position(p_.symbol) != 0 || ctx.now() - idle_since_ < p_.cooldown.count()) return;
  const Price stretch = inst->tick_size.value() * p_.entry_distance_ticks;
  if (mid <= average_ - stretch)
    entry_ = ctx.submit(market_order(p_.symbol, Side::buy, p_.quantity));
  else if (mid >= average_ + stretch)
    entry_ = ctx.submit(market_order(p_.symbol, Side::sell, p_.quantity));
}

void MeanReversion::trail(StrategyContext& ctx, Price mid) {
  const OrderRecord* stop = ctx.order(stop_);
  // Working at its broker and not being cancelled, or held by Backstop (protection `local`).
  if (!stop || !stop->spec.stop_price || stop->filled_quantity > 0 ||
      (stop->state != OrderState::submitted && stop->state != OrderState::held))
    return;
  const Instrument* inst = ctx.instrument(p_.symbol);
  if (!inst) return;
  const bool sell_stop = stop->spec.side == Side::sell;  // protects a long: trails below the mid
  const Price distance = inst->tick_size.value() * p_.trail_ticks;
  const Price level = sell_stop ? inst->tick_size.round_down(mid - distance) : inst->tick_size.round_up(mid + distance);
  const Price current = *stop->spec.stop_price;
  if (sell_stop ? level <= current : level >= current) return;  // only ever tighter
  // One replace at a time: the last one is answered once the order holds its price (or it was
  // refused, or is still unanswered after 2 s: then the next may go).
  if (trail_requested_ && *trail_requested_ != current && ctx.now() - trail_requested_at_ < to_ns(std::chrono::seconds(2)))
    return;
  OrderSpec moved = stop->spec;
  moved.stop_price = level;
  trail_requested_ = level;
  trail_requested_at_ = ctx.now();
  ctx.replace(stop_, moved);
}

}  // namespace backstop
