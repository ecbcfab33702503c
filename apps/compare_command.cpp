// `backstop compare`: broker reliability side by side, computed from a journal's facts.
#include <fstream>
#include <iostream>

#include "apps/cli.hpp"
#include "apps/commands.hpp"
#include "config/config.hpp"
#include "core/error.hpp"
#include "reliability/reliability.hpp"

namespace backstop {

namespace {
constexpr const char* kUsage = R"(usage: backstop compare --journal PATH [--from T] [--to T] [--format table|json|html]
                        [--out FILE] [--config FILE]

Compares the brokers of a journal: submit-to-ack latency, stop verification (latency and
failures by kind), ghost stops, stop trigger delay and slippage, market order fill latency,
rejects by reason, cancels and replaces that failed, stream and API trouble, reconciliation
divergences, time in each health state, and dual-run pairs. Every figure is computed from the
journal's timestamped facts; one the journal cannot give is shown as "not recorded", not 0.
Distributions show count, median, p95 and p99 (nearest rank). The journal is opened read-only.

  --journal PATH   journal to read
  --from T         only facts at or after T (ISO-8601, e.g. 2026-11-24T02:10:58Z)
  --to T           only facts at or before T
  --format F       table (default), json (schema: reliability/REPORT_SCHEMA.md) or html (one
                   self-contained file with inline SVG charts)
  --out FILE       write the report to FILE instead of standard output
  --config FILE    config whose instruments give tick sizes for slippage (default: the embedded
                   config/examples/sim.json)
)";

std::optional<Timestamp> timestamp_option(cli::Args& args, const std::string& name) {
  const auto text = args.value(name);
  if (!text) return std::nullopt;
  try {
    return parse_timestamp(*text);
  } catch (const std::exception& e) {
    throw cli::UsageError(name + ": " + e.what());  // names the text and the expected form
  }
}
}  // namespace

int compare_main(cli::Args& args) {
  if (args.flag("--help") || args.flag("-h")) {
    std::cout << kUsage;
    return 0;
  }
  const auto path = args.value("--journal");
  reliability::ReportOptions options;
  options.window.from = timestamp_option(args, "--from");
  options.window.to = timestamp_option(args, "--to");
  const std::string format = args.value("--format").value_or("table");
  const auto out_path = args.value("--out");
  const auto config_path = args.value("--config");
  args.expect_no_more();
  if (!path) throw cli::UsageError("--journal PATH is required");
  if (format != "table" && format != "json" && format != "html")
    throw cli::UsageError("--format: unknown format \"" + format + "\" (use table, json or html)");
  if (options.window.from && options.window.to && *options.window.from > *options.window.to)
    throw cli::UsageError("--from " + format_timestamp(*options.window.from) + " is after --to " +
                          format_timestamp(*options.window.to));

  // The journal keeps prices, not tick sizes: slippage in ticks needs the instruments.
  const Config config = config_path ? load_config_file(*config_path).value() : default_sim_config();
  for (const auto& inst : config.instruments) options.tick_sizes[inst.symbol] = inst.tick_size;
  options.journal_name = *path;

  Journal journal(*path, JournalMode::read_only);
  const auto report = reliability::build_report(reliability::read_facts(journal), options);
  const std::string text = format == "json"   ? reliability::render_json(report)
                           : format == "html" ? reliability::render_html(report)
                                              : reliability::render_table(report);
  if (!out_path) {
    std::cout << text;
    return 0;
  }
  std::ofstream out(*out_path, std::ios::binary | std::ios::trunc);
  if (out) out << text;
  if (!out || !out.flush()) throw Error("--out " + *out_path + ": cannot write the report there");
  std::cerr << "wrote " << format << " report to " << *out_path << "\n";
  return 0;
}

}  // namespace backstop
