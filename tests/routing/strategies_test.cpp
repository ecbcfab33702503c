// The example strategies taking up an earlier run's open orders after a restart (on_resume):
// the one-cancels-other they keep, and the one-trade-at-a-time rule, hold across the restart.
// A context that records what the strategy asks for stands in for the router.
#include <gtest/gtest.h>

#include <map>

#include "routing/strategies/bracket_breakout.hpp"
#include "routing/strategies/mean_reversion.hpp"

namespace backstop {
namespace {

class RecordingContext final : public StrategyContext {
 public:
  RecordingContext() { aapl_.symbol = "AAPL"; }
  Timestamp now() const override { return now_; }
  std::string submit(OrderSpec order) override {
    order.client_order_id = "N" + std::to_string(submitted.size() + 1);
    submitted.push_back(order);
    add(order, OrderState::pending);
    return order.client_order_id;
  }
  BracketIds submit_bracket(BracketSpec b) override {
    ++brackets;
    return {submit(b.entry), submit(b.take_profit), submit(b.protective_stop)};
  }
  void cancel(const std::string& coid) override { cancelled.push_back(coid); }
  void replace(const std::string& coid, const OrderSpec& updated) override { replaced.emplace_back(coid, updated); }
  std::int64_t position(const std::string&) const override { return position_; }
  const OrderRecord* order(const std::string& coid) const override {
    auto it = orders_.find(coid);
    return it == orders_.end() ? nullptr : &it->second;
  }
  const Instrument* instrument(const std::string& symbol) const override {
    return symbol == "AAPL" ? &aapl_ : nullptr;
  }

  OrderRecord& add(OrderSpec spec, OrderState state, Timestamp sent_at = 1) {
    OrderRecord& o = orders_[spec.client_order_id];
    o.spec = std::move(spec);
    o.state = state;
    o.state_times[static_cast<std::size_t>(OrderState::pending)] = sent_at;
    return o;
  }
  std::vector<const OrderRecord*> open() const {
    std::vector<const OrderRecord*> out;
    for (const auto& [id, o] : orders_)
      if (!o.is_terminal()) out.push_back(&o);
    return out;
  }
  OrderRecord& at(const std::string& coid) { return orders_.at(coid); }

  Timestamp now_ = 0;
  std::int64_t position_ = 0;
  std::vector<OrderSpec> submitted;
  std::vector<std::string> cancelled;
  std::vector<std::pair<std::string, OrderSpec>> replaced;
  int brackets = 0;

 private:
  Instrument aapl_;
  std::map<std::string, OrderRecord> orders_;
};

OrderSpec with_id(OrderSpec s, const std::string& coid) {
  s.client_order_id = coid;
  return s;
}

Quote quote(const std::string& bid, const std::string& ask, Timestamp at) {
  Quote q;
  q.symbol = "AAPL";
  q.bid = Price::parse(bid);
  q.ask = Price::parse(ask);
  q.at = at;
  return q;
}

MeanReversionParams mean_reversion_params() {
  MeanReversionParams p;
  p.symbol = "AAPL";
  p.quantity = 10;
  p.lookback = 5;
  return p;
}

// Long 10 from an earlier run, its stop and its target working: when the target fills, the
// strategy cancels the stop, as it would have for a trade of its own run.
TEST(MeanReversionResume, ExitsOfAnEarlierRunKeepTheirOneCancelsOther) {
  RecordingContext ctx;
  ctx.position_ = 10;
  ctx.add(with_id(stop_order("AAPL", Side::sell, 10, Price::parse("99.92")), "OLD-STOP"), OrderState::submitted);
  ctx.add(with_id(limit_order("AAPL", Side::sell, 10, Price::parse("100.00")), "OLD-TARGET"), OrderState::submitted);
  MeanReversion s(mean_reversion_params());
  s.on_resume(ctx, ctx.open());
  OrderRecord& target = ctx.at("OLD-TARGET");
  target.state = OrderState::filled;
  target.filled_quantity = 10;
  ctx.position_ = 0;
  s.on_order_update(ctx, target);
  EXPECT_EQ(ctx.cancelled, std::vector<std::string>{"OLD-STOP"});
}

// Under protection `local` the stop is held by Backstop (state held, at no broker). It would still
// be sent when price goes through it, so when the target fills the strategy cancels it like a
// working one.
TEST(MeanReversionLocal, HeldStopIsCancelledWhenTheTargetFills) {
  RecordingContext ctx;
  ctx.position_ = 10;
  ctx.add(with_id(stop_order("AAPL", Side::sell, 10, Price::parse("99.92")), "HELD-STOP"), OrderState::held);
  ctx.add(with_id(limit_order("AAPL", Side::sell, 10, Price::parse("100.00")), "TARGET"), OrderState::submitted);
  MeanReversion s(mean_reversion_params());
  s.on_resume(ctx, ctx.open());
  OrderRecord& target = ctx.at("TARGET");
  target.state = OrderState::filled;
  target.filled_quantity = 10;
  ctx.position_ = 0;
  s.on_order_update(ctx, target);
  EXPECT_EQ(ctx.cancelled, std::vector<std::string>{"HELD-STOP"});
}

// trail_ticks: the stop follows the mid at that distance, only ever tighter, one replace at a
// time (the next once the order holds the last one's price, or 2 s after it was asked).
TEST(MeanReversionTrail, TheStopFollowsTheMarketUpNeverDownOneReplaceAtATime) {
  RecordingContext ctx;
  ctx.position_ = 10;
  ctx.add(with_id(stop_order("AAPL", Side::sell, 10, Price::parse("99.92")), "STOP"), OrderState::submitted);
  ctx.add(with_id(limit_order("AAPL", Side::sell, 10, Price::parse("100.20")), "TARGET"), OrderState::submitted);
  MeanReversionParams p = mean_reversion_params();
  p.trail_ticks = 3;
  MeanReversion s(p);
  s.on_resume(ctx, ctx.open());
  const auto tick = [&](const char* bid, const char* ask) {
    ctx.now_ += to_ns(std::chrono::milliseconds(100));
    s.on_quote(ctx, quote(bid, ask, ctx.now_));
  };
  tick("99.99", "100.01");  // mid 100.00: 3 ticks behind is 99.97, above 99.92
  ASSERT_EQ(ctx.replaced.size(), 1u);
  EXPECT_EQ(ctx.replaced[0].first, "STOP");
  EXPECT_EQ(ctx.replaced[0].second.stop_price, Price::parse("99.97"));
  EXPECT_EQ(ctx.replaced[0].second.quantity, 10);
  tick("100.01", "100.03");  // unanswered: no second replace yet
  EXPECT_EQ(ctx.replaced.size(), 1u);
  ctx.at("STOP").spec.stop_price = Price::parse("99.97");  // the replace took
  tick("100.01", "100.03");  // mid 100.02: 99.99
  ASSERT_EQ(ctx.replaced.size(), 2u);
  EXPECT_EQ(ctx.replaced[1].second.stop_price, Price::parse("99.99"));
  ctx.at("STOP").spec.stop_price = Price::parse("99.99");
  tick("99.90", "99.92");  // the market falls: the stop stays
  tick("99.95", "99.97");
  EXPECT_EQ(ctx.replaced.size(), 2u);
  tick("100.05", "100.07");  // mid 100.06: 100.03, asked; refused (the order keeps 99.99) ...
  ASSERT_EQ(ctx.replaced.size(), 3u);
  for (int i = 0; i < 19; ++i) tick("100.05", "100.07");  // ... not asked again within 2 s
  EXPECT_EQ(ctx.replaced.size(), 3u);
  tick("100.05", "100.07");  // 2 s on: asked again
  EXPECT_EQ(ctx.replaced.size(), 4u);
  ctx.at("STOP").state = OrderState::filled;  // fired: nothing to trail any more
  ctx.at("STOP").filled_quantity = 10;
  tick("100.20", "100.22");
  EXPECT_EQ(ctx.replaced.size(), 4u);
}

// An entry sent just before the restart fills before the strategy has an average: the exits
// still go out, the target at the stretch the entry was made on (not at a price of zero).
TEST(MeanReversionResume, EntryOfAnEarlierRunFillingBeforeAnyAverageGetsItsExits) {
  RecordingContext ctx;
  ctx.add(with_id(market_order("AAPL", Side::buy, 10), "OLD-ENTRY"), OrderState::pending);
  MeanReversion s(mean_reversion_params());
  s.on_resume(ctx, ctx.open());
  OrderRecord& entry = ctx.at("OLD-ENTRY");
  entry.state = OrderState::filled;
  entry.filled_quantity = 10;
  entry.average_fill_price = Price::parse("99.50");
  s.on_order_update(ctx, entry);
  ASSERT_EQ(ctx.submitted.size(), 2u);
  EXPECT_EQ(ctx.submitted[0].type, OrderType::stop);
  EXPECT_EQ(ctx.submitted[0].stop_price, Price::parse("99.42"));
  EXPECT_EQ(ctx.submitted[1].type, OrderType::limit);
  EXPECT_EQ(ctx.submitted[1].limit_price, Price::parse("99.56")) << "fill + 6 ticks";
}

// The earlier run ended with its entry working; the entry filled while Backstop was down, so no
// update told the strategy. Handed the filled entry at resume, it sends the exits at once: without
// them the position would have no stop at all.
TEST(MeanReversionResume, EntryThatFilledWhileBackstopWasDownGetsItsExitsAtResume) {
  RecordingContext ctx;
  ctx.position_ = 10;
  OrderRecord& entry = ctx.add(with_id(market_order("AAPL", Side::buy, 10), "OLD-ENTRY"), OrderState::filled);
  entry.filled_quantity = 10;
  entry.average_fill_price = Price::parse("99.50");
  MeanReversion s(mean_reversion_params());
  s.on_resume(ctx, {&entry});
  ASSERT_EQ(ctx.submitted.size(), 2u);
  EXPECT_EQ(ctx.submitted[0].type, OrderType::stop);
  EXPECT_EQ(ctx.submitted[0].side, Side::sell);
  EXPECT_EQ(ctx.submitted[0].stop_price, Price::parse("99.42"));
  EXPECT_EQ(ctx.submitted[1].type, OrderType::limit);
}

// The target filled while Backstop was down; the stop, held by Backstop (`local`), is still held.
// At resume the strategy cancels it: sent later, when price crossed it, it would open a short.
TEST(MeanReversionResume, TargetThatFilledWhileBackstopWasDownHasItsHeldStopCancelledAtResume) {
  RecordingContext ctx;
  ctx.position_ = 0;
  const OrderRecord& stop =
      ctx.add(with_id(stop_order("AAPL", Side::sell, 10, Price::parse("99.92")), "HELD-STOP"), OrderState::held);
  OrderRecord& target =
      ctx.add(with_id(limit_order("AAPL", Side::sell, 10, Price::parse("100.00")), "TARGET"), OrderState::filled);
  target.filled_quantity = 10;
  MeanReversion s(mean_reversion_params());
  s.on_resume(ctx, {&stop, &target});
  EXPECT_EQ(ctx.cancelled, std::vector<std::string>{"HELD-STOP"});
  EXPECT_TRUE(ctx.submitted.empty());
}

// A bracket whose legs all ended while Backstop was down (the broker ties them together itself)
// leaves the strategy free: the next breakout sends a new bracket.
TEST(BracketBreakoutResume, BracketThatEndedWhileBackstopWasDownLeavesTheStrategyFree) {
  RecordingContext ctx;
  OrderSpec entry = with_id(limit_order("AAPL", Side::buy, 5, Price::parse("100.01")), "OLD-E");
  OrderSpec tp = with_id(limit_order("AAPL", Side::sell, 5, Price::parse("100.11")), "OLD-TP");
  OrderSpec sl = with_id(stop_order("AAPL", Side::sell, 5, Price::parse("99.93")), "OLD-SL");
  tp.parent_client_order_id = sl.parent_client_order_id = "OLD-E";
  const OrderRecord& e = ctx.add(entry, OrderState::filled);
  const OrderRecord& t = ctx.add(tp, OrderState::cancelled);
  const OrderRecord& l = ctx.add(sl, OrderState::filled);
  BracketBreakoutParams p;
  p.symbol = "AAPL";
  p.lookback = 3;
  BracketBreakout s(p);
  s.on_resume(ctx, {&e, &t, &l});
  ctx.now_ = 60'000'000'000;
  for (int i = 0; i < 5; ++i) s.on_quote(ctx, quote("100.00", "100.02", ctx.now_ + i));
  s.on_quote(ctx, quote("100.50", "100.52", ctx.now_ + 10));  // a breakout
  EXPECT_EQ(ctx.brackets, 1);
  EXPECT_TRUE(ctx.cancelled.empty());
}

// An earlier run's bracket whose entry still works: no second bracket beside it, and the entry,
// long past its timeout, is cancelled at the first quote.
TEST(BracketBreakoutResume, WorkingEntryOfAnEarlierRunIsFollowedAndTimedOut) {
  RecordingContext ctx;
  ctx.now_ = 60'000'000'000;  // a minute after the entry was sent
  OrderSpec entry = with_id(limit_order("AAPL", Side::buy, 5, Price::parse("100.01")), "OLD-E");
  OrderSpec tp = with_id(limit_order("AAPL", Side::sell, 5, Price::parse("100.11")), "OLD-TP");
  OrderSpec sl = with_id(stop_order("AAPL", Side::sell, 5, Price::parse("99.93")), "OLD-SL");
  tp.parent_client_order_id = sl.parent_client_order_id = "OLD-E";
  ctx.add(entry, OrderState::submitted);
  ctx.add(tp, OrderState::submitted);
  ctx.add(sl, OrderState::submitted);
  BracketBreakoutParams p;
  p.symbol = "AAPL";
  p.lookback = 3;
  BracketBreakout s(p);
  s.on_resume(ctx, ctx.open());
  for (int i = 0; i < 5; ++i) s.on_quote(ctx, quote("100.00", "100.02", ctx.now_ + i));
  s.on_quote(ctx, quote("100.50", "100.52", ctx.now_ + 10));  // a breakout
  EXPECT_EQ(ctx.brackets, 0);
  EXPECT_EQ(ctx.cancelled, std::vector<std::string>{"OLD-E"});
}

}  // namespace
}  // namespace backstop
