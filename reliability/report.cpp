// Computes the reliability report from journal facts. Every figure is derived from timestamps
// and payloads on disk; nothing here keeps a counter that the journal could contradict.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <set>

#include "core/error.hpp"
#include "reliability/reliability.hpp"

namespace backstop::reliability {

std::optional<double> nearest_rank(const std::vector<double>& sorted, int p) {
  if (sorted.empty() || p <= 0 || p > 100) return std::nullopt;
  // rank = ceil(p * n / 100) in integers, so that e.g. p95 of 20 samples is exactly the 19th.
  const std::size_t n = sorted.size();
  const std::size_t rank = (static_cast<std::size_t>(p) * n + 99) / 100;
  return sorted[std::max<std::size_t>(rank, 1) - 1];
}

void Distribution::sort() { std::sort(samples.begin(), samples.end()); }

JournalFacts read_facts(Journal& journal) {
  JournalFacts f;
  f.orders = journal.orders();
  f.transitions = journal.transitions();
  f.fills = journal.fills();
  f.events = journal.events();
  return f;
}

namespace {

// Event kinds the code does not journal today (DESIGN.md wants them in the record). They are
// counted as soon as a journal holds any; until then the figure is "not recorded", not 0.
struct Unjournaled {
  const char* kind;
  std::optional<std::int64_t> BrokerFigures::*field;
  const char* label;
};
const Unjournaled kUnjournaled[] = {
    {"stream_gap", &BrokerFigures::stream_gaps, "stream gaps"},
    {"reconnect", &BrokerFigures::reconnects, "reconnects"},
    {"http_429", &BrokerFigures::http_429, "HTTP 429 (rate limited)"},
    {"api_error", &BrokerFigures::api_errors, "API errors"},
};

const char* const kVerificationFailures[] = {"mismatch", "missing", "timeout"};

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

std::optional<nlohmann::json> parse_payload(const JournalEvent& ev, std::vector<std::string>& warnings) {
  try {
    auto j = nlohmann::json::parse(ev.detail);
    if (j.is_object()) return j;
  } catch (const nlohmann::json::exception&) {
  }
  warnings.push_back("event " + ev.kind + " at " + format_timestamp(ev.at) + " (" + ev.broker +
                     ") has a malformed payload; left out");
  return std::nullopt;
}

std::string string_field(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The two paths that journal a reject word it differently ("<reason>" from the submit reply,
// "broker: <reason>" from the stream); the same refusal should land in one bucket.
std::string reject_reason(const std::string& reason) {
  std::string r = starts_with(reason, "broker: ") ? reason.substr(8) : reason;
  return r.empty() ? "(no reason given)" : r;
}

// What one order's transitions say about its lifecycle.
struct Lifecycle {
  std::optional<Timestamp> sent;  // first -> pending: the request left the process
  std::optional<Timestamp> ack;   // first pre_sent/pending -> submitted
};

// Time spent in each health state between span_from and span_to, from the ordered changes. The
// state before the first change is that change's "from".
std::map<std::string, std::int64_t> time_in_states(const std::vector<std::pair<Timestamp, nlohmann::json>>& changes,
                                                   Timestamp span_from, Timestamp span_to) {
  std::map<std::string, std::int64_t> out;
  if (changes.empty()) return out;
  std::string state = string_field(changes.front().second, "from");
  for (const auto& [at, j] : changes)
    if (at <= span_from) state = string_field(j, "to");
  Timestamp cursor = span_from;
  for (const auto& [at, j] : changes) {
    if (at <= span_from || at > span_to) continue;
    out[state] += at - cursor;
    cursor = at;
    state = string_field(j, "to");
  }
  if (span_to > cursor) out[state] += span_to - cursor;
  return out;
}

}  // namespace

Report build_report(const JournalFacts& facts, const ReportOptions& options) {
  Report r;
  r.journal = options.journal_name;
  r.window = options.window;
  const Window& w = options.window;

  // The journal's extent, then clipped to the window.
  std::optional<Timestamp> first, last;
  auto extend = [&](Timestamp t) {
    if (t == 0) return;
    first = first ? std::min(*first, t) : t;
    last = last ? std::max(*last, t) : t;
  };
  for (const auto& o : facts.orders)
    for (Timestamp t : o.state_times) extend(t);
  for (const auto& t : facts.transitions) extend(t.at);
  for (const auto& f : facts.fills) extend(f.at);
  for (const auto& e : facts.events) extend(e.at);
  r.span_from = std::max(first.value_or(0), w.from.value_or(first.value_or(0)));
  r.span_to = std::min(last.value_or(0), w.to.value_or(last.value_or(0)));
  if (r.span_to < r.span_from) r.span_to = r.span_from;  // window outside the journal

  std::set<std::string> brokers;
  for (const auto& o : facts.orders) brokers.insert(o.broker);
  for (const auto& f : facts.fills) brokers.insert(f.broker);
  for (const auto& e : facts.events) brokers.insert(e.broker);
  brokers.erase("");
  r.brokers.assign(brokers.begin(), brokers.end());
  for (const auto& b : r.brokers) r.figures[b];

  std::map<std::string, const OrderRecord*> order_by_id;
  for (const auto& o : facts.orders) order_by_id[o.spec.client_order_id] = &o;
  std::map<std::string, std::vector<const Fill*>> fills_by_order;
  for (const auto& f : facts.fills) fills_by_order[f.client_order_id].push_back(&f);
  for (auto& [id, fs] : fills_by_order)
    std::stable_sort(fs.begin(), fs.end(), [](const Fill* a, const Fill* b) { return a->at < b->at; });
  std::map<std::string, std::vector<const TransitionRow*>> transitions_by_order;
  for (const auto& t : facts.transitions)
    if (t.applied) transitions_by_order[t.client_order_id].push_back(&t);  // refused ones changed nothing

  std::set<std::string> kinds_present;
  for (const auto& e : facts.events) kinds_present.insert(e.kind);
  for (const auto& u : kUnjournaled)
    if (kinds_present.count(u.kind))
      for (auto& [b, fig] : r.figures) fig.*(u.field) = 0;

  std::set<std::string> missing_ticks;
  auto ticks_between = [&](const std::string& symbol, Price from, Price to) -> std::optional<double> {
    auto it = options.tick_sizes.find(symbol);
    if (it == options.tick_sizes.end()) {
      missing_ticks.insert(symbol);
      return std::nullopt;
    }
    return static_cast<double>((to - from).units()) / static_cast<double>(it->second.value().units());
  };

  // Events first: the order pass needs the first crossing and first verification of each stop.
  std::map<std::string, Timestamp> first_crossed;   // stop -> first "stop_crossed"
  std::map<std::string, Timestamp> first_verified;  // stop -> first "verified" read-back
  std::map<std::string, std::vector<std::pair<Timestamp, nlohmann::json>>> health;  // per broker
  std::vector<const JournalEvent*> dual_events;
  for (const auto& ev : facts.events) {
    if (ev.kind == "stop_crossed" && !first_crossed.count(ev.client_order_id)) first_crossed[ev.client_order_id] = ev.at;
    if (ev.kind == "health_change") {
      if (auto j = parse_payload(ev, r.warnings)) health[ev.broker].emplace_back(ev.at, *j);
      continue;  // counted below, per broker, once the changes are ordered
    }
    if (ev.kind == "dual_pair") {
      if (w.contains(ev.at)) dual_events.push_back(&ev);
      continue;
    }
    if (ev.kind == "stop_verification") {
      auto j = parse_payload(ev, r.warnings);
      if (!j) continue;
      const std::string outcome = string_field(*j, "outcome");
      if (outcome == "verified" && !first_verified.count(ev.client_order_id)) first_verified[ev.client_order_id] = ev.at;
      if (!w.contains(ev.at) || ev.broker.empty()) continue;
      auto& fig = r.figures[ev.broker];
      if (outcome != "verified" && outcome != "pending") ++fig.verification_failures[outcome];
      r.timeline.push_back({ev.at, ev.broker, "stop_verification_" + outcome});
      continue;
    }
    if (!w.contains(ev.at) || ev.broker.empty()) continue;
    auto& fig = r.figures[ev.broker];
    r.timeline.push_back({ev.at, ev.broker, ev.kind});
    if (ev.kind == "ghost_stop") {
      ++fig.ghost_stops;
      auto j = parse_payload(ev, r.warnings);
      if (!j) continue;
      try {
        fig.ghost_detection_delay.add(static_cast<double>(ev.at - parse_timestamp(string_field(*j, "crossed_at"))));
      } catch (const std::exception&) {
        r.warnings.push_back("ghost_stop " + ev.client_order_id + ": unreadable crossed_at; its delay is left out");
      }
    } else if (ev.kind == "stop_crossed") {
      ++fig.stops_crossed;
    } else if (ev.kind == "stop_triggered") {
      ++fig.stops_triggered;
    } else if (ev.kind == "unknown_outcome") {
      ++fig.unknown_outcomes;
    } else if (ev.kind == "unknown_order_event") {
      ++fig.unknown_order_events;
    } else if (ev.kind == "unknown_fill") {
      ++fig.unknown_fills;
    } else if (ev.kind == "overfill_refused") {
      ++fig.overfills_refused;
    } else if (ev.kind == "replace_requested") {
      ++fig.replace_requests;
    } else if (starts_with(ev.kind, "replace_")) {
      ++fig.replace_failures[ev.kind.substr(8)];  // replace_rejected, replace_unknown, ...
    } else if (ev.kind == "route_switch") {
      ++fig.route_switches_in;  // journaled under the broker the route moved to
    } else if (ev.kind == "divergence") {
      if (auto j = parse_payload(ev, r.warnings)) {
        const std::string kind = string_field(*j, "kind");
        ++fig.divergences_by_kind[kind.empty() ? "(unspecified)" : kind];
      }
    } else {
      for (const auto& u : kUnjournaled)
        if (ev.kind == u.kind) ++*(fig.*(u.field));
    }
  }

  // Orders: lifecycle durations, rejects, cancels, fills.
  std::map<std::string, Lifecycle> lifecycles;
  for (const auto& o : facts.orders) {
    const std::string& coid = o.spec.client_order_id;
    auto& fig = r.figures[o.broker];
    if (w.contains(o.time_of(OrderState::pre_sent))) ++fig.orders_created;

    Lifecycle& lc = lifecycles[coid];
    std::optional<Timestamp> cancel_requested;
    for (const TransitionRow* t : transitions_by_order[coid]) {
      if (t->to_state == "pending" && !lc.sent) lc.sent = t->at;
      if (t->to_state == "submitted" && !lc.ack && (t->from_state == "pending" || t->from_state == "pre_sent"))
        lc.ack = t->at;
      const bool in = w.contains(t->at);
      if (t->to_state == "rejected" && in) {
        ++fig.rejected;
        ++fig.rejects_by_reason[reject_reason(t->reason)];
        r.timeline.push_back({t->at, o.broker, "reject"});
      }
      if (t->to_state == "failed" && in) ++fig.failed_locally;
      if (t->to_state == "pending_cancel") {
        cancel_requested = t->at;
        if (in) ++fig.cancel_requests;
      }
      if (t->to_state == "cancelled") {
        if (in) ++fig.cancelled;
        if (cancel_requested && w.contains(*cancel_requested))
          fig.cancel_latency.add(static_cast<double>(t->at - *cancel_requested));
      }
      // OrderManager::cancel restores the prior state, with a "cancel <outcome>: ..." reason,
      // when the broker refused the cancel or it never left.
      if (t->from_state == "pending_cancel" && starts_with(t->reason, "cancel ") &&
          (t->to_state == "submitted" || t->to_state == "partially_filled") && in)
        ++fig.cancel_failures;
    }
    // An order journaled but never sent (or sent before transitions existed) starts at creation.
    const Timestamp start = lc.sent.value_or(o.time_of(OrderState::pre_sent));
    if (lc.ack && start != 0 && w.contains(start)) fig.submit_to_ack.add(static_cast<double>(*lc.ack - start));

    const auto fit = fills_by_order.find(coid);
    const Fill* first_fill = fit != fills_by_order.end() && !fit->second.empty() ? fit->second.front() : nullptr;
    if (o.spec.type == OrderType::market && first_fill && start != 0 && w.contains(start))
      fig.market_fill_latency.add(static_cast<double>(first_fill->at - start));

    if (o.spec.is_stop()) {
      const Timestamp submitted = o.time_of(OrderState::submitted);
      if (auto v = first_verified.find(coid); v != first_verified.end() && submitted != 0 && w.contains(submitted)) {
        ++fig.stops_verified;
        fig.ack_to_verified.add(static_cast<double>(v->second - submitted));
      }
      if (auto c = first_crossed.find(coid); c != first_crossed.end() && first_fill && w.contains(c->second))
        fig.stop_trigger_delay.add(static_cast<double>(first_fill->at - c->second));
      if (o.spec.stop_price && fit != fills_by_order.end()) {
        for (const Fill* f : fit->second) {
          if (!w.contains(f->at)) continue;
          // Adverse is positive: a sell stop filling below its price, a buy stop above.
          auto t = o.spec.side == Side::sell ? ticks_between(o.spec.symbol, f->price, *o.spec.stop_price)
                                             : ticks_between(o.spec.symbol, *o.spec.stop_price, f->price);
          if (t) fig.stop_slippage_ticks.add(*t);
        }
      }
    }
  }

  // Health: time in each state over the span, changes and circuit openings in the window.
  for (auto& [broker, changes] : health) {
    std::stable_sort(changes.begin(), changes.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    auto& fig = r.figures[broker];
    fig.time_in_health_state = time_in_states(changes, r.span_from, r.span_to);
    for (const auto& [at, j] : changes) {
      if (!w.contains(at)) continue;
      ++fig.health_changes;
      if (string_field(j, "circuit") == "open") ++fig.circuit_opens;
      r.timeline.push_back({at, broker, "health_" + string_field(j, "to")});
    }
  }

  // Dual-run pairs: the same intent sent to several brokers, side by side.
  for (const JournalEvent* ev : dual_events) {
    auto j = parse_payload(*ev, r.warnings);
    if (!j) continue;
    auto orders = j->find("orders");
    if (orders == j->end() || !orders->is_object()) {
      r.warnings.push_back("dual_pair at " + format_timestamp(ev->at) + " names no orders; left out");
      continue;
    }
    DualPair p;
    p.at = ev->at;
    if (auto id = j->find("pair"); id != j->end()) p.pair = id->is_string() ? id->get<std::string>() : id->dump();
    for (const auto& [broker, coid_json] : orders->items()) {
      DualSide s;
      s.broker = broker;
      s.client_order_id = coid_json.is_string() ? coid_json.get<std::string>() : coid_json.dump();
      if (auto o = order_by_id.find(s.client_order_id); o != order_by_id.end()) {
        const OrderRecord& rec = *o->second;
        s.in_journal = true;
        s.state = to_string(rec.state);
        if (p.symbol.empty()) p.symbol = rec.spec.symbol;
        const Lifecycle& lc = lifecycles[s.client_order_id];
        const Timestamp start = lc.sent.value_or(rec.time_of(OrderState::pre_sent));
        if (lc.ack && start != 0) s.ack_latency_ns = *lc.ack - start;
        if (auto f = fills_by_order.find(s.client_order_id); f != fills_by_order.end() && !f->second.empty())
          s.first_fill_at = f->second.front()->at;
        if (rec.filled_quantity > 0) s.average_fill_price = rec.average_fill_price;
      }
      p.sides.push_back(std::move(s));
    }
    std::sort(p.sides.begin(), p.sides.end(), [](const DualSide& a, const DualSide& b) { return a.broker < b.broker; });
    std::size_t rejected = 0;
    for (const auto& s : p.sides) rejected += s.state == "rejected";
    for (const auto& s : p.sides) {
      auto& fig = r.figures[s.broker];
      ++fig.dual_pairs;
      if (s.state == "rejected" && rejected < p.sides.size()) {
        ++fig.dual_one_sided_rejects;
        p.rejected_alone.push_back(s.broker);
      }
    }
    if (!p.sides.empty()) {
      const DualSide& base = p.sides.front();
      for (std::size_t i = 1; i < p.sides.size(); ++i) {
        const DualSide& s = p.sides[i];
        if (base.first_fill_at && s.first_fill_at) p.fill_time_diff_ns[s.broker] = *s.first_fill_at - *base.first_fill_at;
        if (base.average_fill_price && s.average_fill_price)
          if (auto t = ticks_between(p.symbol, *base.average_fill_price, *s.average_fill_price))
            p.fill_price_diff_ticks[s.broker] = *t;
      }
    }
    r.pairs.push_back(std::move(p));
  }
  // A broker named only inside a dual pair still gets a column.
  for (const auto& [b, fig] : r.figures)
    if (!std::binary_search(r.brokers.begin(), r.brokers.end(), b)) r.brokers.push_back(b);
  std::sort(r.brokers.begin(), r.brokers.end());

  r.brokers.erase(std::remove(r.brokers.begin(), r.brokers.end(), std::string()), r.brokers.end());
  r.figures.erase("");
  for (auto& [b, fig] : r.figures) {
    for (const char* k : kVerificationFailures) fig.verification_failures[k] += 0;  // always all three kinds
    for (Distribution* d : {&fig.submit_to_ack, &fig.ack_to_verified, &fig.ghost_detection_delay, &fig.stop_trigger_delay,
                            &fig.stop_slippage_ticks, &fig.market_fill_latency, &fig.cancel_latency})
      d->sort();
  }
  std::stable_sort(r.timeline.begin(), r.timeline.end(),
                   [](const TimelineEntry& a, const TimelineEntry& b) { return a.at < b.at; });

  for (const auto& u : kUnjournaled)
    if (!kinds_present.count(u.kind))
      r.not_recorded.push_back(std::string(u.label) + ": no \"" + u.kind + "\" events are journaled");
  r.not_recorded.push_back("market order slippage: no reference price is journaled with market orders");
  if (health.empty()) r.not_recorded.push_back("time in health state: no \"health_change\" events in this journal");
  if (!kinds_present.count("dual_pair")) r.not_recorded.push_back("dual-run pairs: no \"dual_pair\" events in this journal");
  for (const auto& s : missing_ticks)
    r.warnings.push_back("no tick size known for " + s + "; its slippage is left out (pass --config with the instrument)");
  return r;
}

}  // namespace backstop::reliability
