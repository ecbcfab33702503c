#pragma once
// JSON for the simulated venue's records, shared by Venue::save_state/restore_state and by the
// emulators' own state files, which keep venue orders of their own (venue_state.cpp). Prices are
// exact units (Price::units). Readers throw nlohmann::json::exception for a missing or mistyped
// key and Error for an unknown enum text.
#include <optional>

#include <nlohmann/json.hpp>

#include "brokers/sim/venue.hpp"

namespace backstop {

nlohmann::json price_json(const std::optional<Price>& p);  // units, or null
std::optional<Price> price_from(const nlohmann::json& j, const char* key);

nlohmann::json venue_order_to_json(const VenueOrder& o);
VenueOrder venue_order_from_json(const nlohmann::json& j);

}  // namespace backstop
