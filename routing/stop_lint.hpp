#pragma once
// Lint before send: checks a protective stop against intent and against the wire form of the
// broker it is going to, before it leaves. Each finding names the order, the field and the fix.
#include <optional>
#include <string>
#include <vector>

#include "brokers/broker.hpp"
#include "core/instrument.hpp"
#include "core/market_data.hpp"

namespace backstop {

struct StopLintPolicy {
  TimeInForce required_tif = TimeInForce::gtc;  // a DAY stop silently expires overnight
  bool outside_rth = false;                     // as configured for the route
  bool allow_marketable = false;                // a stop already through the market triggers at once
};

struct LintFinding {
  std::string client_order_id;
  std::string field;
  std::string problem;
  std::string fix;
  std::string to_string() const;  // "order X: field: problem; fix: ..."
};

std::vector<LintFinding> lint_stop(const OrderSpec& stop, const Instrument& instrument, const Broker& broker,
                                   const std::optional<Quote>& market, const StopLintPolicy& policy);

}  // namespace backstop
