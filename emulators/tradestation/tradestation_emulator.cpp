#include "emulators/tradestation/tradestation_emulator.hpp"

#include <httplib.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "brokers/sim/price_path.hpp"
#include "brokers/sim/state_file.hpp"
#include "brokers/sim/venue.hpp"
#include "core/cpu_affinity.hpp"
#include "core/error.hpp"
#include "brokers/net/test_certificate.hpp"
#include "emulators/tradestation/emulator_state.hpp"
#include "emulators/tradestation/stream_hub.hpp"
#include "emulators/tradestation/token_authority.hpp"
#include "emulators/tradestation/wire_format.hpp"

namespace backstop::tradestation_emulator {

namespace {

using SteadyClock = std::chrono::steady_clock;
constexpr const char* kJson = "application/json; charset=utf-8";
// Orders and positions streams are v3, market data v2 [DOC-STREAM].
constexpr const char* kBrokerageStream = "application/vnd.tradestation.streams.v3+json";
constexpr const char* kMarketStream = "application/vnd.tradestation.streams.v2+json";

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string part;
  std::istringstream in(s);
  while (std::getline(in, part, sep))
    if (!part.empty()) out.push_back(part);
  return out;
}

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::string line(const json& j) { return j.dump() + "\n"; }

void reply(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), kJson);
}

void reply_error(httplib::Response& res, int status, const std::string& error,
                 const std::string& message) {
  reply(res, status, error_body(error, message));
}

json fault_profile_json(const FaultProfile& p) {
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  return {{"name", p.name},
          {"ghost_stop_rate", p.ghost_stop_rate},
          {"reject_rate", p.reject_rate},
          {"ack_delay_ms", duration_cast<milliseconds>(p.ack_delay).count()},
          {"ack_delay_jitter_ms", duration_cast<milliseconds>(p.ack_delay_jitter).count()},
          {"drop_order_event_rate", p.drop_order_event_rate},
          {"drop_fill_event_rate", p.drop_fill_event_rate},
          {"disconnect_rate", p.disconnect_rate},
          {"disconnect_length_ms", duration_cast<milliseconds>(p.disconnect_length).count()},
          {"stale_position_rate", p.stale_position_rate},
          {"extra", p.extra}};
}

// One setting by name: the typed FaultProfile fields, else an `extra` key (ts_*).
void apply_fault_setting(FaultProfile& p, const std::string& key, double value) {
  const auto ms = std::chrono::milliseconds(static_cast<std::int64_t>(value));
  if (key == "ghost_stop_rate")
    p.ghost_stop_rate = value;
  else if (key == "reject_rate")
    p.reject_rate = value;
  else if (key == "ack_delay_ms")
    p.ack_delay = ms;
  else if (key == "ack_delay_jitter_ms")
    p.ack_delay_jitter = ms;
  else if (key == "drop_order_event_rate")
    p.drop_order_event_rate = value;
  else if (key == "drop_fill_event_rate")
    p.drop_fill_event_rate = value;
  else if (key == "disconnect_rate")
    p.disconnect_rate = value;
  else if (key == "disconnect_length_ms")
    p.disconnect_length = ms;
  else if (key == "stale_position_rate")
    p.stale_position_rate = value;
  else
    p.extra[key] = value;
}

bool is_future_name(const std::string& s) {
  // Root of 1-3 letters, CME month code, two-digit year: "ESZ26", "CLF27".
  static const std::regex kFuture("[A-Z]{1,3}[FGHJKMNQUVXZ][0-9]{2}");
  return std::regex_match(s, kFuture);
}

}  // namespace

std::vector<EmulatedSymbol> default_symbols() {
  return {symbol_from_name("AAPL"), symbol_from_name("ESZ26")};
}

EmulatedSymbol symbol_from_name(const std::string& name) {
  EmulatedSymbol s;
  s.symbol = name;
  if (is_future_name(name)) {
    s.future = true;
    s.tick = Price::parse("0.25");
    s.start = Price::parse("5000");
    s.multiplier = 50;
  } else {
    s.start = Price::parse("190");
  }
  return s;
}

FaultProfile parse_fault_spec(const std::string& spec) {
  auto parts = split(spec, ',');
  FaultProfile p = FaultProfile::named(
      parts.empty() || parts[0].find('=') != std::string::npos ? "none" : parts[0]);
  for (const auto& part : parts) {
    auto eq = part.find('=');
    if (eq == std::string::npos) continue;
    try {
      apply_fault_setting(p, part.substr(0, eq), std::stod(part.substr(eq + 1)));
    } catch (const std::exception&) {
      throw ConfigError("fault setting \"" + part + "\" is not key=number");
    }
  }
  return p;
}

class TradeStationEmulator::Impl {
 public:
  explicit Impl(Options o)
      : opt_(std::move(o)),
        faults_(opt_.faults, opt_.seed),
        venue_(clock_, faults_),
        profile_(opt_.faults),
        auth_(opt_) {
    if (opt_.symbols.empty()) opt_.symbols = default_symbols();
    if (opt_.accounts.empty())
      opt_.accounts = {EmulatedAccount{},
                       EmulatedAccount{"SIM2784991F", "Futures", Price::from_integer(100'000)}};
    std::uint64_t salt = 0;
    for (const auto& s : opt_.symbols) {
      symbols_[s.symbol] = s;
      venue_.add_instrument(s.symbol, TickSize(s.tick));
      reset_walk(s.symbol, s.start, salt++);
      DayStats d;
      d.previous_close = d.open = d.high = d.low = s.start;
      days_[s.symbol] = d;
    }
    for (const auto& a : opt_.accounts) cash_[a.id] = a.cash;
    next_local_id_ = 900'000'000'000'000 + microseconds_since_2020(clock_.now());
    venue_.set_listener([this](const VenueEvent& e) { on_venue_event(e); });
    // Every symbol starts with a quote at its start price, so market orders can fill at once.
    Locked lock(*this);
    for (const auto& s : opt_.symbols) {
      Quote q;
      q.symbol = s.symbol;
      q.bid = s.start;
      q.ask = s.start + s.tick;
      q.last = s.start;
      q.at = clock_.now();
      q.source = "emulator";
      process_quote(q);
    }
  }

  ~Impl() { stop(); }

  void start(int port);
  void stop();
  int port() const { return port_; }
  std::string base_url() const {
    return std::string(opt_.tls ? "https" : "http") + "://" + opt_.host + ":" +
           std::to_string(port_);
  }
  const Options& options() const { return opt_; }
  std::vector<FaultRecord> fault_log() const { return faults_.log(); }  // the injector locks itself
  std::string certificate_pem() const { return cert_pem_; }

 private:
  // ---- set-up
  void routes();
  void reset_walk(const std::string& symbol, Price start, std::uint64_t salt) {
    const auto& s = symbols_.at(symbol);
    RandomWalkParams p;
    p.symbol = symbol;
    p.start = start;
    p.tick = TickSize(s.tick);
    walks_[symbol] = std::make_unique<RandomWalkPath>(p, opt_.seed * 7919 + salt + walk_resets_++);
  }

  // ---- faults
  double rate(const std::string& extra_key, double typed_fallback = 0) {
    std::lock_guard lock(profile_mu_);
    auto it = profile_.extra.find(extra_key);
    return it != profile_.extra.end() ? it->second : typed_fallback;
  }
  FaultProfile profile() {
    std::lock_guard lock(profile_mu_);
    return profile_;
  }
  void record(const std::string& kind, const std::string& order_id, const std::string& coid,
              const std::string& detail) {
    faults_.record({clock_.now(), kind, order_id, coid, detail});
  }
  void set_profile(FaultProfile p) {
    Locked lock(*this);
    // The venue reads the profile only under mu_, held here.
    faults_.set_profile(p);
    std::lock_guard plock(profile_mu_);
    profile_ = std::move(p);
  }

  // ---- persistence (Options::state_file)
  //
  // The choke point: every operation on the venue and the tables below takes mu_ through a
  // Locked guard, never directly. Stream frames made meanwhile (publish()) wait in outbox_; on
  // release the guard calls commit(), which writes the state file when the state has moved and
  // only then hands the frames to the hub, still under mu_ so that frames keep their order. HTTP
  // answers need nothing more: httplib writes a handler's answer after the handler has returned,
  // so after its guard has committed. A SIGKILL at any instant therefore leaves no client with an
  // order id, an ack or a fill frame that the state file lacks. State changed outside mu_ (tokens,
  // fault records on stream and auth paths) is written by sync() before the answer that follows.
  // A failed write throws out of the guard (the handler answers 500: outcome unknown) and keeps
  // the frames for the next write that succeeds.
  class Locked {
   public:
    explicit Locked(Impl& impl)
        : impl_(impl), lock_(impl.mu_), exceptions_(std::uncaught_exceptions()) {}
    ~Locked() noexcept(false) {
      if (std::uncaught_exceptions() == exceptions_) {
        impl_.commit();
        return;
      }
      try {  // already unwinding: a second exception would terminate
        impl_.commit();
      } catch (const std::exception& e) {
        spdlog::error("TradeStation emulator: {}", e.what());
      }
    }
    Locked(const Locked&) = delete;
    Locked& operator=(const Locked&) = delete;

   private:
    Impl& impl_;
    std::lock_guard<std::mutex> lock_;
    int exceptions_;
  };
  struct Frame {
    StreamKind kind;
    std::string account, order_id, symbol, line;
  };
  // What the state file was last written from; any difference means the state has moved.
  struct Saved {
    std::uint64_t venue = 0, auth = 0;
    std::size_t faults = 0;
  };
  void publish(StreamKind kind, const std::string& account, const std::string& order_id,
               const std::string& symbol, std::string line) {
    outbox_.push_back({kind, account, order_id, symbol, std::move(line)});
  }
  void touch() { dirty_ = true; }  // an emulator table changed (the venue counts its own)
  void commit();
  void sync() { Locked lock(*this); }  // writes what changed outside mu_, before it shows
  // For stream threads, where httplib lets no exception through: false = not written.
  bool try_sync() {
    try {
      sync();
      return true;
    } catch (const std::exception& e) {
      spdlog::error("TradeStation emulator: {}", e.what());
      return false;
    }
  }
  void restore_from_file();
  json save_state() const;
  void restore_state(const json& state);
  void restore_tables(const json& t);
  void rearm_timers();
  void schedule_cancel(const std::string& id, std::chrono::milliseconds after);
  void schedule_expiry(const std::string& id, std::chrono::milliseconds after);

  // ---- venue glue (all under mu_)
  void on_venue_event(const VenueEvent& e);
  void process_event(const VenueEvent& e);
  TsOrder& adopt(const VenueOrder& v);
  void publish_order(const TsOrder& o, const std::string& status, bool with_closed) {
    publish(StreamKind::orders, o.meta.account, o.last.id, {},
            line(render_order(o, status, with_closed)));
  }
  void publish_position(const std::string& symbol);
  void process_quote(const Quote& q);
  std::optional<PositionView> position_view(const VenuePosition& p);

  struct Placement {
    bool ok = false;
    std::string order_id, message;
  };
  Placement place_single(ParsedOrder p, const std::string& endpoint);
  std::vector<Placement> place_bracket(ParsedOrder entry, std::vector<ParsedOrder> exits,
                                       const std::string& type, const std::string& endpoint);
  std::vector<Placement> place_oco(std::vector<ParsedOrder> orders, const std::string& type,
                                   const std::string& endpoint);
  std::string precheck(ParsedOrder& p, std::set<std::string>& batch_ids, bool& duplicate);
  TsOrder& create_local(const ParsedOrder& p, VenueStatus status, const std::string& reason);
  void after_submit(const std::string& id, const ParsedOrder& p);
  void log_request(const std::string& endpoint, const std::string& coid, const std::string& id,
                   bool duplicate, bool accepted, const std::string& message);
  std::string next_group() { return std::to_string(next_group_++); }

  // ---- handlers
  bool authorize_api(const httplib::Request& req, httplib::Response& res);
  void slow_ack(const std::string& what);
  void handle_place_order(const httplib::Request& req, httplib::Response& res);
  void handle_place_group(const httplib::Request& req, httplib::Response& res);
  void handle_confirm(const httplib::Request& req, httplib::Response& res);
  void handle_replace(const httplib::Request& req, httplib::Response& res);
  // Option replace_assigns_new_order_id: the change placed as a new order, `id` ended UCH.
  void replace_as_new_order(const std::string& id, std::int64_t quantity, std::optional<Price> limit,
                            std::optional<Price> stop, httplib::Response& res);
  void handle_cancel(const httplib::Request& req, httplib::Response& res);
  void handle_orders(const httplib::Request& req, httplib::Response& res, bool historical);
  void handle_orders_by_id(const httplib::Request& req, httplib::Response& res, bool historical);
  void handle_balances(const httplib::Request& req, httplib::Response& res, bool bod);
  void handle_positions(const httplib::Request& req, httplib::Response& res);
  void handle_quote_snapshot(const httplib::Request& req, httplib::Response& res);
  void open_stream(httplib::Response& res, StreamFilter filter, std::vector<std::string> lines,
                   bool finish);
  void handle_stream_orders(const httplib::Request& req, httplib::Response& res);
  void handle_stream_positions(const httplib::Request& req, httplib::Response& res);
  void handle_stream_quotes(const httplib::Request& req, httplib::Response& res);
  void handle_control_quote(const httplib::Request& req, httplib::Response& res);
  void handle_control_faults(const httplib::Request& req, httplib::Response& res);
  void handle_control_log(httplib::Response& res);

  // Splits a path's account list; unknown ones go to `errors` as the API reports them.
  std::vector<std::string> accounts_of(const std::string& list, json& errors) const;
  bool known_account(const std::string& id) const {
    return std::any_of(opt_.accounts.begin(), opt_.accounts.end(),
                       [&](const auto& a) { return a.id == id; });
  }

  // ---- scheduler: market ticks and delayed venue actions, one thread
  void schedule(std::chrono::milliseconds after, std::function<void()> task) {
    std::lock_guard lock(sched_mu_);
    tasks_.emplace(SteadyClock::now() + after, std::move(task));
    sched_cv_.notify_all();
  }
  void market_loop();
  void tick();

  Options opt_;
  SystemClock clock_;
  FaultInjector faults_;
  Venue venue_;
  std::mutex mu_;  // the venue and every table below; the venue is not thread-safe
  std::mutex profile_mu_;
  FaultProfile profile_;  // copy for threads that do not hold mu_
  TokenAuthority auth_;
  StreamHub hub_;

  std::map<std::string, EmulatedSymbol> symbols_;
  std::map<std::string, std::unique_ptr<RandomWalkPath>> walks_;
  std::uint64_t walk_resets_ = 0;
  std::map<std::string, DayStats> days_;
  std::map<std::string, TsOrder> orders_;       // by OrderID
  std::vector<std::string> sequence_;           // OrderIDs in arrival order
  std::map<std::string, TsOrderMeta> pending_;  // by client order id, until the venue names it
  std::vector<VenueEvent>* batch_ = nullptr;    // events held while a submission completes
  std::set<std::string> confirm_ids_;
  std::map<std::string, Price> cash_;
  std::map<std::string, std::string> position_account_;  // symbol -> account that opened it
  std::map<std::string, std::string> position_id_;       // symbol -> PositionID
  std::map<std::string, Timestamp> position_opened_;
  json last_positions_reply_;  // for the stale_position_rate fault
  struct PageToken {
    std::string accounts;
    bool historical = false;
    std::size_t offset = 0;
    SteadyClock::time_point expires;
  };
  std::map<std::string, PageToken> page_tokens_;
  json request_log_ = json::array();
  // Emulator-only orders (refused, lost): ids above the venue's, which count from the microsecond
  // it opened (core/clock.hpp) and stay under 9e14 until 2048; these count from 9e14 plus the
  // same microsecond, so an emulator started afresh repeats neither kind (its state file, when
  // it has one, then restores the counter).
  std::uint64_t next_local_id_ = 0;
  std::uint64_t next_group_ = 2'706'452'145;
  std::uint64_t next_coid_ = 1;
  std::uint64_t next_position_id_ = 64'630'792;
  std::uint64_t next_page_token_ = 1;
  int burst_429_left_ = 0;
  std::vector<Frame> outbox_;  // frames of the current locked operation, sent by commit()
  bool persisting_ = false;    // set by start() once the state file has been read
  bool dirty_ = false;
  Saved saved_;

  std::unique_ptr<httplib::Server> server_;
  std::string cert_pem_;
  int port_ = 0;
  std::thread listen_thread_, market_thread_;
  std::mutex sched_mu_;
  std::condition_variable sched_cv_;
  std::multimap<SteadyClock::time_point, std::function<void()>> tasks_;
  bool sched_stopping_ = false;
  std::atomic<bool> started_{false}, stopped_{false};
};

// ---------------------------------------------------------------------------------------------
// Venue events -> TradeStation order frames

TsOrder& TradeStationEmulator::Impl::adopt(const VenueOrder& v) {
  touch();  // every venue event passes here, and fills change cash_ too
  auto it = orders_.find(v.id);
  if (it == orders_.end()) {
    TsOrder t;
    if (auto p = pending_.find(v.client_order_id); p != pending_.end()) {
      t.meta = p->second;
    } else {
      t.meta.account = v.account;
      t.meta.symbol = v.symbol;
      t.meta.trade_action = v.side == Side::buy ? "BUY" : "SELL";
      t.meta.order_type = "Market";
      t.meta.duration = "DAY";
    }
    it = orders_.emplace(v.id, std::move(t)).first;
    sequence_.push_back(v.id);
  }
  TsOrder& o = it->second;
  o.last = v;
  if (!is_open(v.status)) {
    o.cancel_pending = false;
    if (o.status_override == "UCN") o.status_override.clear();
    if (o.closed_at == 0) o.closed_at = v.updated_at ? v.updated_at : clock_.now();
  }
  return o;
}

void TradeStationEmulator::Impl::on_venue_event(const VenueEvent& e) {
  if (batch_) {
    batch_->push_back(e);
    return;
  }
  process_event(e);
}

void TradeStationEmulator::Impl::process_event(const VenueEvent& e) {
  TsOrder& o = adopt(e.order);
  const FaultProfile p = profile();
  using K = VenueEvent::Kind;
  // Status frames (ack, cancel, ...) and fill frames can be lost on a stream that stays healthy
  // (LEAN PR #95 follow-up: 4 of 18 FLL frames arrived; issue #101); each loss is recorded.
  auto drop = [&](bool fill_frame) {
    const double r = fill_frame ? rate("ts_drop_fill_frame", p.drop_fill_event_rate)
                                : rate("ts_drop_order_frame", p.drop_order_event_rate);
    if (!faults_.roll(r)) return false;
    record(fill_frame ? "ts_drop_fill_frame" : "ts_drop_order_frame", o.last.id,
           o.last.client_order_id,
           std::string(to_string(e.kind)) + " frame(s) not sent on the order stream");
    return true;
  };
  switch (e.kind) {
    case K::accepted:
      if (drop(false)) break;
      if (e.order.status == VenueStatus::held) {
        publish_order(o, "DON", false);
      } else {
        publish_order(o, "OPN", false);
        publish_order(o, "ACK", false);
      }
      break;
    case K::rejected:
      o.reject_reason = e.order.reason;
      publish_order(o, "REJ", true);
      break;
    case K::activated:
      if (!drop(false)) publish_order(o, "ACK", false);
      break;
    case K::triggered:
      if (!drop(false)) publish_order(o, "STP", opt_.closed_time_on_stop_hit);
      break;
    case K::fill: {
      const auto& f = *e.fill;
      const auto& sym = symbols_.at(o.meta.symbol);
      const Price notional = f.price * f.quantity * sym.multiplier;
      if (position_account_[o.meta.symbol].empty())
        position_account_[o.meta.symbol] = o.meta.account;
      auto& cash = cash_[position_account_[o.meta.symbol]];
      cash = e.order.side == Side::buy ? cash - notional : cash + notional;
      if (!drop(true)) {
        if (e.order.status == VenueStatus::filled) {
          // A fill can first show on an ACK frame, then FLL; FLL may come first without
          // ClosedDateTime and be re-sent with it ([LEAN] SIM captures, api-notes section 5).
          if (opt_.fill_on_ack_frame) publish_order(o, "ACK", false);
          if (opt_.resend_terminal_frames) publish_order(o, "FLL", false);
          publish_order(o, "FLL", true);
        } else {
          publish_order(o, "FPR", false);
        }
      }
      publish_position(o.meta.symbol);
      break;
    }
    case K::cancelled: {
      if (drop(false)) break;
      const std::string code = status_code(o);
      if (code == "OUT" && opt_.resend_terminal_frames) publish_order(o, code, false);
      publish_order(o, code, true);
      break;
    }
    case K::replaced:
      if (!drop(false)) publish_order(o, status_code(o), false);
      break;
  }
}

std::optional<PositionView> TradeStationEmulator::Impl::position_view(const VenuePosition& p) {
  auto sym = symbols_.find(p.symbol);
  if (sym == symbols_.end()) return std::nullopt;
  PositionView v;
  v.account = position_account_[p.symbol];
  if (v.account.empty()) v.account = opt_.accounts.front().id;
  auto& id = position_id_[p.symbol];
  if (id.empty()) {
    touch();
    id = std::to_string(next_position_id_++);
    position_opened_[p.symbol] = clock_.now();
  }
  v.position_id = id;
  v.position = p;
  v.quote = venue_.last_quote(p.symbol);
  v.future = sym->second.future;
  v.multiplier = sym->second.multiplier;
  v.opened_at = position_opened_[p.symbol];
  return v;
}

void TradeStationEmulator::Impl::publish_position(const std::string& symbol) {
  for (const auto& p : venue_.positions()) {
    if (p.symbol != symbol) continue;
    if (auto v = position_view(p))
      publish(StreamKind::positions, v->account, {}, {}, line(render_position(*v)));
    return;
  }
  // Flat now: the stream reports the position as deleted (StreamPositions example in [SPEC]).
  auto id = position_id_.find(symbol);
  if (id == position_id_.end() || id->second.empty()) return;
  touch();
  publish(StreamKind::positions, position_account_[symbol], {}, {},
          line({{"Deleted", true}, {"PositionID", id->second}}));
  id->second.clear();
}

// Market data alone does not make the state dirty (no touch() for days_, and the venue does not
// count a quote as a change): a broker does not keep prices durable, and writing the whole state
// on every tick would cost more than it saves. Quotes and day statistics are written with the next
// broker-side change; fills a quote causes are venue changes and written before their frames.
void TradeStationEmulator::Impl::process_quote(const Quote& q) {
  venue_.on_quote(q);
  auto full = venue_.last_quote(q.symbol);
  if (!full) return;
  DayStats& d = days_[q.symbol];
  if (const auto px = full->last ? full->last : full->bid) {
    if (!d.seen) d.open = d.high = d.low = *px;
    d.seen = true;
    d.high = std::max(d.high, *px);
    d.low = std::min(d.low, *px);
  }
  d.volume += q.last_size;
  publish(StreamKind::quotes, {}, {}, q.symbol, line(render_quote(*full, d)));
  for (const auto& p : venue_.positions())
    if (p.symbol == q.symbol)
      if (auto v = position_view(p))
        publish(StreamKind::positions, v->account, {}, {}, line(render_position(*v)));
}

// ---------------------------------------------------------------------------------------------
// Order placement

void TradeStationEmulator::Impl::log_request(const std::string& endpoint, const std::string& coid,
                                             const std::string& id, bool duplicate, bool accepted,
                                             const std::string& message) {
  // Every placement, replace and cancel ends here, whatever else it changed (confirm ids, id
  // counters): one touch covers them.
  touch();
  request_log_.push_back({{"at", format_timestamp(clock_.now())},
                          {"endpoint", endpoint},
                          {"OrderConfirmID", coid},
                          {"OrderID", id},
                          {"duplicate", duplicate},
                          {"accepted", accepted},
                          {"message", message}});
}

// Checks what the venue cannot (accounts, duplicate OrderConfirmIDs, durations it does not
// model) and gives the order a client id; returns why it fails, or empty.
std::string TradeStationEmulator::Impl::precheck(ParsedOrder& p, std::set<std::string>& batch_ids,
                                                 bool& duplicate) {
  duplicate = false;
  if (!known_account(p.meta.account))
    return "Order failed. Reason: Invalid account " + p.meta.account + ".";
  auto sym = symbols_.find(p.meta.symbol);
  if (sym == symbols_.end()) return "Order failed. Reason: Invalid symbol " + p.meta.symbol + ".";
  p.meta.future = sym->second.future;
  if (!p.meta.confirm_id.empty()) {
    // OrderConfirmID "must be unique per API key, per order, per user" ([SPEC]): a resend is
    // refused as a duplicate, never executed twice.
    if (confirm_ids_.count(p.meta.confirm_id) || batch_ids.count(p.meta.confirm_id)) {
      duplicate = true;
      return "Order failed. Reason: Duplicate OrderConfirmID " + p.meta.confirm_id + ".";
    }
    batch_ids.insert(p.meta.confirm_id);
  } else {
    p.spec.client_order_id = "~tse" + std::to_string(next_coid_++);
  }
  const bool stop = p.spec.is_stop();
  if ((p.meta.duration == "IOC" || p.meta.duration == "FOK") && stop)
    return "Order failed. Reason: " + p.meta.duration +
           " is not valid for stop orders in the emulator.";
  if (p.meta.future && (p.meta.duration == "1" || p.meta.duration == "3" || p.meta.duration == "5"))
    return "Order failed. Reason: Duration " + p.meta.duration +
           " is only valid for equity orders.";  // [SPEC] Duration
  const TickSize tick(sym->second.tick);
  for (const auto& px : {p.spec.limit_price, p.spec.stop_price})
    if (px && !tick.is_on_tick(*px))
      return "Order failed. Reason: Price " + px->to_string() +
             " is not a multiple of the tick size " + sym->second.tick.to_string() + ".";
  return {};
}

TsOrder& TradeStationEmulator::Impl::create_local(const ParsedOrder& p, VenueStatus status,
                                                  const std::string& reason) {
  touch();
  TsOrder t;
  t.meta = p.meta;
  VenueOrder& v = t.last;
  v.id = std::to_string(next_local_id_++);
  v.client_order_id = p.spec.client_order_id;
  v.account = p.meta.account;
  v.symbol = p.meta.symbol;
  v.side = p.spec.side;
  v.quantity = p.spec.quantity;
  v.type = p.spec.type;
  v.limit_price = p.spec.limit_price;
  v.stop_price = p.spec.stop_price;
  v.tif = p.spec.tif;
  v.status = status;
  v.reason = reason;
  v.created_at = v.updated_at = clock_.now();
  t.closed_at = v.created_at;
  auto& ref = orders_[v.id] = std::move(t);
  sequence_.push_back(ref.last.id);
  return ref;
}

// Durations the venue does not model: IOC cancels what did not fill at once (OUT/FLP), 1/3/5
// expire after that many minutes (EXP).
void TradeStationEmulator::Impl::after_submit(const std::string& id, const ParsedOrder& p) {
  const VenueOrder* v = venue_.find(id);
  if (!v || !is_open(v->status)) return;
  if (p.meta.duration == "IOC" || p.meta.duration == "FOK") {
    pending_[p.spec.client_order_id].kill_status = "OUT";
    venue_.cancel(id, p.meta.duration + " remainder cancelled");
  } else if (p.meta.duration == "1" || p.meta.duration == "3" || p.meta.duration == "5") {
    schedule_expiry(id, std::chrono::minutes(std::stoi(p.meta.duration)));
  }
}

void TradeStationEmulator::Impl::schedule_expiry(const std::string& id,
                                                 std::chrono::milliseconds after) {
  schedule(after, [this, id] {
    Locked lock(*this);
    auto it = orders_.find(id);
    const VenueOrder* vo = venue_.find(id);
    if (it == orders_.end() || !vo || !is_open(vo->status)) return;
    touch();
    it->second.meta.kill_status = "EXP";
    venue_.cancel(id, "expired");
  });
}

TradeStationEmulator::Impl::Placement TradeStationEmulator::Impl::place_single(
    ParsedOrder p, const std::string& endpoint) {
  std::set<std::string> batch_ids;
  bool duplicate = false;
  if (auto why = precheck(p, batch_ids, duplicate); !why.empty()) {
    log_request(endpoint, p.meta.confirm_id, {}, duplicate, false, why);
    return {false, {}, why};
  }
  const std::string coid = p.spec.client_order_id;
  const std::string message = sent_order_message(p.meta, p.spec);
  if (!p.meta.confirm_id.empty()) confirm_ids_.insert(p.meta.confirm_id);

  // A stop rejected with no REJ frame: acknowledged on the stream, REJ only in GET /orders
  // ([LEAN] issue #91; api-notes section 8).
  if (p.spec.is_stop() && faults_.roll(rate("ts_reject_stop_silently"))) {
    TsOrder& o = create_local(p, VenueStatus::rejected, "Order rejected: stop price is invalid.");
    o.status_override = "REJ";
    o.reject_reason = o.last.reason;
    record("ts_reject_stop_silently", o.last.id, coid,
           "stop rejected; the stream shows ACK and never REJ");
    publish_order(o, "OPN", false);
    publish_order(o, "ACK", false);
    log_request(endpoint, p.meta.confirm_id, o.last.id, false, true, message);
    return {true, o.last.id, message};
  }
  // Acknowledged with an order id, never reaches the venue: not listed, GET answers NotFound.
  if (faults_.roll(rate("ts_lost_order"))) {
    const std::string id = std::to_string(next_local_id_++);
    record("ts_lost_order", id, coid, "acknowledged to the client, never reaches the venue");
    log_request(endpoint, p.meta.confirm_id, id, false, true, message);
    return {true, id, message};
  }
  // Fill-or-kill: the venue has no all-or-none matching, so an order the touch cannot fill
  // entirely is killed here, before it reaches the venue.
  if (p.meta.duration == "FOK") {
    auto q = venue_.last_quote(p.meta.symbol);
    const bool buy = p.spec.side == Side::buy;
    const auto touch = q ? (buy ? q->ask : q->bid) : std::nullopt;
    const std::int64_t size = q ? (buy ? q->ask_size : q->bid_size) : 0;
    bool fillable = touch.has_value() && (size == 0 || size >= p.spec.quantity);
    if (fillable && p.spec.limit_price)
      fillable = buy ? *touch <= *p.spec.limit_price : *touch >= *p.spec.limit_price;
    if (!fillable) {
      TsOrder& o = create_local(p, VenueStatus::cancelled, "FOK not filled");
      o.meta.kill_status = "OUT";
      publish_order(o, "OPN", false);
      publish_order(o, "OUT", true);
      log_request(endpoint, p.meta.confirm_id, o.last.id, false, true, message);
      return {true, o.last.id, message};
    }
  }

  std::vector<VenueEvent> events;
  batch_ = &events;
  pending_[coid] = p.meta;
  auto r = venue_.submit(p.spec, p.meta.account);
  if (r.accepted) after_submit(r.order_id, p);
  batch_ = nullptr;
  for (const auto& e : events) process_event(e);
  pending_.erase(coid);
  // The venue holds the stop as sent; every later read (GET, stream frames) shows its StopPrice
  // one tick higher: the read-back differs in exactly one field.
  if (r.accepted && p.spec.stop_price && faults_.roll(rate("ts_alter_stop_readback"))) {
    if (auto it = orders_.find(r.order_id); it != orders_.end()) {
      touch();
      it->second.readback_stop_price = *p.spec.stop_price + symbols_.at(p.meta.symbol).tick;
      record("ts_alter_stop_readback", r.order_id, coid,
             "StopPrice reads back as " + it->second.readback_stop_price->to_string() + ", venue holds " +
                 p.spec.stop_price->to_string());
    }
  }
  if (r.order_id.empty()) {
    // Refused before it got an id (validation): a failed order in Errors.
    confirm_ids_.erase(p.meta.confirm_id);
    const std::string why = "Order failed. Reason: " + r.reason;
    log_request(endpoint, p.meta.confirm_id, {}, false, false, why);
    return {false, {}, why};
  }
  // A venue reject (reject_rate) still answers 200 "Sent order": the REJ comes on the stream,
  // since HTTP 200 only means accepted for processing (api-notes section 3).
  log_request(endpoint, p.meta.confirm_id, r.order_id, false, true, message);
  return {true, r.order_id, message};
}

std::vector<TradeStationEmulator::Impl::Placement> TradeStationEmulator::Impl::place_bracket(
    ParsedOrder entry, std::vector<ParsedOrder> exits, const std::string& type,
    const std::string& endpoint) {
  auto fail_all = [&](const std::string& why, bool dup) {
    std::vector<Placement> out;
    for (auto* p : {&entry, &exits[0], &exits[1]}) {
      log_request(endpoint, p->meta.confirm_id, {}, dup, false, why);
      out.push_back({false, {}, why});
    }
    return out;
  };
  std::set<std::string> batch_ids;
  for (auto* p : {&entry, &exits[0], &exits[1]}) {
    bool dup = false;
    if (auto why = precheck(*p, batch_ids, dup); !why.empty()) return fail_all(why, dup);
  }
  // The venue's bracket is one limit and one stop exit; TradeStation's example sends them in
  // either order ("Long Entry with Exit Bracket").
  const bool swapped = exits[0].spec.is_stop();
  if (swapped) std::swap(exits[0], exits[1]);
  BracketSpec b{entry.spec, exits[0].spec, exits[1].spec};
  if (auto why = validate(b); !why.empty()) return fail_all("Order failed. Reason: " + why, false);

  const std::string group = next_group();
  for (auto* p : {&exits[0], &exits[1]}) {
    p->meta.group_name = type + " " + group;
    p->meta.oca = group;
  }
  std::vector<VenueEvent> events;
  batch_ = &events;
  for (auto* p : {&entry, &exits[0], &exits[1]}) pending_[p->spec.client_order_id] = p->meta;
  auto r = venue_.submit_bracket(b, entry.meta.account);
  if (r.accepted) {
    // OSP = linked parent, OSO = linked child, BRK = bracket sibling ([SPEC] OrderRelationship).
    pending_[entry.spec.client_order_id].relations = {{r.take_profit_id, "OSO"},
                                                      {r.stop_id, "OSO"}};
    pending_[exits[0].spec.client_order_id].relations = {{r.entry_id, "OSP"}, {r.stop_id, type}};
    pending_[exits[1].spec.client_order_id].relations = {{r.entry_id, "OSP"},
                                                         {r.take_profit_id, type}};
    after_submit(r.entry_id, entry);
  }
  batch_ = nullptr;
  for (const auto& e : events) process_event(e);
  for (auto* p : {&entry, &exits[0], &exits[1]}) pending_.erase(p->spec.client_order_id);
  if (!r.accepted && r.entry_id.empty())
    return fail_all("Order failed. Reason: " + r.reason, false);
  std::vector<Placement> out;
  // Answer in the order of the request.
  std::vector<std::pair<ParsedOrder*, std::string>> placed{
      {&entry, r.entry_id}, {&exits[0], r.take_profit_id}, {&exits[1], r.stop_id}};
  if (swapped) std::swap(placed[1], placed[2]);
  for (const auto& [p, id] : placed) {
    if (!p->meta.confirm_id.empty()) confirm_ids_.insert(p->meta.confirm_id);
    const std::string msg = sent_order_message(p->meta, p->spec);
    log_request(endpoint, p->meta.confirm_id, id, false, true, msg);
    out.push_back({true, id, msg});
  }
  return out;
}

std::vector<TradeStationEmulator::Impl::Placement> TradeStationEmulator::Impl::place_oco(
    std::vector<ParsedOrder> orders, const std::string& type, const std::string& endpoint) {
  std::vector<Placement> out;
  auto fail_all = [&](const std::string& why, bool dup) {
    for (auto& p : orders) {
      log_request(endpoint, p.meta.confirm_id, {}, dup, false, why);
      out.push_back({false, {}, why});
    }
    return out;
  };
  std::set<std::string> batch_ids;
  for (auto& p : orders) {
    bool dup = false;
    if (auto why = precheck(p, batch_ids, dup); !why.empty()) return fail_all(why, dup);
  }
  // Brackets are "all for the same symbol and … the same side", closing only ([SPEC]
  // PlaceGroupOrder).
  if (type == "BRK" && (orders[0].meta.symbol != orders[1].meta.symbol ||
                        orders[0].spec.side != orders[1].spec.side))
    return fail_all("Order failed. Reason: Bracket orders must be for the same symbol and side.",
                    false);
  const std::string group = next_group();
  for (auto& p : orders) {
    p.meta.group_name = type + " " + group;
    p.meta.oca = group;
  }
  std::vector<VenueEvent> events;
  batch_ = &events;
  for (auto& p : orders) pending_[p.spec.client_order_id] = p.meta;
  auto r = venue_.submit_oco(orders[0].spec, orders[1].spec, orders[0].meta.account);
  if (r.accepted) {
    pending_[orders[0].spec.client_order_id].relations = {{r.stop_id, type}};
    pending_[orders[1].spec.client_order_id].relations = {{r.take_profit_id, type}};
  }
  batch_ = nullptr;
  for (const auto& e : events) process_event(e);
  for (auto& p : orders) pending_.erase(p.spec.client_order_id);
  if (!r.accepted) return fail_all("Order failed. Reason: " + r.reason, false);
  const std::string ids[] = {r.take_profit_id, r.stop_id};
  for (std::size_t i = 0; i < 2; ++i) {
    auto& p = orders[i];
    if (!p.meta.confirm_id.empty()) confirm_ids_.insert(p.meta.confirm_id);
    const std::string msg = sent_order_message(p.meta, p.spec);
    log_request(endpoint, p.meta.confirm_id, ids[i], false, true, msg);
    out.push_back({true, ids[i], msg});
  }
  return out;
}

namespace {
// {"Orders":[{"OrderID","Message"}], "Errors":[{"OrderID","Error":"FAILED","Message"}]}: an
// object, though [SPEC] declares an array (api-notes section 3; SPEC_DEFECTS.md).
template <class Placements>
json placement_reply(const Placements& placements) {
  json orders = json::array(), errors = json::array();
  for (const auto& p : placements) {
    if (p.ok)
      orders.push_back({{"OrderID", p.order_id}, {"Message", p.message}});
    else
      errors.push_back({{"OrderID", p.order_id.empty() ? "0" : p.order_id},
                        {"Error", "FAILED"},
                        {"Message", p.message}});
  }
  json out;
  if (!orders.empty()) out["Orders"] = orders;
  if (!errors.empty()) out["Errors"] = errors;
  return out;
}

std::optional<json> parse_body(const httplib::Request& req, httplib::Response& res) {
  try {
    return json::parse(req.body);
  } catch (const json::exception&) {
    reply_error(res, 400, "BadRequest", "The request body is not valid JSON.");
    return std::nullopt;
  }
}
}  // namespace

void TradeStationEmulator::Impl::slow_ack(const std::string& what) {
  const FaultProfile p = profile();
  auto delay = p.ack_delay;
  if (p.ack_delay_jitter.count() > 0)
    delay += std::chrono::nanoseconds(faults_.uniform(0, p.ack_delay_jitter.count()));
  if (delay.count() <= 0) return;
  record("ts_slow_ack", {}, {},
         what + " answered after " +
             std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(delay).count()) +
             " ms");
  sync();
  std::this_thread::sleep_for(delay);
}

void TradeStationEmulator::Impl::handle_place_order(const httplib::Request& req,
                                                    httplib::Response& res) {
  auto body = parse_body(req, res);
  if (!body) return;
  std::string error;
  auto parent = parse_order_request(*body, error);
  if (!parent) return reply_error(res, 400, "BadRequest", error);
  const std::string endpoint = "POST /v3/orderexecution/orders";
  json answer;
  if (auto osos = body->find("OSOs"); osos != body->end() && !(osos->is_array() && osos->empty())) {
    // Supported: one BRK (or OCO) group of a limit and a stop exit, held until the entry fills
    // (the "Long Entry with Exit Bracket" example). Other OSO shapes are not modelled.
    if (!osos->is_array() || osos->size() != 1 || !(*osos)[0].is_object())
      return reply_error(res, 400, "BadRequest",
                         "The emulator supports exactly one OSO group (Type BRK or OCO).");
    const json& g = (*osos)[0];
    const std::string type = upper(string_field(g, "Type"));
    auto children = g.find("Orders");
    if ((type != "BRK" && type != "OCO") || children == g.end() || !children->is_array() ||
        children->size() != 2)
      return reply_error(
          res, 400, "BadRequest",
          "The emulator supports an OSO group of Type BRK or OCO with exactly two orders.");
    std::vector<ParsedOrder> exits;
    for (const auto& c : *children) {
      auto child = parse_order_request(c, error);
      if (!child) return reply_error(res, 400, "BadRequest", error);
      exits.push_back(std::move(*child));
    }
    Locked lock(*this);
    answer = placement_reply(place_bracket(std::move(*parent), std::move(exits), type, endpoint));
  } else {
    Locked lock(*this);
    answer = placement_reply(std::vector<Placement>{place_single(std::move(*parent), endpoint)});
  }
  slow_ack("PlaceOrder");
  reply(res, 200, answer);
}

void TradeStationEmulator::Impl::handle_place_group(const httplib::Request& req,
                                                    httplib::Response& res) {
  auto body = parse_body(req, res);
  if (!body) return;
  const std::string type = upper(string_field(*body, "Type"));
  auto list = body->is_object() ? body->find("Orders") : body->end();
  if (list == body->end() || !list->is_array() || list->empty())
    return reply_error(res, 400, "BadRequest", "Orders is required");
  if (type != "BRK" && type != "OCO" && type != "NORMAL")
    return reply_error(res, 400, "BadRequest", "Type must be BRK, OCO or NORMAL");
  if (type != "NORMAL" && list->size() != 2)
    return reply_error(res, 400, "BadRequest",
                       "The emulator supports " + type + " groups of exactly two orders.");
  std::vector<ParsedOrder> orders;
  std::string error;
  for (const auto& o : *list) {
    auto p = parse_order_request(o, error);
    if (!p) return reply_error(res, 400, "BadRequest", error);
    orders.push_back(std::move(*p));
  }
  const std::string endpoint = "POST /v3/orderexecution/ordergroups";
  json answer;
  {
    Locked lock(*this);
    if (type == "NORMAL") {
      std::vector<Placement> placed;
      for (auto& p : orders) placed.push_back(place_single(std::move(p), endpoint));
      answer = placement_reply(placed);
    } else {
      answer = placement_reply(place_oco(std::move(orders), type, endpoint));
    }
  }
  slow_ack("PlaceGroupOrder");
  reply(res, 200, answer);
}

void TradeStationEmulator::Impl::handle_confirm(const httplib::Request& req,
                                                httplib::Response& res) {
  auto body = parse_body(req, res);
  if (!body) return;
  std::string error;
  auto p = parse_order_request(*body, error);
  if (!p) return reply_error(res, 400, "BadRequest", error);
  Locked lock(*this);
  auto sym = symbols_.find(p->meta.symbol);
  if (!known_account(p->meta.account) || sym == symbols_.end())
    return reply_error(res, 400, "BadRequest", "Invalid account or symbol.");
  auto q = venue_.last_quote(p->meta.symbol);
  Price price = p->spec.limit_price  ? *p->spec.limit_price
                : p->spec.stop_price ? *p->spec.stop_price
                : q && q->last       ? *q->last
                                     : sym->second.start;
  const Price cost = price * p->spec.quantity * sym->second.multiplier;
  json c{{"AccountID", p->meta.account},
         {"Route", p->meta.route},
         {"TimeInForce", {{"Duration", p->meta.duration}}},
         {"SummaryMessage",
          sent_order_message(p->meta, p->spec).substr(std::string("Sent order: ").size())},
         {"EstimatedPrice", price.to_string()},
         {"EstimatedCost", cost.to_string()},
         {"EstimatedCommission", "0"},
         {"DebitCreditEstimatedCost", (p->spec.side == Side::buy ? -cost : cost).to_string()},
         {"OrderAssetCategory", sym->second.future ? "FUTURE" : "EQUITY"}};
  if (!p->meta.confirm_id.empty()) c["OrderConfirmID"] = p->meta.confirm_id;
  if (p->spec.limit_price) c["LimitPrice"] = p->spec.limit_price->to_string();
  if (p->spec.stop_price) c["StopPrice"] = p->spec.stop_price->to_string();
  reply(res, 200, {{"Confirmations", json::array({c})}});
}

void TradeStationEmulator::Impl::handle_replace(const httplib::Request& req,
                                                httplib::Response& res) {
  const std::string id = req.matches[1];
  auto body = parse_body(req, res);
  if (!body) return;
  if (!body->is_object())
    return reply_error(res, 400, "BadRequest", "The request body must be an object.");
  // Order IDs must not contain dashes ([SPEC] ReplaceOrder/CancelOrder orderID).
  if (id.find('-') != std::string::npos)
    return reply_error(res, 400, "BadRequest", "Order ID must not contain dashes.");
  Locked lock(*this);
  const std::string endpoint = "PUT /v3/orderexecution/orders";
  auto fail = [&](const std::string& msg) {
    log_request(endpoint, {}, id, false, false, msg);
    reply_error(res, 400, "BadRequest", msg);
  };
  auto it = orders_.find(id);
  const VenueOrder* v = venue_.find(id);
  if (it == orders_.end()) return fail("Invalid order ID.");
  // Texts from [LEAN] code and issues (api-notes section 6 and 8).
  if (!v || !is_open(v->status)) return fail("Failed to Cancel/Replace order: Not an open order.");
  if (it->second.cancel_pending)
    return fail("Cancel/Replace not allowed after cancel has been attempted");
  if (v->status == VenueStatus::triggered) return fail("too late: prior stop already triggered");
  if (body->contains("AdvancedOptions"))
    return fail("AdvancedOptions in a replace are not supported by the emulator.");
  if (auto t = body->find("OrderType");
      t != body->end() && t->is_string() && *t != it->second.meta.order_type)
    return fail("Converting to " + t->get<std::string>() + " is not supported by the emulator.");
  std::int64_t qty = v->quantity;
  std::optional<Price> limit = v->limit_price, stop = v->stop_price;
  try {
    if (auto q = body->find("Quantity"); q != body->end())
      qty = q->is_string() ? std::stoll(q->get<std::string>()) : q->get<std::int64_t>();
    if (auto l = body->find("LimitPrice"); l != body->end() && v->limit_price)
      limit = Price::parse(l->is_string() ? l->get<std::string>() : l->dump());
    if (auto s = body->find("StopPrice"); s != body->end() && v->stop_price)
      stop = Price::parse(s->is_string() ? s->get<std::string>() : s->dump());
  } catch (const std::exception&) {
    return fail("Quantity, LimitPrice and StopPrice must be numbers as strings.");
  }
  if (opt_.replace_assigns_new_order_id && v->filled_quantity == 0 && v->parent_id.empty() &&
      v->oco_group.empty() && it->second.meta.group_name.empty() && it->second.meta.relations.empty())
    return replace_as_new_order(id, qty, limit, stop, res);
  if (auto why = venue_.replace(id, qty, limit, stop); !why.empty())
    return fail("Failed to Cancel/Replace order: " + why);
  log_request(endpoint, it->second.meta.confirm_id, id, false, true, "Cancel/Replace order sent.");
  reply(res, 200, {{"Message", "Cancel/Replace order sent."}, {"OrderID", id}});
}

void TradeStationEmulator::Impl::replace_as_new_order(const std::string& id, std::int64_t quantity,
                                                      std::optional<Price> limit, std::optional<Price> stop,
                                                      httplib::Response& res) {
  const std::string endpoint = "PUT /v3/orderexecution/orders";
  TsOrder& old = orders_.at(id);
  const VenueOrder v = *venue_.find(id);  // a copy: the venue's table grows below
  ParsedOrder p;
  p.meta = old.meta;
  p.spec = OrderSpec{};
  // The venue refuses a client id twice (and one over 22 characters): a new one, as for an
  // order sent without an OrderConfirmID. The order's OrderConfirmID stays in its meta.
  touch();
  p.spec.client_order_id = "~tsr" + std::to_string(next_coid_++);
  p.spec.symbol = v.symbol;
  p.spec.side = v.side;
  p.spec.quantity = quantity;
  p.spec.type = v.type;
  p.spec.limit_price = limit;
  p.spec.stop_price = stop;
  p.spec.tif = v.tif;
  p.spec.outside_rth = v.outside_rth;
  std::vector<VenueEvent> events;
  batch_ = &events;
  pending_[p.spec.client_order_id] = p.meta;
  const auto r = venue_.submit(p.spec, p.meta.account);
  if (r.accepted) {
    old.status_override = "UCH";  // the old order's end, as its cancel event is published
    venue_.cancel(id, "replaced by order " + r.order_id);
  }
  batch_ = nullptr;
  for (const auto& e : events) process_event(e);
  pending_.erase(p.spec.client_order_id);
  if (!r.accepted) {
    const std::string why = "Failed to Cancel/Replace order: " + r.reason;
    log_request(endpoint, p.meta.confirm_id, id, false, false, why);
    return reply_error(res, 400, "BadRequest", why);
  }
  log_request(endpoint, p.meta.confirm_id, r.order_id, false, true, "Cancel/Replace order sent.");
  reply(res, 200, {{"Message", "Cancel/Replace order sent."}, {"OrderID", r.order_id}});
}

void TradeStationEmulator::Impl::handle_cancel(const httplib::Request& req,
                                               httplib::Response& res) {
  const std::string id = req.matches[1];
  if (id.find('-') != std::string::npos)
    return reply_error(res, 400, "BadRequest", "Order ID must not contain dashes.");
  Locked lock(*this);
  const std::string endpoint = "DELETE /v3/orderexecution/orders";
  auto it = orders_.find(id);
  const VenueOrder* v = venue_.find(id);
  if (it == orders_.end()) {
    log_request(endpoint, {}, id, false, false, "Invalid order ID.");
    return reply_error(res, 400, "BadRequest", "Invalid order ID.");
  }
  if (!v || !is_open(v->status)) {
    // "a later cancel returned 'Not an open order'" ([LEAN] issue #91).
    log_request(endpoint, it->second.meta.confirm_id, id, false, false, "Not an open order.");
    return reply_error(res, 400, "BadRequest", "Not an open order.");
  }
  TsOrder& o = it->second;
  if (!o.cancel_pending) {
    // Cancellation is asynchronous: UCN now, CAN once the venue has cancelled (api-notes 3).
    touch();
    o.cancel_pending = true;
    o.status_override = "UCN";
    publish_order(o, "UCN", false);
    schedule_cancel(id, opt_.cancel_delay);
  }
  log_request(endpoint, o.meta.confirm_id, id, false, true, "Cancel request sent");
  reply(res, 200, {{"Message", "Cancel request sent"}, {"OrderID", id}});
}

void TradeStationEmulator::Impl::schedule_cancel(const std::string& id,
                                                 std::chrono::milliseconds after) {
  schedule(after, [this, id] {
    Locked lock(*this);
    auto found = orders_.find(id);
    if (found == orders_.end() || !found->second.cancel_pending) return;
    if (!venue_.cancel(id, "cancelled by user").empty()) {
      touch();
      found->second.cancel_pending = false;
      found->second.status_override.clear();
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Reads

std::vector<std::string> TradeStationEmulator::Impl::accounts_of(const std::string& list,
                                                                 json& errors) const {
  std::vector<std::string> out;
  for (const auto& id : split(list, ',')) {
    if (known_account(id))
      out.push_back(id);
    else
      errors.push_back(
          {{"AccountID", id}, {"Error", "Forbidden"}, {"Message", "Invalid Account ID."}});
  }
  return out;
}

void TradeStationEmulator::Impl::handle_orders(const httplib::Request& req, httplib::Response& res,
                                               bool historical) {
  const std::string list = req.matches[1];
  if (split(list, ',').size() > 25)
    return reply_error(res, 400, "BadRequest", "At most 25 accounts may be given.");
  if (historical) {
    // `since` is required and at most 90 days back ([SPEC] GetHistoricalOrders).
    static const std::regex kDate("[0-9]{4}-[0-9]{2}-[0-9]{2}");
    const std::string since = req.get_param_value("since");
    if (!std::regex_match(since, kDate))
      return reply_error(res, 400, "BadRequest", "since is required (YYYY-MM-DD).");
  }
  std::size_t page = 600;
  if (req.has_param("pageSize")) {
    try {
      page = std::stoul(req.get_param_value("pageSize"));
    } catch (const std::exception&) {
      page = 0;
    }
    if (page < 1 || page > 600)
      return reply_error(res, 400, "BadRequest", "pageSize must be between 1 and 600.");
  }
  Locked lock(*this);
  std::size_t offset = 0;
  if (req.has_param("nextToken")) {
    // Tokens are good for one hour and for the one following request ([SPEC] nextToken).
    auto t = page_tokens_.find(req.get_param_value("nextToken"));
    if (t == page_tokens_.end() || t->second.expires < SteadyClock::now() ||
        t->second.accounts != list || t->second.historical != historical)
      return reply_error(res, 400, "BadRequest", "Invalid nextToken.");
    offset = t->second.offset;
    page_tokens_.erase(t);
  }
  json errors = json::array();
  const auto accounts = accounts_of(list, errors);
  std::vector<const TsOrder*> matching;
  for (const auto& id : sequence_) {
    const TsOrder& o = orders_.at(id);
    if (std::find(accounts.begin(), accounts.end(), o.meta.account) == accounts.end()) continue;
    // Historical orders exclude open ones ([SPEC] GetHistoricalOrders).
    if (historical && !is_terminal_code(status_code(o))) continue;
    matching.push_back(&o);
  }
  json orders = json::array();
  for (std::size_t i = offset; i < matching.size() && i < offset + page; ++i)
    orders.push_back(render_order(*matching[i], status_code(*matching[i]), true));
  json out{{"Orders", orders}, {"Errors", errors}};
  // A NextToken only while more orders remain ([SPEC] nextToken).
  if (req.has_param("pageSize") && offset + page < matching.size()) {
    const std::string token =
        "tse" + std::to_string(next_page_token_++) + "x" + std::to_string(offset + page);
    page_tokens_[token] = {list, historical, offset + page,
                           SteadyClock::now() + std::chrono::hours(1)};
    out["NextToken"] = token;
  }
  reply(res, 200, out);
}

void TradeStationEmulator::Impl::handle_orders_by_id(const httplib::Request& req,
                                                     httplib::Response& res, bool historical) {
  const auto ids = split(req.matches[2], ',');
  if (ids.empty() || ids.size() > 50)
    return reply_error(res, 400, "BadRequest", "Give 1 to 50 order IDs.");
  Locked lock(*this);
  json errors = json::array();
  const auto accounts = accounts_of(req.matches[1], errors);
  json orders = json::array();
  for (const auto& id : ids) {
    auto it = orders_.find(id);
    const bool found =
        it != orders_.end() &&
        std::find(accounts.begin(), accounts.end(), it->second.meta.account) != accounts.end() &&
        (!historical || is_terminal_code(status_code(it->second)));
    if (found)
      orders.push_back(render_order(it->second, status_code(it->second), true));
    else
      errors.push_back({{"AccountID", accounts.empty() ? std::string() : accounts.front()},
                        {"OrderID", id},
                        {"Error", "NotFound"},
                        {"Message", "Order not found."}});
  }
  reply(res, 200, {{"Orders", orders}, {"Errors", errors}});
}

void TradeStationEmulator::Impl::handle_balances(const httplib::Request& req,
                                                 httplib::Response& res, bool bod) {
  Locked lock(*this);
  json errors = json::array();
  const auto accounts = accounts_of(req.matches[1], errors);
  json balances = json::array();
  for (const auto& id : accounts) {
    const auto& acct = *std::find_if(opt_.accounts.begin(), opt_.accounts.end(),
                                     [&](const auto& a) { return a.id == id; });
    Price market_value, unrealized;
    for (const auto& p : venue_.positions()) {
      if (position_account_[p.symbol] != id) continue;
      auto v = position_view(p);
      if (!v) continue;
      const Price last = v->quote && v->quote->last ? *v->quote->last : p.average_price;
      market_value = market_value + last * p.quantity * v->multiplier;
      unrealized = unrealized + (last - p.average_price) * p.quantity * v->multiplier;
    }
    const Price cash = bod ? acct.cash : cash_[id];
    const Price equity = acct.type == "Futures" ? cash + unrealized : cash + market_value;
    json b{{"AccountID", id}, {"AccountType", acct.type}, {"CashBalance", cash.to_string()}};
    if (bod) {
      b["BalanceDetail"] = {{"AccountBalance", acct.cash.to_string()}, {"DayTrades", "0"}};
    } else {
      b["BuyingPower"] = (acct.type == "Margin" ? equity * 4 : equity).to_string();
      b["Equity"] = equity.to_string();
      b["MarketValue"] = market_value.to_string();
      b["TodaysProfitLoss"] = (equity - acct.cash).to_string();
      b["Commission"] = "0";
      b["UnclearedDeposit"] = "0";
      b["BalanceDetail"] = {{"DayTrades", "0"},
                            {"RealizedProfitLoss", (equity - acct.cash - unrealized).to_string()},
                            {"UnrealizedProfitLoss", unrealized.to_string()},
                            {"RequiredMargin", "0"}};
    }
    balances.push_back(b);
  }
  reply(res, 200, {{bod ? "BODBalances" : "Balances", balances}, {"Errors", errors}});
}

void TradeStationEmulator::Impl::handle_positions(const httplib::Request& req,
                                                  httplib::Response& res) {
  Locked lock(*this);
  json errors = json::array();
  const auto accounts = accounts_of(req.matches[1], errors);
  // ?symbol= takes a comma list with trailing-* wildcards ([SPEC] GetPositions).
  const auto patterns = split(req.get_param_value("symbol"), ',');
  auto wanted = [&](const std::string& s) {
    if (patterns.empty()) return true;
    for (const auto& p : patterns) {
      if (!p.empty() && p.back() == '*' ? s.rfind(p.substr(0, p.size() - 1), 0) == 0 : s == p)
        return true;
    }
    return false;
  };
  json positions = json::array();
  for (const auto& p : venue_.positions()) {
    auto v = position_view(p);
    if (!v || std::find(accounts.begin(), accounts.end(), v->account) == accounts.end() ||
        !wanted(p.symbol))
      continue;
    positions.push_back(render_position(*v));
  }
  json out{{"Positions", positions}, {"Errors", errors}};
  if (!last_positions_reply_.is_null() && faults_.roll(profile().stale_position_rate)) {
    record("ts_stale_positions", {}, {}, "positions answered from the previous snapshot");
    out = last_positions_reply_;
  }
  last_positions_reply_ = json{{"Positions", positions}, {"Errors", errors}};
  reply(res, 200, out);
}

void TradeStationEmulator::Impl::handle_quote_snapshot(const httplib::Request& req,
                                                       httplib::Response& res) {
  Locked lock(*this);
  json quotes = json::array(), errors = json::array();
  for (const auto& s : split(req.matches[1], ',')) {
    auto q = venue_.last_quote(s);
    if (!q)
      errors.push_back({{"Symbol", s}, {"Error", "FAILED, INVALID SYMBOL"}});  // [SPEC] example
    else
      quotes.push_back(render_quote(*q, days_[s]));
  }
  reply(res, 200, {{"Quotes", quotes}, {"Errors", errors}});
}

// ---------------------------------------------------------------------------------------------
// Streams

void TradeStationEmulator::Impl::open_stream(httplib::Response& res, StreamFilter filter,
                                             std::vector<std::string> lines, bool finish) {
  const bool brokerage = filter.kind != StreamKind::quotes;
  auto sub = hub_.subscribe(std::move(filter), std::move(lines), finish);
  res.status = 200;
  res.set_chunked_content_provider(
      brokerage ? kBrokerageStream : kMarketStream,
      [this, sub, brokerage](std::size_t, httplib::DataSink& sink) {
        auto write = [&](const std::string& l) { return sink.write(l.data(), l.size()); };
        // v3 streams say GoAway as a StreamStatus; market data as an error object (api-notes 5).
        const std::string goaway =
            brokerage
                ? line({{"StreamStatus", "GoAway"}})
                : line({{"Error", "GoAway"}, {"Message", "The server is about to shut down."}});
        if (sub->stalled) {
          hub_.wait_stalled(*sub);
          return false;  // the silence ends with the connection dropped
        }
        auto step = hub_.next(*sub, opt_.heartbeat_interval);
        for (const auto& l : step.lines)
          if (!write(l)) return false;
        switch (step.kind) {
          case StreamHub::Step::Kind::close:
            return false;
          case StreamHub::Step::Kind::goaway:
            write(goaway);
            sink.done();
            return true;
          case StreamHub::Step::Kind::finish:
            sink.done();
            return true;
          case StreamHub::Step::Kind::lines:
            hub_.wrote(*sub);
            return true;
          case StreamHub::Step::Kind::idle:
            break;
        }
        // Idle: a heartbeat, unless a stream fault strikes instead.
        if (faults_.roll(rate("ts_stall"))) {
          record("ts_stall", {}, {}, "stream silent (no data, no heartbeats), then dropped");
          if (!try_sync()) return false;
          hub_.stall(*sub, SteadyClock::now() + opt_.stall_length);
          return true;
        }
        if (faults_.roll(rate("ts_goaway"))) {
          record("ts_goaway", {}, {}, "GoAway sent on an idle stream");
          if (!try_sync()) return false;
          write(goaway);
          sink.done();
          return true;
        }
        if (faults_.roll(rate("ts_stream_error"))) {
          record("ts_stream_error", {}, {}, "error object sent, stream ended");
          if (!try_sync()) return false;
          const json err =
              brokerage
                  ? json{{"AccountID",
                          sub->filter.accounts.empty() ? "" : *sub->filter.accounts.begin()},
                         {"Error", "InternalServerError"},
                         {"Message", "Internal server error."}}
                  : json{{"Error", "InternalServerError"}, {"Message", "Internal server error."}};
          write(line(err));
          sink.done();
          return true;
        }
        // {"Heartbeat":N,"Timestamp":"..."} after 5 s (configurable) on an idle stream
        // [DOC-STREAM].
        if (!write(line({{"Heartbeat", ++sub->heartbeats}, {"Timestamp", ts_time(clock_.now())}})))
          return false;
        hub_.wrote(*sub);
        return true;
      },
      [this, sub](bool) { hub_.unsubscribe(sub); });
}

void TradeStationEmulator::Impl::handle_stream_orders(const httplib::Request& req,
                                                      httplib::Response& res) {
  StreamFilter f;
  f.kind = StreamKind::orders;
  if (req.matches.size() > 2)
    for (const auto& id : split(req.matches[2], ',')) f.order_ids.insert(id);
  std::vector<std::string> lines;
  Locked lock(*this);
  json errors = json::array();
  for (const auto& a : accounts_of(req.matches[1], errors)) f.accounts.insert(a);
  for (auto& e : errors)
    lines.push_back(line(e));  // {"AccountID","Error":"Forbidden",...} [SPEC] example
  // Every (re)connect starts with the full snapshot, then EndSnapshot (api-notes section 5).
  for (const auto& id : sequence_) {
    const TsOrder& o = orders_.at(id);
    if (!f.accounts.count(o.meta.account) || (!f.order_ids.empty() && !f.order_ids.count(id)))
      continue;
    lines.push_back(line(render_order(o, status_code(o), true)));
  }
  if (!f.accounts.empty()) lines.push_back(line({{"StreamStatus", "EndSnapshot"}}));
  const bool finish = f.accounts.empty();
  open_stream(res, std::move(f), std::move(lines), finish);
}

void TradeStationEmulator::Impl::handle_stream_positions(const httplib::Request& req,
                                                         httplib::Response& res) {
  StreamFilter f;
  f.kind = StreamKind::positions;
  std::vector<std::string> lines;
  Locked lock(*this);
  json errors = json::array();
  for (const auto& a : accounts_of(req.matches[1], errors)) f.accounts.insert(a);
  for (auto& e : errors) lines.push_back(line(e));
  for (const auto& p : venue_.positions())
    if (auto v = position_view(p); v && f.accounts.count(v->account))
      lines.push_back(line(render_position(*v)));
  if (!f.accounts.empty()) lines.push_back(line({{"StreamStatus", "EndSnapshot"}}));
  const bool finish = f.accounts.empty();
  open_stream(res, std::move(f), std::move(lines), finish);
}

void TradeStationEmulator::Impl::handle_stream_quotes(const httplib::Request& req,
                                                      httplib::Response& res) {
  StreamFilter f;
  f.kind = StreamKind::quotes;
  const auto symbols = split(req.matches[1], ',');
  if (symbols.size() > 100)
    return reply_error(res, 400, "BadRequest", "At most 100 symbols may be given.");
  std::vector<std::string> lines;
  Locked lock(*this);
  for (const auto& s : symbols) {
    auto q = venue_.last_quote(s);
    if (!q) {
      lines.push_back(line({{"Symbol", s}, {"Error", "FAILED, INVALID SYMBOL"}}));
      continue;
    }
    f.symbols.insert(s);
    lines.push_back(line(render_quote(*q, days_[s])));
  }
  // Market-data streams are v2: no EndSnapshot [DOC-STREAM].
  const bool finish = f.symbols.empty();
  open_stream(res, std::move(f), std::move(lines), finish);
}

// ---------------------------------------------------------------------------------------------
// Test control

void TradeStationEmulator::Impl::handle_control_quote(const httplib::Request& req,
                                                      httplib::Response& res) {
  auto body = parse_body(req, res);
  if (!body) return;
  try {
    Quote q;
    q.symbol = body->at("symbol").get<std::string>();
    auto price = [&](const char* key) -> std::optional<Price> {
      auto it = body->find(key);
      if (it == body->end() || it->is_null()) return std::nullopt;
      return Price::parse(it->is_string() ? it->get<std::string>() : it->dump());
    };
    q.bid = price("bid");
    q.ask = price("ask");
    q.last = price("last");
    q.bid_size = body->value("bid_size", std::int64_t{0});
    q.ask_size = body->value("ask_size", std::int64_t{0});
    q.last_size = body->value("last_size", std::int64_t{0});
    q.source = "control";
    if (!q.bid && !q.ask && !q.last) throw ParseError("give at least one of bid, ask, last");
    Locked lock(*this);
    if (!symbols_.count(q.symbol))
      return reply(res, 404, {{"error", "unknown symbol " + q.symbol}});
    q.at = clock_.now();
    process_quote(q);
    // The random walk continues from the price set here.
    if (auto full = venue_.last_quote(q.symbol); full && full->bid)
      reset_walk(q.symbol, *full->bid, 0);
    reply(res, 200, render_quote(*venue_.last_quote(q.symbol), days_[q.symbol]));
  } catch (const std::exception& e) {
    reply(res, 400, {{"error", e.what()}});
  }
}

void TradeStationEmulator::Impl::handle_control_faults(const httplib::Request& req,
                                                       httplib::Response& res) {
  if (req.method == "GET") return reply(res, 200, fault_profile_json(profile()));
  auto body = parse_body(req, res);
  if (!body) return;
  try {
    FaultProfile p = body->contains("profile")
                         ? FaultProfile::named(body->at("profile").get<std::string>())
                         : profile();
    for (const auto& [key, value] : body->items()) {
      if (key == "profile") continue;
      if (key == "extra") {
        for (const auto& [k, v] : value.items()) p.extra[k] = v.get<double>();
      } else {
        apply_fault_setting(p, key, value.get<double>());
      }
    }
    set_profile(p);
    reply(res, 200, fault_profile_json(p));
  } catch (const std::exception& e) {
    reply(res, 400, {{"error", e.what()}});
  }
}

void TradeStationEmulator::Impl::handle_control_log(httplib::Response& res) {
  json faults = json::array();
  for (const auto& f : faults_.log())
    faults.push_back({{"at", format_timestamp(f.at)},
                      {"kind", f.kind},
                      {"order_id", f.order_id},
                      {"client_order_id", f.client_order_id},
                      {"detail", f.detail}});
  Locked lock(*this);
  reply(res, 200, {{"requests", request_log_}, {"faults", faults}, {"open_streams", hub_.size()}});
}

// ---------------------------------------------------------------------------------------------
// State file (Options::state_file): the choke point is described at Impl::Locked

namespace {
constexpr int kStateVersion = 1;

template <class Map, class F>
json map_json(const Map& m, F value) {
  json out = json::object();
  for (const auto& [k, v] : m) out[k] = value(v);
  return out;
}
template <class T, class F>
std::map<std::string, T> map_from(const json& j, F value) {
  std::map<std::string, T> out;
  for (const auto& [k, v] : j.items()) out[k] = value(v);
  return out;
}
}  // namespace

void TradeStationEmulator::Impl::commit() {
  if (persisting_ && (dirty_ || venue_.changes() != saved_.venue ||
                      faults_.records() != saved_.faults || auth_.changes() != saved_.auth)) {
    // Counters read before the state is: what moves meanwhile (tokens, fault records made
    // outside mu_) is written again by the next commit.
    const Saved now{venue_.changes(), auth_.changes(), faults_.records()};
    dirty_ = false;
    try {
      write_state_file(opt_.state_file, save_state());
    } catch (...) {
      dirty_ = true;
      throw;
    }
    saved_ = now;
  }
  for (const auto& f : outbox_) hub_.publish(f.kind, f.account, f.order_id, f.symbol, f.line);
  outbox_.clear();
}

// Not state: open streams (they die with the process; clients reconnect and get a snapshot),
// page tokens, the stale-positions snapshot, the 429 burst, the random walks (restarted from the
// last quote) and the fault profile (configuration). pending_ is always empty between locked
// operations: each placement fills and empties it.
json TradeStationEmulator::Impl::save_state() const {
  json orders = json::array();
  for (const auto& id : sequence_) orders.push_back(ts_order_to_json(orders_.at(id)));
  // Locals are moved into their parents: an initializer list copies what it is given as an lvalue
  // (the orders twice over, as `orders` and inside `tables`).
  json tables{{"orders", std::move(orders)},
              {"confirm_ids", confirm_ids_},
              {"cash", map_json(cash_, [](Price p) { return p.units(); })},
              {"position_account", position_account_},
              {"position_id", position_id_},
              {"position_opened", position_opened_},
              {"days", map_json(days_, day_stats_to_json)},
              {"request_log", request_log_},
              {"next_local_id", next_local_id_},
              {"next_group", next_group_},
              {"next_coid", next_coid_},
              {"next_position_id", next_position_id_}};
  return {{"version", kStateVersion},
          {"venue", venue_.save_state()},
          {"faults", fault_log_to_json(faults_.log())},
          {"auth", auth_.save_state()},
          {"emulator", std::move(tables)}};
}

void TradeStationEmulator::Impl::restore_state(const json& state) {
  const char* part = "version";
  try {
    if (const int v = state.at("version").get<int>(); v != kStateVersion)
      throw Error("version " + std::to_string(v) + ", expected " + std::to_string(kStateVersion));
    // The parts that are only parsed come first, so that most bad files change nothing.
    part = "faults";
    auto log = fault_log_from_json(state.at("faults"));
    part = "emulator";
    restore_tables(state.at("emulator"));
    part = "auth";
    auth_.restore_state(state.at("auth"));
    part = "venue";
    venue_.restore_state(state.at("venue"));
    faults_.restore_log(std::move(log));
  } catch (const std::exception& e) {
    throw Error(std::string(part) + ": " + e.what());
  }
}

void TradeStationEmulator::Impl::restore_tables(const json& t) {
  std::map<std::string, TsOrder> orders;
  std::vector<std::string> sequence;
  for (const auto& j : t.at("orders")) {
    TsOrder o = ts_order_from_json(j);
    // Symbols are configuration: an order of one not configured now could not be served.
    if (!symbols_.count(o.meta.symbol))
      throw Error("order " + o.last.id + " is for " + o.meta.symbol +
                  ", which is not an emulated symbol (--symbols)");
    sequence.push_back(o.last.id);
    orders[o.last.id] = std::move(o);
  }
  auto days = map_from<DayStats>(t.at("days"), day_stats_from_json);
  auto cash = cash_;  // accounts configured now and absent from the file keep their start cash
  for (auto& [id, units] : map_from<Price>(t.at("cash"), [](const json& v) {
         return Price::from_units(v.get<std::int64_t>());
       }))
    cash[id] = units;
  auto confirm_ids = t.at("confirm_ids").get<std::set<std::string>>();
  auto position_account = t.at("position_account").get<std::map<std::string, std::string>>();
  auto position_id = t.at("position_id").get<std::map<std::string, std::string>>();
  auto position_opened = t.at("position_opened").get<std::map<std::string, Timestamp>>();
  const json& request_log = t.at("request_log");
  if (!request_log.is_array()) throw Error("request_log is not an array");
  const auto next_local_id = t.at("next_local_id").get<std::uint64_t>();
  const auto next_group = t.at("next_group").get<std::uint64_t>();
  const auto next_coid = t.at("next_coid").get<std::uint64_t>();
  const auto next_position_id = t.at("next_position_id").get<std::uint64_t>();

  orders_ = std::move(orders);
  sequence_ = std::move(sequence);
  for (auto& [symbol, d] : days) days_[symbol] = d;
  cash_ = std::move(cash);
  confirm_ids_ = std::move(confirm_ids);
  position_account_ = std::move(position_account);
  position_id_ = std::move(position_id);
  position_opened_ = std::move(position_opened);
  request_log_ = request_log;
  next_local_id_ = next_local_id;
  next_group_ = next_group;
  next_coid_ = next_coid;
  next_position_id_ = next_position_id;
}

// Timers die with the process; what they would have done is armed again. A cancel the client was
// told about ("Cancel request sent", UCN) lands cancel_delay after the restart, through the same
// path as before, so a reconnecting client sees UCN in its snapshot and then CAN, as it would
// have. An order of Duration 1/3/5 expires when it would have, or at once if that has passed.
void TradeStationEmulator::Impl::rearm_timers() {
  const Timestamp now = clock_.now();
  for (const auto& id : sequence_) {
    const TsOrder& o = orders_.at(id);
    const VenueOrder* v = venue_.find(id);
    if (!v || !is_open(v->status)) continue;
    if (o.cancel_pending) {
      schedule_cancel(id, opt_.cancel_delay);
    } else if (o.meta.duration == "1" || o.meta.duration == "3" || o.meta.duration == "5") {
      const Timestamp at = v->created_at + to_ns(std::chrono::minutes(std::stoi(o.meta.duration)));
      schedule_expiry(id, std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::nanoseconds(std::max<Timestamp>(0, at - now))));
    }
  }
}

void TradeStationEmulator::Impl::restore_from_file() {
  if (opt_.state_file.empty()) return;
  const auto& path = opt_.state_file;
  auto state = read_state_file(path);  // nullopt on a first start; throws Error naming the path
  Locked lock(*this);  // persisting_ is still off: nothing is written while restoring
  if (state) {
    try {
      restore_state(*state);
    } catch (const std::exception& e) {
      throw Error("emulator state file " + path.string() + ": " + e.what());
    }
    // Prices continue from the last quote rather than jumping back to the start price.
    std::uint64_t salt = 0;
    for (const auto& s : opt_.symbols)
      if (auto q = venue_.last_quote(s.symbol); q && q->bid) reset_walk(s.symbol, *q->bid, salt++);
    rearm_timers();
    spdlog::info("TradeStation emulator: state restored from {} ({} orders)", path.string(),
                 sequence_.size());
  }
  persisting_ = true;
  dirty_ = true;  // written at once, so that the file exists from the first start on
}

// ---------------------------------------------------------------------------------------------
// Server

bool TradeStationEmulator::Impl::authorize_api(const httplib::Request& req,
                                               httplib::Response& res) {
  const std::string header = req.get_header_value("Authorization");
  switch (auth_.check(header)) {
    case TokenAuthority::Check::ok:
      break;
    case TokenAuthority::Check::missing:
      reply_error(res, 401, "Unauthorized",
                  "Authorization header with a Bearer token is required.");
      return false;
    case TokenAuthority::Check::invalid:
      reply_error(res, 401, "Unauthorized", "Invalid access token.");
      return false;
    case TokenAuthority::Check::expired:
      reply_error(res, 401, "Unauthorized", "Access token has expired.");
      return false;
  }
  if (faults_.roll(rate("ts_token_expiry"))) {
    auth_.expire_early(header);
    record("ts_token_expiry", {}, {},
           "access token expired early at " + req.method + " " + req.path);
    sync();
    reply_error(res, 401, "Unauthorized", "Access token has expired.");
    return false;
  }
  // 429 in bursts: once one strikes, the next ts_429_burst - 1 requests get it too.
  bool limited = false;
  {
    Locked lock(*this);
    if (burst_429_left_ > 0) {
      --burst_429_left_;
      limited = true;
    } else if (faults_.roll(rate("ts_429"))) {
      burst_429_left_ = std::max(0, static_cast<int>(rate("ts_429_burst", 3)) - 1);
      limited = true;
    }
  }
  if (limited) {
    record("ts_429", {}, {}, req.method + " " + req.path + " answered 429");
    sync();
    reply_error(res, 429, "TooManyRequests",
                "Too many requests, quota exceeded.");  // [DOC-RL], ErrorResponse
    return false;
  }
  return true;
}

void TradeStationEmulator::Impl::routes() {
  auto& s = *server_;
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (req.path.rfind("/v3/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
    return authorize_api(req, res) ? httplib::Server::HandlerResponse::Unhandled
                                   : httplib::Server::HandlerResponse::Handled;
  });
  // A handler that throws (e.g. the state file cannot be written) answers 500 with the reason,
  // never the answer it had prepared: the client must treat the outcome as unknown.
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    spdlog::error("TradeStation emulator: {}", what);
    reply_error(res, 500, "InternalServerError", what);
  });
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (res.body.empty() && res.status == 404)
      reply_error(res, 404, "NotFound", "No resource at " + req.method + " " + req.path + ".");
  });

  auto params = [](const httplib::Params& p) {
    TokenAuthority::Params out;
    for (const auto& [k, v] : p) out.emplace(k, v);
    return out;
  };
  s.Get("/authorize", [this, params](const httplib::Request& req, httplib::Response& res) {
    auto r = auth_.authorize(params(req.params));
    sync();  // the code is written before the redirect carries it
    if (r.status == 302)
      res.set_redirect(r.location, 302);
    else
      reply(res, r.status, r.body);
  });
  s.Post("/oauth/token", [this, params](const httplib::Request& req, httplib::Response& res) {
    // The token request is form-encoded [DOC-REFRESH]; httplib parses such bodies into params.
    auto r = auth_.token(params(req.params));
    sync();  // tokens are written before the client sees them
    reply(res, r.status, r.body);
  });

  s.Get("/v3/brokerage/accounts", [this](const httplib::Request&, httplib::Response& res) {
    json accounts = json::array();
    for (const auto& a : opt_.accounts)
      accounts.push_back({{"AccountID", a.id},
                          {"AccountType", a.type},
                          {"Alias", "Emulator"},
                          {"Currency", "USD"},
                          {"Status", "Active"},
                          {"AccountDetail",
                           {{"DayTradingQualified", true},
                            {"EnrolledInRegTProgram", a.type == "Margin"},
                            {"IsStockLocateEligible", false},
                            {"OptionApprovalLevel", 0},
                            {"PatternDayTrader", false},
                            {"RequiresBuyingPowerWarning", false}}}});
    reply(res, 200, {{"Accounts", accounts}});
  });
  const std::string acct = R"(/v3/brokerage/accounts/([^/]+))";
  s.Get(acct + "/balances",
        [this](const auto& req, auto& res) { handle_balances(req, res, false); });
  s.Get(acct + "/bodbalances",
        [this](const auto& req, auto& res) { handle_balances(req, res, true); });
  s.Get(acct + "/positions", [this](const auto& req, auto& res) { handle_positions(req, res); });
  s.Get(acct + "/orders", [this](const auto& req, auto& res) { handle_orders(req, res, false); });
  s.Get(acct + "/orders/([^/]+)",
        [this](const auto& req, auto& res) { handle_orders_by_id(req, res, false); });
  s.Get(acct + "/historicalorders",
        [this](const auto& req, auto& res) { handle_orders(req, res, true); });
  s.Get(acct + "/historicalorders/([^/]+)",
        [this](const auto& req, auto& res) { handle_orders_by_id(req, res, true); });
  const std::string stream = R"(/v3/brokerage/stream/accounts/([^/]+))";
  s.Get(stream + "/orders", [this](const auto& req, auto& res) { handle_stream_orders(req, res); });
  s.Get(stream + "/orders/([^/]+)",
        [this](const auto& req, auto& res) { handle_stream_orders(req, res); });
  s.Get(stream + "/positions",
        [this](const auto& req, auto& res) { handle_stream_positions(req, res); });
  s.Get(R"(/v3/marketdata/stream/quotes/([^/]+))",
        [this](const auto& req, auto& res) { handle_stream_quotes(req, res); });
  s.Get(R"(/v3/marketdata/quotes/([^/]+))",
        [this](const auto& req, auto& res) { handle_quote_snapshot(req, res); });

  s.Post("/v3/orderexecution/orders",
         [this](const auto& req, auto& res) { handle_place_order(req, res); });
  s.Post("/v3/orderexecution/ordergroups",
         [this](const auto& req, auto& res) { handle_place_group(req, res); });
  s.Post("/v3/orderexecution/orderconfirm",
         [this](const auto& req, auto& res) { handle_confirm(req, res); });
  s.Put(R"(/v3/orderexecution/orders/([^/]+))",
        [this](const auto& req, auto& res) { handle_replace(req, res); });
  s.Delete(R"(/v3/orderexecution/orders/([^/]+))",
           [this](const auto& req, auto& res) { handle_cancel(req, res); });
  s.Get("/v3/orderexecution/routes", [](const httplib::Request&, httplib::Response& res) {
    reply(res, 200,
          {{"Routes", json::array({{{"Id", "Intelligent"},
                                    {"Name", "Intelligent"},
                                    {"AssetTypes", json::array({"STOCK", "FUTURE"})}}})}});
  });
  s.Get("/v3/orderexecution/activationtriggers", [](const httplib::Request&,
                                                    httplib::Response& res) {
    reply(res, 200,
          {{"ActivationTriggers",
            json::array(
                {{{"Key", "STT"},
                  {"Name", "Single Trade Tick"},
                  {"Description",
                   "One trade tick must print within your stop price to trigger your stop."}}})}});
  });

  s.Post("/__emulator/quote",
         [this](const auto& req, auto& res) { handle_control_quote(req, res); });
  s.Get("/__emulator/faults",
        [this](const auto& req, auto& res) { handle_control_faults(req, res); });
  s.Post("/__emulator/faults",
         [this](const auto& req, auto& res) { handle_control_faults(req, res); });
  s.Get("/__emulator/log",
        [this](const httplib::Request&, httplib::Response& res) { handle_control_log(res); });
  s.Post("/__emulator/goaway", [this](const httplib::Request&, httplib::Response& res) {
    hub_.goaway_all();
    reply(res, 200, {{"ok", true}});
  });
  s.Post("/__emulator/disconnect", [this](const httplib::Request&, httplib::Response& res) {
    hub_.disconnect_all();
    reply(res, 200, {{"ok", true}});
  });
  s.Post("/__emulator/expire-tokens", [this](const httplib::Request&, httplib::Response& res) {
    auth_.expire_all();
    sync();
    reply(res, 200, {{"ok", true}});
  });
  s.Get("/__emulator/certificate", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(cert_pem_, "application/x-pem-file");
  });
}

void TradeStationEmulator::Impl::start(int port) {
  if (started_) throw Error("TradeStation emulator already started");
  // Before anything is served; a bad file throws here and leaves the emulator unstarted.
  restore_from_file();
  if (started_.exchange(true)) throw Error("TradeStation emulator already started");
  if (opt_.tls) {
    // A throw-away certificate generated at start-up: no key material is ever committed.
    const net::SelfSignedPem pem = net::make_self_signed_pem("Backstop TradeStation emulator");
    cert_pem_ = pem.cert_pem;
    // httplib's server takes OpenSSL objects (and takes its own references to them).
    std::unique_ptr<BIO, int (*)(BIO*)> cert_bio(BIO_new_mem_buf(pem.cert_pem.data(), static_cast<int>(pem.cert_pem.size())),
                                               BIO_free);
    std::unique_ptr<BIO, int (*)(BIO*)> key_bio(BIO_new_mem_buf(pem.key_pem.data(), static_cast<int>(pem.key_pem.size())),
                                              BIO_free);
    std::unique_ptr<X509, void (*)(X509*)> cert(cert_bio ? PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr)
                                                         : nullptr,
                                                X509_free);
    std::unique_ptr<EVP_PKEY, void (*)(EVP_PKEY*)> key(
        key_bio ? PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr) : nullptr, EVP_PKEY_free);
    if (!cert || !key) throw Error("TradeStation emulator: cannot read the generated TLS certificate");
    auto ssl = std::make_unique<httplib::SSLServer>(cert.get(), key.get());
    if (!ssl->is_valid()) throw Error("TradeStation emulator: TLS server set-up failed");
    server_ = std::move(ssl);
  } else {
    server_ = std::make_unique<httplib::Server>();
  }
  // Each open stream holds a worker thread; the default pool (8) would starve other requests.
  server_->new_task_queue = [] { return new httplib::ThreadPool(64); };
  server_->set_keep_alive_timeout(1);  // lets stop() finish quickly
  // cpp-httplib sends a response as two writes, status line and headers, then the body (and a
  // chunked stream as several per chunk), and leaves Nagle on by default. With Nagle the body
  // waits until the client ACKs the headers, and a client that is waiting for the body delays
  // that ACK (40 ms on Linux): every response on a reused connection took ~40 ms and the
  // loopback submit-to-ack measured ~27 ms, whatever the client. Real servers answer at once.
  server_->set_tcp_nodelay(true);
  routes();
  port_ = port == 0 ? server_->bind_to_any_port(opt_.host)
                    : (server_->bind_to_port(opt_.host, port) ? port : -1);
  if (port_ <= 0)
    throw Error("TradeStation emulator: cannot listen on " + opt_.host + ":" +
                std::to_string(port));
  // In process with `backstop run --emulate`: not on the event loop's CPU if it is pinned.
  listen_thread_ = std::thread([this] {
    unpin_this_thread();
    server_->listen_after_bind();
  });
  market_thread_ = std::thread([this] {
    unpin_this_thread();
    market_loop();
  });
  spdlog::info("TradeStation emulator listening on {}", base_url());
}

void TradeStationEmulator::Impl::stop() {
  if (!started_ || stopped_.exchange(true)) return;
  hub_.stop();  // streams send GoAway and end before the server goes
  {
    std::lock_guard lock(sched_mu_);
    sched_stopping_ = true;
    sched_cv_.notify_all();
  }
  if (market_thread_.joinable()) market_thread_.join();
  server_->stop();
  if (listen_thread_.joinable()) listen_thread_.join();
}

void TradeStationEmulator::Impl::market_loop() {
  auto next_tick = SteadyClock::now() + opt_.tick_interval;
  std::unique_lock lock(sched_mu_);
  while (!sched_stopping_) {
    auto wake = SteadyClock::time_point::max();
    if (opt_.tick_interval.count() > 0) wake = next_tick;
    if (!tasks_.empty()) wake = std::min(wake, tasks_.begin()->first);
    if (wake == SteadyClock::time_point::max())
      sched_cv_.wait(lock);
    else
      sched_cv_.wait_until(lock, wake);
    if (sched_stopping_) break;
    const auto now = SteadyClock::now();
    std::vector<std::function<void()>> due;
    while (!tasks_.empty() && tasks_.begin()->first <= now) {
      due.push_back(std::move(tasks_.begin()->second));
      tasks_.erase(tasks_.begin());
    }
    const bool tick_due = opt_.tick_interval.count() > 0 && now >= next_tick;
    lock.unlock();
    // A failed state write must not end the thread; the next commit writes again.
    auto run = [](const std::function<void()>& f) {
      try {
        f();
      } catch (const std::exception& e) {
        spdlog::error("TradeStation emulator: {}", e.what());
      }
    };
    for (auto& t : due) run(t);
    if (tick_due) {
      run([this] { tick(); });
      next_tick += opt_.tick_interval;
      if (next_tick < now) next_tick = now + opt_.tick_interval;
    }
    lock.lock();
  }
}

void TradeStationEmulator::Impl::tick() {
  Locked lock(*this);
  for (auto& [symbol, walk] : walks_)
    if (auto q = walk->next(clock_.now())) process_quote(*q);
  // disconnect_rate: per market tick, every open stream is cut without a word.
  if (hub_.size() > 0 && faults_.roll(profile().disconnect_rate)) {
    record("ts_disconnect", {}, {}, "all open streams dropped");
    hub_.disconnect_all();
  }
}

// ---------------------------------------------------------------------------------------------

TradeStationEmulator::TradeStationEmulator(Options options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
TradeStationEmulator::~TradeStationEmulator() = default;
void TradeStationEmulator::start(int port) { impl_->start(port); }
int TradeStationEmulator::port() const { return impl_->port(); }
void TradeStationEmulator::stop() { impl_->stop(); }
std::string TradeStationEmulator::base_url() const { return impl_->base_url(); }
std::string TradeStationEmulator::certificate_pem() const { return impl_->certificate_pem(); }
const Options& TradeStationEmulator::options() const { return impl_->options(); }

std::vector<FaultRecord> TradeStationEmulator::fault_log() const { return impl_->fault_log(); }

}  // namespace backstop::tradestation_emulator
