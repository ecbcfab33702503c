#pragma once
// IBKR Client Portal Web API adapter (through the local gateway), implementing backstop::Broker.
//
//   IbkrBrokerOptions o;
//   o.settings = *broker_config.ibkr();          // base URL, TLS, reply-loop ids, tickle
//   o.account = broker_config.account;           // empty: the gateway's selected account
//   o.symbols = {{"AAPL", "AAPL"}, {"ES", "ES:CME:202612"}, {"X", "265598"}};
//   IbkrBroker ibkr(std::move(o), loop);
//   ibkr.start();                                // session, accounts, WebSocket; see health()
//
// All state lives on the EventLoop thread; network completions are posted there. Outcomes are
// three-valued (broker.hpp): a POST that timed out, lost its connection or got a 5xx is unknown,
// never retried; query_by_client_id resolves it through the live orders' order_ref (= cOID).
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "brokers/broker.hpp"
#include "brokers/ibkr/ibkr_wire.hpp"
#include "config/config.hpp"
#include "core/event_loop.hpp"

namespace backstop {
namespace net {
class HttpClient;
class WebSocketClient;
class LoopIo;
struct HttpResult;
}  // namespace net

struct IbkrBrokerOptions {
  std::string name = "ibkr";
  std::string account;  // empty: selectedAccount (or the first) from /iserver/accounts
  IbkrSettings settings;
  // Backstop symbol -> lookup key: a stock symbol ("AAPL"), a future "SYM:EXCHANGE:YYYYMM"
  // ("ES:CME:202612"), or a literal conid ("265598"). Unmapped symbols are looked up as stocks.
  std::map<std::string, std::string> symbols;
  // Where REST requests go when not settings.base_url (a validating proxy in contract tests);
  // the WebSocket and the "open this URL to log in" line still use settings.base_url.
  std::string rest_base_url_override;
  // WebSocket URL; empty: derived from settings.base_url (https -> wss, + "/ws").
  std::string ws_url;
  bool use_websocket = true;
  // manualIndicator/extOperator sent on US futures orders (CME Rule 536-B): Backstop's orders
  // are generated, not typed by a person.
  bool manual_indicator = false;
  std::string ext_operator = "backstop";

  // Observer of every REST answer (method, target, HTTP status or 0 on a network error, body): for
  // wire tracing and the contract test. Called on the loop thread before the adapter acts on it.
  std::function<void(const std::string&, const std::string&, int, const std::string&)> on_response;

  std::chrono::milliseconds request_timeout{10'000};
  // Pacing (api-notes 1.2): the gateway's global limit, and the 1-per-5-s endpoints.
  int global_requests_per_second = 10;
  std::chrono::milliseconds slow_endpoint_interval{5'000};
  std::chrono::milliseconds pacing_guard{60};  // margin so that arrival jitter never crosses
  std::chrono::milliseconds backoff_after_429{2'000};

  std::chrono::milliseconds auth_poll_interval{5'000};  // while not authenticated / unreachable
  std::chrono::milliseconds ws_tic_interval{30'000};    // `tic` at least once a minute
  // A socket whose subscriptions go silent this long while orders work / quotes are subscribed
  // is probed (re-subscribe); no answer within ws_probe_timeout: it is rebuilt.
  std::chrono::milliseconds ws_silence_limit{60'000};
  std::chrono::milliseconds ws_probe_timeout{5'000};
  std::chrono::milliseconds ws_ready_timeout{10'000};  // no `system` ready frame: rebuild
  // REST requests on the event loop's thread (net/loop_io.hpp); none: on a network thread of
  // their own. The WebSocket keeps its own thread either way.
  net::LoopIo* loop_io = nullptr;
};

struct IbkrAdapterStats {
  std::uint64_t http_429 = 0;
  std::uint64_t requests_sent = 0;
  std::uint64_t requests_queued_for_pacing = 0;
  std::uint64_t ws_connects = 0;
  std::uint64_t ws_rebuilds = 0;  // dead-socket detections
  std::uint64_t session_recoveries = 0;  // ssodh/init after authenticated dropped
  std::uint64_t replies_confirmed = 0;
  std::uint64_t replies_refused = 0;
  std::uint64_t sor_messages = 0;
  std::uint64_t smd_messages = 0;
};

class IbkrBroker final : public Broker {
 public:
  // Throws ConfigError for a bad URL or unreadable TLS files.
  IbkrBroker(IbkrBrokerOptions options, EventLoop& loop);
  ~IbkrBroker() override;

  const std::string& name() const override { return options_.name; }
  BrokerCapabilities capabilities() const override;
  void start() override;
  void stop() override;

  void submit(const OrderSpec& order, CommandCallback done) override;
  void submit_bracket(const BracketSpec& bracket, BracketCallback done) override;
  void cancel(const std::string& broker_order_id, CommandCallback done) override;
  void replace(const std::string& broker_order_id, const OrderSpec& updated, CommandCallback done) override;

  void query_order(const std::string& broker_order_id, OrderQueryCallback done) override;
  void query_by_client_id(const std::string& client_order_id, OrderQueryCallback done) override;
  void list_open_orders(OrdersCallback done) override;
  void list_positions(PositionsCallback done) override;
  // POST /iserver/auth/status: unpaced (only the global 10 req/s), answers while the gateway is
  // up and says whether the brokerage session is authenticated. /tickle is paced at 1 req/s and
  // positions queue behind portfolio pacing: either would make a healthy gateway look slow.
  void check_health(CommandCallback done) override;
  void list_fills(FillsCallback done) override;

  void subscribe_order_events(OrderEventHandler handler) override;
  void subscribe_quotes(const std::vector<std::string>& symbols, QuoteHandler handler) override;

  BrokerHealthReport health() const override;
  std::optional<WireOrderView> preview(const OrderSpec& order) const override;

  // Market-data snapshot (fields 31/84/86/85/88/7059). The first call per conid only starts the
  // gateway's feed (api-notes 1.15): the adapter asks again until values come or `tries` run out.
  using SnapshotCallback = std::function<void(Outcome, std::optional<Quote>, std::string)>;
  void snapshot(const std::string& symbol, SnapshotCallback done, int tries = 5);

  // Resolves a Backstop symbol to its conid (cached).
  using ConidCallback = std::function<void(std::optional<std::int64_t>, std::string error)>;
  void resolve_conid(const std::string& symbol, ConidCallback done);

  IbkrAdapterStats stats() const { return stats_; }
  std::uint64_t http_429_count() const { return stats_.http_429; }
  const std::string& account() const { return account_; }
  bool websocket_ready() const { return ws_ready_; }

 private:
  enum class Session { idle, checking, not_authenticated, unreachable, authenticated };
  enum class Lane { none, orders_list, trades, portfolio_accounts, tickle };

  struct Request {
    std::string method;
    std::string target;
    std::string body;
    Lane lane = Lane::none;
    bool exclusive = false;  // order place/modify: alone on the wire until its reply loop ends
    bool in_exclusive = false;  // a reply inside the current exclusive exchange: goes first
    bool needs_session = true;  // /iserver/*: fail locally while not authenticated
    std::function<void(net::HttpResult)> done;
  };

  struct Contract {
    std::int64_t conid = 0;
    bool us_future = false;
    bool rules_loaded = false;
    std::optional<Price> increment;
    std::vector<std::pair<Price, Price>> increment_rules;  // lowerEdge -> increment
    std::set<std::string> order_types;  // "market", "limit", "stop", "stop_limit"
  };

  // --- request scheduling (pacing, exclusivity) ---
  void enqueue(Request r);
  void pump();
  void dispatch(Request r);
  bool lane_free(Lane lane, Timestamp now) const;
  Timestamp lane_ready_at(Lane lane) const;
  void release_exclusive();
  void get(std::string target, Lane lane, std::function<void(net::HttpResult)> done, bool needs_session = true);
  void post(std::string target, std::string body, std::function<void(net::HttpResult)> done,
            bool needs_session = true);

  // --- session ---
  void check_auth();
  void on_auth_status(const nlohmann::json& status);
  void recover_session();
  void load_accounts();
  void session_ready();
  void tickle();
  void schedule_auth_poll();
  void mark_not_authenticated(const std::string& why);
  void mark_unreachable(const std::string& why);
  bool ready() const { return session_ == Session::authenticated && accounts_loaded_; }
  std::string not_ready_message() const;
  std::string gateway_root() const;

  // --- contracts ---
  bool is_us_future_key(const std::string& key) const;
  std::string lookup_key(const std::string& symbol) const;
  void with_contract(const std::string& symbol, std::function<void(const Contract*, std::string)> done);
  std::string check_rules(const Contract& c, const OrderSpec& spec) const;

  // --- orders ---
  void place(std::vector<OrderSpec> tickets, std::function<void(Outcome, std::vector<std::string>, std::string, int)> done);
  void run_submit(std::string target, std::string body, int round,
                  std::function<void(Outcome, std::vector<std::string>, std::string, int)> done);
  void handle_submit_answer(const net::HttpResult& r, int round,
                            std::function<void(Outcome, std::vector<std::string>, std::string, int)> done);
  void fetch_live_orders(std::function<void(Outcome, std::string, const std::vector<nlohmann::json>&)> done);
  void remember_order(const std::string& order_id, const std::string& symbol);

  // --- WebSocket ---
  void ws_connect();
  void ws_close();
  void ws_on_message(std::string_view text);
  void ws_subscribe_all();
  void ws_send_smd(std::int64_t conid);
  void ws_watchdog();
  void ws_rebuild(const std::string& why);
  void handle_sor(const nlohmann::json& args);
  void emit_order_update(std::int64_t order_id, const nlohmann::json& merged);

  void touch() { last_message_at_ = loop_.now(); }
  void ws_tic();

  IbkrBrokerOptions options_;
  EventLoop& loop_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::unique_ptr<net::HttpClient> http_;
  std::unique_ptr<net::WebSocketClient> ws_;
  bool started_ = false;

  // session
  Session session_ = Session::idle;
  bool accounts_loaded_ = false;
  bool auth_check_in_flight_ = false;
  bool logged_not_authenticated_ = false;
  std::string account_;
  std::string session_token_;
  std::string last_error_;
  int consecutive_errors_ = 0;
  Timestamp last_message_at_ = 0;
  EventLoop::TimerId tickle_timer_ = 0, auth_timer_ = 0;
  int recovery_attempts_ = 0;

  // scheduling
  std::deque<Request> queue_;
  std::deque<Timestamp> global_window_;  // dispatch times within the last second
  std::map<Lane, Timestamp> lane_last_;
  int in_flight_ = 0;
  bool exclusive_active_ = false;
  Timestamp backoff_until_ = 0;
  EventLoop::TimerId pump_timer_ = 0;
  Timestamp pump_timer_at_ = 0;

  // contracts
  std::map<std::string, Contract> contracts_;  // by Backstop symbol
  std::map<std::int64_t, std::string> symbol_of_conid_;
  std::map<std::string, std::vector<std::function<void(const Contract*, std::string)>>> contract_waiters_;
  std::map<std::string, std::string> order_symbol_;  // broker order id -> Backstop symbol
  bool portfolio_accounts_loaded_ = false;

  // live orders coalescing (1 per 5 s)
  std::vector<std::function<void(Outcome, std::string, const std::vector<nlohmann::json>&)>> live_waiters_;
  bool live_fetch_queued_ = false;

  // WebSocket
  bool ws_open_ = false;
  bool ws_ready_ = false;
  bool ws_reconnect_wanted_ = false;  // the socket closed: build a new one after the next tickle
  std::uint64_t ws_generation_ = 0;
  Timestamp ws_opened_at_ = 0, last_sor_at_ = 0, last_smd_at_ = 0, probe_sent_at_ = 0;
  EventLoop::TimerId ws_tic_timer_ = 0, ws_watch_timer_ = 0, ws_reconnect_timer_ = 0;
  ibkr::SorMerger sor_;
  std::map<std::int64_t, std::pair<std::string, std::int64_t>> emitted_;  // status, filled
  std::map<std::int64_t, std::optional<Price>> emitted_avg_;
  OrderEventHandler order_handler_;
  QuoteHandler quote_handler_;
  std::set<std::string> quote_symbols_;
  std::set<std::int64_t> quote_conids_;

  IbkrAdapterStats stats_;
  std::set<std::string> warned_statuses_;
};

}  // namespace backstop
