#pragma once
// The TradeStation placement answer read through a parsed document: what
// TradeStationBroker::place_result did before read_place_answer (a SAX reader) replaced it. Kept
// as the reference both the unit tests (tests/tradestation/wire_text_test.cpp) and the fuzz
// target (fuzz/fuzz_ts_wire.cpp) compare the SAX reader with. Header-only: the fuzz build
// compiles it with clang, outside this tree's CMake targets.
#include <string>

#include <nlohmann/json.hpp>

#include "brokers/tradestation/ts_wire.hpp"

namespace backstop::tradestation::reference {

inline PlaceAnswer document_place_answer(const std::string& body) {
  using nlohmann::json;
  PlaceAnswer out;
  json j;
  try {
    j = json::parse(body);
  } catch (const std::exception&) {
    return out;
  }
  out.parsed = true;
  if (j.is_object() && j.contains("Errors") && j["Errors"].is_array())
    for (const auto& e : j["Errors"]) {
      const std::string m = json_string(e, "Message").empty() ? json_string(e, "Error") : json_string(e, "Message");
      out.errors += (out.errors.empty() ? "" : "; ") + m;
    }
  if (j.is_object() && j.contains("Orders") && j["Orders"].is_array())
    for (const auto& o : j["Orders"]) {
      const std::string e = json_string(o, "Error");
      if (!e.empty()) {
        const std::string m = json_string(o, "Message");
        out.errors += (out.errors.empty() ? "" : "; ") + (m.empty() ? e : m);
      } else {
        out.order_ids.push_back(json_string(o, "OrderID"));
      }
    }
  return out;
}

}  // namespace backstop::tradestation::reference
