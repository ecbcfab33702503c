#pragma once
// Example strategy: fade a stretch away from the moving average. Entry is a market order; once
// it fills, the strategy places its own protective stop and a limit exit at the average, and
// cancels the one that is left when the other fills (one-cancels-other kept by the strategy,
// so the stop is a standalone order the stop guard verifies and watches like any other).
#include <deque>
#include <optional>

#include "routing/strategy.hpp"

namespace backstop {

struct MeanReversionParams {
  std::string symbol;
  std::int64_t quantity = 100;
  std::size_t lookback = 30;    // quotes in the moving average
  int entry_distance_ticks = 6; // how far from the average the mid must stretch
  int stop_loss_ticks = 8;
  // 0: the stop stays where it was placed. N: a trailing stop, moved (replaced) toward the market
  // to N ticks behind the mid whenever that is tighter, never away from it; one replace at a time.
  int trail_ticks = 0;
  Duration cooldown{std::chrono::seconds(1)};
  TimeInForce exit_tif = TimeInForce::gtc;
};

class MeanReversion final : public Strategy {
 public:
  explicit MeanReversion(MeanReversionParams p, std::string name = "mean_reversion")
      : p_(std::move(p)), name_(std::move(name)) {}
  const std::string& name() const override { return name_; }
  void on_resume(StrategyContext& ctx, const std::vector<const OrderRecord*>& orders) override;
  void on_quote(StrategyContext& ctx, const Quote& q) override;
  void on_order_update(StrategyContext& ctx, const OrderRecord& o) override;

 private:
  MeanReversionParams p_;
  std::string name_;
  std::deque<Price> mids_;
  Price average_;
  // Moves the stop behind `mid` (trail_ticks); returns at once when nothing is to be moved.
  void trail(StrategyContext& ctx, Price mid);

  std::string entry_, stop_, target_;
  Timestamp idle_since_ = 0;
  // The trailing stop's last replace: its price and when it was asked (a replace answered, the
  // order's own stop price equals it; one unanswered for long, or refused, no longer holds the next back).
  std::optional<Price> trail_requested_;
  Timestamp trail_requested_at_ = 0;
};

}  // namespace backstop
