// IBKR Client Portal wire mappers (brokers/ibkr/ibkr_wire.*), driven the way IbkrBroker drives
// them: the input is one WebSocket text message (dispatched on "topic" like ws_on_message: `sor`
// args merged by SorMerger and each touched order mapped by order_from_json; `smd+` through
// quote_from_market_data) and, at the same time, a REST body (parse_submit_answer; a live-orders
// answer {"orders":[...]} or an array of rows through order_from_json; a ticket through
// view_of_ticket).
// Properties:
//  - every id SorMerger::apply reports touched can be found, and its merged object holds every
//    field of the frame's element; applying the same frame again changes nothing;
//  - order_from_json: limit/stop prices only for the order types that carry them; a known
//    status maps consistently with map_status; an average price only with a fill;
//  - parse_submit_answer: placed has ids, question has text or an id, error/garbled have text;
//  - build_ticket -> view_of_ticket reads back the spec's prices (for prices of at most 15
//    significant digits, which the double-based `price` field can carry), tif and session flag;
//  - view_of_ticket, json_flag and why_held_of read fields of any JSON type without throwing
//    (nlohmann's value(key, default) throws on a field of another type).
#include <cmath>
#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "brokers/ibkr/ibkr_wire.hpp"
#include "fuzz/fuzz_support.hpp"

using nlohmann::json;
using namespace backstop;
using namespace backstop::ibkr;
using backstop::fuzz::printable;
using backstop::fuzz::Rng;

namespace {

const std::map<std::int64_t, std::string> kSymbols = {{265598, "AAPL"}, {495512552, "ES"}};

// A price sent as a JSON number reads as the decimal that double stands for: equal to the double,
// and never refused when the double is the nearest to a decimal of at most 8 places (< 1e6).
void check_number_price(const json& row, const char* key) {
  const json* f = field(row, key);
  if (!f || !f->is_number_float()) return;
  const double d = f->get<double>();
  const auto p = json_price(*f);
  if (p) FUZZ_CHECK(p->to_double() == d, "%s %.17g read as %s", key, d, p->to_string().c_str());
  // d is the double nearest to units/1e8 (what parsing that decimal gives), |units| < 1e14.
  if (!(std::fabs(d) < 1e6)) return;
  const auto units = static_cast<std::int64_t>(std::llround(d * 1e8));
  if (static_cast<double>(units) / 1e8 == d)
    FUZZ_CHECK(p.has_value() && p->units() == units, "%s %.17g (%s) not read as its decimal", key, d,
               Price::from_units(units).to_string().c_str());
}

void check_order(const json& row) {
  for (const char* key : {"price", "auxPrice", "avgPrice", "lmtPrice", "stopPrice"}) check_number_price(row, key);
  const BrokerOrder b = order_from_json(row, kSymbols);
  if (b.limit_price) FUZZ_CHECK(b.type == OrderType::limit || b.type == OrderType::stop_limit, "limit price on a %d", static_cast<int>(b.type));
  if (b.stop_price) FUZZ_CHECK(b.type == OrderType::stop || b.type == OrderType::stop_limit, "stop price on a %d", static_cast<int>(b.type));
  if (b.average_fill_price) FUZZ_CHECK(b.filled_quantity > 0, "average fill price without a fill");
  std::string why_held;
  if (const json* w = field(row, "whyHeld")) why_held = json_text(*w);
  else if (const json* w2 = field(row, "why_held")) why_held = json_text(*w2);
  FUZZ_CHECK(map_status(b.broker_status, why_held, b.filled_quantity).state == b.state, "state differs from map_status");
  FUZZ_CHECK(why_held_of(row) == why_held, "why_held_of differs from the row's whyHeld/why_held");
}

void ws_message(std::string_view text, SorMerger& sor) {
  const json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return;
  const std::string topic = j.contains("topic") ? json_text(j["topic"]) : "";
  if (topic == "sor") {
    const json* args = field(j, "args");
    if (!args) return;
    const auto touched = sor.apply(*args);
    for (std::int64_t id : touched) {
      const json* merged = sor.find(id);
      FUZZ_CHECK(merged != nullptr && merged->is_object(), "touched order %lld not found", static_cast<long long>(id));
      check_order(*merged);
    }
    // Each element's fields are now in its order's merged picture (the last element for an id wins).
    std::size_t k = 0;
    for (const auto& el : *args) {
      const json* id = field(el, "orderId");
      if (!id || !json_quantity(*id)) continue;
      FUZZ_CHECK(k < touched.size(), "element not reported as touched");
      const json* merged = sor.find(touched[k++]);
      bool later = false;  // a later element for the same id may overwrite
      for (std::size_t m = k; m < touched.size(); ++m) later = later || touched[m] == touched[k - 1];
      if (later) continue;
      for (auto it = el.begin(); it != el.end(); ++it)
        FUZZ_CHECK(merged->contains(it.key()) && (*merged)[it.key()] == it.value(), "field %s lost in the merge",
                   printable(it.key()).c_str());
    }
    FUZZ_CHECK(k == touched.size(), "touched %zu orders for %zu elements", touched.size(), k);
    // Applying the same frame again is a no-op.
    std::map<std::int64_t, json> before;
    for (std::int64_t id : touched) before[id] = *sor.find(id);
    sor.apply(*args);
    for (const auto& [id, o] : before) FUZZ_CHECK(*sor.find(id) == o, "re-applying a frame changed order %lld", static_cast<long long>(id));
    (void)sor.any_working();
    return;
  }
  if (topic.rfind("smd+", 0) == 0) {
    const Quote q = quote_from_market_data(j, "AAPL");
    FUZZ_CHECK(q.symbol == "AAPL", "quote symbol");
  }
}

void rest_body(std::string_view text) {
  const SubmitAnswer a = parse_submit_answer(text);
  switch (a.kind) {
    case SubmitAnswer::Kind::placed: FUZZ_CHECK(!a.order_ids.empty(), "placed without ids"); break;
    case SubmitAnswer::Kind::question: break;
    case SubmitAnswer::Kind::error: break;
    case SubmitAnswer::Kind::garbled: FUZZ_CHECK(!a.text.empty(), "garbled answer without a reason"); break;
  }
  const json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return;
  if (j.is_object()) {
    check_order(j);  // single-status answer
    if (const json* orders = field(j, "orders"); orders && orders->is_array())
      for (const auto& row : *orders) check_order(row);
    SorMerger seeded;
    seeded.seed(j);
    (void)view_of_ticket(j, true);
    // The adapter's flags (auth status, contract search) on fields of any type: never a throw.
    for (const char* key : {"authenticated", "connected", "isUS"}) {
      const json* f = field(j, key);
      FUZZ_CHECK(json_flag(j, key) == (f && f->is_boolean() && f->get<bool>()), "json_flag(%s) misread", key);
    }
  } else if (j.is_array()) {
    for (const auto& row : j) check_order(row);
  }
}

// A price of at most 15 significant digits (6 whole, up to 8 decimals, then trailing zeros).
Price some_price(Rng& rng) {
  const std::int64_t units = static_cast<std::int64_t>(rng.next() % 100'000'000'000'000ull);
  return Price::from_units(units);
}

void builders(Rng& rng) {
  OrderSpec s;
  s.symbol = "AAPL";
  s.quantity = 1 + static_cast<std::int64_t>(rng.below(1000));
  s.side = rng.below(2) ? Side::buy : Side::sell;
  s.type = static_cast<OrderType>(rng.below(4));
  s.tif = static_cast<TimeInForce>(rng.below(3));  // FOK is refused by build_ticket
  s.outside_rth = rng.below(2);
  s.client_order_id = "coid" + std::to_string(rng.below(1000));
  if (s.type == OrderType::limit || s.type == OrderType::stop_limit) s.limit_price = some_price(rng);
  if (s.is_stop()) s.stop_price = some_price(rng);
  TicketInput in;
  in.spec = &s;
  in.conid = 265598;
  in.account = "DU1234";
  in.us_future = rng.below(2);
  const json ticket = build_ticket(in);
  const WireOrderView v = view_of_ticket(json::parse(ticket.dump()), in.us_future);
  FUZZ_CHECK(v.limit_price == s.limit_price, "limit price %s does not read back from %s",
             s.limit_price ? s.limit_price->to_string().c_str() : "-", v.request.c_str());
  FUZZ_CHECK(v.stop_price == s.stop_price, "stop price %s does not read back from %s",
             s.stop_price ? s.stop_price->to_string().c_str() : "-", v.request.c_str());
  FUZZ_CHECK(v.tif_explicit && v.tif == s.tif, "tif does not read back");
  FUZZ_CHECK(v.outside_rth == s.outside_rth, "outsideRTH does not read back");
  FUZZ_CHECK(v.manual_indicator_set == in.us_future, "manualIndicator");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Rng rng(data, size);
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  SorMerger sor;
  // Several messages may share an input, one per line (the first is often the full list).
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    ws_message(text.substr(start, end - start), sor);
    start = end + 1;
  }
  rest_body(text);
  builders(rng);
  return 0;
}
