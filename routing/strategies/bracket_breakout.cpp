#include "routing/strategies/bracket_breakout.hpp"

#include <algorithm>

namespace backstop {

bool BracketBreakout::bracket_done(StrategyContext& ctx) const {
  if (entry_.empty()) return true;
  const OrderRecord* e = ctx.order(entry_);
  if (!e) return true;
  if (e->state == OrderState::filled) {
    // In the market: done once both exits are over (one filled, the other cancelled by OCO).
    const OrderRecord* tp = ctx.order(take_profit_);
    const OrderRecord* sl = ctx.order(stop_);
    return (!tp || tp->is_terminal()) && (!sl || sl->is_terminal());
  }
  return e->is_terminal() && e->filled_quantity == 0;
}

void BracketBreakout::on_resume(StrategyContext& ctx, const std::vector<const OrderRecord*>& orders) {
  // An earlier run's bracket still open (its entry working, or its exits after the entry
  // filled): followed as if this run had sent it, so no second bracket goes out beside it and
  // an entry past its timeout is cancelled. Exits name their entry as parent. Legs that ended
  // while Backstop was down need nothing: the broker ties a bracket's exits together itself.
  for (const OrderRecord* o : orders) {
    if (o->spec.symbol != p_.symbol || o->is_terminal()) continue;
    const std::string& coid = o->spec.client_order_id;
    const std::string& parent = o->spec.parent_client_order_id;
    if (parent.empty()) {
      entry_ = coid;
    } else {
      entry_ = parent;
      (o->spec.is_stop() ? stop_ : take_profit_) = coid;
    }
  }
  if (const OrderRecord* e = entry_.empty() ? nullptr : ctx.order(entry_))
    entry_sent_at_ = e->time_of(OrderState::pending) ? e->time_of(OrderState::pending) : e->time_of(OrderState::pre_sent);
}

void BracketBreakout::on_order_update(StrategyContext& ctx, const OrderRecord&) {
  if (!entry_.empty() && bracket_done(ctx)) {
    entry_.clear();
    idle_since_ = ctx.now();
    cancel_requested_ = false;
  }
}

void BracketBreakout::on_quote(StrategyContext& ctx, const Quote& q) {
  if (q.symbol != p_.symbol || !q.bid || !q.ask) return;
  const Instrument* inst = ctx.instrument(p_.symbol);
  if (!inst) return;
  const TickSize& tick = inst->tick_size;
  const Price mid = tick.round_down(Price::from_units((q.bid->units() + q.ask->units()) / 2));

  if (!entry_.empty()) {
    const OrderRecord* e = ctx.order(entry_);
    if (e && !cancel_requested_ && is_working(e->state) && e->filled_quantity == 0 &&
        ctx.now() - entry_sent_at_ > p_.entry_timeout.count()) {
      cancel_requested_ = true;
      ctx.cancel(entry_);
    }
  } else if (ctx.position(p_.symbol) == 0 && mids_.size() >= p_.lookback &&
             ctx.now() - idle_since_ >= p_.cooldown.count()) {
    const auto [lo, hi] = std::minmax_element(mids_.begin(), mids_.end());
    const bool up = *q.ask > *hi;
    const bool down = *q.bid < *lo;
    if (up || down) {
      const Side side = up ? Side::buy : Side::sell;
      const int dir = up ? 1 : -1;
      const Price touch = up ? *q.ask : *q.bid;
      const Price entry_price = touch - tick.value() * (dir * p_.entry_offset_ticks);
      BracketSpec b;
      b.entry = limit_order(p_.symbol, side, p_.quantity, entry_price, TimeInForce::day);
      b.take_profit = limit_order(p_.symbol, opposite(side), p_.quantity,
                                  entry_price + tick.value() * (dir * p_.take_profit_ticks), p_.exit_tif);
      b.protective_stop = stop_order(p_.symbol, opposite(side), p_.quantity,
                                     entry_price - tick.value() * (dir * p_.stop_loss_ticks), p_.exit_tif);
      const BracketIds ids = ctx.submit_bracket(b);
      entry_ = ids.entry;
      take_profit_ = ids.take_profit;
      stop_ = ids.protective_stop;
      entry_sent_at_ = ctx.now();
      ++brackets_sent_;
    }
  }
  mids_.push_back(mid);
  if (mids_.size() > p_.lookback) mids_.pop_front();
}

}  // namespace backstop
