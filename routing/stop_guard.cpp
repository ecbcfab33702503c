#include "routing/stop_guard.hpp"
#include "core/json_text.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <variant>

namespace backstop {

namespace {
constexpr int kGuardPolls = 15;  // cancel confirmation polls before the guard gives up and alerts
constexpr Duration kGuardPollInterval = std::chrono::milliseconds(200);
}  // namespace

const char* to_string(Verification v) {
  switch (v) {
    case Verification::pending: return "pending";
    case Verification::verified: return "verified";
    case Verification::mismatch: return "mismatch";
    case Verification::missing: return "missing";
    case Verification::timeout: return "timeout";
  }
  return "?";
}

StopGuard::StopGuard(EventLoop& loop, OrderManager& orders, Journal& journal, StopGuardSettings settings,
                     std::map<std::string, Instrument> instruments)
    : loop_(loop),
      orders_(orders),
      journal_(journal),
      settings_(std::move(settings)),
      instruments_(std::move(instruments)),
      watchdog_(settings_.trigger, settings_.ghost_grace) {
  orders_.on_order_update(while_alive([this](const OrderRecord& o) { on_order(o); }));
  // A trigger report is the broker saying the stop fired: it is not a ghost.
  orders_.on_triggered(while_alive([this](const OrderRecord& o) { unwatch(o.spec.client_order_id); }));
  // A fill anywhere can make a position flat (a parent closed by another order): mirrors of
  // stops that no longer protect anything must go.
  if (any_policy_is(ProtectionPolicy::mirror))
    orders_.on_fill(while_alive([this](const Fill&, const OrderRecord&) { evaluate_all_mirrors(); }));
  scratch_.reserve(64);
}

StopGuard::~StopGuard() = default;

ProtectionPolicy StopGuard::policy_of(const OrderSpec& stop) const {
  auto it = settings_.strategy_policies.find(stop.strategy);
  return it == settings_.strategy_policies.end() ? settings_.policy : it->second;
}

ProtectionPolicy StopGuard::policy_of(const std::string& coid) const {
  // A mirror stop (sent by the guard, so of no strategy) is under the policy of its primary.
  if (auto m = mirror_index_.find(coid); m != mirror_index_.end()) return policy_of(mirrors_[m->second].primary);
  const OrderRecord* o = orders_.find(coid);
  return o ? policy_of(o->spec) : settings_.policy;
}

const std::string* StopGuard::mirror_broker_for(const OrderRecord& stop) const {
  if (auto r = settings_.strategy_routes.find(stop.spec.strategy); r != settings_.strategy_routes.end()) {
    for (const auto& b : r->second)
      if (b != stop.broker) return &b;
    return nullptr;  // a route of one broker: nowhere else to go
  }
  auto m = settings_.mirror_brokers.find(stop.broker);
  return m == settings_.mirror_brokers.end() ? nullptr : &m->second;
}

bool StopGuard::any_policy_is(ProtectionPolicy p) const {
  if (settings_.policy == p) return true;
  for (const auto& [strategy, policy] : settings_.strategy_policies)
    if (policy == p) return true;
  return false;
}

std::vector<LintFinding> StopGuard::lint(const OrderSpec& stop, const std::string& broker_name) const {
  const Broker* b = orders_.broker(broker_name);
  auto inst = instruments_.find(stop.symbol);
  if (!b || inst == instruments_.end())
    return {{stop.client_order_id, !b ? "broker" : "symbol", !b ? "unknown broker " + broker_name : "unknown instrument",
             "configure it"}};
  std::optional<Quote> market;
  if (auto q = last_quotes_.find(stop.symbol); q != last_quotes_.end()) market = q->second;
  return lint_stop(stop, inst->second, *b, market, settings_.lint);
}

bool StopGuard::protecting(const OrderRecord& stop) const {
  if (stop.spec.parent_client_order_id.empty()) return true;
  const OrderRecord* parent = orders_.find(stop.spec.parent_client_order_id);
  return parent && parent->filled_quantity > 0;
}

void StopGuard::on_order(const OrderRecord& o) {
  const std::string& coid = o.spec.client_order_id;
  if (!o.spec.is_stop()) {  // a released held stop is a market (or limit) order from then on
    // A local stop's exit that ended unfilled: the released stop itself (held once, no longer a
    // stop), or one sent again.
    if ((o.state == OrderState::failed || o.state == OrderState::rejected) && o.filled_quantity == 0) {
      if (o.time_of(OrderState::held) != 0)
        local_exit_failed(o, coid, 0);
      else if (auto it = local_exits_.find(coid); it != local_exits_.end())
        local_exit_failed(o, it->second.stop, it->second.attempt);
    }
    return;
  }
  if (o.time_of(OrderState::held) != 0) {
    // Protection `local`: no broker holds it, so there is nothing to verify or mirror; watched
    // here from the moment it is held (again at its new price after a replace) until it is
    // released or cancelled.
    if (o.state == OrderState::held)
      watch_held(o);
    else
      watchdog_.unwatch(coid);
    return;
  }
  // Broker-held stops are taken up by restore_from_journal(), which knows their crossings before
  // the restart (begin_recovery).
  if (recovering_) return;
  auto [it, inserted] = stops_.try_emplace(coid);
  StopRecord& rec = it->second;
  if (inserted) {
    rec.client_order_id = coid;
    rec.broker = o.broker;
  }
  // Acknowledged: read it back.
  if (!rec.verification_started && o.state == OrderState::submitted && !o.broker_order_id.empty()) {
    rec.verification_started = true;
    start_verification(o);
  }
  if (auto mi = mirror_index_.find(coid); mi != mirror_index_.end()) {
    // A mirror stop: verified like any stop, but not watched (the primary is what the watchdog
    // judges); its own updates drive the mirror logic of its primary.
    evaluate_mirror(mirrors_[mi->second].primary);
    return;
  }
  const bool working = o.state == OrderState::submitted || o.state == OrderState::partially_filled;
  // The broker ended a stop that price had already gone through without filling it (an OCO
  // sibling filled, or it expired): the grace expiry still judges it. Our own cancel ends watching.
  const bool ended_by_broker_after_cross =
      o.filled_quantity == 0 && (o.state == OrderState::cancelled || o.state == OrderState::rejected) &&
      o.time_of(OrderState::pending_cancel) == 0 && watchdog_.crossed(coid);
  if (ended_by_broker_after_cross) return;
  if (o.filled_quantity > 0 || !working) {
    unwatch(coid);  // it fired, or it is being cancelled / is over
  } else if (!rec.watching && !rec.ghost) {
    // Bracket exits are watched from their acknowledgement: whether the entry has filled is
    // settled when a crossing expires (our record of the entry's fill may lag a lossy stream).
    watch(o);
  } else if (rec.watching && (rec.watched_stop_price != o.spec.stop_price ||
                              rec.watched_quantity != o.remaining_quantity())) {
    // Replaced at the broker: judged from now on at its new price (a crossing of the old one is
    // not this stop's; one of the new one may already have happened), and read back as changed.
    spdlog::info("stop {} at {}: replaced; watched at {} from now on", coid, rec.broker,
                 o.spec.stop_price ? o.spec.stop_price->to_string() : std::string("none"));
    watch(o);
    if (rec.verification_started) verify_once(coid, 0, true);
  }
  evaluate_mirror(coid);
}

void StopGuard::start_verification(const OrderRecord& o) {
  const std::string coid = o.spec.client_order_id;
  const Timestamp deadline = loop_.now() + settings_.verify_deadline.count();
  loop_.call_at(deadline, while_alive([this, coid] {
    auto it = stops_.find(coid);
    if (it != stops_.end() && it->second.verification == Verification::pending)
      finish_verification(coid, Verification::timeout, "no answer to the read-back within the deadline");
  }));
  verify_once(coid, deadline, false);
  schedule_reverify();
}

void StopGuard::verify_once(const std::string& coid, Timestamp deadline, bool periodic) {
  const OrderRecord* o = orders_.find(coid);
  Broker* b = o ? orders_.broker(o->broker) : nullptr;
  if (!o || !b) return;
  auto handle = while_alive([this, coid, deadline, periodic](OrderQueryResult r) {
    auto it = stops_.find(coid);
    const OrderRecord* sent = orders_.find(coid);
    if (it == stops_.end() || !sent) return;
    if (!periodic && it->second.verification != Verification::pending) return;  // timed out already
    const bool time_left = loop_.now() + settings_.verify_retry.count() < deadline;
    auto retry_or = [&](Verification v, const std::string& why) {
      if (!periodic && time_left) {
        loop_.call_after(settings_.verify_retry, while_alive([this, coid, deadline] { verify_once(coid, deadline, false); }));
      } else {
        finish_verification(coid, v, why);
      }
    };
    if (r.outcome != Outcome::accepted) return retry_or(Verification::timeout, "read-back failed: " + r.message);
    if (!r.order) return retry_or(Verification::missing, "the broker has no such order");
    const BrokerOrder& view = *r.order;
    if (view.state == OrderState::filled || view.filled_quantity > 0) {
      finish_verification(coid, Verification::verified, "filled");  // it worked
      return;
    }
    if (view.state != OrderState::submitted && view.state != OrderState::partially_filled)
      return finish_verification(coid, Verification::mismatch, "status: broker says " + view.broker_status + " (" +
                                                                    to_string(view.state) + "), not working");
    const OrderSpec& s = sent->spec;
    auto price = [](const std::optional<Price>& p) { return p ? p->to_string() : std::string("none"); };
    std::string field;
    if (view.type != s.type) field = std::string("type: sent ") + to_string(s.type) + ", broker has " + to_string(view.type);
    else if (view.side != s.side) field = std::string("side: sent ") + to_string(s.side) + ", broker has " + to_string(view.side);
    else if (view.quantity != s.quantity)
      field = "quantity: sent " + std::to_string(s.quantity) + ", broker has " + std::to_string(view.quantity);
    else if (view.stop_price != s.stop_price)
      field = "stop_price: sent " + price(s.stop_price) + ", broker has " + price(view.stop_price);
    else if (view.limit_price != s.limit_price)
      field = "limit_price: sent " + price(s.limit_price) + ", broker has " + price(view.limit_price);
    else if (view.tif != s.tif)
      field = std::string("time_in_force: sent ") + to_string(s.tif) + ", broker has " + to_string(view.tif);
    else if (view.outside_rth != s.outside_rth)
      field = std::string("outside_rth: sent ") + (s.outside_rth ? "true" : "false") + ", broker has " +
              (view.outside_rth ? "true" : "false");
    if (!field.empty()) return finish_verification(coid, Verification::mismatch, field);
    finish_verification(coid, Verification::verified, "");
  });
  if (!o->broker_order_id.empty())
    b->query_order(o->broker_order_id, handle);
  else
    b->query_by_client_id(coid, handle);
}

void StopGuard::finish_verification(const std::string& coid, Verification v, const std::string& detail) {
  StopRecord& rec = stops_.at(coid);
  const bool changed = rec.verification != v || rec.detail != detail;
  rec.verification = v;
  rec.detail = detail;
  if (v == Verification::verified) {
    ++rec.verifications;
    if (rec.verified_at == 0) rec.verified_at = loop_.now();
    rec.needs_reconfirm = false;
  }
  evaluate_mirror(coid);  // a verdict (even an unchanged one after a reconnect) may settle a mirror
  if (!changed) return;
  journal_.record_event({loop_.now(), rec.broker, "stop_verification", coid,
                         nlohmann::json{{"outcome", to_string(v)}, {"detail", detail}}.dump()});
  if (v == Verification::verified)
    spdlog::info("stop {} at {}: verified", coid, rec.broker);
  else
    spdlog::warn("stop {} at {}: verification {}: {}", coid, rec.broker, to_string(v), detail);
  for (auto& l : verification_listeners_) l(rec);
}

void StopGuard::schedule_reverify() {
  if (reverify_scheduled_) return;
  reverify_scheduled_ = true;
  loop_.call_after(settings_.reverify_interval, while_alive([this] {
    reverify_scheduled_ = false;
    bool any = false;
    for (auto& [coid, rec] : stops_) {
      const OrderRecord* o = orders_.find(coid);
      if (!o || !is_working(o->state) || o->state == OrderState::pending_cancel) continue;
      any = true;
      if (rec.verification != Verification::pending) verify_once(coid, 0, true);
    }
    if (any) schedule_reverify();
  }));
}

void StopGuard::reverify(const std::string& broker) {
  for (auto& [coid, rec] : stops_) {
    const OrderRecord* o = orders_.find(coid);
    if (rec.broker == broker && o && is_working(o->state)) verify_once(coid, 0, true);
  }
}

void StopGuard::watch(const OrderRecord& o) {
  if (!o.spec.stop_price) return;
  watchdog_.watch({o.spec.client_order_id, o.broker, o.spec.symbol, o.spec.side, *o.spec.stop_price,
                   o.remaining_quantity()});
  if (auto it = stops_.find(o.spec.client_order_id); it != stops_.end()) {
    it->second.watching = true;
    it->second.watched_stop_price = o.spec.stop_price;
    it->second.watched_quantity = o.remaining_quantity();
  }
  // The market may already be through it (a gap while the entry filled): check at once.
  if (auto q = last_quotes_.find(o.spec.symbol); q != last_quotes_.end()) on_quote(q->second);
}

void StopGuard::watch_held(const OrderRecord& o) {
  if (!o.spec.stop_price) return;
  watchdog_.watch({o.spec.client_order_id, o.broker, o.spec.symbol, o.spec.side, *o.spec.stop_price,
                   o.remaining_quantity(), /*held=*/true});
  // Already through it (held while the market was beyond the price): it triggers now.
  if (auto q = last_quotes_.find(o.spec.symbol); q != last_quotes_.end()) on_quote(q->second);
}

void StopGuard::unwatch(const std::string& coid) {
  watchdog_.unwatch(coid);
  if (auto it = stops_.find(coid); it != stops_.end()) it->second.watching = false;
}

void StopGuard::on_quote(const Quote& q) {
  Quote& last = last_quotes_[q.symbol];
  if (q.bid) last.bid = q.bid;
  if (q.ask) last.ask = q.ask;
  if (q.last) last.last = q.last;
  last.symbol = q.symbol;
  last.at = q.at;
  last.source = q.source;
  if (!settings_.market_data_source.empty() && q.source != settings_.market_data_source) return;
  scratch_.clear();
  watchdog_.on_quote(q, scratch_);
  if (scratch_.empty()) return;
  // The journal's writer is woken once, after this tick's task, for the crossings and flatten
  // orders it records (see Journal::defer_wake_to_task_end).
  journal_.defer_wake_to_task_end(loop_);
  // Iterated out of scratch_: releasing a held stop tells its strategy at once, which may hold
  // another stop, which checks the last quote through here again.
  std::vector<CrossedStop> crossed;
  crossed.swap(scratch_);
  for (const auto& c : crossed) {
    if (const OrderRecord* o = orders_.find(c.stop.client_order_id); o && o->state == OrderState::held) {
      if (recovering_)
        note_crossed_during_recovery(c);
      else
        fire_local(c, *o);  // crossing a held stop took it out of the watchdog
      continue;
    }
    journal_.record_event({q.at, c.stop.broker, "stop_crossed", c.stop.client_order_id,
                           nlohmann::json{{"stop_price", c.stop.stop_price.to_string()},
                                          {"crossing_price", c.crossing_price.to_string()},
                                          {"source", c.source}}
                               .dump()});
  }
  crossed.clear();
  if (scratch_.capacity() < crossed.capacity()) scratch_.swap(crossed);  // keep the larger buffer
  schedule_expiry();
}

void StopGuard::schedule_expiry() {
  const auto next = watchdog_.next_deadline();
  if (!next || (expiry_timer_ != 0 && expiry_at_ <= *next)) return;
  if (expiry_timer_ != 0) loop_.cancel(expiry_timer_);
  expiry_at_ = *next;
  expiry_timer_ = loop_.call_at(*next, while_alive([this] {
    expiry_timer_ = 0;
    std::vector<CrossedStop> expired;
    watchdog_.expire(loop_.now(), expired);
    for (const auto& c : expired) {
      // Before calling it a ghost, read the stop (and its entry) back from its broker: the
      // stream may have lost the stop's fill, or the entry's fill that made the stop active.
      // Only those orders: a full resync would wait on every broker's paced execution listing.
      std::vector<std::string> read_back{c.stop.client_order_id};
      if (const OrderRecord* s = orders_.find(c.stop.client_order_id); s && !s->spec.parent_client_order_id.empty())
        read_back.push_back(s->spec.parent_client_order_id);
      orders_.refresh(read_back, while_alive([this, c] {
        const OrderRecord* o = orders_.find(c.stop.client_order_id);
        if (!o || o->filled_quantity > 0 || o->state == OrderState::pending_cancel) return;  // it fired
        if (!protecting(*o)) {
          if (is_working(o->state)) watch(*o);  // a bracket exit whose entry has not filled is not active yet
          return;
        }
        declare_ghost(c);  // crossed while active and never filled, even if the broker ended it since
      }));
    }
    schedule_expiry();
  }));
}

void StopGuard::declare_ghost(const CrossedStop& c) {
  auto& rec = stops_[c.stop.client_order_id];
  if (rec.ghost) return;
  rec.ghost = true;
  rec.watching = false;
  const ProtectionPolicy policy = policy_of(c.stop.client_order_id);
  GhostStop g{c.stop.client_order_id, c.stop.broker, c.stop.symbol, c.stop.side, c.stop.stop_price,
              c.crossing_price, c.crossed_at, loop_.now(), c.source, {}, {}};
  switch (policy) {
    case ProtectionPolicy::verify: g.action = "alerted (policy verify: no action)"; break;
    case ProtectionPolicy::guard: g.action = "guard: cancelling the broker stop, then flattening"; break;
    case ProtectionPolicy::local: g.action = "alerted (broker stop under policy local)"; break;
    case ProtectionPolicy::mirror:
      g.action = broker_down(g.broker)
                     ? "mirror: its broker is down; the mirror stop at the second venue covers it"
                     : "mirror: cancelling the ghost at its broker, then flattening there";
      break;
  }
  spdlog::error("GHOST STOP {} at {}: {} {} stop {} crossed at {} ({}), no fill or trigger within {} ms; {}",
                g.client_order_id, g.broker, to_string(g.side), g.symbol, g.stop_price.to_string(),
                g.crossing_price.to_string(), format_timestamp(g.crossed_at),
                settings_.ghost_grace.count() / 1'000'000, g.action);
  journal_.record_event({g.declared_at, g.broker, "ghost_stop", g.client_order_id,
                         nlohmann::json{{"symbol", g.symbol},
                                        {"side", to_string(g.side)},
                                        {"stop_price", g.stop_price.to_string()},
                                        {"crossing_price", g.crossing_price.to_string()},
                                        {"crossed_at", format_timestamp(g.crossed_at)},
                                        {"declared_at", format_timestamp(g.declared_at)},
                                        {"source", g.source},
                                        {"policy", to_string(policy)}}
                             .dump()});
  ghosts_.push_back(g);
  for (auto& l : ghost_listeners_) l(g);
  if (policy == ProtectionPolicy::guard) guard_flatten(ghosts_.size() - 1, 0);
  if (policy == ProtectionPolicy::mirror) {
    // With its broker up, a ghost is handled as `guard` does (the broker is reachable, so the
    // exit belongs there, and flat at the primary removes any mirror). With it down, the ghost
    // verdict keeps (or puts) a mirror in place; the flatten waits for the broker to return.
    if (!broker_down(g.broker))
      guard_flatten(ghosts_.size() - 1, 0);
    else
      evaluate_mirror(g.client_order_id);
  }
}

namespace {
// How much of a position an exit on `exit_side` can close without reversing it.
std::int64_t exposure_for_exit(Side exit_side, std::int64_t position) {
  return exit_side == Side::sell ? std::max<std::int64_t>(0, position) : std::max<std::int64_t>(0, -position);
}
}  // namespace

void StopGuard::guard_flatten(std::size_t index, int attempt) {
  const std::string coid = ghosts_[index].client_order_id;
  if (attempt == 0) {
    if (!acted_.insert(coid).second) return;  // exactly once per stop
    const OrderRecord* stop = orders_.find(coid);
    if (!stop) return;
    // Cancel the stop and its OCO siblings (a take-profit left behind would open a new position).
    orders_.cancel(coid);
    if (!stop->spec.oco_group.empty())
      for (const OrderRecord* o : orders_.working_orders())
        if (o->spec.oco_group == stop->spec.oco_group && o->spec.client_order_id != coid)
          orders_.cancel(o->spec.client_order_id);
  }
  // Read the broker back (the stop may have filled in the same instant), then decide. Only the
  // ghost's broker: another broker's paced listings must not delay the flatten.
  const std::string ghost_broker = ghosts_[index].broker;
  orders_.resync(while_alive([this, index, attempt, coid] {
    GhostStop& g = ghosts_[index];
    const OrderRecord* stop = orders_.find(coid);
    if (!stop) return;
    if (!is_terminal(stop->state)) {
      if (attempt + 1 < kGuardPolls) {
        loop_.call_after(kGuardPollInterval, while_alive([this, index, attempt] { guard_flatten(index, attempt + 1); }));
        return;
      }
      g.action = "guard: the broker never confirmed the cancel; NOT flattening (would risk a double exit)";
      spdlog::error("stop {}: {}", coid, g.action);
      journal_.record_event({loop_.now(), g.broker, "guard_stalled", coid, "{}"});
      return;
    }
    const std::int64_t remaining = stop->spec.quantity - stop->filled_quantity;
    const std::int64_t position = orders_.position(g.broker, g.symbol);
    const std::int64_t qty = std::min(remaining, exposure_for_exit(g.side, position));
    if (qty <= 0) {
      g.action = stop->filled_quantity > 0 ? "guard: the broker stop filled meanwhile; nothing to flatten"
                 : stop->time_of(OrderState::pending_cancel) == 0
                     ? "guard: the broker had already ended the stop unfilled; no exposure left to flatten"
                     : "guard: cancelled the broker stop; no exposure left to flatten";
    } else {
      // The flatten order's id is journaled before the order itself: the journal commits records
      // in the order they are queued, so a restart that finds this order in OrderManager's
      // records (journaled durably before send) also finds this link to its ghost, even when the
      // kill came before "guard_action", and never sends a second flatten (restore_from_journal).
      OrderSpec flatten = market_order(g.symbol, g.side, qty);
      flatten.client_order_id = orders_.next_client_order_id();
      journal_.record_event({loop_.now(), g.broker, "guard_flatten_order", coid,
                             nlohmann::json{{"flatten_order", flatten.client_order_id}, {"quantity", qty},
                                            {"position_before", position}}
                                 .dump()});
      g.flatten_order = orders_.submit(g.broker, std::move(flatten));
      g.action = "guard: cancelled the broker stop and flattened " + std::to_string(qty) + " with market order " +
                 g.flatten_order;
    }
    spdlog::warn("stop {}: {}", coid, g.action);
    journal_.record_event({loop_.now(), g.broker, "guard_action", coid,
                           nlohmann::json{{"action", g.action}, {"flatten_order", g.flatten_order},
                                          {"position_before", position}, {"quantity", qty}}
                               .dump()});
  }), ghost_broker);
}

void StopGuard::begin_recovery() {
  if (recovering_ || journal_restored_) return;
  recovering_ = true;
  std::size_t held = 0;
  for (const OrderRecord* o : orders_.orders()) {
    if (o->state != OrderState::held) continue;
    ++held;
    watch_held(*o);
  }
  if (held > 0) spdlog::info("stop guard: {} held stop(s) watched while recovery runs", held);
}

void StopGuard::note_crossed_during_recovery(const CrossedStop& c) {
  const std::string& coid = c.stop.client_order_id;
  watchdog_.unwatch(coid);  // already out of the book (a held stop crossed leaves it); once is enough
  crossed_during_recovery_.push_back(coid);
  journal_.record_event({loop_.now(), c.stop.broker, "local_stop_crossed_during_recovery", coid,
                         nlohmann::json{{"stop_price", c.stop.stop_price.to_string()},
                                        {"crossing_price", c.crossing_price.to_string()},
                                        {"crossed_at", format_timestamp(c.crossed_at)},
                                        {"source", c.source}}
                             .dump()});
  spdlog::error("LOCAL STOP {} at {}: {} {} {} stop {} crossed at {} ({}) while start-up recovery runs; its exit "
                "is sent as soon as recovery has resolved the journal's open orders",
                coid, c.stop.broker, to_string(c.stop.side), c.stop.quantity, c.stop.symbol,
                c.stop.stop_price.to_string(), c.crossing_price.to_string(), c.source);
}

void StopGuard::fire_local(const CrossedStop& c, const OrderRecord& held, bool during_recovery) {
  // Nothing on this path allocates once warm (bench/watchdog_bench.cpp counts): the texts are
  // written into members reused per release, the journal copies views into its reused slots, and
  // no callback is built for the exit's answer (a failure reaches on_order as an order update).
  // Nor does it look the order up again: `held` came from the caller's lookup, and records never
  // move. `c` is the caller's, and outlives this call (a re-entrant tick fills another buffer).
  const std::string& coid = c.stop.client_order_id;
  char stop_chars[Price::kMaxChars], crossing_chars[Price::kMaxChars];
  const std::string_view stop_text(stop_chars, c.stop.stop_price.to_chars(stop_chars) - stop_chars);
  const std::string_view crossing_text(crossing_chars, c.crossing_price.to_chars(crossing_chars) - crossing_chars);
  // Journaled before the order is sent again: the journal shows why it left.
  JsonObjectText detail(fired_detail_);
  detail.add("stop_price", stop_text)
      .add("crossing_price", crossing_text)
      .add("source", c.source)
      .add("order_type", held.spec.type == OrderType::stop_limit ? "limit" : "market");
  if (during_recovery) detail.add("crossed_during_recovery_at", format_timestamp(c.crossed_at));
  journal_.record_event(loop_.now(), held.broker, "local_stop_fired", coid, detail.close());
  fired_reason_.assign("local stop ").append(stop_text).append(" triggered at ").append(crossing_text);
  if (during_recovery) fired_reason_.append(" during start-up recovery, at ").append(format_timestamp(c.crossed_at));
  orders_.release(held, fired_reason_);
  // Logged once the exit is queued, not before: formatting a log line is not on the way to the
  // order. The release changed the record's type and state, not its side, quantity or symbol.
  spdlog::info("local stop {} at {}: {} {} {} stop {} crossed at {} ({}); sending it", coid, held.broker,
               to_string(held.spec.side), held.spec.quantity, held.spec.symbol, stop_text, crossing_text, c.source);
}

Duration StopGuard::retry_delay(int attempt) {
  return std::chrono::seconds(1LL << std::min(attempt, 3));
}

void StopGuard::local_exit_failed(const OrderRecord& exit, const std::string& stop, int attempt) {
  if (!failed_exits_.insert(exit.spec.client_order_id).second) return;
  const OrderRecord* fired = orders_.find(stop);
  const Timestamp fired_at = fired ? fired->time_of(OrderState::pre_sent) : 0;  // its release
  const bool never_reached_broker = exit.state == OrderState::failed;
  const bool will_retry = attempt < kMaxLocalExitRetries ||
                          (never_reached_broker && loop_.now() - fired_at < kLocalExitRetryWindow.count());
  const Duration delay = retry_delay(attempt);
  const std::string what = attempt == 0 ? "exit" : "exit sent again (" + exit.spec.client_order_id + ")";
  spdlog::error("LOCAL STOP {} at {} triggered but its {} was {}: {}; the position it protected is NOT protected; {}",
                stop, exit.broker, what, to_string(exit.state), exit.last_message,
                will_retry ? fmt::format("sending it again in {} ms (attempt {})", to_ns(delay) / 1'000'000, attempt + 1)
                           : fmt::format("gave up after {} attempts", attempt + 1));
  nlohmann::json detail{{"outcome", to_string(exit.state)},
                        {"message", exit.last_message},
                        {"order", exit.spec.client_order_id},
                        {"attempt", attempt},
                        {"will_retry", will_retry}};
  if (will_retry) detail["retry_in_ms"] = to_ns(delay) / 1'000'000;
  journal_.record_event({loop_.now(), exit.broker, "local_stop_release_failed", stop, detail.dump()});
  if (!will_retry) return;
  loop_.call_after(delay, while_alive([this, stop, attempt] {
    // Not while a start-up recovery runs (nothing new is sent then): the restore resumes it from
    // the journal's "will_retry".
    if (recovering_) return;
    send_local_exit_again(stop, attempt + 1, "retry after the exit failed");
  }));
}

void StopGuard::send_local_exit_again(const std::string& stop, int attempt, const std::string& why) {
  int& sent = exit_attempts_sent_[stop];
  if (attempt <= sent) return;
  sent = attempt;
  const OrderRecord* o = orders_.find(stop);
  if (!o) return;
  const std::int64_t position = orders_.position(o->broker, o->spec.symbol);
  const std::int64_t qty = std::min(o->spec.quantity, exposure_for_exit(o->spec.side, position));
  // The exit as released (market, or limit for a stop-limit), its strategy kept so that the
  // route still owns it; not part of a bracket any more (its siblings are judged on their own).
  OrderSpec exit = o->spec;
  exit.client_order_id = qty > 0 ? orders_.next_client_order_id() : std::string();
  exit.quantity = qty;
  exit.parent_client_order_id.clear();
  exit.oco_group.clear();
  const std::string detail = qty > 0 ? why + "; sending " + std::to_string(qty) + " as " + exit.client_order_id
                                     : why + "; no exposure left at " + o->broker + ": nothing to send";
  journal_.record_event({loop_.now(), o->broker, "local_stop_resent", stop,
                         nlohmann::json{{"order", exit.client_order_id},
                                        {"quantity", qty},
                                        {"position_before", position},
                                        {"attempt", attempt},
                                        {"detail", detail}}
                             .dump()});
  const std::string broker = o->broker;
  if (qty <= 0) {
    spdlog::info("local stop {} at {}: {}", stop, broker, detail);
    return;
  }
  spdlog::warn("local stop {} at {}: {}", stop, broker, detail);
  local_exits_[exit.client_order_id] = {stop, attempt};
  orders_.submit(broker, std::move(exit));
}

// ---------------------------------------------------------------------------------------------
// restart

namespace {

std::optional<nlohmann::json> event_detail(const JournalEvent& ev) {
  auto j = nlohmann::json::parse(ev.detail, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    spdlog::warn("stop guard restore: {} event for {} has unreadable detail; skipped", ev.kind, ev.client_order_id);
    return std::nullopt;
  }
  return j;
}

std::string text_field(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::optional<Price> price_field(const nlohmann::json& j, const char* key) {
  const std::string t = text_field(j, key);
  if (t.empty()) return std::nullopt;
  try {
    return Price::parse(t);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

bool flattens(ProtectionPolicy p) { return p == ProtectionPolicy::guard || p == ProtectionPolicy::mirror; }

}  // namespace

void StopGuard::restore_from_journal() {
  if (journal_restored_) return;  // twice would act on interrupted ghosts twice
  journal_restored_ = true;
  recovering_ = false;
  crossed_during_recovery_.clear();  // released below, from the journal's record of them

  // What the journal says about each stop, in journal order.
  struct Trail {
    std::optional<JournalEvent> crossed;  // the latest crossing
    bool triggered_since = false;         // the broker reported it triggered after that crossing
    std::optional<JournalEvent> ghost;    // the declaration (a stop is a ghost at most once)
    std::optional<JournalEvent> action;   // "guard_action": what the policy did
    std::string flatten_intent;           // "guard_flatten_order": the flatten order's id
    bool stalled = false;                 // "guard_stalled": gave up, alerted
    bool mirror_fired = false;            // its mirror filled and stood in for it
    // A held stop crossed while a start-up recovery ran (begin_recovery), not yet released.
    std::optional<JournalEvent> crossed_during_recovery;
  };
  std::map<std::string, Trail> trails;
  std::vector<std::string> ghost_order;  // declaration order
  std::vector<JournalEvent> mirror_events;  // for restore_mirrors(): then is_mirror() knows them
  for (const auto& ev : journal_.events_of_kinds({"stop_crossed", "stop_triggered", "ghost_stop", "guard_flatten_order",
                                                  "guard_action", "guard_stalled", "mirror_placed", "mirror_removed",
                                                  "mirror_fired", "mirror_double_fill_restored",
                                                  "local_stop_crossed_during_recovery"})) {
    if (ev.kind.rfind("mirror_", 0) == 0) {
      if (ev.kind == "mirror_fired")
        if (auto j = event_detail(ev)) trails[text_field(*j, "primary")].mirror_fired = true;
      mirror_events.push_back(ev);
      continue;
    }
    Trail& t = trails[ev.client_order_id];
    if (ev.kind == "stop_crossed") {
      t.crossed = ev;
      t.triggered_since = false;
    } else if (ev.kind == "stop_triggered") {
      t.triggered_since = t.crossed.has_value();
    } else if (ev.kind == "ghost_stop") {
      if (!t.ghost) {
        ghost_order.push_back(ev.client_order_id);
        t.ghost = ev;
      }
    } else if (ev.kind == "guard_flatten_order") {
      if (auto j = event_detail(ev)) t.flatten_intent = text_field(*j, "flatten_order");
    } else if (ev.kind == "guard_action") {
      t.action = ev;
    } else if (ev.kind == "guard_stalled") {
      t.stalled = true;
    } else if (ev.kind == "local_stop_crossed_during_recovery") {
      t.crossed_during_recovery = ev;
    }
  }

  std::size_t crossings = 0, ghosts_live = 0, resumed = 0, adopted = 0;
  const std::size_t mirrors_live = restore_mirrors(mirror_events);

  // ---- declared ghosts
  std::vector<std::size_t> to_act;
  for (const auto& coid : ghost_order) {
    const Trail& t = trails.at(coid);
    const JournalEvent& ev = *t.ghost;
    const auto j = event_detail(ev);
    if (!j) continue;
    GhostStop g;
    g.client_order_id = coid;
    g.broker = ev.broker;
    g.symbol = text_field(*j, "symbol");
    g.side = side_from_string(text_field(*j, "side")).value_or(Side::sell);
    g.stop_price = price_field(*j, "stop_price").value_or(Price());
    g.crossing_price = price_field(*j, "crossing_price").value_or(g.stop_price);
    g.declared_at = ev.at;
    g.crossed_at = t.crossed ? t.crossed->at : ev.at;
    try {
      g.crossed_at = parse_timestamp(text_field(*j, "crossed_at"));
    } catch (const std::exception&) {
    }
    g.source = text_field(*j, "source");
    const ProtectionPolicy declared_under =
        protection_policy_from_string(text_field(*j, "policy")).value_or(policy_of(coid));

    StopRecord& rec = stops_[coid];
    rec.client_order_id = coid;
    rec.broker = ev.broker;
    rec.ghost = true;  // never watched (and declared) again
    rec.watching = false;
    watchdog_.unwatch(coid);  // in case recovery's updates already had it watched

    // Did the policy act before the kill? The flatten order is named by "guard_action" or, when
    // the kill came between the order and that event, by "guard_flatten_order" (journaled before
    // the order). An order in OrderManager's records that did not fail left the process (or may
    // have: unknown outcomes stay pending and are never resent), so it is the flatten; one that
    // failed (recovery found the broker never had it) or was never journaled did not happen.
    std::optional<nlohmann::json> action;
    if (t.action) action = event_detail(*t.action);
    std::string flatten = action ? text_field(*action, "flatten_order") : std::string();
    if (flatten.empty()) flatten = t.flatten_intent;
    const OrderRecord* fo = flatten.empty() ? nullptr : orders_.find(flatten);
    const bool flatten_sent = fo && fo->state != OrderState::failed;
    const OrderRecord* stop = orders_.find(coid);
    bool owed = false;
    std::string how;
    if (flatten_sent) {
      g.flatten_order = flatten;
      g.action = action ? text_field(*action, "action")
                        : "guard: flatten order " + flatten + " was sent before a restart";
      if (!t.action) {
        // Complete the record so that humans (and the next restart) see the action once.
        journal_.record_event({loop_.now(), g.broker, "guard_action", coid,
                               nlohmann::json{{"action", g.action}, {"flatten_order", flatten},
                                              {"restored", true}}
                                   .dump()});
        how = "flatten order " + flatten + " found in the order records (" + to_string(fo->state) +
              "); its guard_action was not journaled before the restart: not flattening again";
      }
    } else if (t.action && flatten.empty()) {
      g.action = action ? text_field(*action, "action") : "guard: acted before a restart";  // nothing to flatten
    } else if (t.stalled) {
      g.action = "guard: the broker never confirmed the cancel; NOT flattening (would risk a double exit)";
    } else if (t.mirror_fired) {
      g.action = "mirror: the mirror stop fired in its place before a restart";
    } else if (!flattens(declared_under) || !flattens(policy_of(coid))) {
      g.action = std::string("alerted (policy ") + to_string(declared_under) + ": no action)";
    } else {
      owed = true;
      g.action = "guard: the action was interrupted by a restart; acting now";
      how = flatten.empty() ? "no flatten order was journaled before the restart: acting now"
                            : "flatten order " + flatten + (fo ? " failed (never left the process)" : " was never journaled") +
                                  ": acting now";
    }
    ghosts_.push_back(g);
    // acted_ holds every restored ghost that is owed nothing, whatever the policy, so that no
    // later path (a broker coming back under `mirror`) flattens it; guard_flatten() inserts the
    // owed ones itself, exactly once.
    if (owed)
      to_act.push_back(ghosts_.size() - 1);
    else
      acted_.insert(coid);
    const bool stop_working = stop && !stop->is_terminal();
    if (how.empty() && !stop_working) continue;  // settled before the kill: nothing to say
    ++ghosts_live;
    journal_.record_event({loop_.now(), g.broker, "ghost_stop_restored", coid,
                           nlohmann::json{{"crossed_at", format_timestamp(g.crossed_at)},
                                          {"declared_at", format_timestamp(g.declared_at)},
                                          {"stop_state", stop ? to_string(stop->state) : "unknown"},
                                          {"action_owed", owed},
                                          {"flatten_order", g.flatten_order},
                                          {"detail", how.empty() ? g.action : how}}
                               .dump()});
    spdlog::warn("ghost stop {} at {} restored from the journal: {}", coid, g.broker, how.empty() ? g.action : how);
  }

  // ---- crossings not yet judged
  for (const auto& [coid, t] : trails) {
    if (!t.crossed || t.ghost || t.triggered_since || is_mirror(coid)) continue;
    const OrderRecord* o = orders_.find(coid);
    if (!o || !o->spec.is_stop() || !o->spec.stop_price || o->time_of(OrderState::held) != 0) continue;
    const JournalEvent& ev = *t.crossed;
    const auto j = event_detail(ev);
    if (!j) continue;
    const Timestamp deadline = ev.at + settings_.ghost_grace.count();
    // The same rules as a live expiry (on_order, schedule_expiry): a fill, any fill, means it
    // fired; our own cancel before the grace ended stops the watch; a broker that ended it
    // unfilled after the crossing does not. A cancel of ours after the deadline came while the
    // verdict was due (the kill took it): the read-back at expiry decides, as it would have.
    if (o->filled_quantity > 0) continue;
    if (o->state == OrderState::pre_sent || o->state == OrderState::pending || o->state == OrderState::failed) continue;
    const Timestamp own_cancel = o->time_of(OrderState::pending_cancel);
    if (own_cancel != 0 && own_cancel >= ev.at && own_cancel <= deadline) continue;
    // Replaced since at another price: that crossing is of a stop that no longer exists; the new
    // price is watched afresh below.
    if (const auto crossed_stop = price_field(*j, "stop_price"); crossed_stop && *crossed_stop != *o->spec.stop_price)
      continue;
    CrossedStop c;
    c.stop = {coid, o->broker, o->spec.symbol, o->spec.side, *o->spec.stop_price, o->remaining_quantity()};
    c.crossed_at = ev.at;
    c.crossing_price = price_field(*j, "crossing_price").value_or(*o->spec.stop_price);
    c.source = text_field(*j, "source");
    // Held as crossed (not watched afresh): the next tick through it must not start a new grace
    // period, and a fill or trigger report that arrives first unwatches it as usual.
    watchdog_.restore_crossed(c);
    StopRecord& rec = stops_[coid];
    rec.client_order_id = coid;
    rec.broker = o->broker;
    rec.watching = true;
    rec.watched_stop_price = o->spec.stop_price;
    rec.watched_quantity = o->remaining_quantity();
    // A deadline already past is NOT declared on the journal's word alone: it expires through
    // schedule_expiry(), which reads the stop (and its entry) back with OrderManager::refresh()
    // first. Recovery has read every open order back already, but the process was down for an
    // unknown time and streams are lossy; one query per stop is cheap next to cancelling a stop
    // that did fire and flattening a position that is already flat. It also keeps a single
    // path to declare_ghost(), with its protecting() check of a bracket's entry.
    journal_.record_event({loop_.now(), o->broker, "stop_crossing_restored", coid,
                           nlohmann::json{{"stop_price", o->spec.stop_price->to_string()},
                                          {"crossing_price", c.crossing_price.to_string()},
                                          {"crossed_at", format_timestamp(c.crossed_at)},
                                          {"deadline", format_timestamp(deadline)},
                                          {"overdue", deadline <= loop_.now()},
                                          {"stop_state", to_string(o->state)},
                                          {"source", c.source}}
                               .dump()});
    spdlog::warn("stop {} at {}: crossing at {} ({}) restored from the journal; ghost verdict {}", coid, o->broker,
                 format_timestamp(c.crossed_at), c.crossing_price.to_string(),
                 deadline <= loop_.now() ? "due now" : "at " + format_timestamp(deadline));
    ++crossings;
    // Read back and re-verified as after any acknowledgement (its old verdict died with the
    // process); not through on_order(), which would watch it afresh.
    if (o->state == OrderState::submitted && !o->broker_order_id.empty() && !rec.verification_started) {
      rec.verification_started = true;
      start_verification(*o);
    }
  }

  // ---- every other recovered working stop: watched and verified again. Mirror stops are
  // verified too (on_order() knows them from restore_mirrors() and does not watch them); a
  // primary is unverified until its read-back, so under `mirror` it keeps (or gets) a mirror
  // until then, as after its first acknowledgement.
  for (const OrderRecord* o : orders_.working_orders()) {
    const std::string& coid = o->spec.client_order_id;
    if (!o->spec.is_stop()) continue;
    if (!stops_.count(coid) && !is_mirror(coid)) ++adopted;
    on_order(*o);  // idempotent for stops it already knows (restored ghosts stay unwatched)
  }
  // ---- held stops (protection `local`): one crossed while recovery ran (here or in a process
  // killed before its restore) is released now; the others are watched again, and the first
  // quote through one sends it. Still held means not released since: a release moves it on.
  std::size_t held = 0, released_after_recovery = 0;
  std::vector<CrossedStop> crossed_during_recovery;
  for (const OrderRecord* o : orders_.orders()) {
    if (o->state != OrderState::held) continue;
    ++held;
    const auto t = trails.find(o->spec.client_order_id);
    const auto j = t != trails.end() && t->second.crossed_during_recovery
                       ? event_detail(*t->second.crossed_during_recovery)
                       : std::nullopt;
    // Replaced since at another price: that crossing was of a stop that no longer exists.
    if (j && o->spec.stop_price && price_field(*j, "stop_price") == o->spec.stop_price) {
      CrossedStop c;
      c.stop = {o->spec.client_order_id, o->broker, o->spec.symbol, o->spec.side, *o->spec.stop_price,
                o->remaining_quantity(), /*held=*/true};
      c.crossed_at = t->second.crossed_during_recovery->at;
      try {
        c.crossed_at = parse_timestamp(text_field(*j, "crossed_at"));
      } catch (const std::exception&) {
      }
      c.crossing_price = price_field(*j, "crossing_price").value_or(*o->spec.stop_price);
      c.source = text_field(*j, "source");
      crossed_during_recovery.push_back(std::move(c));
      continue;
    }
    on_order(*o);
  }
  // Released after the loop: every held stop is watched or listed before any exit is sent (a
  // release tells the order's strategy at once, which may act on its other orders).
  // Unless the position it protected closed while Backstop was down (its target filled, say):
  // sent now, on a crossing nobody could act on, it would open a position the other way.
  std::size_t not_sent_flat = 0;
  for (const auto& c : crossed_during_recovery) {
    const std::int64_t position = orders_.position(c.stop.broker, c.stop.symbol);
    if (exposure_for_exit(c.stop.side, position) <= 0) {
      ++not_sent_flat;
      const std::string why = "crossed at " + c.crossing_price.to_string() + " during start-up recovery, but no " +
                              "position is left at " + c.stop.broker + " for it to close (position " +
                              std::to_string(position) + "): cancelled, not sent";
      journal_.record_event({loop_.now(), c.stop.broker, "local_stop_not_sent", c.stop.client_order_id,
                             nlohmann::json{{"crossed_at", format_timestamp(c.crossed_at)},
                                            {"position", position},
                                            {"detail", why}}
                                 .dump()});
      spdlog::warn("local stop {} at {}: {}", c.stop.client_order_id, c.stop.broker, why);
      orders_.cancel(c.stop.client_order_id);  // held: cancelled at once
      continue;
    }
    const OrderRecord* stop = orders_.find(c.stop.client_order_id);
    if (!stop || stop->state != OrderState::held) continue;  // cancelled meanwhile: nothing to send
    watchdog_.unwatch(c.stop.client_order_id);  // in case the restore above watched it again
    ++released_after_recovery;
    fire_local(c, *stop, /*during_recovery=*/true);
  }
  const std::size_t exits_resent = resend_lost_local_exits();
  // A primary that ended while the process was down is not among the working orders: its
  // mirror is judged here (removed, or its fill handled), so that none is left orphaned.
  std::vector<std::string> primaries;
  for (const auto& [primary, idx] : active_mirror_) primaries.push_back(primary);
  for (const auto& primary : primaries) {
    if (const ProtectionPolicy policy = policy_of(primary); policy == ProtectionPolicy::mirror) {
      evaluate_mirror(primary);
    } else if (auto am = active_mirror_.find(primary); am != active_mirror_.end()) {
      // Configured away from `mirror` since: nothing would manage the mirror any more.
      remove_mirror(mirrors_[am->second], std::string("protection policy is now ") + to_string(policy));
    }
  }

  schedule_expiry();
  for (std::size_t i : to_act) {
    ++resumed;
    guard_flatten(i, 0);
  }
  if (crossings + ghosts_live + resumed + adopted + mirrors_live + held + exits_resent == 0) return;
  journal_.record_event({loop_.now(), {}, "stop_guard_restored", {},
                         nlohmann::json{{"crossings_restored", crossings},
                                        {"ghosts_restored", ghosts_.size()},
                                        {"ghosts_needing_attention", ghosts_live},
                                        {"actions_resumed", resumed},
                                        {"stops_taken_over", adopted},
                                        {"held_stops_watched", held - released_after_recovery - not_sent_flat},
                                        {"held_stops_crossed_during_recovery", released_after_recovery},
                                        {"held_stops_crossed_with_no_position", not_sent_flat},
                                        {"local_exits_resent", exits_resent},
                                        {"mirrors_restored", mirrors_live}}
                             .dump()});
  spdlog::info(
      "stop guard restored from the journal: {} crossing(s), {} ghost(s) ({} resumed), {} stop(s) taken over, "
      "{} held stop(s) watched, {} held stop(s) crossed during recovery released, {} lost local exit(s) judged, "
      "{} live mirror(s)",
      crossings, ghosts_.size(), resumed, adopted, held - released_after_recovery - not_sent_flat, released_after_recovery,
      exits_resent, mirrors_live);
}

std::size_t StopGuard::resend_lost_local_exits() {
  // A release is journaled ("local_stop_fired", then the order as it goes out) before the
  // request leaves. A kill after those commits and before the send leaves the order pre_sent in
  // the journal; recovery asks the broker for it by client order id, and when the broker never
  // had it, fails it. Nothing else would send that exit: the position the stop protected is
  // open with no stop at all. The same holds for an exit sent again ("local_stop_resent") and
  // for a retry that was due when the process died ("local_stop_release_failed" with
  // will_retry). Each is sent now, once (the journal's attempts say which one is next). An exit
  // whose outcome is still unknown (pending at a broker that did not answer) is not resent: it
  // may be working.
  struct ExitTrail {
    int attempt = 0;
    std::string latest;          // the exit order of that attempt ("" = nothing was sent)
    bool retry_due = false;      // its failure was journaled with another attempt to follow
    bool over = false;           // given up, or nothing left to send
  };
  std::map<std::string, ExitTrail> trails;
  for (const auto& ev : journal_.events_of_kinds({"local_stop_fired", "local_stop_resent", "local_stop_release_failed"})) {
    ExitTrail& t = trails[ev.client_order_id];
    if (ev.kind == "local_stop_fired") {
      t = ExitTrail{0, ev.client_order_id, false, false};
      continue;
    }
    const auto j = event_detail(ev);
    if (!j) continue;
    if (ev.kind == "local_stop_resent") {
      t.latest = text_field(*j, "order");
      t.attempt = j->contains("attempt") && (*j)["attempt"].is_number_integer() ? (*j)["attempt"].get<int>() : t.attempt + 1;
      t.retry_due = false;
      t.over = t.latest.empty();
      // Known again as this stop's exit: should it fail from now on, on_order sends the next.
      if (!t.over) local_exits_[t.latest] = {ev.client_order_id, t.attempt};
    } else {  // local_stop_release_failed; journals before retries existed say nothing of one
      t.retry_due = j->value("will_retry", false);
      t.over = !t.retry_due;
    }
  }
  std::size_t judged = 0;
  for (const auto& [stop, t] : trails) {
    if (t.over || t.latest.empty()) continue;
    if (t.retry_due) {
      ++judged;
      send_local_exit_again(stop, t.attempt + 1, "a retry was due when the process stopped");
      continue;
    }
    // The latest exit ended unfilled and no failure of it was journaled: it failed in the kill
    // window (recovery found the broker never had it), or while nobody was there to hear it.
    const OrderRecord* o = orders_.find(t.latest);
    if (!o || o->filled_quantity != 0 || (o->state != OrderState::failed && o->state != OrderState::rejected)) continue;
    ++judged;
    send_local_exit_again(stop, t.attempt + 1,
                          "its exit " + t.latest + " ended " + to_string(o->state) + " before a restart (" +
                              o->last_message + ")");
  }
  return judged;
}

std::size_t StopGuard::restore_mirrors(const std::vector<JournalEvent>& events) {
  std::size_t live = 0;
  auto placed = [this](const std::string& mirror) -> MirrorStop* {
    auto it = mirror_index_.find(mirror);
    return it == mirror_index_.end() ? nullptr : &mirrors_[it->second];
  };
  for (const auto& ev : events) {
    const auto j = event_detail(ev);
    if (!j) continue;
    if (ev.kind == "mirror_placed") {
      MirrorStop m;
      m.primary = text_field(*j, "primary");
      m.primary_broker = text_field(*j, "primary_broker");
      m.mirror = ev.client_order_id;
      m.mirror_broker = ev.broker;
      m.placed_because = text_field(*j, "reason");
      if (m.primary.empty() || m.mirror.empty()) continue;
      const std::size_t idx = mirrors_.size();
      mirror_index_[m.mirror] = idx;
      // One live mirror per primary: a new one is placed only once the one before has ended.
      active_mirror_[m.primary] = idx;
      mirrors_.push_back(std::move(m));
      continue;
    }
    // The other events name the mirror stop; one whose placement was unreadable is skipped.
    MirrorStop* m = placed(ev.client_order_id);
    if (!m) continue;
    if (ev.kind == "mirror_removed") {
      m->removal_requested = true;
      m->removed_because = text_field(*j, "reason");
    } else if (ev.kind == "mirror_fired") {
      m->fired = true;
    } else if (ev.kind == "mirror_double_fill_restored") {
      m->restore_order = text_field(*j, "restore_order");
      restored_.insert(m->primary);  // exactly once, across restarts too
    }
  }
  for (auto& [primary, idx] : active_mirror_) {
    MirrorStop& m = mirrors_[idx];
    // Whether the primary's cancel after the mirror fired was sent (the record shows our cancel).
    const OrderRecord* p = orders_.find(primary);
    m.primary_cancel_done = m.fired && p && p->time_of(OrderState::pending_cancel) != 0;
    const OrderRecord* mo = orders_.find(m.mirror);
    if (mo && !mo->is_terminal()) ++live;
    spdlog::info("mirror {} at {} for stop {} at {} restored from the journal ({}{})", m.mirror, m.mirror_broker,
                 primary, m.primary_broker, mo ? to_string(mo->state) : "no order record",
                 m.removal_requested ? ", removal requested" : "");
  }
  return live;
}

// ---------------------------------------------------------------------------------------------
// mirror policy

void StopGuard::set_broker_down(const std::string& broker, bool down) {
  const bool was_down = broker_down(broker);
  if (was_down == down) return;
  if (down) {
    down_brokers_.insert(broker);
    spdlog::warn("stop guard: broker {} is down", broker);
  } else {
    down_brokers_.erase(broker);
    spdlog::info("stop guard: broker {} is back", broker);
    // Its stops must read back again before their mirrors go.
    for (auto& [coid, rec] : stops_)
      if (rec.broker == broker && !is_mirror(coid)) rec.needs_reconfirm = true;
  }
  journal_.record_event({loop_.now(), broker, down ? "broker_down" : "broker_up", {}, "{}"});
  evaluate_all_mirrors();
  if (down) return;
  reverify(broker);
  if (!any_policy_is(ProtectionPolicy::mirror)) return;
  // Ghosts declared while the broker was down, whose mirror did not take over: flatten now.
  for (std::size_t i = 0; i < ghosts_.size(); ++i) {
    const GhostStop& g = ghosts_[i];
    if (g.broker != broker || acted_.count(g.client_order_id)) continue;
    if (policy_of(g.client_order_id) != ProtectionPolicy::mirror) continue;
    if (auto am = active_mirror_.find(g.client_order_id); am != active_mirror_.end() && mirrors_[am->second].fired)
      continue;
    guard_flatten(i, 0);
  }
}

void StopGuard::evaluate_all_mirrors() {
  if (!any_policy_is(ProtectionPolicy::mirror)) return;  // evaluate_mirror() asks each stop's own
  std::vector<std::string> coids;
  coids.reserve(stops_.size());
  for (const auto& [coid, rec] : stops_)
    if (!is_mirror(coid)) coids.push_back(coid);
  for (const auto& coid : coids) evaluate_mirror(coid);
}

std::string StopGuard::mirror_need(const OrderRecord& p) const {
  const std::string& coid = p.spec.client_order_id;
  if (policy_of(p.spec) != ProtectionPolicy::mirror || is_mirror(coid) || !p.spec.stop_price) return {};
  if (!mirror_broker_for(p)) return {};
  // Filled, ended, or being cancelled: nothing left for a mirror to stand in for.
  if (p.filled_quantity > 0 || (p.state != OrderState::submitted && p.state != OrderState::partially_filled))
    return {};
  if (!protecting(p)) return {};  // a bracket exit whose entry has not filled protects nothing yet
  const std::int64_t position = orders_.position(p.broker, p.spec.symbol);
  if (p.spec.side == Side::sell ? position <= 0 : position >= 0) return {};  // flat: parent closed
  auto it = stops_.find(coid);
  if (it == stops_.end()) return {};
  const StopRecord& rec = it->second;
  if (broker_down(p.broker)) return "broker " + p.broker + " down";
  if (rec.ghost) return "ghost stop";
  if (rec.needs_reconfirm) return "re-verifying after broker " + p.broker + " came back";
  if (rec.verification == Verification::verified) return {};
  return std::string("verification ") + to_string(rec.verification) + (rec.detail.empty() ? "" : ": " + rec.detail);
}

void StopGuard::evaluate_mirror(const std::string& primary) {
  // Nothing is placed or removed while recovery runs: restore_from_journal() first learns which
  // mirrors exist, then judges every primary (begin_recovery).
  if (recovering_ || is_mirror(primary)) return;
  const OrderRecord* p = orders_.find(primary);
  if (!p || !p->spec.is_stop() || policy_of(p->spec) != ProtectionPolicy::mirror) return;
  if (auto am = active_mirror_.find(primary); am != active_mirror_.end()) {
    const std::size_t idx = am->second;
    const OrderRecord* mo = orders_.find(mirrors_[idx].mirror);
    if (mo && mo->filled_quantity > 0) return on_mirror_fired(mirrors_[idx]);
    if (!mo || is_terminal(mo->state)) {
      // Cancelled as asked, or refused / never sent: the slot is free again.
      active_mirror_.erase(am);
      if (!mirrors_[idx].removal_requested) {
        mirrors_[idx].removed_because = std::string("mirror ended at its broker: ") + (mo ? to_string(mo->state) : "?");
        if (++mirror_failures_[primary] >= kMaxMirrorFailures) {
          spdlog::error("stop {}: {} mirror placements failed; giving up (alerting)", primary, kMaxMirrorFailures);
          return;
        }
      }
    } else {
      const std::string need = mirror_need(*p);
      if (need.empty()) {
        std::string why = p->filled_quantity > 0                           ? "primary stop filled"
                          : !is_working(p->state)                          ? "primary stop ended"
                          : p->state == OrderState::pending_cancel         ? "primary stop being cancelled"
                          : stops_.count(primary) && stops_.at(primary).verification == Verification::verified
                              ? "primary stop verified"
                              : "position flat";
        if (orders_.position(p->broker, p->spec.symbol) == 0) why = "position flat";
        remove_mirror(mirrors_[idx], why);
      } else if (!mirrors_[idx].removal_requested) {
        follow_primary(idx, *p, *mo);
      }
      return;  // needed: keep it (a mirror whose removal is in flight is replaced once it ends)
    }
  }
  if (restored_.count(primary)) return;
  const std::string need = mirror_need(*p);
  if (need.empty()) return;
  const std::string& mb = *mirror_broker_for(*p);  // mirror_need() found one
  if (broker_down(mb) || !orders_.broker(mb)) {
    spdlog::error("stop {}: needs a mirror ({}) but mirror broker {} is unavailable", primary, need, mb);
    return;
  }
  place_mirror(*p, mb, need);
}

void StopGuard::place_mirror(const OrderRecord& p, const std::string& mb, const std::string& why) {
  OrderSpec spec = p.spec;  // same side, quantity, stop (and limit), time in force, hours
  spec.client_order_id.clear();
  spec.parent_client_order_id.clear();
  spec.oco_group.clear();
  spec.strategy.clear();  // the guard's order, not the strategy's: its fills are not the strategy's position
  spec.quantity = p.remaining_quantity();
  for (const auto& f : lint(spec, mb))
    if (f.field != "stop_price" || f.problem.find("through the market") == std::string::npos)
      spdlog::warn("mirror for {}: lint: {}", p.spec.client_order_id, f.to_string());
  MirrorStop m;
  m.primary = p.spec.client_order_id;
  m.primary_broker = p.broker;
  m.mirror_broker = mb;
  m.placed_because = why;
  const std::string primary = m.primary;
  const std::size_t idx = mirrors_.size();
  mirrors_.push_back(std::move(m));
  active_mirror_[primary] = idx;
  // submit() journals the order and awaits the commit before it leaves; the mirror_placed event
  // is written in the same turn, so a restart finds both or neither sent.
  const std::string coid = orders_.submit(mb, spec);
  mirrors_[idx].mirror = coid;
  mirror_index_[coid] = idx;
  journal_.record_event({loop_.now(), mb, "mirror_placed", coid,
                         nlohmann::json{{"primary", primary},
                                        {"primary_broker", mirrors_[idx].primary_broker},
                                        {"mirror", coid},
                                        {"mirror_broker", mb},
                                        {"symbol", spec.symbol},
                                        {"side", to_string(spec.side)},
                                        {"quantity", spec.quantity},
                                        {"stop_price", spec.stop_price->to_string()},
                                        {"reason", why}}
                             .dump()});
  spdlog::warn("stop {} at {}: {}; mirror stop {} placed at {}", primary, mirrors_[idx].primary_broker, why, coid, mb);
  // The order's first update may already have gone by before it was known as a mirror.
  evaluate_mirror(primary);
}

void StopGuard::remove_mirror(MirrorStop& m, const std::string& why) {
  const std::string coid = m.mirror;
  if (!m.removal_requested) {
    m.removal_requested = true;
    m.removed_because = why;
    journal_.record_event({loop_.now(), m.mirror_broker, "mirror_removed", coid,
                           nlohmann::json{{"primary", m.primary},
                                          {"mirror", coid},
                                          {"mirror_broker", m.mirror_broker},
                                          {"reason", why}}
                               .dump()});
    spdlog::info("mirror {} at {} for {}: removing ({})", coid, m.mirror_broker, m.primary, why);
  }
  // (Re)send the cancel while the mirror works and no cancel is in flight; an unacknowledged
  // mirror is cancelled on its acknowledgement, an unreachable broker when it comes back.
  const OrderRecord* mo = orders_.find(coid);
  if (!mo || mo->state == OrderState::pending_cancel || !is_working(mo->state) || broker_down(m.mirror_broker)) return;
  orders_.cancel(coid);
}

void StopGuard::follow_primary(std::size_t idx, const OrderRecord& p, const OrderRecord& mo) {
  MirrorStop& m = mirrors_[idx];
  // Only an unfilled primary: once it fills, the mirror's quantity is the double-fill logic's.
  // Only a mirror the broker has acknowledged and that no cancel or replace is moving yet (its
  // acknowledgement, or the replace's answer, brings it back here).
  if (m.replace_in_flight || p.filled_quantity > 0 || mo.filled_quantity > 0 || mo.broker_order_id.empty() ||
      mo.state != OrderState::submitted || broker_down(m.mirror_broker))
    return;
  if (mo.spec.stop_price == p.spec.stop_price && mo.spec.limit_price == p.spec.limit_price &&
      mo.spec.quantity == p.spec.quantity)
    return;
  OrderSpec next = mo.spec;
  next.stop_price = p.spec.stop_price;
  next.limit_price = p.spec.limit_price;
  next.quantity = p.spec.quantity;
  const auto price = [](const std::optional<Price>& x) { return x ? x->to_string() : std::string(); };
  journal_.record_event({loop_.now(), m.mirror_broker, "mirror_replace_requested", m.mirror,
                         nlohmann::json{{"primary", m.primary},
                                        {"stop_price", price(next.stop_price)},
                                        {"limit_price", price(next.limit_price)},
                                        {"quantity", next.quantity}}
                             .dump()});
  spdlog::info("mirror {} at {} for {}: moving to stop {} x{} as its primary was", m.mirror, m.mirror_broker,
               m.primary, price(next.stop_price), next.quantity);
  m.replace_in_flight = true;
  orders_.replace(m.mirror, next, while_alive([this, idx](CommandResult r) {
    MirrorStop& mm = mirrors_[idx];
    mm.replace_in_flight = false;
    if (r.outcome != Outcome::accepted) {
      // Not retried here (a broker refusing it would be asked again on every update): alerted;
      // the next change of the primary or the mirror tries again.
      spdlog::error("mirror {} at {} for {}: replace {}: {}; it still protects at its old price", mm.mirror,
                    mm.mirror_broker, mm.primary, to_string(r.outcome), r.message);
      return;
    }
    evaluate_mirror(mm.primary);  // the primary may have moved again meanwhile
  }));
}

void StopGuard::on_mirror_fired(MirrorStop& m) {
  const std::string primary = m.primary;
  const OrderRecord* p = orders_.find(primary);
  const OrderRecord* mo = orders_.find(m.mirror);
  if (!p || !mo) return;
  if (!m.fired) {
    m.fired = true;
    journal_.record_event({loop_.now(), m.mirror_broker, "mirror_fired", m.mirror,
                           nlohmann::json{{"primary", primary}, {"filled", mo->filled_quantity}}.dump()});
  }
  // The intended net position is what the primary alone would have made. The mirror's fill
  // stands in for the primary's; it is unintended when the primary filled as well, or when the
  // position it protected was already closed at the primary venue.
  const std::int64_t position = orders_.position(p->broker, p->spec.symbol);
  const bool exposure_left = p->spec.side == Side::sell ? position > 0 : position < 0;
  std::int64_t excess = 0;
  std::string cause;
  if (p->filled_quantity > 0) {
    excess = std::min(p->filled_quantity, mo->filled_quantity);
    cause = "primary and mirror both filled";
  } else if (is_terminal(p->state) && !m.primary_cancel_done && !exposure_left) {
    excess = mo->filled_quantity;
    cause = "mirror filled after the position was closed at the primary venue";
  }
  if (excess > 0) {
    if (!restored_.insert(primary).second) return;  // exactly once
    const std::int64_t before = orders_.position(m.mirror_broker, p->spec.symbol);
    m.restore_order = orders_.submit(m.mirror_broker, market_order(p->spec.symbol, opposite(mo->spec.side), excess));
    journal_.record_event({loop_.now(), m.mirror_broker, "mirror_double_fill_restored", m.mirror,
                           nlohmann::json{{"primary", primary},
                                          {"mirror", m.mirror},
                                          {"mirror_broker", m.mirror_broker},
                                          {"cause", cause},
                                          {"symbol", p->spec.symbol},
                                          {"side", to_string(opposite(mo->spec.side))},
                                          {"quantity", excess},
                                          {"position_at_mirror_before", before},
                                          {"restore_order", m.restore_order}}
                               .dump()});
    spdlog::error("mirror {} for {}: {}; restoring {} with market order {} at {}", m.mirror, primary, cause, excess,
                  m.restore_order, m.mirror_broker);
    return;
  }
  // The mirror did the primary's job: the primary must not fire as well.
  if (p->state == OrderState::submitted || p->state == OrderState::partially_filled) {
    if (broker_down(p->broker)) return;  // cancelled when its broker comes back
    m.primary_cancel_done = true;
    unwatch(primary);
    orders_.cancel(primary, while_alive([this, primary](const CommandResult& r) {
      if (r.outcome == Outcome::failed_locally || r.outcome == Outcome::rejected) {
        if (auto am = active_mirror_.find(primary); am != active_mirror_.end()) mirrors_[am->second].primary_cancel_done = false;
      }
    }));
  }
}

}  // namespace backstop
