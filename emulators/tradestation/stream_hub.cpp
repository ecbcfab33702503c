#include "emulators/tradestation/stream_hub.hpp"

namespace backstop::tradestation_emulator {

std::shared_ptr<Subscriber> StreamHub::subscribe(StreamFilter filter,
                                                 std::vector<std::string> initial_lines,
                                                 bool finish_after_initial) {
  auto s = std::make_shared<Subscriber>();
  s->filter = std::move(filter);
  for (auto& l : initial_lines) s->queue.push_back(std::move(l));
  s->finish = finish_after_initial;
  std::lock_guard lock(mutex_);
  subscribers_.push_back(s);
  return s;
}

void StreamHub::unsubscribe(const std::shared_ptr<Subscriber>& s) {
  std::lock_guard lock(mutex_);
  subscribers_.remove(s);
}

void StreamHub::publish(StreamKind kind, const std::string& account, const std::string& order_id,
                        const std::string& symbol, const std::string& line) {
  std::lock_guard lock(mutex_);
  bool any = false;
  for (auto& s : subscribers_) {
    const StreamFilter& f = s->filter;
    if (f.kind != kind || s->finish || s->goaway) continue;
    if (!account.empty() && !f.accounts.empty() && !f.accounts.count(account)) continue;
    if (!order_id.empty() && !f.order_ids.empty() && !f.order_ids.count(order_id)) continue;
    if (!symbol.empty() && !f.symbols.empty() && !f.symbols.count(symbol)) continue;
    if (s->stalled) continue;  // a stalled stream loses what happens meanwhile
    s->queue.push_back(line);
    any = true;
  }
  if (any) cv_.notify_all();
}

StreamHub::Step StreamHub::next(Subscriber& s, std::chrono::milliseconds idle) {
  std::unique_lock lock(mutex_);
  cv_.wait_until(lock, s.last_write + idle,
                 [&] { return !s.queue.empty() || s.goaway || s.kill || stopping_; });
  Step step;
  if (s.kill) {
    step.kind = Step::Kind::close;
    return step;
  }
  step.lines.assign(s.queue.begin(), s.queue.end());
  s.queue.clear();
  if (s.goaway || stopping_)
    step.kind = Step::Kind::goaway;
  else if (s.finish)
    step.kind = Step::Kind::finish;
  else
    step.kind = step.lines.empty() ? Step::Kind::idle : Step::Kind::lines;
  return step;
}

void StreamHub::stall(Subscriber& s, Subscriber::Clock::time_point until) {
  std::lock_guard lock(mutex_);
  s.stalled = true;
  s.stalled_until = until;
  s.queue.clear();
}

void StreamHub::wait_stalled(Subscriber& s) {
  std::unique_lock lock(mutex_);
  cv_.wait_until(lock, s.stalled_until, [&] { return stopping_ || s.kill; });
}

void StreamHub::wrote(Subscriber& s) {
  std::lock_guard lock(mutex_);
  s.last_write = Subscriber::Clock::now();
}

void StreamHub::goaway_all() {
  std::lock_guard lock(mutex_);
  for (auto& s : subscribers_) s->goaway = true;
  cv_.notify_all();
}

void StreamHub::disconnect_all() {
  std::lock_guard lock(mutex_);
  for (auto& s : subscribers_) s->kill = true;
  cv_.notify_all();
}

void StreamHub::stop() {
  std::lock_guard lock(mutex_);
  stopping_ = true;
  cv_.notify_all();
}

std::size_t StreamHub::size() const {
  std::lock_guard lock(mutex_);
  return subscribers_.size();
}

}  // namespace backstop::tradestation_emulator
