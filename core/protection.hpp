#pragma once
// The protection vocabulary shared by config and the stop guard (DESIGN.md "Protection
// policies" and "Acknowledged is not working").
#include <optional>
#include <string_view>

namespace backstop {

enum class ProtectionPolicy {
  verify,  // lint, verify, watch, alert; never act
  guard,   // as verify, and on a ghost stop cancel it and flatten with a market order, once
  local,   // no broker stop: Backstop holds the stop and sends a market order when triggered
  mirror,  // an offsetting stop at a second venue while the primary stop is unverified or down
};

// Which market prices decide that a stop should have triggered.
enum class TriggerMethod {
  last,            // the last trade price
  bid_ask,         // sell stops on the bid, buy stops on the ask
  double_bid_ask,  // two consecutive quotes through the stop on the bid (sells) or ask (buys)
};

const char* to_string(ProtectionPolicy p);
const char* to_string(TriggerMethod m);
std::optional<ProtectionPolicy> protection_policy_from_string(std::string_view s);
std::optional<TriggerMethod> trigger_method_from_string(std::string_view s);

}  // namespace backstop
