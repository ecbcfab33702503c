#pragma once
// GatewayCore's internal records, shared by its translation units (gateway_core.cpp,
// gateway_state.cpp) and by nothing else.
#include "emulators/ibkr/gateway_core.hpp"

namespace backstop::ibkr_emulator {

struct GatewayCore::Ticket {
  json raw;
  std::string account;
  const IbkrEmulatorContract* contract = nullptr;
  std::string coid;         // as sent (may be empty: bracket children carry none)
  std::string parent_coid;  // parentId as sent
  bool single_group = false;
  std::string order_type;  // MKT, LMT, STP, STOP_LIMIT
  std::string tif;         // DAY, GTC, IOC
  bool outside_rth = false;
  OrderSpec spec;  // what the venue gets; client_order_id is the emulator's own
};

struct GatewayCore::OrderMeta {
  std::string ib_id;
  std::string venue_id;  // empty for lost orders
  std::string coid;
  std::string account;
  const IbkrEmulatorContract* contract = nullptr;
  std::string order_type;
  std::string tif;
  bool outside_rth = false;
  std::string parent_ib_id;
  bool lost = false;
  bool inactive = false;
  bool pending_cancel = false;
  // Fault ibkr_alter_stop_readback: the stop price every read shows (one tick away from what the
  // venue holds); unset = the truth.
  std::optional<Price> readback_stop;
};

struct GatewayCore::PendingReply {
  std::string id;
  bool modify = false;
  std::string account;
  std::string target_ib_id;  // modify only
  std::vector<Ticket> tickets;
  std::deque<std::string> prompts;
  Clock::time_point expires{};
};

struct GatewayCore::WsClient {
  std::shared_ptr<WsPeer> peer;
  bool session_ok = false;
  bool ready = false;
  bool dead = false;  // fault: heartbeats and tic answered, subscriptions silent
  std::uint64_t generation = 0;
  bool sor = false;
  std::map<std::string, json> sor_base;  // per order id: the row as this client last saw it
  std::map<std::int64_t, std::vector<std::string>> smd;
};

}  // namespace backstop::ibkr_emulator
