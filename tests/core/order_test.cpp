#include <gtest/gtest.h>

#include <set>

#include "core/fill.hpp"
#include "core/order.hpp"

using namespace backstop;

namespace {
BracketSpec long_bracket() {
  BracketSpec b;
  b.entry = limit_order("AAPL", Side::buy, 10, Price::parse("100"));
  b.take_profit = limit_order("AAPL", Side::sell, 10, Price::parse("101"), TimeInForce::gtc);
  b.protective_stop = stop_order("AAPL", Side::sell, 10, Price::parse("99"));
  b.entry.client_order_id = "E";
  b.take_profit.client_order_id = "T";
  b.protective_stop.client_order_id = "S";
  return b;
}
}  // namespace

TEST(OrderSpec, ValidationNamesTheField) {
  OrderSpec o = stop_order("AAPL", Side::sell, 10, Price::parse("99"));
  o.client_order_id = "A1";
  EXPECT_EQ(validate(o), "");
  o.stop_price.reset();
  EXPECT_EQ(validate(o), "order A1: stop_price is required for a stop order");
  o = limit_order("AAPL", Side::buy, 0, Price::parse("1"));
  o.client_order_id = "A2";
  EXPECT_EQ(validate(o), "order A2: quantity must be positive");
  o.quantity = 1;
  o.client_order_id = std::string(23, 'x');
  EXPECT_NE(validate(o).find("longer than 22"), std::string::npos);
  o = market_order("AAPL", Side::buy, 1);
  o.client_order_id = "A3";
  o.limit_price = Price::parse("1");
  EXPECT_EQ(validate(o), "order A3: limit_price is not allowed on a market order");
}

// Client order ids go to the brokers inside JSON bodies: printable ASCII only, and an id that is
// not is not repeated into the message (it goes to logs).
TEST(OrderSpec, ClientOrderIdMustBePrintableAscii) {
  OrderSpec o = market_order("AAPL", Side::buy, 1);
  o.client_order_id = "ok id-1 ~!";
  EXPECT_EQ(validate(o), "");
  o.client_order_id = "caf\xc3\xa9";  // valid UTF-8, not ASCII
  EXPECT_EQ(validate(o), "order (id not printable): client_order_id has a byte outside printable ASCII (0xC3 at offset 3)");
  o.client_order_id = "bad\xff";  // not even UTF-8: nlohmann's dump() would throw on it
  EXPECT_EQ(validate(o), "order (id not printable): client_order_id has a byte outside printable ASCII (0xFF at offset 3)");
  o.client_order_id = std::string("nul\0x", 5);
  EXPECT_EQ(validate(o), "order (id not printable): client_order_id has a byte outside printable ASCII (0x00 at offset 3)");
  o.client_order_id = "tab\t";
  EXPECT_NE(validate(o).find("(0x09 at offset 3)"), std::string::npos);
}

TEST(Bracket, ExitsMustProtectTheEntry) {
  auto b = long_bracket();
  EXPECT_EQ(validate(b), "");
  b.protective_stop.stop_price = Price::parse("102");
  EXPECT_NE(validate(b).find("take_profit.limit_price must be above protective_stop.stop_price"), std::string::npos);
  b = long_bracket();
  b.take_profit.side = Side::buy;
  EXPECT_NE(validate(b).find("opposite side"), std::string::npos);
  b = long_bracket();
  b.protective_stop.quantity = 5;
  EXPECT_NE(validate(b).find("exit quantities"), std::string::npos);
}

TEST(ClientOrderIds, UniqueAndAtMost22Characters) {
  ClientOrderIdGenerator gen(ClientOrderIdGenerator::time_prefix(1'764'000'000'000'000'000));
  std::set<std::string> seen;
  for (int i = 0; i < 10000; ++i) {
    auto id = gen.next();
    EXPECT_LE(id.size(), kMaxClientOrderIdLength);
    EXPECT_TRUE(seen.insert(id).second);
  }
  // Two runs a millisecond apart never share a prefix.
  EXPECT_NE(ClientOrderIdGenerator::time_prefix(1'764'000'000'000'000'000),
            ClientOrderIdGenerator::time_prefix(1'764'000'000'001'000'000));
  ClientOrderIdGenerator big("ABCDEFGHIJKLMNOP");  // truncated to 10
  EXPECT_EQ(big.next(), "ABCDEFGHIJ-1");
}

TEST(Fills, RepeatedExecutionIdCountsOnce) {
  FillLedger ledger;
  Fill f{"E1", "ts", "A", "1", "AAPL", Side::buy, 10, Price::parse("1"), 0};
  EXPECT_TRUE(ledger.record(f));
  EXPECT_FALSE(ledger.record(f));
  Fill other_broker = f;
  other_broker.broker = "ib";  // execution ids are per broker
  EXPECT_TRUE(ledger.record(other_broker));
  EXPECT_EQ(ledger.size(), 2u);
}

TEST(Positions, AddReduceFlip) {
  Position p;
  p.apply(Side::buy, 100, Price::parse("10"));
  p.apply(Side::buy, 100, Price::parse("11"));
  EXPECT_EQ(p.quantity, 200);
  EXPECT_EQ(p.average_price, Price::parse("10.5"));
  p.apply(Side::sell, 50, Price::parse("12"));
  EXPECT_EQ(p.quantity, 150);
  EXPECT_EQ(p.average_price, Price::parse("10.5"));  // reducing does not move the average
  p.apply(Side::sell, 200, Price::parse("9"));
  EXPECT_EQ(p.quantity, -50);
  EXPECT_EQ(p.average_price, Price::parse("9"));
  p.apply(Side::buy, 50, Price::parse("8"));
  EXPECT_EQ(p.quantity, 0);
  EXPECT_EQ(p.average_price, Price());
}
