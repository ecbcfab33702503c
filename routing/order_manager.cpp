#include "routing/order_manager.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <stdexcept>

#include "core/utf8.hpp"

namespace backstop {

// [[gnu::hot]]: on every order's submit path (see routing/router.cpp).

OrderManager::OrderManager(EventLoop& loop, Journal& journal, ClientOrderIdGenerator& ids,
                           OrderManagerOptions options)
    : loop_(loop), journal_(journal), ids_(ids), options_(options), index_(ids) {
  prepare_capacity();
}

OrderRecord* OrderManager::OrderIndex::find(const std::string& coid) const {
  if (const auto n = own_sequence(coid); n != 0 && n <= own_.size() && own_[n - 1]) return own_[n - 1];
  if (others_.empty()) return nullptr;
  auto it = others_.find(coid);
  return it == others_.end() ? nullptr : it->second;
}

[[gnu::hot]] bool OrderManager::OrderIndex::insert(const std::string& coid, OrderRecord* record) {
  const auto n = own_sequence(coid);
  if (n == 0 || n > ids_.sequence()) {
    // Not (yet) handed out by the generator: when it is, the insert below finds it here.
    return others_.try_emplace(coid, record).second;
  }
  if (n <= own_.size() && own_[n - 1]) return false;
  if (!others_.empty() && others_.count(coid)) return false;  // taken before the generator got there
  if (own_.size() < n) own_.resize(n, nullptr);
  own_[n - 1] = record;
  return true;
}

void OrderManager::OrderIndex::reserve_ahead(std::size_t n) {
  const std::size_t want = static_cast<std::size_t>(ids_.sequence()) + n;
  if (own_.capacity() < want) own_.reserve(std::max(want, 2 * own_.capacity()));
}

[[gnu::hot]] std::uint64_t OrderManager::OrderIndex::own_sequence(const std::string& coid) const {
  const std::string& prefix = ids_.prefix();
  const std::size_t digits = prefix.size() + 1;
  if (coid.size() <= digits || coid.size() > digits + 19) return 0;
  if (coid.compare(0, prefix.size(), prefix) != 0 || coid[prefix.size()] != '-') return 0;
  const char* first = coid.data() + digits;
  const char* last = coid.data() + coid.size();
  if (*first == '0') return 0;  // next() never writes one, so "X-07" is someone else's id
  std::uint64_t n = 0;
  const auto [end, ec] = std::from_chars(first, last, n);
  return ec == std::errc() && end == last ? n : 0;
}

[[gnu::hot]] OrderRecord* OrderManager::RecordStore::take() {
  if (used_in_last_ == kChunk) {
    prepare();
    chunks_.push_back(std::move(spare_));
    used_in_last_ = 0;
  }
  ++size_;
  return &chunks_.back()[used_in_last_++];
}

void OrderManager::RecordStore::untake() {
  --size_;
  --used_in_last_;
}

void OrderManager::RecordStore::prepare() {
  if (!spare_) spare_ = std::make_unique<OrderRecord[]>(kChunk);  // value-initialized: every page touched
}

[[gnu::hot]] void OrderManager::prepare_capacity() {
  constexpr std::size_t kAhead = 256;
  records_.prepare();
  index_.reserve_ahead(kAhead);
  if (order_sequence_.capacity() < order_sequence_.size() + kAhead)
    order_sequence_.reserve(std::max(order_sequence_.size() + kAhead, 2 * order_sequence_.capacity()));
}

OrderRecord& OrderManager::at(const std::string& coid) const {
  OrderRecord* o = index_.find(coid);
  if (!o) throw std::out_of_range("order manager: no order " + coid);
  return *o;
}

OrderManager::~OrderManager() {
  // Found by the failover test under load: a commit finishing after the manager was destroyed
  // posted through a dangling `this`. flush() returns once every queued commit has run its
  // callback; a journal that failed has already reported its error, so it is only logged here.
  try {
    journal_.flush();
  } catch (const std::exception& e) {
    spdlog::error("order manager: journal at shutdown: {}", e.what());
  }
}

void OrderManager::add_broker(Broker& broker) {
  brokers_[broker.name()] = &broker;
  const std::string name = broker.name();
  broker.subscribe_order_events([this, name](const OrderEvent& ev) { on_event(name, ev); });
}

[[gnu::hot]] Broker* OrderManager::broker(const std::string& name) const {
  auto it = brokers_.find(name);
  return it == brokers_.end() ? nullptr : it->second;
}

std::vector<std::string> OrderManager::broker_names() const {
  std::vector<std::string> out;
  for (const auto& [name, b] : brokers_) out.push_back(name);
  return out;
}

[[gnu::hot]] OrderRecord* OrderManager::create(const std::string& broker_name, OrderSpec&& spec) {
  OrderRecord& rec = *records_.take();
  if (!index_.insert(spec.client_order_id, &rec)) [[unlikely]] {
    records_.untake();  // still as constructed: nothing was written to it
    return nullptr;
  }
  rec.spec = std::move(spec);
  rec.broker = broker_name;
  rec.state = OrderState::pre_sent;
  rec.state_times[static_cast<std::size_t>(OrderState::pre_sent)] = loop_.now();
  order_sequence_.push_back(&rec);
  return &rec;
}

void OrderManager::journal_then(const OrderRecord& order, std::function<void(const std::string&)> next) {
  // The commit completes on the journal's thread; continue on the loop. The external-work mark
  // keeps a manual clock from jumping past the commit in tests.
  journal_.defer_wake_to_task_end(loop_);  // see submit
  loop_.add_external_work();
  journal_.record_order(order, [&loop = loop_, alive = std::weak_ptr<int>(alive_),
                                 next = std::move(next)](const std::string& error) {
    loop.post([alive, next, error] {
      if (alive.lock()) next(error);
    });
    loop.finish_external_work();
  });
}

[[gnu::hot]] std::uint32_t OrderManager::start_in_flight(OrderRecord& order, SubmitCallback&& done, SubmitObserver* observer) {
  std::uint32_t slot;
  if (!free_in_flight_.empty()) {
    slot = free_in_flight_.back();
    free_in_flight_.pop_back();
  } else {
    slot = static_cast<std::uint32_t>(in_flight_.size());
    in_flight_.emplace_back();
  }
  InFlight& f = in_flight_[slot];
  f.order = &order;
  f.done = std::move(done);
  f.observer = observer;
  ++f.generation;
  return slot;
}

[[gnu::hot]] OrderManager::InFlight* OrderManager::in_flight(std::uint32_t slot, std::uint32_t generation) {
  // Each continuation runs once; a stale one (a broker answering twice) must not touch the order
  // that reuses the slot.
  if (slot >= in_flight_.size() || in_flight_[slot].generation != generation || !in_flight_[slot].order) {
    spdlog::error("order manager: ignoring a second answer to one request (slot {})", slot);
    return nullptr;
  }
  return &in_flight_[slot];
}

void OrderManager::answer(std::uint32_t slot, const CommandResult& r) {
  // Moved out and freed first: the callback may submit again, which may reuse or grow the pool.
  InFlight& f = in_flight_[slot];
  const OrderRecord& o = *f.order;
  SubmitCallback done = std::move(f.done);
  SubmitObserver* observer = f.observer;
  f.order = nullptr;
  f.done = nullptr;
  f.observer = nullptr;
  free_in_flight_.push_back(slot);
  if (observer) observer->submit_answered(o.broker, o.time_of(OrderState::pre_sent), r);
  if (done) done(r);
}

[[gnu::hot]] void OrderManager::notify(const OrderRecord& o) {
  for (auto& l : order_listeners_) l(o);
}

void OrderManager::apply_state(OrderRecord& order, OrderState to, const std::string& reason) {
  if (order.state == to && to != OrderState::partially_filled) return;  // repeated report: nothing new
  const TransitionEvent ev = order.transition(to, loop_.now(), reason);
  journal_.record_transition(ev, order);
  if (ev.applied) notify(order);
}

[[gnu::hot]] std::string OrderManager::submit(const std::string& broker_name, OrderSpec spec, SubmitCallback done,
                                 SubmitObserver* observer) {
  if (spec.client_order_id.empty()) spec.client_order_id = ids_.next();
  OrderRecord* rec = create(broker_name, std::move(spec));
  if (!rec) [[unlikely]] {
    const CommandResult r = CommandResult::failed("client order id " + spec.client_order_id + " is already in use");
    if (observer) observer->submit_answered(broker_name, loop_.now(), r);
    if (done) done(r);
    return spec.client_order_id;
  }
  journal_then_send(*rec, std::move(done), observer);
  return rec->spec.client_order_id;
}

[[gnu::hot]] void OrderManager::journal_then_send(OrderRecord& order, SubmitCallback&& done, SubmitObserver* observer) {
  const std::uint32_t slot = start_in_flight(order, std::move(done), observer);
  const std::uint32_t generation = in_flight_[slot].generation;
  // Durable before send: the request leaves from send_journaled, after the commit. The commit
  // completes on the journal's thread; the continuation runs on the loop. The external-work mark
  // keeps a manual clock from jumping past the commit in tests.
  // This callback may hold `this` (no allocation: it fits std::function's inline storage):
  // ~OrderManager waits for the journal's callbacks. The task it posts holds a weak reference,
  // since the loop may run it after the manager is gone; it is built on the journal's thread.
  // The writer is woken after the caller's loop task (the strategy's callback), once for all the
  // orders it sends: the send itself waits for the loop anyway.
  journal_.defer_wake_to_task_end(loop_);
  loop_.add_external_work();
  journal_.record_order(order, [this, slot, generation](const std::string& error) {
    loop_.post([alive = std::weak_ptr<int>(alive_), this, slot, generation, error] {
      if (alive.lock()) send_journaled(slot, generation, error);
    });
    loop_.finish_external_work();
  });
}

std::string OrderManager::hold(const std::string& broker_name, OrderSpec spec, SubmitCallback done) {
  if (spec.client_order_id.empty()) spec.client_order_id = ids_.next();
  const std::string coid = spec.client_order_id;
  if (auto why = validate(spec); !why.empty() || !spec.is_stop()) {
    // Refused before anything is recorded: the caller (the Router) checks orders before holding.
    if (done) done(CommandResult::failed("not held: " + (why.empty() ? "order " + coid + " is not a stop" : why)));
    return coid;
  }
  OrderRecord* rec = create(broker_name, std::move(spec));
  if (!rec) {
    if (done) done(CommandResult::failed("client order id " + coid + " is already in use"));
    return coid;
  }
  // One row as created, then the transition to held: the same commit, awaited before the caller
  // is told the stop is in place.
  journal_.record_order(*rec);
  const TransitionEvent ev = rec->transition(OrderState::held, loop_.now(), "held by Backstop (protection local)");
  journal_.defer_wake_to_task_end(loop_);
  loop_.add_external_work();
  journal_.record_transition(ev, *rec, [&loop = loop_, alive = std::weak_ptr<int>(alive_), this, coid,
                                        done = std::move(done)](const std::string& error) mutable {
    loop.post([alive, this, coid, error, done = std::move(done)] {
      if (!alive.lock()) return;
      if (!error.empty()) {
        // Not durable: a restart would not know the stop. Failed, so the strategy knows it has none.
        OrderRecord& o = at(coid);
        o.last_message = "not held: journal write failed: " + error;
        apply_state(o, OrderState::failed, o.last_message);
        if (done) done(CommandResult::failed(o.last_message));
        return;
      }
      if (done) done({Outcome::accepted, {}, "held by Backstop", 0});
    });
    loop.finish_external_work();
  });
  notify(*rec);
  return coid;
}

void OrderManager::release(const std::string& coid, std::string_view why, SubmitCallback done) {
  const OrderRecord* found = index_.find(coid);
  if (!found) {
    if (done) done(CommandResult::failed("order " + coid + " does not exist"));
    return;
  }
  release(*found, why, std::move(done));
}

void OrderManager::release(const OrderRecord& held, std::string_view why, SubmitCallback done) {
  if (held.state != OrderState::held) {
    if (done) done(CommandResult::failed("order " + held.spec.client_order_id + " is not held (" + std::string(to_string(held.state)) + ")"));
    return;
  }
  // Every record is the manager's own, in records_, and only handed out as const.
  OrderRecord& o = const_cast<OrderRecord&>(held);
  // What goes to the broker: the stop's exit at market, or at its limit for a stop-limit. The stop
  // price is what Backstop enforced; it stays in the transition's reason and the guard's event.
  o.spec.type = o.spec.type == OrderType::stop_limit ? OrderType::limit : OrderType::market;
  o.spec.stop_price.reset();
  // A protective exit now: for the session (a GTC market order is refused by some brokers).
  if (o.spec.type == OrderType::market) o.spec.tif = TimeInForce::day;
  o.transition(OrderState::pre_sent, loop_.now(), why, transition_scratch_);
  // pre_sent again, now: a released order is stuck when its request does not leave soon after
  // the release, not after its creation (held_at keeps when it was placed).
  o.state_times[static_cast<std::size_t>(OrderState::pre_sent)] = loop_.now();
  journal_.record_transition(transition_scratch_, o);
  notify(o);
  // The whole order again (its type changed), then sent once that is durable, as submit() does.
  journal_then_send(o, std::move(done), nullptr);
}

[[gnu::hot]] void OrderManager::send_journaled(std::uint32_t slot, std::uint32_t generation, const std::string& journal_error) {
  InFlight* f = in_flight(slot, generation);
  if (!f) return;
  OrderRecord& o = *f->order;
  auto fail = [&](const std::string& why) {
    o.last_message = why;
    apply_state(o, OrderState::failed, why);
    answer(slot, CommandResult::failed(why));
  };
  // The three refusals below are marked unlikely: their text-building code is laid apart from
  // what every sent order runs through (the path is instruction-cache bound).
  if (!journal_error.empty()) [[unlikely]]
    return fail("not sent: journal write failed: " + journal_error);
  Broker* b = broker(o.broker);
  if (!b) [[unlikely]]
    return fail("not sent: no broker named " + o.broker);
  if (auto why = validate(o.spec); !why.empty()) [[unlikely]]
    return fail("not sent: " + why);
  // The "sent" transition is queued before the request leaves but not awaited (an order in
  // pending or pre_sent is resolved by client order id after a crash either way), so waking the
  // journal's writer for it can wait until the request is on its way: after this loop task.
  journal_.defer_wake_to_task_end(loop_);
  if (o.state == OrderState::pre_sent && o.broker_order_id.empty() && o.filled_quantity == 0 && o.last_message.empty()) {
    // As journaled at submit (nothing reaches an order before it is sent): only the state
    // changes, so the journal derives the row's update from the transition instead of this
    // thread copying the whole order.
    reason_scratch_.assign("sent to ").append(o.broker);
    o.transition(OrderState::pending, loop_.now(), reason_scratch_, transition_scratch_);
    journal_.record_state_change(transition_scratch_);
    if (transition_scratch_.applied) notify(o);
  } else {
    apply_state(o, OrderState::pending, "sent to " + o.broker);
  }
  try {
    b->submit(o.spec, [this, slot, generation](CommandResult r) {
      make_valid_utf8(r.message);  // adapter text may quote a raw HTTP body (core/utf8.hpp)
      InFlight* sent = in_flight(slot, generation);
      if (!sent) return;
      handle_submit_result(*sent->order, r);
      answer(slot, r);
    });
  } catch (const std::exception& e) {
    // An adapter that throws (a request it could not write, a bug) must not end the process
    // with this order pending, nor take the loop's other work with it. Whether the request had
    // already left is not known: unknown, resolved by client order id like any other (a broker
    // that never had it says so, and the order fails then). A callback the adapter still makes
    // later finds the slot answered and is ignored.
    if (InFlight* sent = in_flight(slot, generation)) {
      CommandResult r = CommandResult::unknown_because(o.broker + " adapter threw while sending: " + e.what());
      make_valid_utf8(r.message);
      spdlog::error("order {}: {}", o.spec.client_order_id, r.message);
      handle_submit_result(*sent->order, r);
      answer(slot, r);
    }
  }
  prepare_capacity();  // the request has left: a good moment for the next orders' memory
}

std::string OrderManager::record_refused(const std::string& broker_name, OrderSpec spec, const std::string& reason) {
  if (spec.client_order_id.empty()) spec.client_order_id = ids_.next();
  const std::string coid = spec.client_order_id;
  OrderRecord* rec = create(broker_name, std::move(spec));
  if (!rec) return coid;  // an id in use is never overwritten
  OrderRecord& o = *rec;
  journal_.record_order(o);
  o.last_message = reason;
  apply_state(o, OrderState::failed, reason);
  return coid;
}

BracketIds OrderManager::submit_bracket(const std::string& broker_name, BracketSpec b, SubmitCallback done,
                                        SubmitObserver* observer) {
  for (OrderSpec* leg : {&b.entry, &b.take_profit, &b.protective_stop})
    if (leg->client_order_id.empty()) leg->client_order_id = ids_.next();
  const std::string coid = b.entry.client_order_id;
  const BracketIds ids{coid, b.take_profit.client_order_id, b.protective_stop.client_order_id};
  const Timestamp sent_at = loop_.now();
  for (const OrderSpec* leg : {&b.entry, &b.take_profit, &b.protective_stop}) {
    if (index_.find(leg->client_order_id)) {
      const CommandResult r = CommandResult::failed("client order id " + leg->client_order_id + " is already in use");
      if (observer) observer->submit_answered(broker_name, sent_at, r);
      if (done) done(r);
      return ids;
    }
  }
  b.take_profit.parent_client_order_id = b.protective_stop.parent_client_order_id = coid;
  b.take_profit.oco_group = b.protective_stop.oco_group = "OCO-" + coid;
  const std::vector<std::string> legs = {coid, b.take_profit.client_order_id, b.protective_stop.client_order_id};
  create(broker_name, OrderSpec(b.entry));
  create(broker_name, OrderSpec(b.take_profit));
  OrderRecord& last = *create(broker_name, OrderSpec(b.protective_stop));
  journal_.record_order(at(legs[0]));
  journal_.record_order(at(legs[1]));
  auto finish = [this, broker_name, sent_at, observer, done](const CommandResult& r) {
    if (observer) observer->submit_answered(broker_name, sent_at, r);
    if (done) done(r);
  };
  // The three legs share one group commit; waiting for the last one covers all of them.
  journal_then(last, [this, b, legs, broker_name, finish](const std::string& error) {
    auto fail_all = [&](const std::string& why) {
      for (const auto& id : legs) {
        at(id).last_message = why;
        apply_state(at(id), OrderState::failed, why);
      }
      finish(CommandResult::failed(why));
    };
    if (!error.empty()) return fail_all("not sent: journal write failed: " + error);
    Broker* br = broker(broker_name);
    if (!br) return fail_all("not sent: no broker named " + broker_name);
    if (auto why = validate(b); !why.empty()) return fail_all("not sent: " + why);
    journal_.defer_wake_to_task_end(loop_);  // as in send_journaled
    for (const auto& id : legs) apply_state(at(id), OrderState::pending, "bracket sent to " + broker_name);
    br->submit_bracket(b, [this, legs, finish](BracketResult r) {
      make_valid_utf8(r.message);
      const std::vector<std::string> broker_ids = {r.entry_id, r.take_profit_id, r.stop_id};
      CommandResult leg_result{r.outcome, {}, r.message, 0};
      for (std::size_t i = 0; i < legs.size(); ++i) {
        leg_result.broker_order_id = broker_ids[i];
        handle_submit_result(at(legs[i]), leg_result);
      }
      finish({r.outcome, r.entry_id, r.message, 0});
    });
  });
  return ids;
}

void OrderManager::handle_submit_result(OrderRecord& o, const CommandResult& r) {
  const std::string& coid = o.spec.client_order_id;
  if (!r.broker_order_id.empty() && o.broker_order_id.empty()) {
    o.broker_order_id = r.broker_order_id;
    by_broker_id_[{o.broker, o.broker_order_id}] = coid;
  }
  apply_early_fills(o);
  switch (r.outcome) {
    case Outcome::failed_locally:
      o.last_message = r.message;
      apply_state(o, OrderState::failed, r.message);
      break;
    case Outcome::accepted:
      // The stream may already have moved it further (a fill before the ack's callback).
      if (o.state == OrderState::pending || o.state == OrderState::pre_sent)
        apply_state(o, OrderState::submitted, "acknowledged as " + r.broker_order_id);
      else
        journal_.record_order(o);  // keep the broker id
      break;
    case Outcome::rejected:
      o.last_message = r.message;
      apply_state(o, OrderState::rejected, r.message);
      break;
    case Outcome::unknown:
      // Never treated as failed, never resent: find out what the broker has.
      o.last_message = r.message;
      journal_.record_event({loop_.now(), o.broker, "unknown_outcome", coid,
                             nlohmann::json{{"message", r.message}}.dump()});
      spdlog::warn("order {}: outcome unknown ({}); resolving by client order id", coid, r.message);
      loop_.call_after(options_.resolve_retry_interval, [this, coid] { resolve_unknown(coid, 1, 0, {}); });
      break;
  }
}

void OrderManager::resolve_unknown(const std::string& coid, int attempt, int not_found,
                                   std::function<void(bool)> done) {
  OrderRecord& o = at(coid);
  Broker* b = broker(o.broker);
  if (!b) {
    spdlog::error("order {}: cannot resolve, broker {} is not configured", coid, o.broker);
    if (done) done(false);
    return;
  }
  b->query_by_client_id(coid, [this, coid, attempt, not_found, done](OrderQueryResult r) {
    make_valid_utf8(r.message);
    OrderRecord& ord = at(coid);
    if (ord.state != OrderState::pending && ord.state != OrderState::pre_sent) {
      if (done) done(true);  // the stream answered meanwhile
      return;
    }
    if (r.outcome == Outcome::accepted && r.order) {
      apply_broker_view(ord, *r.order, "resolved by query");
      if (done) done(true);
      return;
    }
    // Only an answer counts toward "the broker never had it": a query that went unanswered says
    // nothing, so one real "no such order" after four silences does not fail the order.
    const int answered_not_found = not_found + (r.outcome == Outcome::accepted ? 1 : 0);
    if (answered_not_found >= options_.resolve_attempts) {
      // Asked repeatedly, the broker never had it: the request did not reach it.
      ord.last_message =
          "broker has no order with this client order id after " + std::to_string(answered_not_found) + " answered queries";
      apply_state(ord, OrderState::failed, ord.last_message);
      if (done) done(true);
      return;
    }
    if (attempt >= options_.resolve_attempts) {
      // The last query's reason, when it was one of the unanswered (an answered one has none).
      const std::string last = r.outcome == Outcome::accepted ? "the last one answered: no such order" : r.message;
      spdlog::error("order {}: outcome still unknown after {} queries, {} of them unanswered ({}); it stays pending, "
                    "is not resent, and is resolved again at the next resync",
                    coid, attempt, attempt - answered_not_found, last);
      resolution_abandoned_.insert(coid);
      if (done) done(false);
      return;
    }
    loop_.call_after(options_.resolve_retry_interval, [this, coid, attempt, answered_not_found, done] {
      resolve_unknown(coid, attempt + 1, answered_not_found, done);
    });
  });
}

void OrderManager::cancel(const std::string& coid, SubmitCallback done) {
  OrderRecord* found = index_.find(coid);
  if (!found) {
    if (done) done(CommandResult::failed("no order " + coid));
    return;
  }
  OrderRecord& o = *found;
  if (o.state == OrderState::held) {
    // No broker holds it: cancelled here, at once.
    apply_state(o, OrderState::cancelled, "cancelled while held by Backstop");
    if (done) done({Outcome::accepted, {}, "cancelled (held by Backstop)", 0});
    return;
  }
  Broker* b = broker(o.broker);
  if (!b || o.broker_order_id.empty() || !is_working(o.state)) {
    if (done) done(CommandResult::failed("order " + coid + " is not working (" + to_string(o.state) + ")"));
    return;
  }
  const OrderState before = o.state;
  apply_state(o, OrderState::pending_cancel, "cancel requested");
  b->cancel(o.broker_order_id, [this, coid, before, done](CommandResult r) {
    make_valid_utf8(r.message);
    OrderRecord& ord = at(coid);
    if ((r.outcome == Outcome::failed_locally || r.outcome == Outcome::rejected) &&
        ord.state == OrderState::pending_cancel) {
      apply_state(ord, before, "cancel " + std::string(to_string(r.outcome)) + ": " + r.message);
      if (r.outcome == Outcome::rejected) refresh_after_refusal(ord, "cancel refused");
    }
    // accepted: the broker confirms asynchronously (event or resync); unknown: resync decides.
    if (done) done(r);
  });
}

void OrderManager::replace(const std::string& coid, const OrderSpec& updated, SubmitCallback done) {
  OrderRecord* found = index_.find(coid);
  if (!found || !(is_working(found->state) || found->state == OrderState::held)) {
    if (done) done(CommandResult::failed("order " + coid + " is not working"));
    return;
  }
  OrderRecord& o = *found;
  OrderSpec next = o.spec;
  next.quantity = updated.quantity;
  next.limit_price = updated.limit_price;
  next.stop_price = updated.stop_price;
  next.tif = updated.tif;
  if (auto why = validate(next); !why.empty()) {
    if (done) done(CommandResult::failed(why));
    return;
  }
  journal_.record_event({loop_.now(), o.broker, "replace_requested", coid,
                         nlohmann::json{{"quantity", next.quantity},
                                        {"limit_price", next.limit_price ? next.limit_price->to_string() : ""},
                                        {"stop_price", next.stop_price ? next.stop_price->to_string() : ""}}
                             .dump()});
  if (o.state == OrderState::held) {
    // Held by Backstop: replaced here (the guard watches the new price from the update).
    o.spec = next;
    journal_.record_order(o);
    notify(o);
    if (done) done({Outcome::accepted, {}, "replaced (held by Backstop)", 0});
    return;
  }
  broker(o.broker)->replace(o.broker_order_id, next, [this, coid, next, done](CommandResult r) {
    make_valid_utf8(r.message);
    OrderRecord& ord = at(coid);
    if (r.outcome == Outcome::accepted) {
      ord.spec = next;
      if (!r.broker_order_id.empty() && r.broker_order_id != ord.broker_order_id)
        follow_replacement_id(ord, r.broker_order_id);
      journal_.record_order(ord);
      notify(ord);
      apply_early_fills(ord);  // fills of the new id that outran this answer
    } else {
      journal_.record_event({loop_.now(), ord.broker, "replace_" + std::string(to_string(r.outcome)), coid,
                             nlohmann::json{{"message", r.message}}.dump()});
      if (r.outcome == Outcome::rejected) refresh_after_refusal(ord, "replace refused");
      if (r.outcome == Outcome::unknown) {
        // The broker may hold the change or not: read the order back, as an unknown submit is,
        // and have the record say what the broker holds (a stop verified, watched and mirrored
        // at a price the broker does not hold would be wrong either way).
        resolve_replace(coid, next, 1, std::move(r), done);
        return;
      }
    }
    if (done) done(r);
  });
}

void OrderManager::refresh_after_refusal(const OrderRecord& o, const std::string& why) {
  // "Not an open order", "too late": the broker refusing to change an order this record calls
  // working most often means the record is behind (a fill or an end the stream lost). Read back
  // now, not at the next resync: a strategy trailing a stop that has filled learns it at once.
  if (!is_working(o.state) || !broker(o.broker)) return;
  read_back(o.spec.client_order_id, why, [] {});
}

void OrderManager::resolve_replace(const std::string& coid, const OrderSpec& next, int attempt, CommandResult unknown,
                                   SubmitCallback done) {
  loop_.call_after(options_.resolve_retry_interval, [this, coid, next, attempt, unknown = std::move(unknown), done] {
    OrderRecord* o = index_.find(coid);
    Broker* b = o ? broker(o->broker) : nullptr;
    if (!o || !b || o->broker_order_id.empty() || !is_working(o->state)) {
      if (done) done(unknown);  // ended meanwhile: nothing left to replace
      return;
    }
    b->query_order(o->broker_order_id, [this, coid, next, attempt, unknown, done](OrderQueryResult r) {
      make_valid_utf8(r.message);
      OrderRecord& ord = at(coid);
      const bool holds_change = r.outcome == Outcome::accepted && r.order && r.order->quantity == next.quantity &&
                                r.order->limit_price == next.limit_price && r.order->stop_price == next.stop_price;
      if (holds_change) {
        ord.spec = next;
        journal_.record_event({loop_.now(), ord.broker, "replace_resolved", coid,
                               nlohmann::json{{"applied", true}, {"queries", attempt}}.dump()});
        journal_.record_order(ord);
        notify(ord);
        if (done) done({Outcome::accepted, ord.broker_order_id, "replace applied (read back)", 0});
        return;
      }
      // Not (yet) there: a replace is asynchronous at the broker, so asked again a few times;
      // then the record keeps what the broker holds, and the caller hears it stays unknown.
      if (attempt < options_.resolve_attempts) {
        resolve_replace(coid, next, attempt + 1, unknown, done);
        return;
      }
      journal_.record_event({loop_.now(), ord.broker, "replace_resolved", coid,
                             nlohmann::json{{"applied", false}, {"queries", attempt},
                                            {"read_back", r.outcome == Outcome::accepted && r.order ? "unchanged"
                                                                                                    : r.message}}
                                 .dump()});
      spdlog::warn("order {}: replace of unknown outcome not seen at {} after {} read-backs; the order keeps its "
                   "earlier price and quantity",
                   coid, ord.broker, attempt);
      if (done) done(unknown);
    });
  });
}

void OrderManager::follow_replacement_id(OrderRecord& o, const std::string& new_id) {
  journal_.record_event({loop_.now(), o.broker, "broker_order_id_replaced", o.spec.client_order_id,
                         nlohmann::json{{"from", o.broker_order_id}, {"to", new_id}}.dump()});
  spdlog::info("order {}: the replace put it under broker id {} (was {})", o.spec.client_order_id, new_id,
               o.broker_order_id);
  if (!o.broker_order_id.empty()) superseded_broker_ids_.insert({o.broker, o.broker_order_id});
  o.broker_order_id = new_id;
  by_broker_id_[{o.broker, new_id}] = o.spec.client_order_id;
}

void OrderManager::on_event(const std::string& broker_name, const OrderEvent& ev) {
  OrderRecord* o = nullptr;
  if (!ev.client_order_id.empty()) {
    o = index_.find(ev.client_order_id);
  }
  if (!o && !ev.broker_order_id.empty()) {
    auto it = by_broker_id_.find({broker_name, ev.broker_order_id});
    if (it != by_broker_id_.end()) o = &at(it->second);
  }
  if (!o) {
    // Not ours, or placed outside Backstop: a divergence worth recording, not applying.
    journal_.record_event({loop_.now(), broker_name, "unknown_order_event", ev.client_order_id,
                           nlohmann::json{{"broker_order_id", ev.broker_order_id}, {"status", ev.broker_status}}.dump()});
    return;
  }
  if (ev.kind != OrderEvent::Kind::fill && !ev.broker_order_id.empty() && ev.broker_order_id != o->broker_order_id &&
      superseded_broker_ids_.count({broker_name, ev.broker_order_id})) [[unlikely]] {
    // The order a replace superseded: its "Replaced" end is not this order's end.
    journal_.record_event({loop_.now(), broker_name, "superseded_order_event", o->spec.client_order_id,
                           nlohmann::json{{"broker_order_id", ev.broker_order_id}, {"status", ev.broker_status}}.dump()});
    return;
  }
  if (o->broker_order_id.empty() && !ev.broker_order_id.empty()) {
    o->broker_order_id = ev.broker_order_id;
    by_broker_id_[{broker_name, ev.broker_order_id}] = o->spec.client_order_id;
    apply_early_fills(*o);
  }
  switch (ev.kind) {
    case OrderEvent::Kind::fill:
      if (ev.fill) apply_fill(*ev.fill);
      break;
    case OrderEvent::Kind::rejected:
      o->last_message = ev.message;
      apply_state(*o, OrderState::rejected, "broker: " + ev.message);
      break;
    case OrderEvent::Kind::cancelled:
      o->last_message = ev.message;
      apply_state(*o, OrderState::cancelled, "broker: " + (ev.message.empty() ? ev.broker_status : ev.message));
      break;
    case OrderEvent::Kind::triggered:
      journal_.record_event({ev.at, broker_name, "stop_triggered", o->spec.client_order_id,
                             nlohmann::json{{"broker_status", ev.broker_status}}.dump()});
      for (auto& l : trigger_listeners_) l(*o);
      [[fallthrough]];
    case OrderEvent::Kind::status:
      if (o->state == OrderState::pending || o->state == OrderState::pre_sent)
        apply_state(*o, OrderState::submitted, "broker status " + ev.broker_status);
      break;
  }
}

void OrderManager::apply_early_fills(const OrderRecord& o) {
  auto it = early_fills_.find({o.broker, o.broker_order_id});
  if (it == early_fills_.end()) return;
  auto fills = std::move(it->second);
  early_fills_.erase(it);
  for (const auto& f : fills) apply_fill(f);
}

bool OrderManager::apply_fill(const Fill& fill) {
  OrderRecord* o = nullptr;
  o = index_.find(fill.client_order_id);
  if (!o) {
    if (auto it = by_broker_id_.find({fill.broker, fill.broker_order_id}); it != by_broker_id_.end())
      o = &at(it->second);
  }
  if (ledger_.seen(fill.broker, fill.execution_id)) return false;  // this execution was already counted
  if (!o) {
    // A fill can outrun the acknowledgement that tells us the broker's order id: hold it until
    // the id is known, rather than lose it or book it against nothing.
    if (!fill.broker_order_id.empty()) {
      early_fills_[{fill.broker, fill.broker_order_id}].push_back(fill);
      return false;
    }
    ledger_.record(fill);
    journal_.record_fill(fill);
    journal_.record_event({loop_.now(), fill.broker, "unknown_fill", fill.client_order_id,
                           nlohmann::json{{"execution_id", fill.execution_id}}.dump()});
    return true;
  }
  // Named by the order's cumulative quantity, under the broker order id the order has: the part
  // at or below the quantity already booked was counted under another name (a read-back's
  // "query:..." and the stream's own, in either order). Booking it again would double a partial
  // fill, which the check against the order's quantity below cannot see.
  std::int64_t quantity = fill.quantity;
  if (fill.cumulative_quantity > 0 && fill.broker_order_id == o->broker_order_id) {
    const std::int64_t not_booked = fill.cumulative_quantity - o->filled_quantity;
    if (not_booked <= 0) {
      ledger_.record(fill);  // its name is known now: a repeat stops at the ledger
      journal_.record_event({loop_.now(), fill.broker, "fill_already_counted", o->spec.client_order_id,
                             nlohmann::json{{"execution_id", fill.execution_id},
                                            {"cumulative_quantity", fill.cumulative_quantity},
                                            {"filled_quantity", o->filled_quantity}}
                                 .dump()});
      return false;
    }
    quantity = std::min(quantity, not_booked);
  }
  if (quantity > o->remaining_quantity()) {
    // More than the order's quantity: the same execution reported twice under different ids (a
    // stream id and a query id). Booking it would double the position; record it and stop.
    journal_.record_event({loop_.now(), fill.broker, "overfill_refused", o->spec.client_order_id,
                           nlohmann::json{{"execution_id", fill.execution_id}, {"quantity", quantity},
                                          {"remaining", o->remaining_quantity()}}
                               .dump()});
    spdlog::warn("order {}: fill {} of {} exceeds the remaining {}; not booked", o->spec.client_order_id,
                 fill.execution_id, quantity, o->remaining_quantity());
    return false;
  }
  ledger_.record(fill);
  // Booked at the fill's own price also when only its part beyond the booked quantity counts:
  // which of the executions it covered were already booked is not known, the quantity is.
  Fill booked = fill;
  booked.client_order_id = o->spec.client_order_id;
  booked.quantity = quantity;
  journal_.record_fill(booked);
  o->add_fill(quantity, fill.price);
  auto& pos = positions_[{fill.broker, o->spec.symbol}];
  pos.broker = fill.broker;
  pos.symbol = o->spec.symbol;
  pos.apply(o->spec.side, quantity, fill.price);
  apply_state(*o, o->remaining_quantity() <= 0 ? OrderState::filled : OrderState::partially_filled,
              "fill " + fill.execution_id + " " + std::to_string(quantity) + " @ " + fill.price.to_string());
  for (auto& l : fill_listeners_) l(booked, *o);
  return true;
}

void OrderManager::apply_broker_view(OrderRecord& o, const BrokerOrder& v, const std::string& why) {
  if (o.broker_order_id.empty() && !v.broker_order_id.empty()) {
    o.broker_order_id = v.broker_order_id;
    by_broker_id_[{o.broker, v.broker_order_id}] = o.spec.client_order_id;
    apply_early_fills(o);
  }
  if (v.filled_quantity > o.filled_quantity && v.average_fill_price) {
    // The broker reports more filled than we have seen, and its execution list was not available
    // (or did not have them): book the difference under an id derived from the cumulative
    // quantity, so that repeating this never counts it twice.
    const std::int64_t delta = v.filled_quantity - o.filled_quantity;
    const Price price = Price::from_units(
        (v.average_fill_price->units() * v.filled_quantity - o.average_fill_price.units() * o.filled_quantity) / delta);
    if (apply_fill({"query:" + v.broker_order_id + ":" + std::to_string(v.filled_quantity), o.broker,
                    o.spec.client_order_id, v.broker_order_id, o.spec.symbol, o.spec.side, delta, price, loop_.now(),
                    v.filled_quantity}))
      ++fills_recovered_by_query_;
  }
  switch (v.state) {
    case OrderState::cancelled:
    case OrderState::rejected:
      if (!o.is_terminal()) {
        o.last_message = v.broker_status;
        apply_state(o, v.state, why + ": broker says " + v.broker_status);
      }
      break;
    case OrderState::submitted:
    case OrderState::partially_filled:
      if (o.state == OrderState::pending || o.state == OrderState::pre_sent)
        apply_state(o, OrderState::submitted, why + ": broker says " + v.broker_status);
      break;
    default:
      break;
  }
}

void OrderManager::recover(std::function<void(std::size_t, std::size_t)> done) {
  for (auto& rec : journal_.orders()) {
    const std::string coid = rec.spec.client_order_id;
    if (!rec.broker_order_id.empty()) {
      by_broker_id_[{rec.broker, rec.broker_order_id}] = coid;
      // Before any unknown outcome is resolved below: an id the journal has given to one order
      // is never found again for another.
      if (Broker* b = broker(rec.broker)) b->remember_order(coid, rec.broker_order_id);
    }
    if (OrderRecord* existing = index_.find(coid)) {
      *existing = std::move(rec);  // in place: order_sequence_ points at it
    } else {
      OrderRecord* created = records_.take();
      *created = std::move(rec);
      index_.insert(coid, created);
      order_sequence_.push_back(created);
    }
  }
  for (const auto& f : journal_.fills()) {
    ledger_.record(f);
    const OrderRecord* o = index_.find(f.client_order_id);
    if (!o) continue;
    auto& pos = positions_[{f.broker, o->spec.symbol}];
    pos.broker = f.broker;
    pos.symbol = o->spec.symbol;
    pos.apply(o->spec.side, f.quantity, f.price);
  }
  std::vector<std::string> open;
  std::size_t held = 0;
  for (const OrderRecord* o : order_sequence_) {
    if (!o->is_terminal()) open_when_recovered_.insert(o->spec.client_order_id);
    if (o->state == OrderState::held)
      ++held;  // at no broker: nothing to resolve; the stop guard watches it again
    else if (!o->is_terminal())
      open.push_back(o->spec.client_order_id);
  }
  std::sort(open.begin(), open.end());  // resolved in client order id order, as always
  spdlog::info("journal recovered: {} orders, {} not terminal to resolve, {} held by Backstop", records_.size(),
               open.size(), held);
  if (open.empty()) {
    if (done) done(0, 0);
    return;
  }
  struct Tally {
    std::size_t remaining, resolved = 0, unresolved = 0;
  };
  auto tally = std::make_shared<Tally>(Tally{open.size()});
  auto finish_one = [tally, done](bool ok) {
    (ok ? tally->resolved : tally->unresolved)++;
    if (--tally->remaining == 0 && done) done(tally->resolved, tally->unresolved);
  };
  for (const auto& coid : open) {
    OrderRecord& o = at(coid);
    spdlog::info("resolving order {} ({} at {})", coid, to_string(o.state), o.broker);
    Broker* b = broker(o.broker);
    if (o.state == OrderState::pre_sent || o.state == OrderState::pending) {
      // Sent (or maybe sent) by an earlier process: let the adapter know what to look for.
      if (b) b->expect_unknown(o.spec, o.state_times[static_cast<std::size_t>(OrderState::pre_sent)]);
      resolve_unknown(coid, 1, 0, finish_one);
    } else {
      if (!b) {
        finish_one(false);
        continue;
      }
      auto apply = [this, coid, finish_one](OrderQueryResult r) {
        make_valid_utf8(r.message);
        if (r.outcome == Outcome::accepted && r.order) apply_broker_view(at(coid), *r.order, "recovery");
        finish_one(r.outcome == Outcome::accepted);
      };
      // The journal knows the broker's id: ask by it (not every broker can look up a client id).
      if (!o.broker_order_id.empty())
        b->query_order(o.broker_order_id, apply);
      else
        b->query_by_client_id(coid, apply);
    }
  }
}

void OrderManager::book_queried_fills(const std::vector<Fill>& fills) {
  // A broker may name one execution differently in its stream and in its execution list (IBKR's
  // WebSocket has no execution id: its adapter names a stream fill by the order's cumulative
  // quantity, which names only the last of several executions one update covered). Ids alone
  // would then book a partial fill twice. So for an order we know, the list decides the
  // *quantity*: what it adds beyond the quantity already booked is booked, from the executions
  // not seen by id, latest first (a stream loses recent fills, not old ones).
  std::map<std::string, std::vector<const Fill*>> by_order;  // client order id -> its executions
  for (const auto& f : fills) {
    const OrderRecord* o = find(f.client_order_id);
    if (!o) o = find_by_broker_id(f.broker, f.broker_order_id);
    if (o) {
      by_order[o->spec.client_order_id].push_back(&f);
    } else if (f.client_order_id.empty() && !ledger_.seen(f.broker, f.execution_id)) {
      if (apply_fill(f)) ++fills_recovered_by_query_;  // not ours by name: recorded as unknown
    }
  }
  for (auto& [coid, list] : by_order) {
    std::int64_t listed = 0;
    for (const Fill* f : list) listed += f->quantity;
    std::int64_t missing = listed - find(coid)->filled_quantity;
    std::stable_sort(list.begin(), list.end(), [](const Fill* a, const Fill* b) { return a->at > b->at; });
    for (const Fill* f : list) {
      if (missing <= 0) break;
      if (ledger_.seen(f->broker, f->execution_id)) continue;
      Fill part = *f;
      part.client_order_id = coid;  // found by broker id: apply_fill looks it up by name
      part.quantity = std::min(part.quantity, missing);
      if (apply_fill(part)) {
        ++fills_recovered_by_query_;
        missing -= part.quantity;
      }
    }
  }
}

void OrderManager::resync(std::function<void()> done, const std::string& only_broker) {
  // Fills first (the broker's execution record is the truth), then each open order's state.
  auto outstanding = std::make_shared<int>(1);
  auto finish = [outstanding, done] {
    if (--*outstanding == 0 && done) done();
  };
  for (auto& [name, b] : brokers_) {
    if (!only_broker.empty() && name != only_broker) continue;
    if (!b->capabilities().fill_query) continue;
    ++*outstanding;
    b->list_fills([this, finish](FillsResult r) {
      if (r.outcome == Outcome::accepted) book_queried_fills(r.fills);
      finish();
    });
  }
  // By index over the orders present now: a synchronous answer can create orders (a guard's
  // flatten), which appends to (and may reallocate) the sequence.
  for (std::size_t i = 0, n = order_sequence_.size(); i < n; ++i) {
    OrderRecord& o = *order_sequence_[i];
    const std::string& coid = o.spec.client_order_id;
    if (o.is_terminal() || o.state == OrderState::held) {  // held: at no broker
      if (!resolution_abandoned_.empty()) resolution_abandoned_.erase(coid);  // the stream ended it
      continue;
    }
    if (!only_broker.empty() && o.broker != only_broker) continue;
    if (!broker(o.broker)) continue;
    ++*outstanding;
    if ((o.state == OrderState::pending || o.state == OrderState::pre_sent) && resolution_abandoned_.erase(coid)) {
      // A read-back alone would leave an order the broker never got pending for good.
      resolve_unknown(coid, 1, 0, [finish](bool) { finish(); });
      continue;
    }
    read_back(coid, "resync", finish);
  }
  finish();
}

void OrderManager::refresh(const std::vector<std::string>& coids, std::function<void()> done) {
  auto outstanding = std::make_shared<int>(1);
  auto finish = [outstanding, done] {
    if (--*outstanding == 0 && done) done();
  };
  for (const auto& coid : coids) {
    const OrderRecord* o = index_.find(coid);
    if (!o || o->state == OrderState::held || !broker(o->broker)) continue;
    ++*outstanding;
    read_back(coid, "read back", finish);
  }
  finish();
}

void OrderManager::read_back(const std::string& coid, const std::string& why, std::function<void()> then) {
  OrderRecord& o = at(coid);
  Broker* b = broker(o.broker);
  auto apply = [this, coid, why, then = std::move(then)](OrderQueryResult r) {
    make_valid_utf8(r.message);
    if (r.outcome == Outcome::accepted && r.order) apply_broker_view(at(coid), *r.order, why);
    then();
  };
  // By the broker's own id when known: not every broker can look an order up by client id.
  if (!o.broker_order_id.empty())
    b->query_order(o.broker_order_id, std::move(apply));
  else
    b->query_by_client_id(coid, std::move(apply));
}

const OrderRecord* OrderManager::find(const std::string& coid) const {
  return index_.find(coid);
}

const OrderRecord* OrderManager::find_by_broker_id(const std::string& b, const std::string& id) const {
  auto it = by_broker_id_.find({b, id});
  return it == by_broker_id_.end() ? nullptr : find(it->second);
}

std::vector<const OrderRecord*> OrderManager::orders() const {
  return {order_sequence_.begin(), order_sequence_.end()};
}

std::vector<const OrderRecord*> OrderManager::working_orders() const {
  std::vector<const OrderRecord*> out;
  for (const OrderRecord* o : order_sequence_)
    if (is_working(o->state)) out.push_back(o);
  return out;
}

std::vector<const OrderRecord*> OrderManager::stuck_orders() const {
  std::vector<const OrderRecord*> out;
  const Timestamp now = loop_.now();
  for (const OrderRecord* op : order_sequence_) {
    const OrderRecord& o = *op;
    if ((o.state == OrderState::pre_sent || o.state == OrderState::pending) &&
        now - o.time_of(o.state) > options_.stuck_threshold.count())
      out.push_back(&o);
  }
  return out;
}

std::int64_t OrderManager::position(const std::string& b, const std::string& symbol) const {
  auto it = positions_.find({b, symbol});
  return it == positions_.end() ? 0 : it->second.quantity;
}

}  // namespace backstop
