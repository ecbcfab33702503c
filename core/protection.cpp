#include "core/protection.hpp"

namespace backstop {

const char* to_string(ProtectionPolicy p) {
  switch (p) {
    case ProtectionPolicy::verify: return "verify";
    case ProtectionPolicy::guard: return "guard";
    case ProtectionPolicy::local: return "local";
    case ProtectionPolicy::mirror: return "mirror";
  }
  return "?";
}

const char* to_string(TriggerMethod m) {
  switch (m) {
    case TriggerMethod::last: return "last";
    case TriggerMethod::bid_ask: return "bid_ask";
    case TriggerMethod::double_bid_ask: return "double_bid_ask";
  }
  return "?";
}

std::optional<ProtectionPolicy> protection_policy_from_string(std::string_view s) {
  for (auto p : {ProtectionPolicy::verify, ProtectionPolicy::guard, ProtectionPolicy::local, ProtectionPolicy::mirror})
    if (s == to_string(p)) return p;
  return std::nullopt;
}

std::optional<TriggerMethod> trigger_method_from_string(std::string_view s) {
  for (auto m : {TriggerMethod::last, TriggerMethod::bid_ask, TriggerMethod::double_bid_ask})
    if (s == to_string(m)) return m;
  return std::nullopt;
}

}  // namespace backstop
