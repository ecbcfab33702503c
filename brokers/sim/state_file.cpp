#include "brokers/sim/state_file.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.hpp"

namespace backstop {

void write_state_text(const std::filesystem::path& path, std::string_view text) {
  const auto temp = std::filesystem::path(path.string() + ".new");
  {
    std::ofstream out(temp, std::ios::trunc);
    out << text << '\n';
    out.flush();
    if (!out) throw Error("cannot write state file " + temp.string() + ": " + std::strerror(errno));
  }
  std::error_code ec;
  std::filesystem::rename(temp, path, ec);
  if (ec) throw Error("cannot replace state file " + path.string() + ": " + ec.message());
}

void write_state_file(const std::filesystem::path& path, const nlohmann::json& state) {
  write_state_text(path, state.dump());
}

std::optional<std::string> read_state_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) {
    if (!std::filesystem::exists(path)) return std::nullopt;
    throw Error("cannot read state file " + path.string() + ": " + std::strerror(errno));
  }
  // Read into a string of the file's size (a stringstream grows by doubling: 8 MB for a 5 MB file).
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  std::string text(ec ? 0 : static_cast<std::size_t>(size), '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (in.bad()) throw Error("cannot read state file " + path.string() + ": " + std::strerror(errno));
  for (char buf[4096]; in.read(buf, sizeof buf) || in.gcount() > 0;) text.append(buf, static_cast<std::size_t>(in.gcount()));
  if (in.bad()) throw Error("cannot read state file " + path.string() + ": " + std::strerror(errno));
  return text;
}

std::optional<nlohmann::json> read_state_file(const std::filesystem::path& path) {
  auto text = read_state_text(path);
  if (!text) return std::nullopt;
  try {
    return nlohmann::json::parse(*text);
  } catch (const nlohmann::json::exception& e) {
    throw Error("state file " + path.string() + " is not JSON: " + e.what());
  }
}

nlohmann::json fault_log_to_json(const std::vector<FaultRecord>& log) {
  auto out = nlohmann::json::array();
  for (const auto& r : log)
    out.push_back({{"at", r.at}, {"kind", r.kind}, {"order_id", r.order_id}, {"client_order_id", r.client_order_id},
                   {"detail", r.detail}});
  return out;
}

std::vector<FaultRecord> fault_log_from_json(const nlohmann::json& j) {
  std::vector<FaultRecord> out;
  try {
    for (const auto& r : j)
      out.push_back({r.at("at").get<Timestamp>(), r.at("kind").get<std::string>(), r.at("order_id").get<std::string>(),
                     r.at("client_order_id").get<std::string>(), r.at("detail").get<std::string>()});
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("emulator state: fault log: ") + e.what());
  }
  return out;
}

}  // namespace backstop
