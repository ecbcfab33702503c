#pragma once
// The broker reliability record: per-broker figures computed from the journal's facts (orders,
// their timestamped transitions, fills and events), never from counters kept on the side, so
// that every number in the comparison can be traced back to rows on disk.
//
// Definitions (REPORT_SCHEMA.md documents each field):
//  - A duration is measured between two journaled timestamps and belongs to the window when the
//    fact that starts it does (the submit for submit->ack, the crossing for trigger delay).
//  - A count belongs to the window when its fact's timestamp does. The window is inclusive.
//  - Percentiles are nearest-rank: always an observed sample, never an interpolation.
//  - Something the code does not journal today is "not recorded" (std::nullopt), never 0.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/journal.hpp"
#include "core/price.hpp"

namespace backstop::reliability {

// Bumped whenever a field of the JSON rendering changes meaning or disappears.
constexpr int kReportSchemaVersion = 1;

// Nearest-rank percentile of ascending `sorted` samples: the smallest sample with at least p %
// of the samples at or below it (rank = ceil(p/100 * n)). nullopt for no samples.
// `p` is in (0, 100].
std::optional<double> nearest_rank(const std::vector<double>& sorted, int p);

// A set of samples. Latencies are in nanoseconds, slippage in ticks.
struct Distribution {
  std::vector<double> samples;  // ascending once the report is built

  void add(double v) { samples.push_back(v); }
  void sort();
  std::size_t count() const { return samples.size(); }
  std::optional<double> median() const { return nearest_rank(samples, 50); }
  std::optional<double> p95() const { return nearest_rank(samples, 95); }
  std::optional<double> p99() const { return nearest_rank(samples, 99); }
};

// Inclusive [from, to]; an absent bound is open.
struct Window {
  std::optional<Timestamp> from;
  std::optional<Timestamp> to;
  bool contains(Timestamp t) const { return (!from || t >= *from) && (!to || t <= *to); }
};

// A count of something the code may not journal yet: nullopt = not recorded.
using RecordedCount = std::optional<std::int64_t>;

struct BrokerFigures {
  // Orders and acknowledgements.
  std::int64_t orders_created = 0;      // orders created (journaled) in the window
  Distribution submit_to_ack;           // sent (-> pending) to the first -> submitted, ns
  std::int64_t rejected = 0;
  std::map<std::string, std::int64_t> rejects_by_reason;
  std::int64_t failed_locally = 0;      // never reached the broker
  std::int64_t unknown_outcomes = 0;    // "unknown_outcome" events: reply lost or timed out

  // Protective stops.
  Distribution ack_to_verified;         // submitted_at -> first "verified" read-back, ns
  std::int64_t stops_verified = 0;      // distinct stops with a "verified" read-back
  std::map<std::string, std::int64_t> verification_failures;  // mismatch / missing / timeout
  std::int64_t ghost_stops = 0;
  Distribution ghost_detection_delay;   // price crossed -> ghost declared, ns (crossed_at is µs)
  std::int64_t stops_crossed = 0;       // "stop_crossed" events
  std::int64_t stops_triggered = 0;     // "stop_triggered" events (the broker said it fired)
  Distribution stop_trigger_delay;      // "stop_crossed" -> the stop's first fill, ns
  Distribution stop_slippage_ticks;     // per stop fill vs its stop price; adverse is positive

  // Market orders.
  Distribution market_fill_latency;     // sent -> first fill, ns
  // No reference price is journaled with a market order today, so its slippage cannot be
  // computed from facts: always "not recorded" until one is.
  std::optional<Distribution> market_slippage_ticks;

  // Cancels and replaces.
  std::int64_t cancel_requests = 0;     // -> pending_cancel
  std::int64_t cancelled = 0;           // -> cancelled (requested or not: expiry, OCO)
  std::int64_t cancel_failures = 0;     // pending_cancel -> back to working: the cancel failed
  Distribution cancel_latency;          // pending_cancel -> cancelled, ns
  std::int64_t replace_requests = 0;
  std::map<std::string, std::int64_t> replace_failures;  // by outcome: rejected, unknown, ...

  // Streams and API: not journaled by the code today, counted as soon as such events exist.
  RecordedCount stream_gaps;
  RecordedCount reconnects;
  RecordedCount http_429;
  RecordedCount api_errors;
  std::int64_t unknown_order_events = 0;  // stream events for orders Backstop does not know
  std::int64_t unknown_fills = 0;
  std::int64_t overfills_refused = 0;

  // Reconciliation.
  std::map<std::string, std::int64_t> divergences_by_kind;

  // Health: time in each state (ns) over the window; nullopt when no "health_change" event for
  // this broker exists (the demo, for one, runs no health tracker).
  std::optional<std::map<std::string, std::int64_t>> time_in_health_state;
  std::int64_t health_changes = 0;
  std::int64_t circuit_opens = 0;
  std::int64_t route_switches_in = 0;  // "route_switch" events: the router moved a route here

  // Dual runs.
  std::int64_t dual_pairs = 0;
  std::int64_t dual_one_sided_rejects = 0;  // this side rejected, another side did not
};

struct DualSide {
  std::string broker;
  std::string client_order_id;
  bool in_journal = false;  // the pair names an order the journal does not have
  std::string state;
  std::optional<std::int64_t> ack_latency_ns;
  std::optional<Timestamp> first_fill_at;
  std::optional<Price> average_fill_price;
};

struct DualPair {
  std::string pair;
  Timestamp at = 0;
  std::string symbol;
  std::vector<DualSide> sides;  // sorted by broker name
  // Later sides relative to the first (sides[0]), when both filled: price in ticks (nullopt
  // without a tick size) and time in ns.
  std::map<std::string, double> fill_price_diff_ticks;
  std::map<std::string, std::int64_t> fill_time_diff_ns;
  std::vector<std::string> rejected_alone;  // brokers that rejected while another side did not
};

// One journaled fact on the timeline (events and order rejects), for the events-over-time chart.
struct TimelineEntry {
  Timestamp at = 0;
  std::string broker;
  std::string kind;
};

struct Report {
  int schema_version = kReportSchemaVersion;
  std::string journal;
  Window window;
  // The journal's own extent, clipped to the window: what "uptime" and the timeline span.
  Timestamp span_from = 0;
  Timestamp span_to = 0;
  std::vector<std::string> brokers;  // sorted
  std::map<std::string, BrokerFigures> figures;
  std::vector<DualPair> pairs;
  std::vector<TimelineEntry> timeline;
  // Figures this journal cannot give (event kinds never journaled), for the reader.
  std::vector<std::string> not_recorded;
  // Facts that could not be read (malformed payloads, unknown tick sizes) and were left out.
  std::vector<std::string> warnings;
};

// Everything the report is computed from, read once from a journal.
struct JournalFacts {
  std::vector<OrderRecord> orders;
  std::vector<TransitionRow> transitions;
  std::vector<Fill> fills;
  std::vector<JournalEvent> events;
};
JournalFacts read_facts(Journal& journal);

struct ReportOptions {
  Window window;
  // Tick size per symbol, for slippage in ticks; a fill of a symbol not listed is left out of
  // slippage (with a warning) rather than guessed.
  std::map<std::string, TickSize> tick_sizes;
  std::string journal_name;  // shown in the renderings
};

Report build_report(const JournalFacts& facts, const ReportOptions& options);

// Renderings.
std::string render_table(const Report& report);
std::string render_json(const Report& report);  // pretty-printed, keys in a fixed order
std::string render_html(const Report& report);  // one self-contained file, inline SVG only

}  // namespace backstop::reliability
