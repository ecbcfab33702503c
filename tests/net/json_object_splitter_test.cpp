#include <chrono>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "brokers/net/json_object_splitter.hpp"

namespace backstop::net {
namespace {

std::vector<std::string> feed_all(JsonObjectSplitter& s, const std::vector<std::string>& chunks) {
  std::vector<std::string> out;
  for (const auto& c : chunks) s.feed(c, [&](std::string_view o) { out.emplace_back(o); });
  return out;
}

std::vector<std::string> feed_bytewise(const std::string& text) {
  JsonObjectSplitter s;
  std::vector<std::string> out;
  for (char c : text) s.feed(std::string_view(&c, 1), [&](std::string_view o) { out.emplace_back(o); });
  return out;
}

TEST(JsonObjectSplitter, SeveralObjectsInOneChunk) {
  JsonObjectSplitter s;
  auto out = feed_all(s, {R"({"a":1}{"b":2})" "\n" R"({"c":{"d":[1,{"e":3}]}})"});
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0], R"({"a":1})");
  EXPECT_EQ(out[1], R"({"b":2})");
  EXPECT_EQ(out[2], R"({"c":{"d":[1,{"e":3}]}})");
  EXPECT_EQ(s.buffered_bytes(), 0u);
  EXPECT_EQ(s.skipped_bytes(), 0u);
}

TEST(JsonObjectSplitter, ObjectSplitAcrossChunks) {
  JsonObjectSplitter s;
  auto out = feed_all(s, {R"({"OrderID":"12)", R"(3","Legs":[{"Sym)", R"(bol":"MSFT"}]})" "\n{", R"("Heartbeat":1})"});
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], R"({"OrderID":"123","Legs":[{"Symbol":"MSFT"}]})");
  EXPECT_EQ(out[1], R"({"Heartbeat":1})");
}

TEST(JsonObjectSplitter, StringsHoldBracesAndEscapedQuotes) {
  const std::string a = R"({"Message":"a } brace, a { brace, a \"quote\" and \\ backslash }"})";
  const std::string b = R"({"x":"\\"})";  // a string ending in an escaped backslash
  const std::string c = R"({"y":"\"}{\""})";
  JsonObjectSplitter s;
  auto out = feed_all(s, {a + b + "\r\n" + c});
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0], a);
  EXPECT_EQ(out[1], b);
  EXPECT_EQ(out[2], c);
}

TEST(JsonObjectSplitter, EveryByteBoundaryGivesTheSameObjects) {
  const std::string text = "  {\"a\":\"}\\\"{\",\"b\":[{}]}\n\n{\"c\":\"\\\\\"}\t{\"d\":{\"e\":\"\\u007d\"}}\n";
  JsonObjectSplitter whole;
  auto expected = feed_all(whole, {text});
  ASSERT_EQ(expected.size(), 3u);
  EXPECT_EQ(feed_bytewise(text), expected);
  for (std::size_t cut = 0; cut <= text.size(); ++cut) {
    JsonObjectSplitter s;
    EXPECT_EQ(feed_all(s, {text.substr(0, cut), text.substr(cut)}), expected) << "cut at " << cut;
  }
}

TEST(JsonObjectSplitter, BackslashAtTheEndOfAChunk) {
  JsonObjectSplitter s;
  auto out = feed_all(s, {R"({"k":"ab\)", R"("cd"})"});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], R"({"k":"ab\"cd"})");
}

TEST(JsonObjectSplitter, SkipsAndCountsNonObjectBytes) {
  JsonObjectSplitter s;
  auto out = feed_all(s, {"END\r\n{\"a\":1}\nERROR - x\n", "{\"b\":2}"});
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1], R"({"b":2})");
  EXPECT_EQ(s.skipped_bytes(), 3u + 7u);  // "END" and "ERROR-x" without whitespace
  EXPECT_EQ(s.objects(), 2u);
}

TEST(JsonObjectSplitter, WholeObjectsAreViewsIntoTheInput) {
  JsonObjectSplitter s;
  const std::string chunk = R"({"a":1} {"b":2})";
  std::vector<const char*> starts;
  s.feed(chunk, [&](std::string_view o) { starts.push_back(o.data()); });
  ASSERT_EQ(starts.size(), 2u);
  EXPECT_EQ(starts[0], chunk.data());
  EXPECT_EQ(starts[1], chunk.data() + 8);
}

TEST(JsonObjectSplitter, ResetDropsThePartialObject) {
  JsonObjectSplitter s;
  auto out = feed_all(s, {R"({"half":")"});
  EXPECT_TRUE(out.empty());
  EXPECT_GT(s.buffered_bytes(), 0u);
  s.reset();
  EXPECT_EQ(s.buffered_bytes(), 0u);
  out = feed_all(s, {R"({"whole":1})"});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], R"({"whole":1})");
}

TEST(JsonObjectSplitter, OversizedObjectThrowsParseErrorAndRecovers) {
  JsonObjectSplitter s(32);
  EXPECT_THROW(feed_all(s, {"{\"a\":\"", std::string(40, 'x')}), ParseError);
  EXPECT_EQ(s.buffered_bytes(), 0u);
  auto out = feed_all(s, {R"({"ok":true})"});
  ASSERT_EQ(out.size(), 1u);
}

// A long stream in 4 KiB chunks, so that many objects straddle chunks. Its speed is measured in
// bench/tradestation_bench.cpp (order-stream parsing), not here: a timed assertion fails on a
// loaded machine or under a sanitizer (it did, at 40 MB/s under ThreadSanitizer) without a defect.
TEST(JsonObjectSplitter, LongChunkedStreamYieldsEveryObjectWhole) {
  const std::string frame =
      R"({"AccountID":"123456782","ClosedDateTime":"2021-02-24T15:47:45Z","Commission":"0","ConversionRate":"1","Currency":"USD","Duration":"DAY","FilledPrice":"0","Legs":[{"AssetType":"STOCK","BuyOrSell":"Buy","ExecQuantity":"0","OpenOrClose":"Open","QuantityOrdered":"10","QuantityRemaining":"10","Symbol":"MSFT"}],"OpenedDateTime":"2021-02-24T15:47:45Z","OrderID":"286234131","OrderType":"Limit","PriceUsedForBuyingPower":"231.5","Status":"ACK","StatusDescription":"Received \"ok\" {x}"})"
      "\n";
  std::string data;
  while (data.size() < (16u << 20)) data += frame;
  const std::string_view object = std::string_view(frame).substr(0, frame.size() - 1);
  JsonObjectSplitter s;
  std::size_t objects = 0, bytes = 0, wrong = 0;
  for (std::size_t i = 0; i < data.size(); i += 4096) {
    s.feed(std::string_view(data).substr(i, 4096), [&](std::string_view o) {
      ++objects;
      bytes += o.size();
      wrong += o != object;
    });
  }
  EXPECT_EQ(objects, data.size() / frame.size());
  EXPECT_EQ(bytes + objects, data.size());  // every byte but the newlines
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(s.buffered_bytes(), 0u);
}

}  // namespace
}  // namespace backstop::net
