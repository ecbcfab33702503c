#pragma once
// The IBKR gateway emulator's behaviour, free of any networking: HTTP requests in, responses
// out; WebSocket frames in, frames out through WsPeer. gateway_server.cpp (Boost.Beast) is only
// transport. One mutex guards the venue and every table here.
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "brokers/sim/fault_injector.hpp"
#include "brokers/sim/price_path.hpp"
#include "brokers/sim/venue.hpp"
#include "emulators/ibkr/ibkr_gateway_emulator.hpp"

namespace backstop::ibkr_emulator {

using nlohmann::json;

struct HttpRequest {
  std::string method;  // "GET", "POST", "DELETE"
  std::string target;  // path and query, as received
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::chrono::milliseconds delay{0};  // the transport waits this long before answering
};

// The transport side of one WebSocket; send/close may be called from any thread.
class WsPeer {
 public:
  virtual ~WsPeer() = default;
  virtual void send(std::string text) = 0;
  virtual void close() = 0;
};

class GatewayCore {
 public:
  explicit GatewayCore(IbkrEmulatorOptions options);
  ~GatewayCore();

  HttpResponse handle(const HttpRequest& request);

  // WebSocket. `cookie` is the raw Cookie header. Returns a handle, or 0 when the upgrade must
  // be refused (no gateway login at all).
  std::uint64_t ws_open(std::shared_ptr<WsPeer> peer, const std::string& cookie);
  void ws_text(std::uint64_t handle, const std::string& text);
  void ws_closed(std::uint64_t handle);

  // Runs due timers (cancels landing, ready frames, heartbeats, market ticks). The transport
  // calls it every few milliseconds.
  void poll();

  // Control operations (also reachable through /__emulator/...).
  void login();
  void logout();
  void expire_session(const std::string& why);
  std::string set_quote(std::int64_t conid, std::optional<Price> bid, std::optional<Price> ask,
                        std::optional<Price> last, std::int64_t size = 0);
  bool logged_in() const {
    std::lock_guard lock(mutex_);
    return logged_in_;
  }
  void set_fault_profile(const FaultProfile& profile);
  std::vector<FaultRecord> fault_log() const;
  json log() const;

 private:
  struct Ticket;          // one parsed order ticket
  struct OrderMeta;       // what IBKR knows about an order beyond the venue
  struct PendingReply;    // an order waiting for /iserver/reply confirmations
  struct WsClient;
  class Locked;           // the mutex, and on leaving: state written, then frames sent

  using Clock = std::chrono::steady_clock;

  // --- request routing
  HttpResponse route(const HttpRequest& req, const std::string& path,
                     const std::map<std::string, std::string>& query);
  HttpResponse control(const HttpRequest& req, const std::string& path);
  std::optional<HttpResponse> pace(const std::string& method, const std::string& path);
  std::optional<HttpResponse> require_brokerage_session();
  std::optional<HttpResponse> require_accounts(const std::string& account);

  // --- endpoints
  void login_locked();
  void logout_locked();
  void expire_session_locked(const std::string& why);
  std::string set_quote_locked(std::int64_t conid, std::optional<Price> bid, std::optional<Price> ask,
                               std::optional<Price> last, std::int64_t size);
  void set_fault_profile_locked(const FaultProfile& profile);
  json log_locked() const;

  json auth_status_json() const;
  HttpResponse tickle();
  HttpResponse accounts();
  HttpResponse select_account(const json& body);
  HttpResponse secdef_search(const std::string& symbol);
  HttpResponse trsrv_stocks(const std::string& symbols);
  HttpResponse trsrv_futures(const std::string& symbols);
  HttpResponse contract_info(std::int64_t conid, bool with_rules);
  HttpResponse contract_rules(const json& body);
  HttpResponse place_orders(const std::string& account, const std::string& body);
  HttpResponse reply(const std::string& reply_id, const std::string& body);
  HttpResponse suppress(const json& body);
  HttpResponse modify_order(const std::string& account, const std::string& order_id,
                            const std::string& body);
  HttpResponse cancel_order(const std::string& account, const std::string& order_id,
                            const std::map<std::string, std::string>& query);
  HttpResponse live_orders(const std::map<std::string, std::string>& query);
  HttpResponse order_status(const std::string& order_id);
  HttpResponse trades();
  HttpResponse portfolio_accounts();
  HttpResponse positions(const std::string& account, const std::string& page);
  HttpResponse invalidate_positions(const std::string& account);
  HttpResponse snapshot(const std::map<std::string, std::string>& query);
  HttpResponse control_quote(const json& body);
  HttpResponse control_faults(const json& body);

  // --- orders
  std::string parse_ticket(const json& j, const std::string& account, Ticket& out) const;
  std::vector<std::string> prompts_for(const std::vector<Ticket>& tickets, bool modify) const;
  HttpResponse ask_or_execute(std::unique_ptr<PendingReply> pending);
  HttpResponse execute(PendingReply& pending);
  HttpResponse execute_place(PendingReply& pending);
  HttpResponse execute_modify(PendingReply& pending);
  OrderMeta& remember(const Ticket& t, const std::string& venue_id, const std::string& account);
  void log_order_request(const std::string& stage, const Ticket& t, const std::string& order_id,
                         bool duplicate, const std::string& outcome);
  void land_cancel(const std::string& ib_id);
  const IbkrEmulatorContract* contract_by_conid(std::int64_t conid) const;
  const IbkrEmulatorContract* contract_by_symbol(const std::string& symbol) const;
  const OrderMeta* meta_by_ib_id(const std::string& ib_id) const;
  std::string ib_status(const OrderMeta& m, const VenueOrder& v) const;
  json order_row(const OrderMeta& m, const VenueOrder& v) const;
  json status_json(const OrderMeta& m, const VenueOrder& v) const;
  std::string money(Price p, const IbkrEmulatorContract& c) const;

  // --- streams
  void on_venue_event(const VenueEvent& e);
  void flush_order_updates();
  void push_quote(const IbkrEmulatorContract& c);
  json quote_fields(const IbkrEmulatorContract& c, const std::vector<std::string>& fields) const;
  void ws_send(WsClient& c, const json& frame);
  void ws_make_ready(std::uint64_t handle);
  void heartbeat();
  void market_tick();
  void kill_sockets(const std::string& why);

  void after(std::chrono::milliseconds delay, std::function<void()> fn);

  // --- durable state (options_.state_file; gateway_state.cpp)
  json save_state_locked() const;
  void restore_state_locked(const json& state);
  bool state_changed_locked() const;
  std::optional<std::string> persist_locked();  // the failure, naming the file; nullopt = fine
  void deliver_outbox_locked();
  void record(const std::string& kind, const std::string& order_id, const std::string& coid,
              const std::string& detail);
  void event(const std::string& kind, const std::string& detail);
  std::int64_t now_ms() const;

  mutable std::mutex mutex_;
  IbkrEmulatorOptions options_;
  SystemClock clock_;
  std::unique_ptr<FaultInjector> faults_;  // venue keeps a reference; replaced in place
  std::unique_ptr<Venue> venue_;
  std::vector<std::unique_ptr<RandomWalkPath>> walks_;  // parallel to options_.contracts

  // session
  bool logged_in_ = false;       // outer (SSO) session: the browser login happened
  bool authenticated_ = false;   // brokerage (/iserver) session
  bool accounts_queried_ = false;
  std::string selected_account_;
  std::string session_token_;
  std::uint64_t login_generation_ = 0;  // sockets from an earlier login are dead
  Clock::time_point last_request_{};

  // pacing
  std::deque<Clock::time_point> global_window_;
  std::map<std::string, Clock::time_point> endpoint_last_;

  // orders
  std::map<std::string, std::unique_ptr<OrderMeta>> orders_;  // by IBKR order id
  std::vector<std::string> order_sequence_;                   // IBKR ids in arrival order
  std::map<std::string, std::string> venue_to_ib_;
  std::set<std::string> used_coids_;
  // Drawn when the gateway starts, then from its state file if it has one: a gateway started
  // afresh does not repeat an order id of its previous life (GatewayCore's constructor).
  std::uint64_t next_ib_id_ = 0;
  std::uint64_t next_internal_coid_ = 1;
  std::unique_ptr<PendingReply> pending_;
  std::set<std::string> suppressed_;
  std::set<std::string> dirty_;  // venue ids changed since the last flush
  bool sor_stopped_by_filters_ = false;

  // market data
  std::set<std::int64_t> snapshot_started_;
  std::map<std::int64_t, std::vector<std::string>> snapshot_fields_;
  std::map<std::string, std::pair<Clock::time_point, json>> positions_cache_;

  // websockets
  std::map<std::uint64_t, std::unique_ptr<WsClient>> sockets_;
  std::uint64_t next_socket_ = 1;

  // timers
  std::multimap<Clock::time_point, std::function<void()>> timers_;
  Clock::time_point next_heartbeat_{};
  Clock::time_point next_tick_{};

  json order_log_ = json::array();
  json event_log_ = json::array();

  // Frames and closes queued while the mutex is held, sent once the state that they reveal has
  // been written (a SIGKILL in between must not leave a client knowing more than the file). After
  // a failed write they stay here, in order, until a write succeeds.
  struct Outgoing {
    std::shared_ptr<WsPeer> peer;
    std::string text;
    bool close = false;
  };
  std::vector<Outgoing> outbox_;
  // What was last written, to write again only when something moved.
  struct Written {
    std::uint64_t venue_changes = 0;
    std::size_t fault_records = 0, order_log = 0, event_log = 0, orders = 0;
  } written_;
  bool tables_changed_ = false;  // an OrderMeta changed in place (pending cancel)
  // The last write's failure, "" after a success: poll() retries every few milliseconds, so the
  // error is logged when it starts or changes, not on every retry.
  std::string write_failure_;
};

}  // namespace backstop::ibkr_emulator
