#pragma once
// A simulated broker's durable state file (an emulator's, or the in-process venue's): one JSON
// document replaced whole (written beside it, then renamed over it), so that a process killed at
// any instant leaves either the previous state or the new one, never half of each. No fsync:
// what is modelled is the process dying (SIGKILL), which the page cache survives; a machine
// crash is not.
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "brokers/sim/fault_injector.hpp"

namespace backstop {

// Throws Error naming the path and the system's reason when it cannot be written.
void write_state_file(const std::filesystem::path& path, const nlohmann::json& state);
void write_state_text(const std::filesystem::path& path, std::string_view text);  // JSON text, as it is
// The file's text, for a reader that parses it itself (Venue::restore_state_text); nullopt when
// it does not exist; throws Error naming the path when it cannot be read.
std::optional<std::string> read_state_text(const std::filesystem::path& path);
// nullopt when the file does not exist (a first start); throws Error naming the path when it
// cannot be read or is not JSON.
std::optional<nlohmann::json> read_state_file(const std::filesystem::path& path);

// Fault records in the same file, so that an emulator's log outlives its process.
nlohmann::json fault_log_to_json(const std::vector<FaultRecord>& log);
std::vector<FaultRecord> fault_log_from_json(const nlohmann::json& j);  // throws Error

}  // namespace backstop
