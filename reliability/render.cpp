// The three renderings of a reliability report: a terminal table (brokers as columns), stable
// JSON (REPORT_SCHEMA.md) and one self-contained HTML file with inline SVG charts.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <set>

#include "reliability/reliability.hpp"

namespace backstop::reliability {

namespace {

constexpr const char* kNotRecorded = "not recorded";

std::string ms(double ns) { return fmt::format("{:.3f}", ns / 1e6); }

// Ticks are whole numbers unless a fill landed off the tick grid; show decimals only then.
std::string ticks(double t) {
  if (t == std::floor(t)) return fmt::format("{}", static_cast<std::int64_t>(t));
  return fmt::format("{:.2f}", t);
}

std::string count(std::int64_t n) { return std::to_string(n); }
std::string count(const RecordedCount& n) { return n ? std::to_string(*n) : kNotRecorded; }

// ---------------------------------------------------------------- the rows shared by table/HTML

struct Row {
  std::string label;
  std::vector<std::string> cells;  // one per broker; empty for a section heading
};

class RowBuilder {
 public:
  explicit RowBuilder(const Report& r) : r_(r) {}
  void section(const std::string& title) { rows_.push_back({title, {}}); }
  template <typename F>
  void row(const std::string& label, F cell) {
    Row row{"  " + label, {}};
    for (const auto& b : r_.brokers) row.cells.push_back(cell(r_.figures.at(b)));
    rows_.push_back(std::move(row));
  }
  // n, median, p95, p99 of a distribution, formatted by `fmt_value`.
  template <typename Get, typename Fmt>
  void distribution(const std::string& label, const std::string& unit, Get get, Fmt fmt_value) {
    row(label + ": n", [&](const BrokerFigures& f) { return count(static_cast<std::int64_t>(get(f).count())); });
    for (auto [name, pct] : {std::pair{"median", 50}, std::pair{"p95", 95}, std::pair{"p99", 99}}) {
      row("  " + std::string(name) + " " + unit, [&](const BrokerFigures& f) {
        auto v = nearest_rank(get(f).samples, pct);
        return v ? fmt_value(*v) : std::string("-");
      });
    }
  }
  // One row per key found at any broker (e.g. each reject reason), 0 where a broker has none.
  template <typename Get>
  void keyed(const std::string& prefix, Get get) {
    std::set<std::string> keys;
    for (const auto& b : r_.brokers)
      for (const auto& [k, v] : get(r_.figures.at(b))) keys.insert(k);
    for (const auto& k : keys) {
      const std::string shown = k.size() > 48 ? k.substr(0, 45) + "..." : k;
      row(prefix + shown, [&](const BrokerFigures& f) {
        const auto& m = get(f);
        auto it = m.find(k);
        return count(it == m.end() ? 0 : it->second);
      });
    }
  }
  std::vector<Row> take() { return std::move(rows_); }

 private:
  const Report& r_;
  std::vector<Row> rows_;
};

std::vector<Row> report_rows(const Report& r) {
  RowBuilder b(r);
  b.section("Orders");
  b.row("orders created", [](const BrokerFigures& f) { return count(f.orders_created); });
  b.distribution("submit->ack", "ms", [](const BrokerFigures& f) -> const Distribution& { return f.submit_to_ack; }, ms);
  b.row("rejected", [](const BrokerFigures& f) { return count(f.rejected); });
  b.keyed("  reject: ", [](const BrokerFigures& f) -> const auto& { return f.rejects_by_reason; });
  b.row("failed locally (never sent)", [](const BrokerFigures& f) { return count(f.failed_locally); });
  b.row("unknown outcomes (reply lost)", [](const BrokerFigures& f) { return count(f.unknown_outcomes); });

  b.section("Protective stops");
  b.row("stops verified by read-back", [](const BrokerFigures& f) { return count(f.stops_verified); });
  b.distribution("ack->verified", "ms", [](const BrokerFigures& f) -> const Distribution& { return f.ack_to_verified; }, ms);
  for (const auto& kind : {"mismatch", "missing", "timeout"})
    b.row(std::string("verification ") + kind,
          [&](const BrokerFigures& f) { return count(f.verification_failures.at(kind)); });
  b.row("ghost stops", [](const BrokerFigures& f) { return count(f.ghost_stops); });
  b.distribution("crossed->ghost declared", "ms",
                 [](const BrokerFigures& f) -> const Distribution& { return f.ghost_detection_delay; }, ms);
  b.row("stops crossed by price", [](const BrokerFigures& f) { return count(f.stops_crossed); });
  b.row("stops triggered (broker said)", [](const BrokerFigures& f) { return count(f.stops_triggered); });
  b.distribution("crossed->stop fill", "ms",
                 [](const BrokerFigures& f) -> const Distribution& { return f.stop_trigger_delay; }, ms);
  b.distribution("stop slippage", "ticks",
                 [](const BrokerFigures& f) -> const Distribution& { return f.stop_slippage_ticks; }, ticks);

  b.section("Market orders");
  b.distribution("sent->first fill", "ms",
                 [](const BrokerFigures& f) -> const Distribution& { return f.market_fill_latency; }, ms);
  b.row("slippage", [](const BrokerFigures& f) {
    return f.market_slippage_ticks ? count(static_cast<std::int64_t>(f.market_slippage_ticks->count()))
                                   : std::string(kNotRecorded);
  });

  b.section("Cancels and replaces");
  b.row("cancel requests", [](const BrokerFigures& f) { return count(f.cancel_requests); });
  b.row("cancelled", [](const BrokerFigures& f) { return count(f.cancelled); });
  b.row("cancel failed", [](const BrokerFigures& f) { return count(f.cancel_failures); });
  b.distribution("cancel request->cancelled", "ms",
                 [](const BrokerFigures& f) -> const Distribution& { return f.cancel_latency; }, ms);
  b.row("replace requests", [](const BrokerFigures& f) { return count(f.replace_requests); });
  b.keyed("replace ", [](const BrokerFigures& f) -> const auto& { return f.replace_failures; });

  b.section("Streams and API");
  b.row("stream gaps", [](const BrokerFigures& f) { return count(f.stream_gaps); });
  b.row("reconnects", [](const BrokerFigures& f) { return count(f.reconnects); });
  b.row("HTTP 429", [](const BrokerFigures& f) { return count(f.http_429); });
  b.row("API errors", [](const BrokerFigures& f) { return count(f.api_errors); });
  b.row("events for unknown orders", [](const BrokerFigures& f) { return count(f.unknown_order_events); });
  b.row("fills for unknown orders", [](const BrokerFigures& f) { return count(f.unknown_fills); });
  b.row("overfills refused", [](const BrokerFigures& f) { return count(f.overfills_refused); });

  b.section("Reconciliation");
  b.row("divergences", [](const BrokerFigures& f) {
    std::int64_t n = 0;
    for (const auto& [k, v] : f.divergences_by_kind) n += v;
    return count(n);
  });
  b.keyed("  ", [](const BrokerFigures& f) -> const auto& { return f.divergences_by_kind; });

  b.section("Health");
  const std::int64_t span = r.span_to - r.span_from;
  for (const char* state : {"up", "degraded", "down"}) {
    b.row(std::string("time ") + state, [&](const BrokerFigures& f) {
      if (!f.time_in_health_state) return std::string(kNotRecorded);
      auto it = f.time_in_health_state->find(state);
      const std::int64_t t = it == f.time_in_health_state->end() ? 0 : it->second;
      return fmt::format("{:.3f}s ({:.1f}%)", t / 1e9, span > 0 ? 100.0 * static_cast<double>(t) / span : 0.0);
    });
  }
  b.row("health changes", [](const BrokerFigures& f) { return count(f.health_changes); });
  b.row("circuit opened", [](const BrokerFigures& f) { return count(f.circuit_opens); });
  b.row("routes switched to it", [](const BrokerFigures& f) { return count(f.route_switches_in); });

  b.section("Dual runs");
  b.row("pairs", [](const BrokerFigures& f) { return count(f.dual_pairs); });
  b.row("rejected alone", [](const BrokerFigures& f) { return count(f.dual_one_sided_rejects); });
  return b.take();
}

std::string window_text(const Report& r) {
  return fmt::format("window {} .. {} (journal facts {} .. {})", r.window.from ? format_timestamp(*r.window.from) : "start",
                     r.window.to ? format_timestamp(*r.window.to) : "end", format_timestamp(r.span_from),
                     format_timestamp(r.span_to));
}

// ---------------------------------------------------------------- JSON

using ojson = nlohmann::ordered_json;

// `integral`: nanoseconds are whole numbers and are written as JSON integers.
ojson dist_json(const Distribution& d, bool integral) {
  auto v = [&](std::optional<double> x) -> ojson {
    if (!x) return nullptr;
    if (integral) return static_cast<std::int64_t>(*x);
    return *x;
  };
  ojson j;
  j["count"] = d.count();
  j["median"] = v(d.median());
  j["p95"] = v(d.p95());
  j["p99"] = v(d.p99());
  j["min"] = v(d.samples.empty() ? std::nullopt : std::optional<double>(d.samples.front()));
  j["max"] = v(d.samples.empty() ? std::nullopt : std::optional<double>(d.samples.back()));
  return j;
}

template <typename M>
ojson map_json(const M& m) {
  ojson j = ojson::object();
  for (const auto& [k, v] : m) j[k] = v;
  return j;
}

ojson count_json(const RecordedCount& c) { return c ? ojson(*c) : ojson(nullptr); }

ojson figures_json(const BrokerFigures& f) {
  ojson j;
  j["orders"] = {{"created", f.orders_created},
                 {"submit_to_ack_ns", dist_json(f.submit_to_ack, true)},
                 {"rejected", f.rejected},
                 {"rejects_by_reason", map_json(f.rejects_by_reason)},
                 {"failed_locally", f.failed_locally},
                 {"unknown_outcomes", f.unknown_outcomes}};
  j["stops"] = {{"verified", f.stops_verified},
                {"ack_to_verified_ns", dist_json(f.ack_to_verified, true)},
                {"verification_failures", map_json(f.verification_failures)},
                {"ghost_stops", f.ghost_stops},
                {"ghost_detection_delay_ns", dist_json(f.ghost_detection_delay, true)},
                {"crossed", f.stops_crossed},
                {"triggered", f.stops_triggered},
                {"trigger_delay_ns", dist_json(f.stop_trigger_delay, true)},
                {"slippage_ticks", dist_json(f.stop_slippage_ticks, false)}};
  j["market_orders"] = {{"fill_latency_ns", dist_json(f.market_fill_latency, true)},
                        {"slippage_ticks", f.market_slippage_ticks ? dist_json(*f.market_slippage_ticks, false)
                                                                   : ojson(nullptr)}};
  j["cancels"] = {{"requested", f.cancel_requests},
                  {"cancelled", f.cancelled},
                  {"failed", f.cancel_failures},
                  {"latency_ns", dist_json(f.cancel_latency, true)}};
  j["replaces"] = {{"requested", f.replace_requests}, {"failed_by_outcome", map_json(f.replace_failures)}};
  j["streams"] = {{"stream_gaps", count_json(f.stream_gaps)},
                  {"reconnects", count_json(f.reconnects)},
                  {"http_429", count_json(f.http_429)},
                  {"api_errors", count_json(f.api_errors)},
                  {"unknown_order_events", f.unknown_order_events},
                  {"unknown_fills", f.unknown_fills},
                  {"overfills_refused", f.overfills_refused}};
  j["divergences_by_kind"] = map_json(f.divergences_by_kind);
  j["health"] = {{"time_in_state_ns", f.time_in_health_state ? map_json(*f.time_in_health_state) : ojson(nullptr)},
                 {"changes", f.health_changes},
                 {"circuit_opens", f.circuit_opens},
                 {"route_switches_in", f.route_switches_in}};
  j["dual_run"] = {{"pairs", f.dual_pairs}, {"one_sided_rejects", f.dual_one_sided_rejects}};
  return j;
}

// ---------------------------------------------------------------- HTML

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

const char* const kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};
const char* color(std::size_t i) { return kPalette[i % std::size(kPalette)]; }

// A strip chart: every sample of one latency as a dot, one row per broker, with the median, p95
// and p99 marked, so that a broker's tail is visible next to another's.
std::string latency_svg(const Report& r, const std::string& title,
                        const Distribution& (*get)(const BrokerFigures&)) {
  double lo = 0, hi = 0;
  std::size_t total = 0;
  for (const auto& b : r.brokers) {
    const auto& d = get(r.figures.at(b));
    total += d.count();
    if (d.count()) lo = std::min(lo, d.samples.front()), hi = std::max(hi, d.samples.back());
  }
  std::string out = "<h3>" + escape(title) + "</h3>\n";
  if (total == 0) return out + "<p class=\"none\">no samples in this window</p>\n";
  if (hi <= lo) hi = lo + 1e6;  // one value (or all equal): give the axis a 1 ms width
  const int left = 150, width = 600, row_h = 44, top = 10;
  const int height = top + row_h * static_cast<int>(r.brokers.size()) + 30;
  auto x = [&](double v) { return left + (v - lo) / (hi - lo) * width; };
  out += fmt::format("<svg class=\"chart\" width=\"{}\" height=\"{}\" role=\"img\" aria-label=\"{}\">\n",
                     left + width + 40, height, escape(title));
  for (std::size_t i = 0; i < r.brokers.size(); ++i) {
    const auto& d = get(r.figures.at(r.brokers[i]));
    const int cy = top + row_h * static_cast<int>(i) + row_h / 2;
    out += fmt::format("<text x=\"4\" y=\"{}\" class=\"lbl\">{} (n={})</text>\n", cy + 4, escape(r.brokers[i]), d.count());
    out += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" class=\"grid\"/>\n", left, left + width, cy, cy);
    for (std::size_t k = 0; k < d.samples.size(); ++k) {
      // Deterministic vertical spread so that equal samples do not hide each other.
      const int jitter = static_cast<int>((k * 7) % 13) - 6;
      out += fmt::format("<circle cx=\"{:.1f}\" cy=\"{}\" r=\"2.5\" fill=\"{}\" fill-opacity=\"0.55\"/>\n",
                         x(d.samples[k]), cy + jitter, color(i));
    }
    const auto p50 = d.median(), p95 = d.p95(), p99 = d.p99();
    for (auto [name, v] : {std::pair{"p50", p50}, std::pair{"p95", p95}, std::pair{"p99", p99}}) {
      if (!v) continue;
      // Equal percentiles (few samples) share one mark, labelled once by the highest.
      if ((name == std::string("p50") && (v == p95 || v == p99)) || (name == std::string("p95") && v == p99)) continue;
      out += fmt::format("<line x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1}\" y2=\"{2}\" class=\"pct\"><title>{3} {4} ms</title></line>\n",
                         x(*v), cy - 14, cy + 14, name, ms(*v));
      out += fmt::format("<text x=\"{:.1f}\" y=\"{}\" class=\"pctl\">{}</text>\n", x(*v) - 8, cy - 16, name);
    }
  }
  const int axis_y = top + row_h * static_cast<int>(r.brokers.size()) + 4;
  for (int t = 0; t <= 4; ++t) {
    const double v = lo + (hi - lo) * t / 4;
    out += fmt::format("<text x=\"{:.1f}\" y=\"{}\" class=\"axis\">{} ms</text>\n", x(v) - 14, axis_y + 14, ms(v));
  }
  return out + "</svg>\n";
}

// Every journaled event as a tick on a time axis, one row per broker and kind.
std::string timeline_svg(const Report& r) {
  std::string out = "<h3>Events over time</h3>\n";
  std::map<std::pair<std::string, std::string>, std::vector<Timestamp>> rows;
  for (const auto& e : r.timeline) rows[{e.broker, e.kind}].push_back(e.at);
  if (rows.empty()) return out + "<p class=\"none\">no events in this window</p>\n";
  const double span = std::max<double>(1.0, static_cast<double>(r.span_to - r.span_from));
  const int left = 290, width = 560, row_h = 18, top = 6;
  const int height = top + row_h * static_cast<int>(rows.size()) + 28;
  out += fmt::format("<svg class=\"chart\" width=\"{}\" height=\"{}\" role=\"img\" aria-label=\"events over time\">\n",
                     left + width + 30, height);
  int i = 0;
  for (const auto& [key, times] : rows) {
    const int cy = top + row_h * i + row_h / 2;
    const auto broker_index = static_cast<std::size_t>(
        std::find(r.brokers.begin(), r.brokers.end(), key.first) - r.brokers.begin());
    out += fmt::format("<text x=\"4\" y=\"{}\" class=\"lbl\">{} &#183; {} ({})</text>\n", cy + 4, escape(key.first),
                       escape(key.second), times.size());
    out += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" class=\"grid\"/>\n", left, left + width, cy, cy);
    for (Timestamp t : times) {
      const double px = left + static_cast<double>(t - r.span_from) / span * width;
      out += fmt::format("<line x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1}\" y2=\"{2}\" stroke=\"{3}\" stroke-width=\"1.5\"/>\n",
                         px, cy - 6, cy + 6, color(broker_index));
    }
    ++i;
  }
  const int axis_y = top + row_h * static_cast<int>(rows.size()) + 4;
  for (int t = 0; t <= 4; ++t)
    out += fmt::format("<text x=\"{:.1f}\" y=\"{}\" class=\"axis\">+{:.1f}s</text>\n", left + width * t / 4.0 - 10,
                       axis_y + 14, span * t / 4 / 1e9);
  return out + "</svg>\n";
}

constexpr const char* kStyle = R"css(
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 17px; margin-top: 28px; } h3 { font-size: 14px; margin: 18px 0 4px; }
table { border-collapse: collapse; font-size: 13px; }
td, th { padding: 2px 10px; border-bottom: 1px solid #eee; text-align: right; white-space: nowrap; }
td:first-child, th:first-child { text-align: left; }
tr.section td { font-weight: bold; background: #f4f4f4; }
.chart text { font-size: 11px; fill: #333; }
.chart .axis { fill: #777; } .chart .pctl { font-size: 9px; fill: #555; }
.chart .grid { stroke: #ddd; } .chart .pct { stroke: #000; stroke-width: 1.2; }
.none { color: #888; font-style: italic; }
.nr { color: #999; }
)css";

const Distribution& get_submit(const BrokerFigures& f) { return f.submit_to_ack; }
const Distribution& get_verified(const BrokerFigures& f) { return f.ack_to_verified; }
const Distribution& get_trigger(const BrokerFigures& f) { return f.stop_trigger_delay; }
const Distribution& get_ghost(const BrokerFigures& f) { return f.ghost_detection_delay; }
const Distribution& get_market(const BrokerFigures& f) { return f.market_fill_latency; }
const Distribution& get_cancel(const BrokerFigures& f) { return f.cancel_latency; }

}  // namespace

std::string render_table(const Report& r) {
  const auto rows = report_rows(r);
  std::size_t label_w = 0;
  std::vector<std::size_t> col_w;
  for (const auto& b : r.brokers) col_w.push_back(std::max<std::size_t>(b.size(), 8));
  for (const auto& row : rows) {
    label_w = std::max(label_w, row.label.size());
    for (std::size_t i = 0; i < row.cells.size(); ++i) col_w[i] = std::max(col_w[i], row.cells[i].size());
  }
  std::string out = "Broker reliability: " + r.journal + "\n" + window_text(r) + "\n\n";
  out += fmt::format("{:<{}}", "", label_w);
  for (std::size_t i = 0; i < r.brokers.size(); ++i) out += fmt::format("  {:>{}}", r.brokers[i], col_w[i]);
  out += "\n";
  for (const auto& row : rows) {
    if (row.cells.empty()) {
      out += row.label + "\n";
      continue;
    }
    out += fmt::format("{:<{}}", row.label, label_w);
    for (std::size_t i = 0; i < row.cells.size(); ++i) out += fmt::format("  {:>{}}", row.cells[i], col_w[i]);
    out += "\n";
  }
  if (r.brokers.empty()) out += "(no broker activity in this journal)\n";
  if (!r.pairs.empty()) {
    out += "\nDual-run pairs (" + std::to_string(r.pairs.size()) + "):\n";
    for (const auto& p : r.pairs) {
      out += "  " + p.pair + " " + p.symbol + ":";
      for (const auto& s : p.sides) {
        out += " " + s.broker + " " + (s.in_journal ? s.state : "not in journal");
        if (s.ack_latency_ns) out += " ack " + ms(static_cast<double>(*s.ack_latency_ns)) + "ms";
        if (s.average_fill_price) out += " @" + s.average_fill_price->to_string();
        out += ";";
      }
      for (const auto& [b, t] : p.fill_price_diff_ticks) out += " " + b + " price diff " + ticks(t) + " ticks;";
      for (const auto& [b, t] : p.fill_time_diff_ns) out += " " + b + " fill time diff " + ms(static_cast<double>(t)) + "ms;";
      for (const auto& b : p.rejected_alone) out += " REJECTED ALONE at " + b + ";";
      out += "\n";
    }
  }
  if (!r.not_recorded.empty()) {
    out += "\nNot recorded in this journal:\n";
    for (const auto& n : r.not_recorded) out += "  " + n + "\n";
  }
  if (!r.warnings.empty()) {
    out += "\nWarnings:\n";
    for (const auto& w : r.warnings) out += "  " + w + "\n";
  }
  return out;
}

std::string render_json(const Report& r) {
  ojson j;
  j["schema_version"] = r.schema_version;
  j["journal"] = r.journal;
  j["window"] = {{"from", r.window.from ? ojson(format_timestamp(*r.window.from)) : ojson(nullptr)},
                 {"to", r.window.to ? ojson(format_timestamp(*r.window.to)) : ojson(nullptr)}};
  j["span"] = {{"from", format_timestamp(r.span_from)},
               {"to", format_timestamp(r.span_to)},
               {"duration_ns", r.span_to - r.span_from}};
  j["brokers"] = r.brokers;
  ojson figures = ojson::object();
  for (const auto& b : r.brokers) figures[b] = figures_json(r.figures.at(b));
  j["figures"] = figures;
  ojson pairs = ojson::array();
  for (const auto& p : r.pairs) {
    ojson sides = ojson::array();
    for (const auto& s : p.sides)
      sides.push_back({{"broker", s.broker},
                       {"client_order_id", s.client_order_id},
                       {"in_journal", s.in_journal},
                       {"state", s.in_journal ? ojson(s.state) : ojson(nullptr)},
                       {"ack_latency_ns", s.ack_latency_ns ? ojson(*s.ack_latency_ns) : ojson(nullptr)},
                       {"first_fill_at", s.first_fill_at ? ojson(format_timestamp(*s.first_fill_at)) : ojson(nullptr)},
                       {"average_fill_price",
                        s.average_fill_price ? ojson(s.average_fill_price->to_string()) : ojson(nullptr)}});
    pairs.push_back({{"pair", p.pair},
                     {"at", format_timestamp(p.at)},
                     {"symbol", p.symbol},
                     {"sides", sides},
                     {"fill_price_diff_ticks", map_json(p.fill_price_diff_ticks)},
                     {"fill_time_diff_ns", map_json(p.fill_time_diff_ns)},
                     {"rejected_alone", p.rejected_alone}});
  }
  j["dual_pairs"] = pairs;
  j["not_recorded"] = r.not_recorded;
  j["warnings"] = r.warnings;
  return j.dump(2) + "\n";
}

std::string render_html(const Report& r) {
  std::string out = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Backstop broker reliability</title>\n<style>";
  out += kStyle;
  out += "</style>\n</head>\n<body>\n<h1>Broker reliability</h1>\n";
  out += "<p>Journal <code>" + escape(r.journal) + "</code><br>" + escape(window_text(r)) + "</p>\n";

  out += "<h2>Comparison</h2>\n<table>\n<tr><th>metric</th>";
  for (const auto& b : r.brokers) out += "<th>" + escape(b) + "</th>";
  out += "</tr>\n";
  for (const auto& row : report_rows(r)) {
    if (row.cells.empty()) {
      out += fmt::format("<tr class=\"section\"><td colspan=\"{}\">{}</td></tr>\n", r.brokers.size() + 1, escape(row.label));
      continue;
    }
    // Keep the table's indentation: HTML would collapse the leading spaces.
    const std::size_t indent = row.label.find_first_not_of(' ');
    out += fmt::format("<tr><td style=\"padding-left:{}em\">", 0.6 * static_cast<double>(indent)) +
           escape(row.label.substr(indent)) + "</td>";
    for (const auto& c : row.cells) out += (c == kNotRecorded ? "<td class=\"nr\">" : "<td>") + escape(c) + "</td>";
    out += "</tr>\n";
  }
  out += "</table>\n";

  out += "<h2>Latency distributions</h2>\n";
  out += latency_svg(r, "Submit to acknowledgement", get_submit);
  out += latency_svg(r, "Stop acknowledgement to verified by read-back", get_verified);
  out += latency_svg(r, "Stop crossed by price to its first fill", get_trigger);
  out += latency_svg(r, "Ghost stop: price crossed to declared", get_ghost);
  out += latency_svg(r, "Market order sent to first fill", get_market);
  out += latency_svg(r, "Cancel request to cancelled", get_cancel);

  out += "<h2>Timeline</h2>\n" + timeline_svg(r);

  if (!r.pairs.empty()) {
    out += "<h2>Dual-run pairs</h2>\n<table>\n<tr><th>pair</th><th>symbol</th><th>broker</th><th>state</th><th>ack ms</th>"
           "<th>avg fill</th><th>fill time vs first</th><th>price vs first (ticks)</th></tr>\n";
    for (const auto& p : r.pairs) {
      for (const auto& s : p.sides) {
        std::string time_diff = "-", price_diff = "-";  // the first side is the reference
        if (auto it = p.fill_time_diff_ns.find(s.broker); it != p.fill_time_diff_ns.end())
          time_diff = ms(static_cast<double>(it->second)) + " ms";
        if (auto it = p.fill_price_diff_ticks.find(s.broker); it != p.fill_price_diff_ticks.end())
          price_diff = ticks(it->second);
        const bool alone = std::find(p.rejected_alone.begin(), p.rejected_alone.end(), s.broker) != p.rejected_alone.end();
        out += "<tr><td>" + escape(p.pair) + "</td><td>" + escape(p.symbol) + "</td><td>" + escape(s.broker) + "</td><td>" +
               escape(s.in_journal ? s.state : "not in journal") + (alone ? " (alone)" : "") + "</td><td>" +
               (s.ack_latency_ns ? ms(static_cast<double>(*s.ack_latency_ns)) : "-") + "</td><td>" +
               (s.average_fill_price ? s.average_fill_price->to_string() : "-") + "</td><td>" + time_diff + "</td><td>" +
               price_diff + "</td></tr>\n";
      }
    }
    out += "</table>\n";
  }
  if (!r.not_recorded.empty()) {
    out += "<h2>Not recorded in this journal</h2>\n<ul>\n";
    for (const auto& n : r.not_recorded) out += "<li>" + escape(n) + "</li>\n";
    out += "</ul>\n";
  }
  if (!r.warnings.empty()) {
    out += "<h2>Warnings</h2>\n<ul>\n";
    for (const auto& w : r.warnings) out += "<li>" + escape(w) + "</li>\n";
    out += "</ul>\n";
  }
  return out + "</body>\n</html>\n";
}

}  // namespace backstop::reliability
