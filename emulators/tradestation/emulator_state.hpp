#pragma once
// JSON for the emulator's own tables in its state file (Options::state_file, `--state FILE`):
// TradeStation's view of each order and the day statistics. Prices are exact units
// (Price::units), as in brokers/sim/venue_state.cpp. The readers throw nlohmann::json::exception
// or Error; the emulator adds the file's name.
#include <nlohmann/json.hpp>

#include "emulators/tradestation/wire_format.hpp"

namespace backstop::tradestation_emulator {

json ts_order_to_json(const TsOrder& o);
TsOrder ts_order_from_json(const json& j);

json day_stats_to_json(const DayStats& d);
DayStats day_stats_from_json(const json& j);

}  // namespace backstop::tradestation_emulator
