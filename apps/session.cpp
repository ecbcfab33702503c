#include "apps/session.hpp"

#include <set>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "brokers/net/loop_io.hpp"
#include "core/cpu_affinity.hpp"
#include "core/error.hpp"
#include "routing/strategies/strategy_factory.hpp"

namespace backstop {

namespace {
StopGuardSettings guard_settings(const Config& c) {
  StopGuardSettings g;
  // One guard watches every stop and applies to each the policy of the strategy that sent it
  // (orders carry their route's name). Every route has a strategies[] entry (the loader refuses
  // a route to an unknown strategy; API clients send on a configured strategy's route), so the
  // default is only for an order that names no strategy: the first strategy's policy.
  g.policy = c.strategies.empty() ? ProtectionPolicy::verify : c.strategies.front().protection;
  for (const auto& s : c.strategies) g.strategy_policies[s.name] = s.protection;
  g.verify_deadline = c.protection.verify_deadline;
  g.reverify_interval = c.protection.reverify_interval;
  g.ghost_grace = c.protection.ghost_grace;
  g.trigger = c.protection.trigger;
  g.lint.required_tif = c.protection.default_stop_tif;
  g.lint.outside_rth = c.protection.outside_rth;
  g.lint.allow_marketable = c.protection.allow_marketable_stops;
  if (c.protection.market_data_source) g.market_data_source = *c.protection.market_data_source;
  // `mirror`: a stop is mirrored at the first other broker of its own strategy's route (every
  // route is listed: orders sent through the API carry their route's name too).
  for (const auto& r : c.routes) g.strategy_routes[r.strategy] = r.brokers;
  return g;
}
}  // namespace

// Config `runtime`: the loop's thread is the one making the session (it runs the loop after); the
// loop is not running yet, as set_busy_poll requires. Placed before the journal is opened, so that
// its writer thread, started by this thread, knows whether the loop's CPU is reserved.
void Session::place_loop_thread() {
  const auto& rt = config_.runtime;
  if (rt.busy_poll.count() > 0) {
    loop_.set_busy_poll(rt.busy_poll);
    spdlog::info("event loop busy-polls {} us before sleeping", rt.busy_poll.count());
  }
  if (rt.loop_cpu) {
    // A busy-polling loop does not give its CPU up while it spins: every other thread is kept off
    // it (a thread the kernel put there would wait out the loop's time slice).
    const bool reserve = rt.busy_poll.count() > 0;
    if (auto err = reserve ? reserve_cpu_for_this_thread(*rt.loop_cpu) : pin_this_thread(*rt.loop_cpu); !err.empty())
      throw ConfigError(config_.origin + ": runtime.loop_cpu: " + err);
    spdlog::info("event loop pinned to CPU {}{}", *rt.loop_cpu, reserve ? " (reserved: other threads kept off it)" : "");
  }
}

void Session::place_journal_writer() {
  const auto& rt = config_.runtime;
  if (!rt.journal_writer_cpu) return;
  if (auto err = journal_->pin_writer(*rt.journal_writer_cpu); !err.empty())
    throw ConfigError(config_.origin + ": runtime.journal_writer_cpu: " + err);
  spdlog::info("journal writer pinned to CPU {}", *rt.journal_writer_cpu);
}

Session::Session(Config config, EventLoop& loop, Clock& clock, SessionOptions options)
    : config_(std::move(config)), loop_(loop), clock_(clock), options_(std::move(options)) {
  if (options_.journal_path.empty()) throw ConfigError("session: no journal path");
  if (config_.strategies.empty()) throw ConfigError(config_.origin + ": the config defines no strategy to run");
  const BrokerConfig* first_sim = nullptr;
  for (const auto& b : config_.brokers)
    if (b.sim() && !first_sim) first_sim = &b;
  seed_ = options_.seed.value_or(first_sim ? first_sim->sim()->seed : 7);
  FaultProfile profile = options_.fault_profile ? FaultProfile::named(*options_.fault_profile)
                                                : (first_sim ? first_sim->sim()->faults : FaultProfile::named("demo"));
  fault_profile_name_ = profile.name;

  started_at_ = loop_.now();
  loop_io_ = std::make_unique<net::LoopIo>(loop_);
  place_loop_thread();
  journal_ = std::make_unique<Journal>(options_.journal_path);
  place_journal_writer();
  ids_ = std::make_unique<ClientOrderIdGenerator>(ClientOrderIdGenerator::time_prefix(started_at_));
  OrderManagerOptions om;
  om.resolve_retry_interval = std::chrono::milliseconds(200);
  om.stuck_threshold = config_.reconciliation.stuck_order_threshold;
  orders_ = std::make_unique<OrderManager>(loop_, *journal_, *ids_, om);

  // Only brokers some route uses are connected.
  std::set<std::string> used;
  for (const auto& r : config_.routes) used.insert(r.brokers.begin(), r.brokers.end());
  for (const auto& b : config_.brokers) {
    if (!used.count(b.name)) continue;
    // A sim broker's own settings win; emulators take the session's profile and seed.
    FaultProfile p = b.sim() && !options_.fault_profile ? b.sim()->faults : profile;
    const std::uint64_t s = b.sim() && !options_.seed ? b.sim()->seed : seed_;
    // A broker started here (the simulated venue, an emulator) keeps its state beside the
    // journal: the journal's open orders are at that broker when this journal is run again.
    const std::string state_file = options_.journal_path + "." + b.name + ".broker-state.json";
    brokers_.push_back(make_demo_broker(b, config_.instruments, loop_, clock_, p, s, options_.start_emulators,
                                        loop_io_.get(), state_file));
    orders_->add_broker(brokers_.back()->broker());
  }

  BrokerHealthSettings hs;
  hs.failure_threshold = config_.health.failure_threshold;
  hs.open_interval = config_.health.open_interval;
  hs.half_open_probes = config_.health.half_open_probes;
  hs.latency_degraded = config_.health.latency_degraded;
  health_ = std::make_unique<BrokerHealth>(loop_, *journal_, hs);
  monitor_ = std::make_unique<HealthMonitor>(
      loop_, *health_, HealthMonitorSettings{config_.health.check_interval, config_.health.request_timeout});
  for (auto& b : brokers_) monitor_->watch(b->broker());

  std::map<std::string, Instrument> instruments;
  for (const auto& inst : config_.instruments) instruments[inst.symbol] = inst;
  router_ = std::make_unique<Router>(loop_, *orders_, *health_, *journal_, config_.risk, instruments);
  for (const auto& r : config_.routes) router_->add_route(r);
  // Protection `local`: the strategy's stops are held by Backstop, none sent to a broker as a stop.
  for (const auto& s : config_.strategies)
    if (s.protection == ProtectionPolicy::local && router_->route(s.name)) router_->hold_stops(s.name);

  guard_ = std::make_unique<StopGuard>(loop_, *orders_, *journal_, guard_settings(config_), instruments);
  // A ghost stop or a failed verification is a fact about the broker's health.
  guard_->on_ghost([this](const GhostStop& g) { health_->stop_failure(g.broker, "ghost stop " + g.client_order_id); });
  guard_->on_verification([this](const StopRecord& s) {
    if (s.verification == Verification::mismatch || s.verification == Verification::missing ||
        s.verification == Verification::timeout)
      health_->stop_failure(s.broker, "stop " + s.client_order_id + " verification " + to_string(s.verification) +
                                          (s.detail.empty() ? "" : ": " + s.detail));
  });
  // A broker whose circuit opens is down for protection too: `mirror` covers its stops elsewhere.
  health_->on_change([this](const HealthChange& c) {
    if ((c.from == HealthState::down) != (c.to == HealthState::down)) guard_->set_broker_down(c.broker, c.to == HealthState::down);
  });
  reconciler_ = std::make_unique<Reconciler>(
      loop_, *orders_, *journal_,
      ReconcilerSettings{config_.reconciliation.positions_interval, config_.reconciliation.orders_interval});
  monitor_->on_reconnect([this](const std::string& broker, Duration gap) {
    // Facts for the reliability record: how long the stream was seen down, and the reconnect.
    journal_->record_event({loop_.now(), broker, "stream_gap", {},
                            nlohmann::json{{"gap_ms", to_ns(gap) / 1'000'000}}.dump()});
    journal_->record_event({loop_.now(), broker, "reconnect", {}, "{}"});
    reconciler_->on_reconnect(broker);
    guard_->reverify(broker);
  });

  for (const auto& sc : config_.strategies) {
    if (!config_.route_for(sc.name)) continue;
    strategies_.push_back(make_strategy(sc));
    runners_.push_back(std::make_unique<StrategyRunner>(*strategies_.back(), *router_, loop_, sc.name));
  }
}

Session::~Session() {
  if (!stopped_) {
    try {
      stop();
    } catch (const std::exception& e) {
      spdlog::error("session stop: {}", e.what());
    }
  }
}

DemoBroker* Session::broker(const std::string& name) const {
  for (const auto& b : brokers_)
    if (b->broker().name() == name) return b.get();
  return nullptr;
}

void Session::run_for(Duration d) { loop_.run_until(loop_.now() + to_ns(d)); }

void Session::wait_until(const std::function<bool()>& done, Duration timeout) {
  const Timestamp deadline = loop_.now() + to_ns(timeout);
  while (!done() && !stop_requested() && loop_.now() < deadline) run_for(std::chrono::milliseconds(10));
}

bool Session::stop_requested() const { return options_.stop_requested && options_.stop_requested(); }

bool Session::start() {
  for (auto& b : brokers_) b->start();
  wait_until([&] {
    for (auto& b : brokers_)
      if (!b->ready()) return false;
    return true;
  }, options_.connect_timeout);
  if (stop_requested()) return false;
  for (auto& b : brokers_)
    if (!b->ready())
      throw Error(b->broker().name() + " did not connect within " +
                  std::to_string(to_ns(options_.connect_timeout) / 1'000'000'000) +
                  " s: " + b->broker().health().detail);
  // Nothing new is sent before the journal's open orders are resolved and brokers reconciled.
  // Shared, not a local captured by reference: when start() returns early (a stop was asked),
  // recovery's queries still outstanding complete later, while the session stops.
  auto ready = std::make_shared<bool>(false);
  orders_->recover([this, ready](std::size_t, std::size_t) {
    if (!stopped_) reconciler_->start([ready] { *ready = true; });
  });
  // The journal is loaded (recover() reads it before its first query): held stops are watched
  // from now on, through recovery, which can take tens of seconds at IBKR; a crossing is
  // journaled and its exit sent by restore_from_journal() below (StopGuard::begin_recovery).
  guard_->begin_recovery();
  subscribe_quotes();
  wait_until([&] { return *ready; }, options_.recovery_timeout);
  if (!*ready && stop_requested()) return false;
  if (!*ready) {
    std::string unprotected;
    for (const auto& coid : guard_->crossed_during_recovery()) unprotected += (unprotected.empty() ? "" : ", ") + coid;
    throw Error("start-up recovery and reconciliation did not finish within " +
                std::to_string(to_ns(options_.recovery_timeout) / 1'000'000'000) + " s" +
                (unprotected.empty() ? std::string()
                                     : "; held stop(s) " + unprotected +
                                           " were crossed meanwhile and NOT sent: their positions are unprotected "
                                           "(the next start sends them once recovery ends)"));
  }
  router_->restore_pairs();
  // Crossings, ghosts and interrupted guard actions of the previous process, judged against the
  // orders as recovery left them; broker-held stops were not watched during recovery, so no tick
  // has started a new grace period for one first.
  guard_->restore_from_journal();
  monitor_->start();
  for (auto& r : runners_) r->start();
  started_ = true;
  return true;
}

void Session::subscribe_quotes() {
  // Every broker's quotes feed the router (reference prices) and the guard (which filters by
  // source), from the start of recovery; strategies and other listeners only once the session has
  // started, each strategy only from the broker its route currently sends to, so it never sees
  // one market twice.
  std::set<std::string> symbols;
  for (const auto& inst : config_.instruments) symbols.insert(inst.symbol);
  for (auto& b : brokers_) {
    const std::string name = b->broker().name();
    b->broker().subscribe_quotes({symbols.begin(), symbols.end()}, [this, name](const Quote& q) {
      router_->on_quote(q);
      guard_->on_quote(q);
      if (!started_) return;  // nothing may send before recovery has finished
      for (std::size_t i = 0; i < runners_.size(); ++i)
        if (router_->current_broker(strategies_[i]->name()) == name) runners_[i]->on_quote(q);
      for (auto& l : quote_listeners_) l(q);
    });
  }
}

std::string WindDownResult::describe() const {
  std::string text;
  const auto list = [&](const char* what, const std::vector<std::string>& items) {
    if (items.empty()) return;
    if (!text.empty()) text += "; ";
    text += what;
    for (std::size_t i = 0; i < items.size(); ++i) text += (i ? ", " : " ") + items[i];
  };
  list("orders not ended:", unsettled_orders);
  list("positions open:", open_positions);
  return text;
}

void Session::settle(const std::function<bool()>& done) {
  const Timestamp deadline = loop_.now() + to_ns(options_.wind_down_step_timeout);
  while (!done() && loop_.now() < deadline) run_for(std::chrono::milliseconds(10));
}

void Session::read_back_from_brokers() {
  // Shared: a read-back still unanswered when settle() gives up answers into it later.
  auto answered = std::make_shared<bool>(false);
  orders_->resync([answered] { *answered = true; });
  settle([&] { return *answered; });
}

WindDownResult Session::wind_down() {
  for (auto& r : runners_) r->stop();
  run_for(config_.protection.ghost_grace + std::chrono::milliseconds(500));
  // Every order cancelled or sent here must end before the next step counts positions.
  std::vector<std::string> ours;
  const auto all_ended = [&](std::size_t from) {
    return [this, &ours, from] {
      for (std::size_t i = from; i < ours.size(); ++i)
        if (const OrderRecord* o = orders_->find(ours[i]); o && !o->is_terminal()) return false;
      return true;
    };
  };
  for (const OrderRecord* o : orders_->working_orders()) ours.push_back(o->spec.client_order_id);
  // Held stops (protection `local`) work too, at Backstop: left held after the flatten below, the
  // next run would watch them and send an exit for a position no longer there.
  for (const OrderRecord* o : orders_->orders())
    if (o->state == OrderState::held) ours.push_back(o->spec.client_order_id);
  for (const std::string& coid : ours) orders_->cancel(coid);
  settle(all_ended(0));
  read_back_from_brokers();
  // What works now that did not take a cancel above: an order whose outcome was unknown then (no
  // broker id to cancel it by; the read-back has resolved it), or one whose cancel the broker
  // refused or never got. Left, it would rest at the broker after the flatten: cancelled now.
  std::vector<std::string> again;
  for (const OrderRecord* o : orders_->working_orders())
    if (o->state != OrderState::pending_cancel) again.push_back(o->spec.client_order_id);
  if (!again.empty()) {
    const std::set<std::string> cancelled_before(ours.begin(), ours.end());
    for (const std::string& coid : again) {
      if (!cancelled_before.count(coid)) ours.push_back(coid);
      orders_->cancel(coid);
    }
    settle(all_ended(0));
    read_back_from_brokers();
  }
  const std::size_t flatten_from = ours.size();
  for (const auto& [key, pos] : orders_->positions()) {
    if (pos.quantity == 0) continue;
    ours.push_back(orders_->submit(key.first, market_order(key.second, pos.quantity > 0 ? Side::sell : Side::buy,
                                                           pos.quantity > 0 ? pos.quantity : -pos.quantity)));
  }
  settle(all_ended(flatten_from));
  read_back_from_brokers();
  // Each broker's own word on the final position, through its query.
  for (auto& b : brokers_) {
    const std::string name = b->broker().name();
    b->broker().list_positions([this, name](PositionsResult r) { final_positions_[name] = std::move(r); });
  }
  settle([&] { return final_positions_.size() == brokers_.size(); });

  WindDownResult result;
  for (const std::string& coid : ours)
    if (const OrderRecord* o = orders_->find(coid); o && !o->is_terminal())
      result.unsettled_orders.push_back(coid + " at " + o->broker + ": " + to_string(o->state));
  // Any other order not ended (its outcome still unknown, say) is unsettled too.
  const std::set<std::string> listed(ours.begin(), ours.end());
  for (const OrderRecord* o : orders_->orders())
    if (!o->is_terminal() && !listed.count(o->spec.client_order_id))
      result.unsettled_orders.push_back(o->spec.client_order_id + " at " + o->broker + ": " + to_string(o->state));
  for (const auto& [key, pos] : orders_->positions())
    if (pos.quantity != 0)
      result.open_positions.push_back(key.first + " " + key.second + " " + std::to_string(pos.quantity) +
                                      " (Backstop's record)");
  // A broker's own answer, for the symbols Backstop traded there: the account may hold other
  // positions, which the flatten never meant to touch.
  for (auto& b : brokers_) {
    const std::string name = b->broker().name();
    std::set<std::string> traded;
    for (const auto& [key, pos] : orders_->positions())
      if (key.first == name) traded.insert(key.second);
    if (traded.empty()) continue;
    auto it = final_positions_.find(name);
    if (it == final_positions_.end() || it->second.outcome != Outcome::accepted) {
      result.open_positions.push_back(name + ": not known (" +
                                      (it == final_positions_.end() ? std::string("its positions query was not answered")
                                                                    : it->second.message) +
                                      ")");
      continue;
    }
    for (const auto& p : it->second.positions)
      if (p.quantity != 0 && traded.count(p.symbol))
        result.open_positions.push_back(name + " " + p.symbol + " " + std::to_string(p.quantity) +
                                        " (the broker's own answer)");
  }
  return result;
}

void Session::stop() {
  if (stopped_) return;
  stopped_ = true;
  monitor_->stop();
  reconciler_->stop();
  for (auto& b : brokers_) b->stop();
  journal_->flush();
}

}  // namespace backstop
