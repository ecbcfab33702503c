// TradeStation order stream and REST readers (brokers/tradestation/ts_wire.*), driven the way
// TradeStationBroker drives them: the stream body is framed by JsonObjectSplitter, each object
// parsed and, when it is an order (has OrderID), handed to OrderFrameMapper::on_order; a REST
// read's {"Orders":[...]} elements go through parse_order; a request body through wire_view.
// Exceptions from on_order/parse_order are tolerated (the adapter catches and counts them);
// memory errors, undefined behaviour and broken properties are not.
// Properties:
//  - fills: quantity > 0, execution id "<OrderID>-<cumulative>", and the mapper's cumulative
//    quantity equals the sum of the fills it reported;
//  - replaying a frame that was just applied produces no events (duplicates are silent);
//  - parse_order: filled_quantity == exec_quantity; average price only with an execution;
//  - the request builders round-trip: wire_view(order_request(spec)) reads back the spec's
//    prices, time in force and session flag;
//  - read_place_answer (no document) reads every input exactly as the document reader it
//    replaced in TradeStationBroker::place_result did (kept below as the reference).
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "brokers/net/json_object_splitter.hpp"
#include "brokers/tradestation/ts_wire.hpp"
#include "fuzz/fuzz_support.hpp"
#include "tests/support/ts_place_answer_reference.hpp"

using nlohmann::json;
using namespace backstop;
using namespace backstop::tradestation;
using backstop::fuzz::printable;
using backstop::fuzz::Rng;

namespace {

void check_events(OrderFrameMapper& m, const std::string& id, const std::vector<OrderEvent>& events) {
  for (const auto& ev : events) {
    FUZZ_CHECK(ev.broker_order_id == id, "event for %s carries id %s", id.c_str(), ev.broker_order_id.c_str());
    if (ev.kind != OrderEvent::Kind::fill) continue;
    FUZZ_CHECK(ev.fill.has_value(), "fill event without a fill");
    FUZZ_CHECK(ev.fill->quantity > 0, "fill of %lld", static_cast<long long>(ev.fill->quantity));
  }
  const auto* k = m.find(id);
  FUZZ_CHECK(k != nullptr, "order %s not recorded", id.c_str());
  std::int64_t sum = 0;
  for (const auto& f : k->fills) {
    sum += f.quantity;
    FUZZ_CHECK(f.execution_id == id + "-" + std::to_string(sum), "execution id %s after %lld filled",
               f.execution_id.c_str(), static_cast<long long>(sum));
  }
  FUZZ_CHECK(sum == k->cumulative, "fills sum to %lld, cumulative %lld", static_cast<long long>(sum),
             static_cast<long long>(k->cumulative));
}

void order_frame(OrderFrameMapper& m, const json& j, Timestamp now) {
  // TradeStationBroker::on_order_frame's dispatch.
  if (!j.is_object() || j.contains("Heartbeat") || j.contains("StreamStatus") || j.contains("Error")) return;
  if (!j.contains("OrderID")) return;
  std::vector<OrderEvent> events;
  try {
    m.on_order(j, now, events);
  } catch (const std::exception&) {
    return;  // counted as a bad frame by the adapter
  }
  const std::string id = json_string(j, "OrderID");
  if (id.empty()) {
    FUZZ_CHECK(events.empty(), "events for an order without an id");
    return;
  }
  check_events(m, id, events);
  std::vector<OrderEvent> again;
  try {
    m.on_order(j, now + 1, again);
  } catch (const std::exception&) {
    FUZZ_CHECK(false, "a frame accepted once threw when repeated");
  }
  FUZZ_CHECK(again.empty(), "a repeated frame produced %zu events (first kind %d) for \"%s\"", again.size(),
             static_cast<int>(again.front().kind), printable(j.dump()).c_str());
}

void rest_order(const json& o, const SymbolMap& symbols) {
  WireOrder w;
  try {
    w = parse_order(o, symbols);
  } catch (const std::exception&) {
    return;  // "garbled reply"
  }
  FUZZ_CHECK(w.order.filled_quantity == w.exec_quantity, "filled %lld vs exec %lld",
             static_cast<long long>(w.order.filled_quantity), static_cast<long long>(w.exec_quantity));
  if (w.order.average_fill_price) FUZZ_CHECK(w.exec_quantity > 0, "average fill price without an execution");
  if (w.status_known) FUZZ_CHECK(is_known_status(w.order.broker_status), "known status not in the table");
}

// A realistic price from the rng: at most 12 whole digits and 8 decimals.
Price some_price(Rng& rng) {
  const std::int64_t units = static_cast<std::int64_t>(rng.next() % 100'000'000'000'000'000ull);
  return Price::from_units(rng.below(4) == 0 ? -units : units);
}

void builders(Rng& rng, const SymbolMap& symbols) {
  OrderSpec s;
  s.symbol = "ES";
  s.quantity = 1 + static_cast<std::int64_t>(rng.below(1000));
  s.side = rng.below(2) ? Side::buy : Side::sell;
  s.type = static_cast<OrderType>(rng.below(4));
  s.tif = static_cast<TimeInForce>(rng.below(4));
  s.outside_rth = rng.below(2);
  s.client_order_id = "coid" + std::to_string(rng.below(1000));
  if (s.type == OrderType::limit || s.type == OrderType::stop_limit) s.limit_price = some_price(rng);
  if (s.is_stop()) s.stop_price = some_price(rng);
  const RequestBody req = order_request(s, "ACC1", symbols);
  FUZZ_CHECK(req.ok(), "an ASCII order refused: %s", req.error.c_str());
  // As the lint sees it: the body as sent, parsed back.
  const WireOrderView v = wire_view(json::parse(req.text));
  FUZZ_CHECK(v.limit_price == s.limit_price, "LimitPrice does not read back");
  FUZZ_CHECK(v.stop_price == s.stop_price, "StopPrice does not read back");
  FUZZ_CHECK(v.tif_explicit && v.tif == s.tif, "time in force does not read back");
  FUZZ_CHECK(v.outside_rth == s.outside_rth || s.tif == TimeInForce::ioc || s.tif == TimeInForce::fok,
             "outside_rth does not read back");
  FUZZ_CHECK(order_type_from_wire(order_type_wire(s.type)) == s.type, "order type spelling");
}

void place_answer(std::string_view body) {
  const PlaceAnswer a = read_place_answer(body);
  const PlaceAnswer ref = reference::document_place_answer(std::string(body));
  FUZZ_CHECK(a.parsed == ref.parsed, "parsed %d, the document reader %d", a.parsed, ref.parsed);
  FUZZ_CHECK(a.order_ids == ref.order_ids, "%zu order ids, the document reader %zu", a.order_ids.size(),
             ref.order_ids.size());
  FUZZ_CHECK(a.errors == ref.errors, "errors \"%s\", the document reader \"%s\"", printable(a.errors).c_str(),
             printable(ref.errors).c_str());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Rng rng(data, size);
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  static const SymbolMap symbols({{"ES", "@ESZ25"}, {"AAPL", "AAPL"}});
  OrderFrameMapper mapper("tradestation", symbols);
  mapper.set_client_order_id("123", "coid-123");

  net::JsonObjectSplitter splitter(1 << 16);
  Timestamp now = 1'000;
  std::size_t i = 0;
  while (i < body.size()) {
    const std::string_view chunk = body.substr(i, 1 + rng.below(96));
    i += chunk.size();
    try {
      splitter.feed(chunk, [&](std::string_view text) {
        json j;
        try {
          j = json::parse(text);
        } catch (const std::exception&) {
          return;  // unparsable object skipped
        }
        order_frame(mapper, j, ++now);
        if (j.is_object()) {
          rest_order(j, symbols);
          if (auto it = j.find("Orders"); it != j.end() && it->is_array())
            for (const auto& o : *it) rest_order(o, symbols);
          (void)wire_view(j);
        }
      });
    } catch (const ParseError&) {
      // object over the limit: the stream is restarted
    }
  }
  builders(rng, symbols);
  place_answer(body);
  return 0;
}
