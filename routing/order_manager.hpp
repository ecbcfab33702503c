#pragma once
// OrderManager owns every order's record and is the only place that changes it. It enforces
// the semantics of DESIGN.md for every broker alike:
//  - durable before send: an order is journaled (pre_sent) and the commit awaited before the
//    request is handed to the broker;
//  - three outcomes: failed locally -> failed; broker answer -> submitted/rejected; unknown ->
//    stays pending and is resolved by querying the broker for its client order id, never resent;
//  - every state change goes through the transition table and is journaled, refused ones too;
//  - fills count once per execution id, whether they come from the stream or a query.
// Runs on the EventLoop thread.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "brokers/broker.hpp"
#include "core/event_loop.hpp"
#include "core/journal.hpp"

namespace backstop {

struct OrderManagerOptions {
  // How often, and how many times, an unknown outcome is re-queried. The order is declared failed
  // ("the broker has never seen it") only when every one of these queries was answered "no such
  // order"; when some went unanswered it stays pending and is queried again at the next resync.
  Duration resolve_retry_interval{std::chrono::seconds(1)};
  int resolve_attempts = 5;
  // An order in pre_sent or pending longer than this is reported as stuck.
  Duration stuck_threshold{std::chrono::seconds(10)};
};

class OrderManager {
 public:
  using SubmitCallback = std::function<void(const CommandResult&)>;
  using OrderListener = std::function<void(const OrderRecord&)>;
  using FillListener = std::function<void(const Fill&, const OrderRecord&)>;

  // Told the outcome of every request submitted with it, just before the caller's own callback
  // (the Router's broker health accounting), without wrapping each callback in another
  // std::function per order.
  class SubmitObserver {
   public:
    // `sent_at`: when the order was handed to the manager (it is journaled, then sent).
    virtual void submit_answered(const std::string& broker, Timestamp sent_at, const CommandResult& result) = 0;
    virtual ~SubmitObserver() = default;
  };

  OrderManager(EventLoop& loop, Journal& journal, ClientOrderIdGenerator& ids,
               OrderManagerOptions options = {});
  // Waits for the journal to finish the commits this manager is waiting on: their callbacks run
  // on the journal's thread and must not outlive the manager.
  ~OrderManager();
  OrderManager(const OrderManager&) = delete;
  OrderManager& operator=(const OrderManager&) = delete;

  // Registers a broker and subscribes to its order events. The broker must outlive the manager.
  void add_broker(Broker& broker);
  Broker* broker(const std::string& name) const;
  std::vector<std::string> broker_names() const;

  // Assigns a client order id if the spec has none, journals, then sends to `broker`.
  // `done` receives the command's outcome (after the journal write for it); `observer`, if any,
  // is told the same outcome just before.
  std::string submit(const std::string& broker, OrderSpec spec, SubmitCallback done = {},
                     SubmitObserver* observer = nullptr);
  // Entry, take-profit and stop journaled together, then sent as one bracket.
  BracketIds submit_bracket(const std::string& broker, BracketSpec bracket, SubmitCallback done = {},
                            SubmitObserver* observer = nullptr);
  // Records an order that is not sent because the router refused it (pre-trade checks, no
  // healthy broker): journaled, then failed with the reason, so every order a strategy asked for
  // is on record. Returns its client order id (assigned if the spec has none).
  std::string record_refused(const std::string& broker, OrderSpec spec, const std::string& reason);
  // Protection `local`: records a stop (or stop-limit) as held by Backstop instead of sending it.
  // Journaled (pre_sent, then held); `done` is told accepted once that is durable, or failed.
  // Nothing reaches the broker until release(). Returns its client order id (assigned if the spec
  // has none).
  std::string hold(const std::string& broker, OrderSpec spec, SubmitCallback done = {});
  // Sends a held order because its stop triggered: the same order, under the same client order
  // id, as a market order (a stop-limit as a limit order at its limit price), so that its fills,
  // its strategy and the journal follow one order. held -> pre_sent, journaled, then sent exactly
  // like submit(). `why` is journaled with the transition. Fails (done: failed_locally) when the
  // order is not held. An exit that ends unfilled shows in the order's updates (on_order_update),
  // whether its answer said so or a later resolution did.
  void release(const std::string& client_order_id, std::string_view why, SubmitCallback done = {});
  // The same, for a record find() gave (records never move): a crossed stop's release on the
  // tick path, which has just looked the order up, does not look it up again.
  void release(const OrderRecord& held, std::string_view why, SubmitCallback done = {});
  // Hands out a client order id from the same sequence as submit() does.
  std::string next_client_order_id() { return ids_.next(); }
  // A held order is cancelled (and replaced) here, at once: no broker holds it.
  void cancel(const std::string& client_order_id, SubmitCallback done = {});
  void replace(const std::string& client_order_id, const OrderSpec& updated, SubmitCallback done = {});

  // Loads every non-terminal order from the journal and resolves it with its broker by client
  // order id (a held order is at no broker: it is loaded as held, for the stop guard to watch). Call before sending anything new; `done` runs when every order is resolved or
  // still unknown after the retries.
  void recover(std::function<void(std::size_t resolved, std::size_t unresolved)> done);
  // Reads every non-terminal order (held ones aside) back from its broker and applies what it says, and applies
  // fills the broker records that the stream did not deliver. Streams are lossy; this is the
  // repair. An order whose unknown outcome could not be resolved (its broker unreachable for
  // every query) is resolved again here, from its first attempt: the broker answering "no such
  // order" repeatedly then ends it failed, as at recovery. `done` runs after every answer has
  // been applied.
  // `only_broker` limits it to one broker: a slow or paced broker does not delay decisions about
  // another's orders.
  void resync(std::function<void()> done = {}, const std::string& only_broker = {});
  // Reads just these orders back from their brokers (by broker id, else client order id) and
  // applies what each broker says; `done` runs after every answer. The cheap read-back for a
  // decision about a few orders (is this stop still working?), without listing executions.
  void refresh(const std::vector<std::string>& client_order_ids, std::function<void()> done);

  const OrderRecord* find(const std::string& client_order_id) const;
  const OrderRecord* find_by_broker_id(const std::string& broker, const std::string& broker_order_id) const;
  std::vector<const OrderRecord*> orders() const;
  std::vector<const OrderRecord*> working_orders() const;
  // Orders past the stuck threshold in pre_sent or pending.
  std::vector<const OrderRecord*> stuck_orders() const;
  // Net position per (broker, symbol) from the fills applied so far.
  const std::map<std::pair<std::string, std::string>, Position>& positions() const { return positions_; }
  std::int64_t position(const std::string& broker, const std::string& symbol) const;

  void on_order_update(OrderListener l) { order_listeners_.push_back(std::move(l)); }
  // The broker reported a stop as triggered (not yet necessarily filled).
  void on_triggered(OrderListener l) { trigger_listeners_.push_back(std::move(l)); }
  // Fills that only a query found (the stream lost them), since start.
  std::size_t fills_recovered_by_query() const { return fills_recovered_by_query_; }
  // recover(): was this order open (not terminal, held included) in the journal as loaded, i.e.
  // when the previous process ended? It may have ended since, while Backstop was down; a
  // strategy taking up its orders must hear of that (StrategyRunner, Strategy::on_resume).
  bool open_when_recovered(const std::string& client_order_id) const {
    return open_when_recovered_.count(client_order_id) != 0;
  }
  void on_fill(FillListener l) { fill_listeners_.push_back(std::move(l)); }

  // Applies a fill from any source (stream, query, reconciliation): deduplicated by execution id.
  bool apply_fill(const Fill& fill);
  // Moves an order to `to` (if legal) and journals the attempt either way.
  void apply_state(OrderRecord& order, OrderState to, const std::string& reason);

 private:
  // An order between its hand-off to the journal and its broker's answer. Kept in a free-listed
  // pool so that the continuations (journal commit -> loop -> broker answer) capture only
  // {this, slot, generation}: small enough for std::function's inline storage, so no allocation
  // and no copy of the caller's callback per step.
  struct InFlight {
    OrderRecord* order = nullptr;
    SubmitCallback done;
    SubmitObserver* observer = nullptr;
    std::uint32_t generation = 0;
  };
  // Client order id -> record. Ids of the manager's own generator ("<prefix>-<n>", n already
  // handed out) sit in a vector at n: consecutive orders use adjacent slots, so an insert or a
  // lookup touches memory that is already in cache. A hash table touches a random bucket and a
  // random node per insert, which measured about 1 us of a submit on the loaded 2-core VM of
  // bench/PERFORMANCE.md (cache misses). Other ids (given by a caller, or recovered from a run
  // with another prefix) sit in a hash map, usually empty.
  class OrderIndex {
   public:
    explicit OrderIndex(const ClientOrderIdGenerator& ids) : ids_(ids) {}
    OrderRecord* find(const std::string& coid) const;
    // False when the id is already present.
    bool insert(const std::string& coid, OrderRecord* record);
    // Room for the next `n` ids without reallocating.
    void reserve_ahead(std::size_t n);

   private:
    // n of "<prefix>-<n>" in the generator's exact form (no sign, no leading zero), else 0.
    std::uint64_t own_sequence(const std::string& coid) const;
    const ClientOrderIdGenerator& ids_;
    std::vector<OrderRecord*> own_;  // own_[n - 1]; never longer than ids_.sequence()
    std::unordered_map<std::string, OrderRecord*> others_;
  };
  // Records live in chunks constructed ahead of need: a record is ~450 bytes, so the heap would
  // need a fresh page every ~9 orders, and a page fault costs ~7 us on that VM. Records never
  // move and are never removed.
  class RecordStore {
   public:
    OrderRecord* take();
    // Returns the record take() just gave (unused: its id turned out to be taken).
    void untake();
    // Makes sure the next chunk exists (constructed, its pages touched).
    void prepare();
    std::size_t size() const { return size_; }

   private:
    static constexpr std::size_t kChunk = 64;
    std::vector<std::unique_ptr<OrderRecord[]>> chunks_;
    std::unique_ptr<OrderRecord[]> spare_;
    std::size_t used_in_last_ = kChunk;
    std::size_t size_ = 0;
  };
  struct BrokerIdHash {
    std::size_t operator()(const std::pair<std::string, std::string>& k) const noexcept {
      return std::hash<std::string>{}(k.first) * 31 + std::hash<std::string>{}(k.second);
    }
  };

  // The record of a new order (pre_sent, created now), or nullptr when its client order id is in
  // use (then `spec` is left as it was).
  OrderRecord* create(const std::string& broker, OrderSpec&& spec);
  // The record of an id known to exist (std::out_of_range otherwise).
  OrderRecord& at(const std::string& coid) const;
  // Memory for the next orders (a record chunk, index and list headroom), prepared after a
  // request has left rather than while the next one is being submitted.
  void prepare_capacity();
  void journal_then(const OrderRecord& order, std::function<void(const std::string& error)> next);
  std::uint32_t start_in_flight(OrderRecord& order, SubmitCallback&& done, SubmitObserver* observer);
  InFlight* in_flight(std::uint32_t slot, std::uint32_t generation);
  // Journals the order as it is now, then sends it from send_journaled (submit and release).
  void journal_then_send(OrderRecord& order, SubmitCallback&& done, SubmitObserver* observer);
  // After the order's journal commit, on the loop: send it (or fail it locally).
  void send_journaled(std::uint32_t slot, std::uint32_t generation, const std::string& journal_error);
  // Frees the slot, then tells its observer and callback.
  void answer(std::uint32_t slot, const CommandResult& r);
  void handle_submit_result(OrderRecord& order, const CommandResult& r);
  void on_event(const std::string& broker, const OrderEvent& ev);
  void apply_broker_view(OrderRecord& order, const BrokerOrder& view, const std::string& why);
  // Queries the broker for an order whose outcome is unknown: `attempt` counts queries,
  // `not_found` the answered "no such order" among them (only those can fail the order).
  void resolve_unknown(const std::string& coid, int attempt, int not_found, std::function<void(bool resolved)> done);
  // Queries one order at its broker (which must be registered) and applies the answer; `then`
  // runs after it either way.
  void read_back(const std::string& coid, const std::string& why, std::function<void()> then);
  void notify(const OrderRecord& o);
  void apply_early_fills(const OrderRecord& o);
  // A replace of unknown outcome: reads the order back (up to options_.resolve_attempts times,
  // resolve_retry_interval apart) and takes `next` as its spec once the broker holds it.
  void resolve_replace(const std::string& coid, const OrderSpec& next, int attempt, CommandResult unknown,
                       SubmitCallback done);
  // After the broker refused a cancel or replace of an order still working here: reads it back.
  void refresh_after_refusal(const OrderRecord& o, const std::string& why);
  // A replace answered with a broker order id other than the order's: the record follows it.
  void follow_replacement_id(OrderRecord& o, const std::string& new_id);
  // A broker's execution list (resync): per order, booked only up to the quantity not booked yet.
  void book_queried_fills(const std::vector<Fill>& fills);

  EventLoop& loop_;
  Journal& journal_;
  ClientOrderIdGenerator& ids_;
  OrderManagerOptions options_;
  std::map<std::string, Broker*> brokers_;
  RecordStore records_;
  OrderIndex index_;  // by client order id (a sorted map's string compares were the largest cost of a submit)
  std::unordered_map<std::pair<std::string, std::string>, std::string, BrokerIdHash> by_broker_id_;  // (broker, id) -> coid
  // (broker, id) of orders a replace put under a new broker id (TradeStation's replace answer
  // names an OrderID): the old id still finds its record for a late fill, but its own end
  // ("Replaced", a cancelled status) is not the end of the order, which lives on under the new id.
  std::set<std::pair<std::string, std::string>> superseded_broker_ids_;
  std::vector<OrderRecord*> order_sequence_;  // creation order, for listing
  std::vector<InFlight> in_flight_;
  std::vector<std::uint32_t> free_in_flight_;
  FillLedger ledger_;
  // Fills that arrived before the acknowledgement carrying their order's broker id.
  std::map<std::pair<std::string, std::string>, std::vector<Fill>> early_fills_;
  std::map<std::pair<std::string, std::string>, Position> positions_;
  std::vector<OrderListener> order_listeners_;
  std::vector<FillListener> fill_listeners_;
  std::vector<OrderListener> trigger_listeners_;
  // The transitions of the send path (release()'s held -> pre_sent, send_journaled()'s
  // pre_sent -> pending) and the latter's reason, reused: their strings keep their capacity, so
  // a client order id or a broker name longer than the small-string buffer costs no allocation
  // per order. Each is journaled before any listener runs (which may send another order).
  TransitionEvent transition_scratch_;
  std::string reason_scratch_;
  std::size_t fills_recovered_by_query_ = 0;
  std::set<std::string> open_when_recovered_;
  // Orders whose resolution by query gave up without an answer (the broker unreachable): resync
  // resolves them again once the broker answers.
  std::set<std::string> resolution_abandoned_;
  // Continuations posted to the loop after a commit hold a weak reference: once the manager is
  // gone they do nothing (the loop may outlive it and run them later).
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace backstop
