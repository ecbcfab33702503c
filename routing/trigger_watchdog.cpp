#include "routing/trigger_watchdog.hpp"

namespace backstop {

void TriggerWatchdog::watch(const WatchedStop& stop) {
  unwatch(stop.client_order_id);
  Book& book = books_[stop.symbol];
  if (stop.side == Side::sell)
    book.sells.emplace(stop.stop_price, stop);
  else
    book.buys.emplace(stop.stop_price, stop);
  index_[stop.client_order_id] = {stop.symbol, stop.side, stop.stop_price, false};
}

template <typename Map>
void TriggerWatchdog::erase_from(Map& m, const std::string& coid, Price price) {
  auto [lo, hi] = m.equal_range(price);
  for (auto it = lo; it != hi; ++it) {
    if (it->second.client_order_id == coid) {
      m.erase(it);
      return;
    }
  }
}

void TriggerWatchdog::unwatch(const std::string& coid) {
  auto it = index_.find(coid);
  if (it == index_.end()) return;
  if (it->second.crossed) {
    crossed_.erase(coid);
  } else {
    Book& book = books_[it->second.symbol];
    if (it->second.side == Side::sell)
      erase_from(book.sells, coid, it->second.price);
    else
      erase_from(book.buys, coid, it->second.price);
  }
  index_.erase(it);
}

void TriggerWatchdog::restore_crossed(CrossedStop c) {
  const std::string coid = c.stop.client_order_id;
  unwatch(coid);
  c.deadline = c.crossed_at + grace_.count();
  index_[coid] = {c.stop.symbol, c.stop.side, c.stop.stop_price, true};
  crossed_[coid] = std::move(c);
}

void TriggerWatchdog::on_quote(const Quote& q, std::vector<CrossedStop>& out) {
  auto bit = books_.find(q.symbol);
  if (bit == books_.end()) return;
  Book& book = bit->second;

  // Reference prices for each side under the configured method; absent = this tick says nothing.
  std::optional<Price> sell_ref, buy_ref;
  switch (method_) {
    case TriggerMethod::last:
      sell_ref = buy_ref = q.last;
      break;
    case TriggerMethod::bid_ask:
      sell_ref = q.bid;
      buy_ref = q.ask;
      break;
    case TriggerMethod::double_bid_ask:
      // Both this and the previous quote must be through: the less extreme of the two decides.
      if (q.bid && book.prev_bid) sell_ref = std::max(*q.bid, *book.prev_bid);
      if (q.ask && book.prev_ask) buy_ref = std::min(*q.ask, *book.prev_ask);
      break;
  }
  if (q.bid) book.prev_bid = q.bid;
  if (q.ask) book.prev_ask = q.ask;

  // `s` is the book's, erased right after: moved from.
  auto cross = [&](WatchedStop& s, Price ref) {
    if (s.held) {
      index_.erase(s.client_order_id);
      out.push_back(CrossedStop{std::move(s), q.at, ref, q.at, q.source});
      return;
    }
    CrossedStop c{std::move(s), q.at, ref, q.at + grace_.count(), q.source};
    index_[c.stop.client_order_id].crossed = true;
    crossed_[c.stop.client_order_id] = c;
    out.push_back(std::move(c));
  };
  if (sell_ref) {
    while (!book.sells.empty() && *sell_ref <= book.sells.begin()->first) {
      cross(book.sells.begin()->second, *sell_ref);
      book.sells.erase(book.sells.begin());
    }
  }
  if (buy_ref) {
    while (!book.buys.empty() && *buy_ref >= book.buys.begin()->first) {
      cross(book.buys.begin()->second, *buy_ref);
      book.buys.erase(book.buys.begin());
    }
  }
}

void TriggerWatchdog::expire(Timestamp now, std::vector<CrossedStop>& ghosts) {
  for (auto it = crossed_.begin(); it != crossed_.end();) {
    if (it->second.deadline <= now) {
      ghosts.push_back(it->second);
      index_.erase(it->first);
      it = crossed_.erase(it);
    } else {
      ++it;
    }
  }
}

std::optional<Timestamp> TriggerWatchdog::next_deadline() const {
  std::optional<Timestamp> next;
  for (const auto& [coid, c] : crossed_)
    if (!next || c.deadline < *next) next = c.deadline;
  return next;
}

}  // namespace backstop
