#pragma once
// TradeStationBroker: the TradeStation Web API v3 adapter behind backstop::Broker.
//
//   tradestation::TradeStationOptions o = tradestation::options_from_config(broker_config);
//   o.symbols = {{"ES", "ESZ26"}};                 // Backstop symbol -> TradeStation symbol
//   tradestation::TradeStationBroker ts(std::move(o), loop);
//   ts.subscribe_order_events(handler);
//   ts.start();                                    // token refresh, account check, order stream
//
// Auth: OAuth2 refresh-token grant; the access token is refreshed before its 20-minute expiry
// (not per request), a rotated refresh token is persisted atomically (0600) before use, and a 401
// triggers one refresh and one retry. Secrets are never logged.
// Commands are three-valued (broker.hpp): a POST/PUT/DELETE that timed out, lost its connection
// or got a 5xx is Outcome::unknown and is never resent; OrderConfirmID = client order id makes a
// resend a duplicate at the broker.
// query_by_client_id: TradeStation's order reads do not carry OrderConfirmID (spec Order/Order1
// have no such field), so the adapter keeps client id -> OrderID from acknowledgements; for a
// submit whose outcome was unknown it matches today's orders by fingerprint (symbol, side,
// quantity, type, prices, not claimed by another client id). Limitation: the map lives in
// memory, so after a restart an order acknowledged by an earlier process cannot be found by
// client id (failed_locally says so); query it by broker order id.
// Threading: everything runs on the EventLoop's thread; network completions are posted there.
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "brokers/broker.hpp"
#include "brokers/tradestation/ts_wire.hpp"
#include "config/config.hpp"
#include "core/event_loop.hpp"

namespace backstop::net {
class HttpClient;
class HttpStream;
class JsonObjectSplitter;
class LoopIo;
}  // namespace backstop::net

namespace backstop::tradestation {

// A client-side request budget for one quota group (api-notes section 6, [DOC-RL]).
struct RateQuota {
  int limit = 0;  // requests per window; 0 = unlimited
  Duration window{std::chrono::minutes(5)};
};
// accounts, order_details, balances, positions: 250 / 5 min; quotes: 30 / min; stream_open:
// 500 / 5 min; order_execution: no documented quota (unlimited, 429 still handled).
std::map<std::string, RateQuota> default_quotas();

struct TradeStationOptions {
  std::string name = "tradestation";
  std::string account;            // AccountID orders go to and reads cover
  TradeStationSettings settings;  // base_url (…/v3), token_url, client, refresh token file, TLS
  std::map<std::string, std::string> symbols;  // Backstop symbol -> TradeStation symbol
  std::chrono::milliseconds read_timeout{10'000};
  std::chrono::milliseconds order_timeout{10'000};  // POST/PUT/DELETE; past it: Outcome::unknown
  Duration refresh_margin{std::chrono::seconds(60)};  // refresh this long before expiry
  Duration reconnect_min{std::chrono::milliseconds(250)};
  Duration reconnect_max{std::chrono::seconds(30)};
  bool order_stream = true;  // start() opens the order stream
  std::map<std::string, RateQuota> quotas = default_quotas();
  double quota_use = 0.9;  // use at most this share of each quota (other clients of the key)
  // Sees every REST answer (method, target, status, headers, body) before the adapter acts on
  // it: for the contract test and diagnostics. Bodies of /v3 calls carry no credentials.
  std::function<void(const std::string& method, const std::string& target, int status,
                     const std::vector<std::pair<std::string, std::string>>& headers, const std::string& body)>
      on_response;
  // REST requests (orders, reads, token refreshes) on the event loop's thread (net/loop_io.hpp);
  // none: on a network thread of their own. The order stream keeps its own thread either way.
  net::LoopIo* loop_io = nullptr;
};

// Options from a `tradestation` broker entry of the config.
TradeStationOptions options_from_config(const BrokerConfig& broker,
                                        std::map<std::string, std::string> symbols = {});

struct GroupResult {
  Outcome outcome = Outcome::unknown;
  std::string message;
  std::vector<std::string> order_ids;  // in request order when accepted
};

struct TradeStationStats {
  std::uint64_t token_refreshes = 0;
  std::uint64_t refresh_tokens_rotated = 0;
  std::uint64_t http_429 = 0;           // answers 429 (each is also logged)
  std::uint64_t unauthorized_retries = 0;
  std::uint64_t stream_connects = 0;    // order stream runs that reached EndSnapshot
  std::uint64_t stream_goaways = 0;
  std::uint64_t stream_errors = 0;      // error objects, timeouts, drops
  std::uint64_t unknown_status_frames = 0;
  std::uint64_t bad_frames = 0;
};

class TradeStationBroker final : public Broker {
 public:
  // Throws ConfigError for a bad base or token URL or unreadable certificate files.
  TradeStationBroker(TradeStationOptions options, EventLoop& loop);
  ~TradeStationBroker() override;

  const std::string& name() const override { return options_.name; }
  BrokerCapabilities capabilities() const override;
  void start() override;
  void stop() override;

  void submit(const OrderSpec& order, CommandCallback done) override;
  // One POST: the entry with OSOs [{Type BRK, Orders [take profit, stop]}]; the exits are held
  // until the entry fills and cancel each other.
  void submit_bracket(const BracketSpec& bracket, BracketCallback done) override;
  // POST /orderexecution/ordergroups: type "OCO", "BRK" or "NORMAL".
  void submit_group(const std::string& type, const std::vector<OrderSpec>& orders,
                    std::function<void(GroupResult)> done);
  // Accepted = the broker took the request; the cancel/replace itself is confirmed later on the
  // order stream (UCN -> CAN) and in reads.
  void cancel(const std::string& broker_order_id, CommandCallback done) override;
  void replace(const std::string& broker_order_id, const OrderSpec& updated, CommandCallback done) override;

  void query_order(const std::string& broker_order_id, OrderQueryCallback done) override;
  void query_by_client_id(const std::string& client_order_id, OrderQueryCallback done) override;
  void expect_unknown(const OrderSpec& order, Timestamp sent_at) override;
  void remember_order(const std::string& client_order_id, const std::string& broker_order_id) override;
  void list_open_orders(OrdersCallback done) override;
  // Every order of today (open and closed), all pages.
  void list_orders(OrdersCallback done);
  void list_positions(PositionsCallback done) override;
  // From each order's cumulative ExecQuantity and average price, with the same execution ids
  // as the stream's fill events.
  void list_fills(FillsCallback done) override;
  void list_accounts(std::function<void(Outcome, std::vector<std::string>, std::string)> done);

  void subscribe_order_events(OrderEventHandler handler) override { order_handler_ = std::move(handler); }
  void subscribe_quotes(const std::vector<std::string>& symbols, QuoteHandler handler) override;

  BrokerHealthReport health() const override;
  std::optional<WireOrderView> preview(const OrderSpec& order) const override;

  const TradeStationStats& stats() const { return stats_; }
  std::uint64_t rate_limited_count() const { return stats_.http_429; }

  struct ApiResult;  // internal, public for the .cpp's helpers

 private:
  struct Bucket;
  struct StreamState;
  using ApiCallback = std::function<void(ApiResult)>;

  void call(const std::string& group, std::string method, std::string target, std::string body, bool write,
            ApiCallback done, int attempt = 0);
  void send(const std::string& group, std::string method, std::string target, std::string body, bool write,
            ApiCallback done, int attempt);
  void acquire(const std::string& group, std::function<void()> go);
  void drain(const std::string& group);

  void with_token(std::function<void(const std::string& error)> then);
  void refresh_token();
  void schedule_refresh(Duration in);

  void open_order_stream();
  void open_quote_stream();
  void on_order_frame(std::string_view text);
  void on_quote_frame(std::string_view text);
  void stream_ended(StreamState& s, const std::string& why, bool immediately);
  void emit(const std::vector<OrderEvent>& events);

  void fetch_orders(std::string next_token, std::shared_ptr<std::vector<BrokerOrder>> acc,
                    std::shared_ptr<std::vector<WireOrder>> raw, std::function<void(Outcome, std::string)> done);
  void adopt(const std::string& client_order_id, const std::string& order_id);
  CommandResult place_result(const ApiResult& r, std::vector<std::string>& ids) const;

  TradeStationOptions options_;
  EventLoop& loop_;
  SymbolMap symbols_;
  OrderFrameMapper mapper_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::unique_ptr<net::HttpClient> api_;
  std::unique_ptr<net::HttpClient> token_http_;
  std::string token_target_;
  std::map<std::string, std::unique_ptr<Bucket>> buckets_;

  // Auth (loop thread).
  std::string access_token_;
  Timestamp access_expires_at_ = 0;
  std::string refresh_token_;
  bool refreshing_ = false;
  std::vector<std::function<void(const std::string&)>> token_waiters_;
  EventLoop::TimerId refresh_timer_ = 0;
  std::string auth_error_;  // why the last refresh failed
  bool auth_refused_ = false;  // the token endpoint said no: a person must act

  std::unique_ptr<StreamState> orders_stream_, quotes_stream_;
  std::vector<std::string> quote_symbols_;
  OrderEventHandler order_handler_;
  QuoteHandler quote_handler_;

  // Client order id bookkeeping (see the header comment).
  struct Unresolved {
    OrderSpec spec;
    Timestamp sent_at = 0;
  };
  std::map<std::string, std::string> coid_to_id_, id_to_coid_;
  std::map<std::string, Unresolved> unresolved_;
  // OrderIDs with a replace in flight, and the "UCH" (Replaced) events they had meanwhile. The
  // replace's answer may name a new OrderID, making the old order's UCH the end of a superseded
  // order, not of the client's: it is handed on after the answer, which tells the router so.
  std::map<std::string, std::vector<OrderEvent>> replacing_;

  bool running_ = false;
  Timestamp last_message_at_ = 0;
  int consecutive_errors_ = 0;
  std::string account_error_;
  TradeStationStats stats_;
};

}  // namespace backstop::tradestation
