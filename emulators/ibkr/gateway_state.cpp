// The gateway emulator's durable state: what IBKR's back end keeps when the Client Portal
// Gateway process dies (the venue's orders and fills, the gateway's order ids and what it knows
// about each order, the emulator's own logs), written after every change and read back at start.
// Not kept, as a real gateway restart loses them: sessions (the restarted gateway logs in afresh,
// or waits for a login with --logged-out), WebSockets, order-reply confirmations still waiting,
// suppressed message ids, the positions cache.
#include <spdlog/spdlog.h>

#include "brokers/sim/state_file.hpp"
#include "brokers/sim/venue_state.hpp"
#include "core/error.hpp"
#include "emulators/ibkr/gateway_core.hpp"
#include "emulators/ibkr/gateway_records.hpp"

namespace backstop::ibkr_emulator {

namespace {
constexpr int kStateVersion = 1;
}

json GatewayCore::save_state_locked() const {
  json orders = json::array();
  for (const auto& ib_id : order_sequence_) {
    const OrderMeta& m = *orders_.at(ib_id);
    orders.push_back({{"ib_id", m.ib_id},
                      {"venue_id", m.venue_id},
                      {"coid", m.coid},
                      {"account", m.account},
                      {"conid", m.contract->conid},
                      {"order_type", m.order_type},
                      {"tif", m.tif},
                      {"outside_rth", m.outside_rth},
                      {"parent_ib_id", m.parent_ib_id},
                      {"lost", m.lost},
                      {"inactive", m.inactive},
                      {"pending_cancel", m.pending_cancel},
                      {"readback_stop", price_json(m.readback_stop)}});
  }
  return {{"version", kStateVersion},
          {"venue", venue_->save_state()},
          {"faults", fault_log_to_json(faults_->log())},
          {"orders", std::move(orders)},  // moved: an initializer list copies an lvalue
          {"used_coids", used_coids_},
          {"next_ib_id", next_ib_id_},
          {"next_internal_coid", next_internal_coid_},
          {"order_log", order_log_},
          {"event_log", event_log_}};
}

void GatewayCore::restore_state_locked(const json& state) {
  const std::string where = "IBKR emulator state file " + options_.state_file;
  std::map<std::string, std::unique_ptr<OrderMeta>> orders;
  std::vector<std::string> sequence;
  std::map<std::string, std::string> venue_to_ib;
  try {
    if (state.at("version").get<int>() != kStateVersion)
      throw Error("version " + state.at("version").dump() + ", this emulator writes " + std::to_string(kStateVersion));
    for (const auto& j : state.at("orders")) {
      auto m = std::make_unique<OrderMeta>();
      m->ib_id = j.at("ib_id").get<std::string>();
      m->venue_id = j.at("venue_id").get<std::string>();
      m->coid = j.at("coid").get<std::string>();
      m->account = j.at("account").get<std::string>();
      const auto conid = j.at("conid").get<std::int64_t>();
      m->contract = contract_by_conid(conid);
      if (!m->contract) throw Error("order " + m->ib_id + ": conid " + std::to_string(conid) + " is not in the contract table");
      m->order_type = j.at("order_type").get<std::string>();
      m->tif = j.at("tif").get<std::string>();
      m->outside_rth = j.at("outside_rth").get<bool>();
      m->parent_ib_id = j.at("parent_ib_id").get<std::string>();
      m->lost = j.at("lost").get<bool>();
      m->inactive = j.at("inactive").get<bool>();
      m->pending_cancel = j.at("pending_cancel").get<bool>();
      m->readback_stop = price_from(j, "readback_stop");
      if (!m->venue_id.empty()) venue_to_ib[m->venue_id] = m->ib_id;
      sequence.push_back(m->ib_id);
      orders[m->ib_id] = std::move(m);
    }
    venue_->restore_state(state.at("venue"));
    faults_->restore_log(fault_log_from_json(state.at("faults")));
    used_coids_ = state.at("used_coids").get<std::set<std::string>>();
    next_ib_id_ = state.at("next_ib_id").get<std::uint64_t>();
    next_internal_coid_ = state.at("next_internal_coid").get<std::uint64_t>();
    order_log_ = state.at("order_log");
    event_log_ = state.at("event_log");
  } catch (const json::exception& e) {
    throw Error(where + ": " + e.what());
  } catch (const Error& e) {
    throw Error(where + ": " + e.what());
  }
  orders_ = std::move(orders);
  order_sequence_ = std::move(sequence);
  venue_to_ib_ = std::move(venue_to_ib);
  // Cancels the gateway had accepted but not yet landed: the request had reached IBKR, so they
  // land as they would have.
  for (const auto& [ib_id, m] : orders_)
    if (m->pending_cancel) after(options_.cancel_delay, [this, id = ib_id] { land_cancel(id); });
  event("restarted", "state read back from " + options_.state_file + ": " + std::to_string(orders_.size()) + " orders");
}

bool GatewayCore::state_changed_locked() const {
  return tables_changed_ || venue_->changes() != written_.venue_changes || faults_->records() != written_.fault_records ||
         order_log_.size() != written_.order_log || event_log_.size() != written_.event_log ||
         orders_.size() != written_.orders;
}

std::optional<std::string> GatewayCore::persist_locked() {
  if (options_.state_file.empty() || !state_changed_locked()) return std::nullopt;
  try {
    write_state_file(options_.state_file, save_state_locked());
  } catch (const std::exception& e) {
    // written_ is left as it was: the state stays "changed" and the next locked operation writes
    // again. The caller holds the frames meanwhile; an HTTP request answers 500 with this.
    std::string why = "IBKR emulator state file " + options_.state_file + " not written: " + e.what();
    if (why != write_failure_)
      spdlog::error("{}; {} WebSocket frame(s) held until a write succeeds", why, outbox_.size());
    write_failure_ = why;
    return why;
  }
  written_ = {venue_->changes(), faults_->records(), order_log_.size(), event_log_.size(), orders_.size()};
  tables_changed_ = false;
  if (!write_failure_.empty()) {
    spdlog::info("IBKR emulator: state file {} written again; sending {} held frame(s)", options_.state_file,
                 outbox_.size());
    write_failure_.clear();
  }
  return std::nullopt;
}

void GatewayCore::deliver_outbox_locked() {
  auto out = std::move(outbox_);
  outbox_.clear();
  for (auto& o : out) {
    if (o.close)
      o.peer->close();
    else
      o.peer->send(std::move(o.text));
  }
}

}  // namespace backstop::ibkr_emulator
