#pragma once
// SimBroker: the simulated venue behind the Broker interface, in process, on the event loop.
// It drives the venue's market from price paths, delivers venue events as order events, and
// applies the delivery faults of its profile (ack delays, dropped events, disconnects with lost
// replies, stale position reports), logging each one.
#include <map>
#include <memory>
#include <vector>

#include "brokers/broker.hpp"
#include "brokers/sim/fault_injector.hpp"
#include "brokers/sim/price_path.hpp"
#include "brokers/sim/venue.hpp"
#include "core/event_loop.hpp"
#include "core/lifetime.hpp"

namespace backstop {

struct SimBrokerOptions {
  std::string name = "sim";
  std::string account = "SIM0001";
  Duration tick_interval{std::chrono::milliseconds(100)};
};

class SimBroker final : public Broker {
 public:
  SimBroker(SimBrokerOptions options, EventLoop& loop, Venue& venue);

  void add_price_path(std::unique_ptr<PricePath> path) { paths_.push_back(std::move(path)); }

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
  void list_fills(FillsCallback done) override;
  void subscribe_order_events(OrderEventHandler handler) override { order_handler_ = std::move(handler); }
  void subscribe_quotes(const std::vector<std::string>& symbols, QuoteHandler handler) override;
  BrokerHealthReport health() const override;
  std::optional<WireOrderView> preview(const OrderSpec& order) const override;

  Venue& venue() { return venue_; }
  // Fault on demand (tests, rehearsals): the link to the venue drops now and stays down until
  // set_link_up(true); while down, requests fail locally and events are lost, as with the
  // random `disconnect_rate` outages. Market data keeps flowing (it is the venue's own feed).
  void set_link_up(bool up);
  static BrokerOrder to_broker_order(const VenueOrder& v);

 private:
  enum class Link { up, down };
  Duration ack_delay();
  // Runs `request` at the venue after the ack delay, unless the link is down (failed locally)
  // or the reply is lost on the way back (unknown: the venue did act).
  void transmit(const char* what, std::function<void()> request, std::function<void()> reply,
                std::function<void(const std::string&)> lost, std::function<void(const std::string&)> not_sent);
  void on_venue_event(const VenueEvent& ev);
  BrokerOrder read_back(const VenueOrder& v) const;  // as queries show it (with read-back faults)
  // Runs `answer` (which reads the venue and calls the query's callback) after the profile's
  // query delay, or at once without one.
  void answer_query(std::function<void()> answer);
  void tick();

  SimBrokerOptions options_;
  EventLoop& loop_;
  Venue& venue_;
  std::vector<std::unique_ptr<PricePath>> paths_;
  OrderEventHandler order_handler_;
  QuoteHandler quote_handler_;
  std::vector<std::string> quote_symbols_;
  std::vector<VenuePosition> last_positions_;
  Link link_ = Link::up;
  Timestamp link_down_until_ = 0;
  Timestamp last_message_at_ = 0;
  bool running_ = false;
  EventLoop::TimerId tick_timer_ = 0;
  // Fault sim_alter_stop_readback: venue order id -> the stop price queries show instead.
  std::map<std::string, Price> altered_stops_;
  std::uint64_t lost_sequence_ = 0;  // ids handed out for orders lost by sim_lost_order
  // Wraps every callback given to the loop and the venue, which may outlive this broker.
  Lifetime lifetime_;
};

}  // namespace backstop
