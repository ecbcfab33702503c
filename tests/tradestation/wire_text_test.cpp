// The TradeStation adapter's request bodies written as text and its placement answers read
// without a document (brokers/tradestation/ts_wire.hpp), without the network. Each is checked
// against the nlohmann::json builders and document reader they replaced (kept here, verbatim in
// substance, as the reference): the body must be the same bytes, the answer must read the same.
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "brokers/tradestation/ts_wire.hpp"
#include "tests/support/ts_place_answer_reference.hpp"
#include "tests/tradestation/test_order.hpp"

using namespace backstop;
namespace ts = backstop::tradestation;
using nlohmann::json;

namespace {

constexpr const char* kAccount = "SIM2784990M";

// --- the replaced code, as the reference ----------------------------------------------------------

json old_order_request(const OrderSpec& spec, const std::string& account, const ts::SymbolMap& symbols) {
  json o = json::object();
  o["AccountID"] = account;
  o["Symbol"] = symbols.to_broker(spec.symbol);
  o["Quantity"] = std::to_string(spec.quantity);
  o["OrderType"] = ts::order_type_wire(spec.type);
  o["TradeAction"] = spec.side == Side::buy ? "BUY" : "SELL";
  o["TimeInForce"] = json{{"Duration", ts::duration_for(spec.tif, spec.outside_rth)}};
  if ((spec.type == OrderType::limit || spec.type == OrderType::stop_limit) && spec.limit_price)
    o["LimitPrice"] = spec.limit_price->to_string();
  if (spec.is_stop() && spec.stop_price) o["StopPrice"] = spec.stop_price->to_string();
  if (!spec.client_order_id.empty()) o["OrderConfirmID"] = spec.client_order_id;
  return o;
}

json old_replace_request(const OrderSpec& spec) {
  json o = json::object();
  o["Quantity"] = std::to_string(spec.quantity);
  if ((spec.type == OrderType::limit || spec.type == OrderType::stop_limit) && spec.limit_price)
    o["LimitPrice"] = spec.limit_price->to_string();
  if (spec.is_stop() && spec.stop_price) o["StopPrice"] = spec.stop_price->to_string();
  return o;
}

json old_bracket(const BracketSpec& b, const ts::SymbolMap& symbols) {
  json body = old_order_request(b.entry, kAccount, symbols);
  body["OSOs"] = json::array({json{{"Type", "BRK"},
                                   {"Orders", json::array({old_order_request(b.take_profit, kAccount, symbols),
                                                           old_order_request(b.protective_stop, kAccount, symbols)})}}});
  return body;
}

json old_group(const std::string& type, const std::vector<OrderSpec>& orders, const ts::SymbolMap& symbols) {
  json list = json::array();
  for (const auto& o : orders) list.push_back(old_order_request(o, kAccount, symbols));
  return json{{"Type", type}, {"Orders", list}};
}

// --- helpers ------------------------------------------------------------------------------------

using ts::testing::test_order;  // the tests' orders (test_order.hpp)

const ts::SymbolMap& symbols() {
  static const ts::SymbolMap m(std::map<std::string, std::string>{{"AAPL.US", "AAPL"}, {"ES", "@ESZ26"}});
  return m;
}

std::string text_of(const OrderSpec& o) {
  const ts::RequestBody b = ts::order_request(o, kAccount, symbols());
  EXPECT_TRUE(b.ok()) << b.error;
  return b.text;
}

// Every member of one parsed order object against the spec it came from.
void expect_members(const json& j, const OrderSpec& o, const std::string& symbol) {
  ASSERT_TRUE(j.is_object()) << j.dump();
  EXPECT_EQ(j.at("AccountID"), kAccount);
  EXPECT_EQ(j.at("Symbol"), symbol);
  EXPECT_EQ(j.at("Quantity"), std::to_string(o.quantity));
  EXPECT_EQ(j.at("OrderType"), ts::order_type_wire(o.type));
  EXPECT_EQ(j.at("TradeAction"), o.side == Side::buy ? "BUY" : "SELL");
  EXPECT_EQ(j.at("TimeInForce"), (json{{"Duration", ts::duration_for(o.tif, o.outside_rth)}}));
  const bool has_limit = o.type == OrderType::limit || o.type == OrderType::stop_limit;
  EXPECT_EQ(j.contains("LimitPrice"), has_limit);
  if (has_limit) {
    EXPECT_EQ(j.at("LimitPrice"), o.limit_price->to_string());
  }
  EXPECT_EQ(j.contains("StopPrice"), o.is_stop());
  if (o.is_stop()) {
    EXPECT_EQ(j.at("StopPrice"), o.stop_price->to_string());
  }
  EXPECT_EQ(j.at("OrderConfirmID"), o.client_order_id);
  const std::size_t expected = 7u + (has_limit ? 1 : 0) + (o.is_stop() ? 1 : 0) + (j.contains("OSOs") ? 1 : 0);
  EXPECT_EQ(j.size(), expected) << j.dump();
}

}  // namespace

// --- request text ---------------------------------------------------------------------------------

TEST(TsRequestText, EveryOrderTypeReadsBackMemberForMember) {
  const std::vector<OrderSpec> orders = {
      test_order("mkt", OrderType::market, Side::buy, 10),
      test_order("lmt", OrderType::limit, Side::sell, 3, "190.05"),
      test_order("stp", OrderType::stop, Side::sell, 100, {}, "185.5", TimeInForce::gtc),
      test_order("stl", OrderType::stop_limit, Side::buy, 7, "200", "199.99", TimeInForce::gtc, true),
      test_order("dayx", OrderType::limit, Side::buy, 1, "0.0001", {}, TimeInForce::day, true),
      test_order("ioc", OrderType::limit, Side::buy, 1, "12", {}, TimeInForce::ioc),
      test_order("fok", OrderType::market, Side::sell, 250000, {}, {}, TimeInForce::fok),
  };
  for (const auto& o : orders) {
    SCOPED_TRACE(o.client_order_id);
    const json j = json::parse(text_of(o));
    expect_members(j, o, "AAPL");
  }
  // The spellings themselves, once: DAY / GTC / outside regular hours.
  EXPECT_EQ(json::parse(text_of(orders[1]))["TimeInForce"]["Duration"], "DAY");
  EXPECT_EQ(json::parse(text_of(orders[2]))["TimeInForce"]["Duration"], "GTC");
  EXPECT_EQ(json::parse(text_of(orders[3]))["TimeInForce"]["Duration"], "GCP");
  EXPECT_EQ(json::parse(text_of(orders[4]))["TimeInForce"]["Duration"], "DYP");
}

TEST(TsRequestText, SameBytesAsTheDocumentItReplaces) {
  // Every type, side, time in force and session flag, mapped and unmapped symbols, with and
  // without a client order id (the writer omits it when empty, as the document did).
  int n = 0;
  for (auto type : {OrderType::market, OrderType::limit, OrderType::stop, OrderType::stop_limit})
    for (auto side : {Side::buy, Side::sell})
      for (auto tif : {TimeInForce::day, TimeInForce::gtc, TimeInForce::ioc, TimeInForce::fok})
        for (bool rth : {false, true})
          for (const char* sym : {"AAPL.US", "ES", "MSFT"})
            for (const char* coid : {"c-1", ""}) {
              ++n;
              const bool lim = type == OrderType::limit || type == OrderType::stop_limit;
              const bool stp = type == OrderType::stop || type == OrderType::stop_limit;
              OrderSpec o = test_order(coid, type, side, 1 + n % 997, lim ? std::optional<std::string>("4512.25") : std::nullopt,
                                  stp ? std::optional<std::string>("-0.00000001") : std::nullopt, tif, rth);
              o.symbol = sym;
              const auto b = ts::order_request(o, kAccount, symbols());
              ASSERT_TRUE(b.ok()) << b.error;
              EXPECT_EQ(b.text, old_order_request(o, kAccount, symbols()).dump()) << n;
              EXPECT_EQ(ts::replace_request(o), old_replace_request(o).dump());
            }
}

TEST(TsRequestText, BracketIsTheEntryWithOsoBrkOfBothExits) {
  BracketSpec b;
  b.entry = test_order("br-e", OrderType::limit, Side::buy, 10, "190");
  b.take_profit = test_order("br-tp", OrderType::limit, Side::sell, 10, "200", {}, TimeInForce::gtc);
  b.protective_stop = test_order("br-sl", OrderType::stop, Side::sell, 10, {}, "180", TimeInForce::gtc, true);
  const auto body = ts::bracket_request(b, kAccount, symbols());
  ASSERT_TRUE(body.ok()) << body.error;
  EXPECT_EQ(body.text, old_bracket(b, symbols()).dump());
  const json j = json::parse(body.text);
  expect_members(j, b.entry, "AAPL");
  ASSERT_TRUE(j.at("OSOs").is_array());
  ASSERT_EQ(j["OSOs"].size(), 1u);
  const json& oso = j["OSOs"][0];
  EXPECT_EQ(oso.size(), 2u);
  EXPECT_EQ(oso.at("Type"), "BRK");
  ASSERT_EQ(oso.at("Orders").size(), 2u);
  expect_members(oso["Orders"][0], b.take_profit, "AAPL");
  expect_members(oso["Orders"][1], b.protective_stop, "AAPL");
  // One writer: each child reads exactly as the same order sent alone.
  EXPECT_EQ(oso["Orders"][0].dump(), text_of(b.take_profit));
  EXPECT_EQ(oso["Orders"][1].dump(), text_of(b.protective_stop));
}

TEST(TsRequestText, GroupIsTypeAndOrdersInRequestOrder) {
  const std::vector<OrderSpec> orders = {test_order("g-a", OrderType::limit, Side::buy, 1, "170"),
                                         test_order("g-b", OrderType::stop_limit, Side::buy, 1, "211", "210", TimeInForce::gtc),
                                         test_order("g-c", OrderType::market, Side::sell, 2)};
  for (const char* type : {"OCO", "BRK", "NORMAL"}) {
    const auto body = ts::group_request(type, orders, kAccount, symbols());
    ASSERT_TRUE(body.ok()) << body.error;
    EXPECT_EQ(body.text, old_group(type, orders, symbols()).dump());
    const json j = json::parse(body.text);
    EXPECT_EQ(j.size(), 2u);
    EXPECT_EQ(j.at("Type"), type);
    ASSERT_EQ(j.at("Orders").size(), orders.size());
    for (std::size_t i = 0; i < orders.size(); ++i) {
      expect_members(j["Orders"][i], orders[i], "AAPL");
      EXPECT_EQ(j["Orders"][i].dump(), text_of(orders[i]));
    }
  }
  const auto empty = ts::group_request("OCO", {}, kAccount, symbols());
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty.text, old_group("OCO", {}, symbols()).dump());
}

TEST(TsRequestText, QuoteAndBackslashAreEscaped) {
  OrderSpec o = test_order(R"(id"\x)", OrderType::limit, Side::buy, 1, "10");
  o.symbol = R"(A"B\C)";
  const auto b = ts::order_request(o, R"(ACC"\)", symbols());
  ASSERT_TRUE(b.ok()) << b.error;
  EXPECT_NE(b.text.find(R"("Symbol":"A\"B\\C")"), std::string::npos) << b.text;
  const json j = json::parse(b.text);
  EXPECT_EQ(j.at("Symbol"), R"(A"B\C)");
  EXPECT_EQ(j.at("AccountID"), R"(ACC"\)");
  EXPECT_EQ(j.at("OrderConfirmID"), R"(id"\x)");
  EXPECT_EQ(b.text, old_order_request(o, R"(ACC"\)", symbols()).dump());
  // Space and tilde are the ends of printable ASCII: sent as they are.
  o.symbol = "BRK B~";
  EXPECT_EQ(json::parse(text_of(o)).at("Symbol"), "BRK B~");
}

TEST(TsRequestText, ByteOutsidePrintableAsciiIsRefusedNamingTheField) {
  struct Case {
    std::string symbol, account, coid, field;
  };
  const std::vector<Case> cases = {
      {"AAPL\xc3\xa9", kAccount, "c1", "Symbol"},        // UTF-8 é
      {"AAPL\xff", kAccount, "c1", "Symbol"},            // not UTF-8 at all (dump() used to throw)
      {"AA\nPL", kAccount, "c1", "Symbol"},              // control character
      {"AAPL\x7f", kAccount, "c1", "Symbol"},            // DEL
      {"AAPL", "SIM\x01", "c1", "AccountID"},
      {"AAPL", kAccount, "c\xe2\x82\xac", "OrderConfirmID"},  // €
      {"AAPL", kAccount, std::string("c\0d", 3), "OrderConfirmID"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.field + " " + c.symbol + " " + c.account);
    OrderSpec o = test_order(c.coid, OrderType::limit, Side::buy, 1, "10");
    o.symbol = c.symbol;
    const auto b = ts::order_request(o, c.account, symbols());
    EXPECT_FALSE(b.ok());
    EXPECT_TRUE(b.text.empty());
    EXPECT_NE(b.error.find(c.field + " has a byte outside printable ASCII"), std::string::npos) << b.error;
    // The bad bytes themselves are not echoed into the message (it goes into logs).
    EXPECT_EQ(b.error.find('\xc3'), std::string::npos);
    EXPECT_EQ(b.error.find('\xe2'), std::string::npos);
  }
  // The symbol is checked as sent: after the map.
  const ts::SymbolMap mapped(std::map<std::string, std::string>{{"ES", "@ES\xc2\xb7Z26"}});
  OrderSpec es = test_order("c2", OrderType::market, Side::buy, 1);
  es.symbol = "ES";
  const auto b = ts::order_request(es, kAccount, mapped);
  EXPECT_FALSE(b.ok());
  EXPECT_NE(b.error.find("order c2: Symbol has a byte outside printable ASCII (0xC2 at offset 3)"), std::string::npos)
      << b.error;
}

TEST(TsRequestText, BracketAndGroupRefuseWholeOnAnyBadLeg) {
  BracketSpec br;
  br.entry = test_order("e", OrderType::limit, Side::buy, 1, "10");
  br.take_profit = test_order("tp", OrderType::limit, Side::sell, 1, "11");
  br.protective_stop = test_order("sl\xc3\xa9", OrderType::stop, Side::sell, 1, {}, "9");
  auto b = ts::bracket_request(br, kAccount, symbols());
  EXPECT_FALSE(b.ok());
  EXPECT_TRUE(b.text.empty());
  EXPECT_NE(b.error.find("OrderConfirmID has a byte outside printable ASCII"), std::string::npos) << b.error;
  br.protective_stop.client_order_id = "sl";
  br.entry.symbol = "AAPL\xff";
  b = ts::bracket_request(br, kAccount, symbols());
  EXPECT_FALSE(b.ok());
  EXPECT_NE(b.error.find("order e: Symbol"), std::string::npos) << b.error;

  std::vector<OrderSpec> group = {test_order("a", OrderType::limit, Side::buy, 1, "10"),
                                  test_order("b", OrderType::limit, Side::buy, 1, "10")};
  group[1].symbol = "\x01";
  const auto g = ts::group_request("OCO", group, kAccount, symbols());
  EXPECT_FALSE(g.ok());
  EXPECT_TRUE(g.text.empty());
  EXPECT_NE(g.error.find("order b: Symbol"), std::string::npos) << g.error;
}

TEST(TsRequestText, WireViewOfTheTextReadsTheSpec) {
  const OrderSpec o = test_order("wv", OrderType::stop_limit, Side::sell, 5, "185", "185.5", TimeInForce::gtc, true);
  const WireOrderView v = ts::wire_view(json::parse(text_of(o)));
  EXPECT_EQ(v.stop_price, o.stop_price);
  EXPECT_EQ(v.limit_price, o.limit_price);
  EXPECT_TRUE(v.tif_explicit);
  EXPECT_EQ(v.tif, TimeInForce::gtc);
  EXPECT_EQ(v.outside_rth, true);
  EXPECT_EQ(v.request, text_of(o));
}

// --- placement answer -----------------------------------------------------------------------------

namespace {
void expect_answer(const std::string& body, bool parsed, std::vector<std::string> ids, const std::string& errors) {
  SCOPED_TRACE(body);
  const ts::PlaceAnswer a = ts::read_place_answer(body);
  EXPECT_EQ(a.parsed, parsed);
  EXPECT_EQ(a.order_ids, ids);
  EXPECT_EQ(a.errors, errors);
  // And exactly as the document reader read it.
  const ts::PlaceAnswer ref = ts::reference::document_place_answer(body);
  EXPECT_EQ(a.parsed, ref.parsed);
  EXPECT_EQ(a.order_ids, ref.order_ids);
  EXPECT_EQ(a.errors, ref.errors);
}
}  // namespace

TEST(TsPlaceAnswer, AcceptedOrdersInOrder) {
  expect_answer(R"({"Orders":[{"Message":"Sent order: Buy 1 AAPL @ 100.00 Limit","OrderID":"900000001"}]})", true,
                {"900000001"}, "");
  expect_answer(R"({"Orders":[{"OrderID":"1"},{"OrderID":"2","Message":"x"},{"OrderID":"3"}],"Errors":[]})", true,
                {"1", "2", "3"}, "");
}

TEST(TsPlaceAnswer, NotJsonIsNotParsed) {
  for (const char* body : {"", " ", "garbled", "{", R"({"Orders":[{"OrderID":"1"}])", R"({"Orders":[]} x)",
                           R"({"Orders":[]}{})", "{'Orders':[]}", R"({"Orders":[{"OrderID":"1",}]})", "nul",
                           R"({"Orders":"\ud800"})", "{\"a\":\"\xff\"}", "[1e400]"})
    expect_answer(body, false, {}, "");
}

TEST(TsPlaceAnswer, JsonThatIsNotTheObjectNamesNoOrder) {
  for (const char* body : {"[]", "{}", "null", "0", R"("Orders")", R"([{"Orders":[{"OrderID":"1"}]}])", "true",
                           R"({"orders":[{"OrderID":"1"}]})", R"({"X":{"Orders":[{"OrderID":"1"}]}})",
                           "\xef\xbb\xbf{}"})  // a UTF-8 byte order mark is skipped
    expect_answer(body, true, {}, "");
}

TEST(TsPlaceAnswer, ErrorsEntriesAreRejectionsWithMessageElseError) {
  expect_answer(R"({"Errors":[{"OrderID":"","Error":"FAILED","Message":"Insufficient buying power"}]})", true, {},
                "Insufficient buying power");
  expect_answer(R"({"Errors":[{"Error":"FAILED"}]})", true, {}, "FAILED");
  expect_answer(R"({"Errors":[{"Error":"E1","Message":""},{"Message":"m2"},{"Error":"E3"}]})", true, {},
                "E1; m2; E3");
  // An entry with neither adds an empty text (and a separator only after a non-empty one).
  expect_answer(R"({"Errors":[{"Message":"a"},{},{"Message":"b"}]})", true, {}, "a; ; b");
  expect_answer(R"({"Errors":[{},{"Message":"b"}]})", true, {}, "b");
  expect_answer(R"({"Errors":[{}]})", true, {}, "");
}

TEST(TsPlaceAnswer, OrdersEntryWithErrorIsARejection) {
  expect_answer(R"({"Orders":[{"OrderID":"1","Error":"FAILED","Message":"Order rejected"}]})", true, {},
                "Order rejected");
  expect_answer(R"({"Orders":[{"OrderID":"1","Error":"FAILED"}]})", true, {}, "FAILED");
  expect_answer(R"({"Orders":[{"OrderID":"1","Error":""},{"OrderID":"2","Error":"E","Message":"m"}]})", true, {"1"},
                "m");
}

TEST(TsPlaceAnswer, ErrorsComeBeforeOrdersWhateverTheTextOrder) {
  expect_answer(R"({"Orders":[{"OrderID":"1"},{"Error":"EO","Message":"from orders"}],"Errors":[{"Message":"from errors"}]})",
                true, {"1"}, "from errors; from orders");
}

TEST(TsPlaceAnswer, WronglyTypedMembersReadAsTheDocumentReaderDid) {
  // Orders not an array: no entries.
  expect_answer(R"({"Orders":{"OrderID":"1"}})", true, {}, "");
  expect_answer(R"({"Orders":"1"})", true, {}, "");
  expect_answer(R"({"Orders":null,"Errors":{"Message":"x"}})", true, {}, "");
  // OrderID a number, an object, an array: "".
  expect_answer(R"({"Orders":[{"OrderID":900000001}]})", true, {""}, "");
  expect_answer(R"({"Orders":[{"OrderID":{"OrderID":"1"}}]})", true, {""}, "");
  expect_answer(R"({"Orders":[{"OrderID":["1"]}]})", true, {""}, "");
  // Entries that are not objects: an order with no id, an error with no text.
  expect_answer(R"({"Orders":["1",2,null,true,[{"OrderID":"3"}]]})", true, {"", "", "", "", ""}, "");
  expect_answer(R"({"Errors":["x",{"Message":"m"}]})", true, {}, "m");
  // Error a number is no error; Message a number falls back to Error.
  expect_answer(R"({"Orders":[{"OrderID":"1","Error":5}]})", true, {"1"}, "");
  expect_answer(R"({"Orders":[{"OrderID":"1","Error":"E","Message":7}]})", true, {}, "E");
  expect_answer(R"({"Errors":[{"Error":"E","Message":{"a":"b"}}]})", true, {}, "E");
  // Members of nested objects do not count.
  expect_answer(R"({"Orders":[{"Legs":[{"OrderID":"9","Error":"E"}],"OrderID":"1","X":{"Error":"E","Message":"m"}}]})",
                true, {"1"}, "");
}

TEST(TsPlaceAnswer, RepeatedKeysCountWithTheirLastValue) {
  expect_answer(R"({"Orders":[{"OrderID":"1"}],"Orders":[{"OrderID":"2"}]})", true, {"2"}, "");
  expect_answer(R"({"Orders":[{"OrderID":"1"}],"Orders":5})", true, {}, "");
  expect_answer(R"({"Errors":[{"Message":"a"}],"Errors":[]})", true, {}, "");
  expect_answer(R"({"Orders":[{"OrderID":"1","OrderID":"2"}]})", true, {"2"}, "");
  expect_answer(R"({"Orders":[{"OrderID":"1","OrderID":2}]})", true, {""}, "");
  expect_answer(R"({"Orders":[{"Error":"E","Error":""}]})", true, {""}, "");
}

TEST(TsPlaceAnswer, DeeplyNestedJunkNeitherThrowsNorCounts) {
  std::string deep;
  for (int i = 0; i < 100000; ++i) deep += R"({"Orders":[)";
  std::string body = R"({"Errors":[{"Message":"m","X":)" + deep;
  for (int i = 0; i < 100000; ++i) body += "]}";
  body += R"(}],"Orders":[{"OrderID":"1","Y":[[[[[[{"OrderID":"2"}]]]]]]}]})";
  const ts::PlaceAnswer a = ts::read_place_answer(body);
  EXPECT_TRUE(a.parsed);
  EXPECT_EQ(a.order_ids, std::vector<std::string>{"1"});
  EXPECT_EQ(a.errors, "m");
  // Unclosed, that deep: not JSON.
  EXPECT_FALSE(ts::read_place_answer(deep).parsed);
}

TEST(TsPlaceAnswer, MatchesTheDocumentReaderOnGeneratedAnswers) {
  // Random answers over the keys that matter, with repeated keys, wrong types, nesting and
  // corruption; the reader must agree with the document reader on every one.
  std::mt19937_64 rng(20261207);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<std::uint64_t>(n)); };
  const char* keys[] = {"Orders", "Errors", "OrderID", "Error", "Message", "X", ""};
  const char* strings[] = {"", "1", "900000001", "FAILED", "Insufficient", "a;b", "\\u00e9", "\\\""};
  std::function<void(std::string&, int)> value = [&](std::string& out, int depth) {
    const int k = depth > 5 ? pick(5) : pick(8);
    switch (k) {
      case 0: out += '"'; out += strings[pick(8)]; out += '"'; break;
      case 1: out += std::to_string(pick(3) - 1); break;
      case 2: out += pick(2) ? "null" : "true"; break;
      case 3: out += "1.5e3"; break;
      case 4: out += '"'; out += strings[pick(8)]; out += '"'; break;
      case 5: case 6: {
        out += '{';
        const int n = pick(5);
        for (int i = 0; i < n; ++i) {
          if (i) out += ',';
          out += '"';
          out += keys[pick(7)];
          out += "\":";
          value(out, depth + 1);
        }
        out += '}';
        break;
      }
      default: {
        out += '[';
        const int n = pick(4);
        for (int i = 0; i < n; ++i) {
          if (i) out += ',';
          value(out, depth + 1);
        }
        out += ']';
      }
    }
  };
  int parsed = 0, with_ids = 0, with_errors = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string body;
    if (pick(4) == 0) {
      value(body, 0);
    } else {
      // Mostly the answer's shape: an object of Orders/Errors arrays of small objects.
      body += '{';
      const int members = pick(4);
      for (int m = 0; m < members; ++m) {
        if (m) body += ',';
        body += pick(5) ? (pick(2) ? R"("Orders":)" : R"("Errors":)") : R"("X":)";
        if (pick(6) == 0) {
          value(body, 2);
          continue;
        }
        body += '[';
        const int n = pick(4);
        for (int e = 0; e < n; ++e) {
          if (e) body += ',';
          if (pick(8) == 0) {
            value(body, 3);
            continue;
          }
          body += '{';
          const int f = pick(4);
          for (int g = 0; g < f; ++g) {
            if (g) body += ',';
            body += '"';
            body += keys[2 + pick(4)];
            body += "\":";
            if (pick(5)) {
              body += '"';
              body += strings[pick(8)];
              body += '"';
            } else {
              value(body, 4);
            }
          }
          body += '}';
        }
        body += ']';
      }
      body += '}';
    }
    if (pick(10) == 0) body.resize(static_cast<std::size_t>(pick(static_cast<int>(body.size()) + 1)));  // cut short
    if (pick(20) == 0) body += pick(2) ? " " : "x";
    const ts::PlaceAnswer a = ts::read_place_answer(body);
    const ts::PlaceAnswer ref = ts::reference::document_place_answer(body);
    ASSERT_EQ(a.parsed, ref.parsed) << body;
    ASSERT_EQ(a.order_ids, ref.order_ids) << body;
    ASSERT_EQ(a.errors, ref.errors) << body;
    parsed += a.parsed;
    with_ids += !a.order_ids.empty();
    with_errors += !a.errors.empty();
  }
  // The generator reaches every branch.
  EXPECT_GT(parsed, 10000);
  EXPECT_GT(with_ids, 2000);
  EXPECT_GT(with_errors, 2000);
}
