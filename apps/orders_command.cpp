// `backstop orders`: lists the orders of a journal, for people or (--json) for scripts.
#include <iostream>

#include "apps/cli.hpp"
#include "apps/commands.hpp"
#include "apps/order_report.hpp"

namespace backstop {

namespace {
constexpr const char* kUsage = R"(usage: backstop orders --journal PATH [--json]

Lists every order in a journal with its state and lifecycle timestamps. With --json, prints a
JSON array: one object per order with its fields, "timestamps" (ISO-8601, one per state
reached: created_at, sent_at, submitted_at, filled_at, cancelled_at, ...), "transitions" and
"fills". The journal is opened read-only.
)";
}  // namespace

int orders_main(cli::Args& args) {
  if (args.flag("--help") || args.flag("-h")) {
    std::cout << kUsage;
    return 0;
  }
  const auto path = args.value("--journal");
  const bool json = args.flag("--json");
  args.expect_no_more();
  if (!path) throw cli::UsageError("--journal PATH is required");
  Journal journal(*path, JournalMode::read_only);
  if (json) {
    std::cout << journal_orders_json(journal).dump(2) << "\n";
  } else {
    const auto orders = journal.orders();
    std::cout << orders.size() << " orders in " << *path << "\n";
    print_order_table(std::cout, orders, 0);
  }
  return 0;
}

}  // namespace backstop
