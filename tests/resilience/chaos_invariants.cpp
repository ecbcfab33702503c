#include "chaos_invariants.hpp"

#include <fmt/format.h>

#include <map>
#include <regex>
#include <set>

#include "core/clock.hpp"
#include "core/lifecycle.hpp"
#include "core/price.hpp"

namespace backstop::chaos {

namespace {
using json = nlohmann::json;
constexpr Nanos kMs = 1'000'000;

Nanos ts_of(const json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_string()) return 0;
  try {
    return parse_timestamp(j[key].get<std::string>());
  } catch (...) {
    return 0;
  }
}

std::string str(const json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
}

// Client order ids of this run: "B" + base-36 milliseconds of the process start + "-" + sequence
// (core ClientOrderIdGenerator::time_prefix), started within the run.
bool is_run_coid(const std::string& coid, const RunRecord& run) {
  static const std::regex kId("^B([0-9A-Z]{1,12})-[0-9]+$");
  std::smatch m;
  if (!std::regex_match(coid, m, kId)) return false;
  std::uint64_t ms = 0;
  for (char c : m[1].str()) ms = ms * 36 + static_cast<std::uint64_t>(c <= '9' ? c - '0' : c - 'A' + 10);
  const auto t = static_cast<Nanos>(ms) * kMs;
  return t >= run.started - 1000 * kMs && t <= run.finished;
}

std::string rel(Nanos t, Nanos origin) {
  return t == 0 ? "-" : fmt::format("+{:.2f}s", static_cast<double>(t - origin) / 1e9);
}

// What one emulator's own log says about client order ids.
struct EmulatorView {
  std::string broker;
  std::map<std::string, int> attempts;  // order placement requests received
  std::map<std::string, int> placed;    // ... that it accepted and gave an order id
  std::vector<std::string> duplicates;  // requests it refused as duplicates
  std::set<std::string> lost;           // acknowledged but never at the venue (its lost-order fault)
  std::map<std::string, std::string> coid_of_order_id;
  struct Crossed {
    std::string coid;
    Nanos at = 0;
    std::string detail;
  };
  std::vector<Crossed> ghosts_crossed;
  std::vector<std::pair<Nanos, std::string>> feed_faults;  // time, kind
  std::map<std::string, int> fault_counts;
};

// Fault kinds that break or freeze the quote feed Backstop watches stops with.
bool feed_affecting(const std::string& kind) {
  static const std::set<std::string> k = {"disconnect", "ts_disconnect", "dead_ws", "ts_stall", "ts_goaway",
                                          "ts_stream_error", "session_timeout", "http_429", "ts_429",
                                          "ts_token_expiry", "proxy_dead", "proxy_stall", "proxy_503",
                                          "stream_stall", "ibkr_session_timeout", "ibkr_gateway_restart",
                                          "emulator_sigkill"};
  return k.count(kind) != 0;
}

EmulatorView ts_view(const json& log) {
  EmulatorView v;
  v.broker = "ts";
  if (!log.is_object()) return v;  // unreadable: a violation of its own (check_invariants)
  for (const auto& r : log.value("requests", json::array())) {
    const std::string coid = str(r, "OrderConfirmID"), endpoint = str(r, "endpoint");
    if (endpoint.rfind("POST ", 0) != 0) continue;  // PUT/DELETE carry the id too: not placements
    ++v.attempts[coid];
    if (r.value("duplicate", false)) v.duplicates.push_back(coid);
    if (r.value("accepted", false) && !str(r, "OrderID").empty()) {
      ++v.placed[coid];
      v.coid_of_order_id[str(r, "OrderID")] = coid;
    }
  }
  for (const auto& f : log.value("faults", json::array())) {
    const std::string kind = str(f, "kind");
    ++v.fault_counts[kind];
    const Nanos at = ts_of(f, "at");
    if (kind == "ts_lost_order") v.lost.insert(str(f, "client_order_id"));
    // The venue's client order id at TradeStation is the OrderConfirmID.
    if (kind == "ghost_stop_crossed") v.ghosts_crossed.push_back({str(f, "client_order_id"), at, str(f, "detail")});
    if (feed_affecting(kind)) v.feed_faults.push_back({at, kind});
  }
  return v;
}

EmulatorView ib_view(const json& log) {
  EmulatorView v;
  v.broker = "ib";
  if (!log.is_object()) return v;  // unreadable: a violation of its own (check_invariants)
  for (const auto& r : log.value("orders", json::array())) {
    const std::string coid = str(r, "cOID"), stage = str(r, "stage"), outcome = str(r, "outcome");
    if (stage == "received") ++v.attempts[coid];
    if (r.value("duplicate", false)) v.duplicates.push_back(coid);
    if (stage == "executed" && (outcome == "accepted" || outcome == "lost")) {
      ++v.placed[coid];
      v.coid_of_order_id[str(r, "order_id")] = coid;
    }
  }
  for (const auto& f : log.value("faults", json::array())) {
    const std::string kind = str(f, "kind");
    ++v.fault_counts[kind];
    const Nanos at = ts_of(f, "time");
    if (kind == "lost_order") v.lost.insert(str(f, "client_order_id"));
    if (kind == "ghost_stop_crossed") {
      // The venue's record names its internal id ("IBE…"); order_id is the gateway order id.
      auto it = v.coid_of_order_id.find(str(f, "order_id"));
      v.ghosts_crossed.push_back({it == v.coid_of_order_id.end() ? "?order_id=" + str(f, "order_id") : it->second,
                                  at, str(f, "detail")});
    }
    if (feed_affecting(kind)) v.feed_faults.push_back({at, kind});
  }
  return v;
}

}  // namespace

Verdict check_invariants(const RunRecord& run) {
  Verdict v;
  auto violation = [&](const char* inv, std::string detail) { v.violations.push_back({inv, std::move(detail)}); };
  const Nanos origin = run.started;

  // ---- journal_consistent (and the orders everything else needs)
  std::map<std::string, json> orders;
  if (!run.orders_error.empty() || !run.orders.is_array()) {
    violation("journal_consistent", run.orders_error.empty() ? "`backstop orders --json` is not an array" : run.orders_error);
  } else {
    for (const auto& o : run.orders) {
      const std::string coid = str(o, "client_order_id");
      orders[coid] = o;
      const auto state = order_state_from_string(str(o, "state"));
      if (!state) {
        violation("journal_consistent", coid + ": unknown state \"" + str(o, "state") + "\"");
        continue;
      }
      OrderState cur = OrderState::pre_sent;
      int refused = 0;
      std::string chain = "pre_sent";
      bool broken = false;
      for (const auto& t : o.value("transitions", json::array())) {
        if (!t.value("applied", true)) {
          ++refused;
          continue;
        }
        const auto from = order_state_from_string(str(t, "from")), to = order_state_from_string(str(t, "to"));
        if (!from || !to || *from != cur || !is_legal_transition(*from, *to)) {
          violation("journal_consistent", fmt::format("{}: applied transition {} -> {} after {} ({})", coid, str(t, "from"),
                                                      str(t, "to"), chain, str(t, "reason")));
          broken = true;
          break;
        }
        cur = *to;
        chain += " -> " + str(t, "to");
      }
      if (!broken && cur != *state)
        violation("journal_consistent", coid + ": transitions end in " + to_string(cur) + ", order state is " + str(o, "state"));
      std::int64_t filled = 0;
      for (const auto& f : o.value("fills", json::array())) filled += f.value("quantity", std::int64_t{0});
      const auto fq = o.value("filled_quantity", std::int64_t{0}), q = o.value("quantity", std::int64_t{0});
      if (filled != fq)
        violation("journal_consistent", fmt::format("{}: fills add up to {}, filled_quantity {}", coid, filled, fq));
      if (fq > q || (*state == OrderState::filled && fq != q))
        violation("journal_consistent", fmt::format("{}: state {} with {} of {} filled", coid, str(o, "state"), fq, q));
      if (refused > 0) v.notes.push_back(fmt::format("{} ({} at {}): {} transition(s) refused by the table", coid,
                                                     str(o, "state"), str(o, "broker"), refused));
    }
  }

  const EmulatorView ts = ts_view(run.ts_log), ib = ib_view(run.ib_log);
  if (!run.ts_log.is_object() || !run.ib_log.is_object())
    violation("no_order_lost", "an emulator log could not be read");
  auto view_of = [&](const std::string& b) -> const EmulatorView& { return b == "ts" ? ts : ib; };

  // ---- no_order_lost: emulator -> journal
  for (const EmulatorView* e : {&ts, &ib}) {
    for (const auto& [coid, n] : e->attempts) {
      if (!is_run_coid(coid, run)) {
        violation("no_order_lost", fmt::format("{} received an order request with client order id \"{}\", not one of "
                                               "this run's routers",
                                               e->broker, coid));
        continue;
      }
      auto it = orders.find(coid);
      if (it == orders.end())
        violation("no_order_lost", fmt::format("{} reached {} ({} request(s), placed {}) but is not in the journal", coid,
                                               e->broker, n, e->placed.count(coid) ? "yes" : "no"));
      else if (str(it->second, "broker") != e->broker)
        violation("no_order_lost", fmt::format("{} reached {} but the journal routes it to {}", coid, e->broker,
                                               str(it->second, "broker")));
    }
  }
  // ---- no_order_lost: journal -> emulator
  std::size_t sent = 0;
  for (const auto& [coid, o] : orders) {
    const std::string state = str(o, "state"), broker = str(o, "broker");
    const json times = o.value("timestamps", json::object());
    bool reached = times.contains("sent_at") || times.contains("submitted_at");
    for (const auto& t : o.value("transitions", json::array()))
      if (t.value("applied", true) && (str(t, "to") == "pending" || str(t, "to") == "submitted")) reached = true;
    if (state == "pre_sent" || state == "pending") {
      violation("no_order_lost", fmt::format("{} at {} is still {} after the final clean run (created {})", coid, broker,
                                             state, rel(ts_of(times, "created_at"), origin)));
      continue;
    }
    if (state == "held")
      violation("local_stops", fmt::format("{} at {} is still held by Backstop after --flatten-on-exit: the next run "
                                           "would send its exit for a position that is gone",
                                           coid, broker));
    if (!reached) continue;
    ++sent;
    if (broker != "ts" && broker != "ib") {
      violation("no_order_lost", coid + ": journaled at unknown broker \"" + broker + "\"");
      continue;
    }
    const EmulatorView& e = view_of(broker);
    const bool placed = e.placed.count(coid) != 0;
    if (state == "failed") {
      if (placed && !e.lost.count(coid))
        violation("no_order_lost", fmt::format("{}: journal says failed (never reached the broker: \"{}\"), but {} "
                                               "placed it",
                                               coid, str(o, "last_message"), broker));
    } else if (state != "rejected" && !placed) {
      violation("no_order_lost", fmt::format("{}: journal says {} at {} (submitted {}), but {} never placed it ({} "
                                             "request(s) received)",
                                             coid, state, broker, rel(ts_of(times, "submitted_at"), origin), broker,
                                             e.attempts.count(coid) ? e.attempts.at(coid) : 0));
    }
    if (state == "submitted" || state == "partially_filled" || state == "pending_cancel")
      v.notes.push_back(fmt::format("{} at {} still {} after --flatten-on-exit", coid, broker, state));
  }

  // ---- none_sent_twice
  for (const EmulatorView* e : {&ts, &ib}) {
    for (const auto& [coid, n] : e->placed)
      if (n > 1) violation("none_sent_twice", fmt::format("{} placed {} times at {}", coid, n, e->broker));
    for (const auto& coid : e->duplicates)
      violation("none_sent_twice", fmt::format("{} was sent to {} again after it had been placed (refused as a duplicate)",
                                               coid, e->broker));
  }
  for (const auto& [coid, n] : ts.placed)
    if (ib.placed.count(coid)) violation("none_sent_twice", coid + " placed at both ts and ib");

  // ---- ghost_detected
  std::map<std::string, Nanos> declared;
  for (const auto& [coid, at] : run.ghost_events) declared.emplace(coid, at);
  int crossed = 0, watchable = 0, caught = 0;
  // slack: the guard reads every broker back before declaring (IBKR's trades endpoint is paced
  // at 1 per 5 s), so a declaration may come several seconds after the grace period.
  const Nanos grace = run.ghost_grace_ms * kMs, slack = 6000 * kMs, settle = 4000 * kMs;
  for (const EmulatorView* e : {&ts, &ib}) {
    for (const auto& g : e->ghosts_crossed) {
      ++crossed;
      if (declared.count(g.coid)) {
        ++caught;
        continue;
      }
      auto it = orders.find(g.coid);
      if (it == orders.end()) {
        v.notes.push_back(fmt::format("ghost stop {} at {} crossed {} but not journaled (see no_order_lost)", g.coid,
                                      e->broker, rel(g.at, origin)));
        continue;
      }
      const json& o = it->second;
      const json times = o.value("timestamps", json::object());
      const Price stop = Price::parse(str(o, "stop_price").empty() ? "0" : str(o, "stop_price"));
      const bool sell = str(o, "side") == "sell";
      Nanos entry_filled = 0;
      if (!str(o, "parent_client_order_id").empty()) {
        auto p = orders.find(str(o, "parent_client_order_id"));
        entry_filled = p == orders.end() ? -1 : ts_of(p->second.value("timestamps", json::object()), "filled_at");
        if (entry_filled == 0) entry_filled = -1;  // the entry's fill never journaled
      }
      const Nanos acked = ts_of(times, "submitted_at");
      Nanos ended = 0;
      for (const char* k : {"filled_at", "cancelled_at", "rejected_at", "failed_at"})
        if (Nanos t = ts_of(times, k); t && (!ended || t < ended)) ended = t;
      auto quiet = [&](Nanos from, Nanos to) {
        for (const auto& ep : run.episodes)
          if (ep.broker == e->broker && feed_affecting(ep.kind) && ep.start <= to && ep.end >= from) return false;
        for (const auto& [at, kind] : e->feed_faults)
          if (at >= from && at <= to) return false;
        return true;
      };
      // Backstop itself journaled the crossing: from then on nothing (a restart included) may
      // make it forget, unless our own cancel ended the stop within the grace period.
      Nanos seen_crossed = 0;
      for (const auto& [coid, at] : run.crossed_events)
        if (coid == g.coid && (!seen_crossed || at < seen_crossed)) seen_crossed = at;
      const Nanos own_cancel = ts_of(times, "pending_cancel_at");
      if (seen_crossed && !(own_cancel && own_cancel <= seen_crossed + grace) && entry_filled >= 0) {
        std::string lives;
        for (const auto& r : run.routers)
          if (!r.ended || r.ended >= seen_crossed)
            lives += fmt::format(" [router {} {}..{} {}]", r.index, rel(r.ready, origin), rel(r.ended, origin), r.how);
        ++watchable;
        violation("ghost_detected",
                  fmt::format("ghost stop {} at {} ({} stop {}): the journal has \"stop_crossed\" at {} (emulator "
                              "crossing {}), yet no \"ghost_stop\" ever; stop ended {} as {} (own cancel {}); routers "
                              "after the crossing:{}",
                              g.coid, e->broker, str(o, "side"), stop.to_string(), rel(seen_crossed, origin),
                              rel(g.at, origin), rel(ended, origin), str(o, "state"), rel(own_cancel, origin), lives));
        continue;
      }
      std::string why_not = "no crossing quote while it was watchable";
      const QuotePoint* window = nullptr;
      const RouterLife* by = nullptr;
      if (entry_filled < 0) why_not = "its entry's fill was never journaled";
      else if (!acked) why_not = "never acknowledged in the journal";
      else
        for (const auto& q : run.quotes) {
          if (q.at < g.at - 200 * kMs || q.at < acked || q.at < entry_filled) continue;
          if (!(sell ? q.last <= stop.units() : q.last >= stop.units())) continue;
          if (ended && ended <= q.at + grace) continue;
          const RouterLife* up = nullptr;
          for (const auto& r : run.routers)
            if (r.ready && r.ready <= q.at && (!r.ended || r.ended >= q.at + grace + slack)) up = &r;
          if (!up || !quiet(q.at - settle, q.at + grace + slack)) continue;
          window = &q;
          by = up;
          break;
        }
      if (!window) {
        v.notes.push_back(fmt::format("ghost stop {} at {} (stop {}) crossed {}, not declared; not watchable: {}", g.coid,
                                      e->broker, stop.to_string(), rel(g.at, origin), why_not));
        continue;
      }
      ++watchable;
      violation("ghost_detected",
                fmt::format("ghost stop {} at {} ({} stop {}, entry filled {}, acked {}): emulator recorded the crossing "
                            "{} (\"{}\"); quote {} at {} was through it with router {} up from {} to {} and no fault "
                            "on {}; no journal event \"ghost_stop\" for it (stop ended {} as {})",
                            g.coid, e->broker, str(o, "side"), stop.to_string(), rel(entry_filled, origin),
                            rel(acked, origin), rel(g.at, origin), g.detail, Price::from_units(window->last).to_string(),
                            rel(window->at, origin), by->index, rel(by->ready, origin), rel(by->ended, origin), e->broker,
                            rel(ended, origin), str(o, "state")));
    }
  }
  // Ghosts declared for stops no emulator ghosted: a real stop cancelled and flattened.
  std::set<std::string> injected;
  for (const auto& f : run.ts_log.value("faults", json::array()))
    if (str(f, "kind") == "ghost_stop") injected.insert(str(f, "client_order_id"));
  for (const auto& f : run.ib_log.value("faults", json::array()))
    if (str(f, "kind") == "ghost_stop" && ib.coid_of_order_id.count(str(f, "order_id")))
      injected.insert(ib.coid_of_order_id.at(str(f, "order_id")));
  for (const auto& [coid, at] : declared)
    if (!injected.count(coid)) v.notes.push_back(fmt::format("ghost declared {} for {}, which no emulator made a ghost", rel(at, origin), coid));

  // ---- positions
  std::map<std::string, std::int64_t> implied{{"ts", 0}, {"ib", 0}};
  for (const auto& [coid, o] : orders) {
    const std::int64_t sign = str(o, "side") == "buy" ? 1 : -1;
    for (const auto& f : o.value("fills", json::array())) implied[str(o, "broker")] += sign * f.value("quantity", std::int64_t{0});
  }
  for (const auto& [b, pos] : {std::pair{std::string("ts"), run.ts_position}, std::pair{std::string("ib"), run.ib_position}}) {
    if (!pos) {
      violation("positions", b + ": the emulator's position could not be read: " + run.position_error);
      continue;
    }
    if (*pos != implied[b])
      violation("positions", fmt::format("{}: emulator holds {} AAPL, the journal's fills imply {}", b, *pos, implied[b]));
    if (*pos != 0) violation("positions", fmt::format("{}: not flat after --flatten-on-exit: emulator holds {} AAPL", b, *pos));
  }

  // ---- processes
  for (const auto& r : run.routers) {
    if (r.how.rfind("signal", 0) == 0)
      violation("processes", fmt::format("router {} died by {} (not sent by the driver): {}", r.index, r.how, r.last_stderr));
    else if (!r.final_run && r.how.rfind("exit", 0) == 0)
      v.notes.push_back(fmt::format("router {} exited by itself ({}) at {}: {}", r.index, r.how, rel(r.ended, origin),
                                    r.last_stderr));
    if (r.final_run && r.how != "exit 0")
      violation("processes", fmt::format("final `backstop run --flatten-on-exit` ended \"{}\": {}", r.how, r.last_stderr));
  }

  // ---- local_stops: a held stop crossed while a restarted router's recovery ran is released by
  // that router once recovery ends, or by the next one; the final run always gets that far.
  const auto local = [&](const char* kind) -> const std::vector<std::pair<std::string, Nanos>>& {
    static const std::vector<std::pair<std::string, Nanos>> none;
    auto it = run.local_events.find(kind);
    return it == run.local_events.end() ? none : it->second;
  };
  for (const auto& [coid, at] : local("local_stop_crossed_during_recovery")) {
    bool released = false;
    for (const auto& [fired, fired_at] : local("local_stop_fired")) released |= fired == coid && fired_at >= at;
    // Or cancelled, its position gone while Backstop was down.
    for (const auto& [gone, gone_at] : local("local_stop_not_sent")) released |= gone == coid && gone_at >= at;
    if (!released)
      violation("local_stops", fmt::format("held stop {} crossed during recovery at {} was never released", coid,
                                           rel(at, origin)));
  }
  // An exit that ended unfilled is sent again; giving up leaves a position unprotected.
  for (const auto& [coid, at] : local("local_stop_release_failed"))
    v.notes.push_back(fmt::format("local stop {}'s exit ended unfilled at {} (alerted, sent again)", coid, rel(at, origin)));
  for (const auto& [coid, at] : run.local_exits_given_up)
    violation("local_stops", fmt::format("local stop {}: the guard gave up sending its exit at {}", coid, rel(at, origin)));

  // ---- summary
  std::map<std::string, int> kinds;
  for (const auto& e : run.episodes) ++kinds[e.broker.empty() ? e.kind : e.kind + "@" + e.broker];
  std::string ep;
  for (const auto& [k, n] : kinds) ep += fmt::format("{}{}x{}", ep.empty() ? "" : " ", k, n);
  // How many emulator deaths caught an order request on its way in (the harder case).
  int emulator_kills = 0, with_order = 0, answer_dropped = 0;
  for (const auto& e : run.episodes)
    if (e.kind == "emulator_sigkill") {
      ++emulator_kills;
      if (e.detail.find("killed with an order request in flight") == std::string::npos) continue;
      ++with_order;
      if (e.detail.rfind("mid-order, answer dropped", 0) == 0) ++answer_dropped;
    }
  const std::string protection =
      run.local_stops ? fmt::format("protection local (stops fired {}, {} of them crossed during recovery; resent {})",
                                    local("local_stop_fired").size(), local("local_stop_crossed_during_recovery").size(),
                                    local("local_stop_resent").size())
                      : std::string(run.trailing_broker_stops ? "protection guard, trailing stops" : "protection guard");
  // Trailing stops (the mean-reversion runs): replaces asked, and how many the broker refused or
  // left unanswered (a refusal is normal: the stop may have fired, or price moved through it).
  const std::string replaces =
      run.local_stops || run.trailing_broker_stops
          ? fmt::format(", replaces {} ({} refused, {} unknown)", local("replace_requested").size(),
                        local("replace_rejected").size(), local("replace_unknown").size())
          : std::string();
  v.summary = fmt::format("{} route [{},{}], {}{}, profile {}, {} routers, {} orders ({} sent; ts placed {}, ib placed {}), "
                          "ghosts crossed {} (watchable-and-missed {}, declared {}), positions ts {} ib {}, "
                          "emulator kills {} ({} with an order request in flight, {} of them with its answer "
                          "dropped); episodes: {}",
                          to_string(run.mode), run.route.at(0), run.route.at(1), protection, replaces, run.base_profile,
                          run.routers.size(),
                          orders.size(), sent, ts.placed.size(), ib.placed.size(), crossed, watchable, caught,
                          run.ts_position ? std::to_string(*run.ts_position) : "?",
                          run.ib_position ? std::to_string(*run.ib_position) : "?", emulator_kills, with_order,
                          answer_dropped, ep);
  return v;
}

}  // namespace backstop::chaos
