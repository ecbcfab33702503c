#pragma once
// The trigger watchdog: for every working stop, compares market prices with the stop price and
// notices when price has gone through it. It is event-driven by price level: per instrument the
// sell stops are ordered from the highest price down and the buy stops from the lowest up, so a
// tick looks only at the front of each side, and at nothing else unless a stop is crossed.
// A crossed stop that is neither filled nor reported triggered within the grace period is a
// ghost: the broker acknowledged it, lists it as working, and it did not fire.
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/market_data.hpp"
#include "core/order.hpp"
#include "core/protection.hpp"

namespace backstop {


struct WatchedStop {
  std::string client_order_id;
  std::string broker;
  std::string symbol;
  Side side = Side::sell;  // of the stop order: a sell stop protects a long position
  Price stop_price;
  std::int64_t quantity = 0;
  // Protection `local`: Backstop holds the stop and sends its exit when it is crossed. The
  // crossing ends the watch (there is no broker stop to give a grace period to), and costs no
  // allocation: the stop's record moves out of the book into the caller's buffer.
  bool held = false;
};

struct CrossedStop {
  WatchedStop stop;
  Timestamp crossed_at = 0;  // the tick that went through
  Price crossing_price;      // the reference price on that tick
  Timestamp deadline = 0;    // crossed_at + grace
  std::string source;        // the feed that showed it
};

class TriggerWatchdog {
 public:
  TriggerWatchdog(TriggerMethod method, Duration grace) : method_(method), grace_(grace) {}

  void watch(const WatchedStop& stop);
  // The stop filled, triggered, was cancelled or replaced: stop watching (crossed or not).
  void unwatch(const std::string& client_order_id);
  bool watching(const std::string& client_order_id) const { return index_.count(client_order_id) != 0; }
  bool crossed(const std::string& client_order_id) const { return crossed_.count(client_order_id) != 0; }
  std::size_t size() const { return index_.size(); }

  // Holds `c.stop` as already crossed at `c.crossed_at` (a crossing journaled before a restart):
  // its deadline is the original crossed_at + grace, so a restart neither forgives nor restarts
  // the grace period. Replaces any watch of the same stop. A deadline already past expires at
  // the next expire().
  void restore_crossed(CrossedStop c);
  // Feeds one tick; appends stops it crossed for the first time. Allocates nothing when no stop
  // is crossed, nor for a held stop crossed (newly_crossed's capacity permitting); a broker's
  // stop crossed is kept for its grace period (a map node).
  void on_quote(const Quote& q, std::vector<CrossedStop>& newly_crossed);
  // Moves every crossed stop whose grace ended by `now` into `ghosts` (and stops watching it).
  void expire(Timestamp now, std::vector<CrossedStop>& ghosts);
  // The earliest grace deadline pending, if any.
  std::optional<Timestamp> next_deadline() const;

 private:
  struct Book {
    std::multimap<Price, WatchedStop, std::greater<>> sells;  // highest stop first
    std::multimap<Price, WatchedStop> buys;                   // lowest stop first
    std::optional<Price> prev_bid, prev_ask;
  };
  struct Where {
    std::string symbol;
    Side side;
    Price price;
    bool crossed = false;
  };
  template <typename Map>
  void erase_from(Map& m, const std::string& coid, Price price);

  TriggerMethod method_;
  Duration grace_;
  std::unordered_map<std::string, Book> books_;
  std::unordered_map<std::string, Where> index_;  // coid -> where it is
  std::map<std::string, CrossedStop> crossed_;    // coid -> crossed, awaiting fill or deadline
};

}  // namespace backstop
