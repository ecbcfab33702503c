#pragma once
// Example strategy: enter on a breakout of the recent range with a bracket (limit entry a little
// inside the market, take-profit and protective stop around it). An entry that does not fill
// within its timeout is cancelled. One bracket at a time.
#include <deque>

#include "routing/strategy.hpp"

namespace backstop {

struct BracketBreakoutParams {
  std::string symbol;
  std::int64_t quantity = 100;
  std::size_t lookback = 20;       // quotes in the range
  int entry_offset_ticks = 1;      // entry limit this far inside the touch (may not fill)
  int take_profit_ticks = 10;
  int stop_loss_ticks = 8;
  Duration entry_timeout{std::chrono::seconds(2)};
  Duration cooldown{std::chrono::milliseconds(500)};
  TimeInForce exit_tif = TimeInForce::gtc;  // protective stops are GTC unless configured
};

class BracketBreakout final : public Strategy {
 public:
  explicit BracketBreakout(BracketBreakoutParams p, std::string name = "bracket_breakout")
      : p_(std::move(p)), name_(std::move(name)) {}
  const std::string& name() const override { return name_; }
  void on_resume(StrategyContext& ctx, const std::vector<const OrderRecord*>& orders) override;
  void on_quote(StrategyContext& ctx, const Quote& q) override;
  void on_order_update(StrategyContext& ctx, const OrderRecord& o) override;

  int brackets_sent() const { return brackets_sent_; }

 private:
  bool bracket_done(StrategyContext& ctx) const;

  BracketBreakoutParams p_;
  std::string name_;
  std::deque<Price> mids_;
  std::string entry_, take_profit_, stop_;
  Timestamp entry_sent_at_ = 0;
  Timestamp idle_since_ = 0;
  bool cancel_requested_ = false;
  int brackets_sent_ = 0;
};

}  // namespace backstop
