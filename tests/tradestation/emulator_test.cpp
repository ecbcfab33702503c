// The TradeStation v3 emulator, exercised over loopback HTTP with a plain client: token flow,
// every order type, duplicates, brackets, replace, cancel, paging, streams and each fault.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include "core/error.hpp"
#include "emulators/tradestation/tradestation_emulator.hpp"

namespace tse = backstop::tradestation_emulator;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr const char* kAccount = "SIM2784990M";

tse::Options test_options() {
  tse::Options o;
  o.tick_interval = 0ms;  // prices move only when a test says so
  o.heartbeat_interval = 100ms;
  o.cancel_delay = 200ms;
  o.stall_length = 1000ms;
  return o;
}

json order(const std::string& type, const std::string& action, int qty,
           const std::string& duration = "DAY") {
  return {{"AccountID", kAccount},           {"Symbol", "AAPL"},
          {"Quantity", std::to_string(qty)}, {"OrderType", type},
          {"TradeAction", action},           {"TimeInForce", {{"Duration", duration}}},
          {"Route", "Intelligent"}};
}

// Reads a chunked stream on its own thread; lines are JSON objects.
class StreamReader {
 public:
  StreamReader(const std::string& host, int port, const std::string& path, const std::string& token)
      : cli_(host, port) {
    cli_.set_read_timeout(3, 0);
    thread_ = std::thread([this, path, token] {
      std::string buffer;
      auto res = cli_.Get(path, {{"Authorization", "Bearer " + token}},
                          [&](const char* data, std::size_t len) {
                            buffer.append(data, len);
                            std::size_t nl;
                            std::lock_guard lock(mu_);
                            while ((nl = buffer.find('\n')) != std::string::npos) {
                              lines_.push_back(json::parse(buffer.substr(0, nl)));
                              buffer.erase(0, nl + 1);
                            }
                            cv_.notify_all();
                            return !stop_;
                          });
      std::lock_guard lock(mu_);
      ended_ = true;
      status_ = res ? res->status : -1;
      if (res) content_type_ = res->get_header_value("Content-Type");
      cv_.notify_all();
    });
  }
  ~StreamReader() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cli_.stop();
    thread_.join();
  }
  // Waits until some line satisfies `pred`; returns it (null on timeout).
  json wait_for(const std::function<bool(const json&)>& pred,
                std::chrono::milliseconds timeout = 3000ms) {
    std::unique_lock lock(mu_);
    json found;
    cv_.wait_for(lock, timeout, [&] {
      for (const auto& l : lines_)
        if (pred(l)) {
          found = l;
          return true;
        }
      return false;
    });
    return found;
  }
  bool wait_ended(std::chrono::milliseconds timeout = 3000ms) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return ended_; });
  }
  std::vector<json> lines() {
    std::lock_guard lock(mu_);
    return {lines_.begin(), lines_.end()};
  }
  std::size_t count(const std::function<bool(const json&)>& pred) {
    std::size_t n = 0;
    for (const auto& l : lines()) n += pred(l);
    return n;
  }

 private:
  httplib::Client cli_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<json> lines_;
  bool stop_ = false, ended_ = false;
  int status_ = 0;
  std::string content_type_;
};

auto is_order(const std::string& id, const std::string& status) {
  return [=](const json& l) {
    return l.value("OrderID", "") == id && l.value("Status", "") == status;
  };
}
auto has_key(const std::string& key, const std::string& value) {
  return [=](const json& l) { return l.contains(key) && l[key].is_string() && l[key] == value; };
}

class EmulatorTest : public ::testing::Test {
 protected:
  void start(tse::Options o = test_options()) {
    emu_ = std::make_unique<tse::TradeStationEmulator>(std::move(o));
    emu_->start(0);
    cli_ = std::make_unique<httplib::Client>("127.0.0.1", emu_->port());
    cli_->set_read_timeout(5, 0);
    token_ = refresh(emu_->options().refresh_token)["access_token"];
  }
  void TearDown() override {
    if (emu_) emu_->stop();
  }
  json refresh(const std::string& refresh_token,
               const std::string& secret = "backstop-emulator-secret", int expect = 200) {
    auto r = cli_->Post("/oauth/token", httplib::Params{{"grant_type", "refresh_token"},
                                                        {"client_id", "backstop-emulator"},
                                                        {"client_secret", secret},
                                                        {"refresh_token", refresh_token}});
    EXPECT_TRUE(r);
    if (!r) return {};
    EXPECT_EQ(r->status, expect) << r->body;
    return json::parse(r->body);
  }
  httplib::Headers auth() const { return {{"Authorization", "Bearer " + token_}}; }
  std::pair<int, json> get(const std::string& path) {
    auto r = cli_->Get(path, auth());
    if (!r) return {-1, {}};
    return {r->status, r->body.empty() ? json() : json::parse(r->body)};
  }
  std::pair<int, json> send(const std::string& method, const std::string& path, const json& body) {
    httplib::Result r = method == "POST" ? cli_->Post(path, auth(), body.dump(), "application/json")
                        : method == "PUT" ? cli_->Put(path, auth(), body.dump(), "application/json")
                                          : cli_->Delete(path, auth());
    if (!r) return {-1, {}};
    return {r->status, r->body.empty() ? json() : json::parse(r->body)};
  }
  std::string place(const json& o) {
    auto [status, body] = send("POST", "/v3/orderexecution/orders", o);
    EXPECT_EQ(status, 200) << body.dump();
    EXPECT_TRUE(body.contains("Orders")) << body.dump();
    return body.contains("Orders") ? body["Orders"][0]["OrderID"].get<std::string>()
                                   : std::string();
  }
  json order_by_id(const std::string& id) {
    auto [status, body] = get(std::string("/v3/brokerage/accounts/") + kAccount + "/orders/" + id);
    EXPECT_EQ(status, 200);
    return body["Orders"].empty() ? json() : body["Orders"][0];
  }
  // Polls until the order reaches `status` (the API is asynchronous).
  json wait_status(const std::string& id, const std::string& status,
                   std::chrono::milliseconds timeout = 3000ms) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    json o;
    while (std::chrono::steady_clock::now() < until) {
      o = order_by_id(id);
      if (o.value("Status", "") == status) return o;
      std::this_thread::sleep_for(20ms);
    }
    ADD_FAILURE() << "order " << id << " never reached " << status << ": " << o.dump();
    return o;
  }
  void quote(const std::string& bid, const std::string& ask, const std::string& last,
             const std::string& symbol = "AAPL") {
    auto r = cli_->Post("/__emulator/quote",
                        json{{"symbol", symbol}, {"bid", bid}, {"ask", ask}, {"last", last}}.dump(),
                        "application/json");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
  }
  void faults(const json& settings) {
    auto r = cli_->Post("/__emulator/faults", settings.dump(), "application/json");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
  }
  json log() {
    auto r = cli_->Get("/__emulator/log");
    return r ? json::parse(r->body) : json();
  }
  std::size_t fault_count(const std::string& kind) {
    std::size_t n = 0;
    const json all = log();  // keep the document alive while iterating
    for (const auto& f : all["faults"]) n += f["kind"] == kind;
    return n;
  }
  std::unique_ptr<StreamReader> stream(const std::string& path) {
    return std::make_unique<StreamReader>("127.0.0.1", emu_->port(), path, token_);
  }
  std::string orders_stream() const {
    return std::string("/v3/brokerage/stream/accounts/") + kAccount + "/orders";
  }

  std::unique_ptr<tse::TradeStationEmulator> emu_;
  std::unique_ptr<httplib::Client> cli_;
  std::string token_;
};

// ---- OAuth

TEST_F(EmulatorTest, RefreshGrantIssuesBearerTokensAndRejectsBadCredentials) {
  start();
  auto t = refresh("backstop-emulator-refresh-token");
  EXPECT_EQ(t["token_type"], "Bearer");
  EXPECT_EQ(t["expires_in"], 1200);
  EXPECT_NE(t["scope"].get<std::string>().find("offline_access"), std::string::npos);
  EXPECT_FALSE(t.contains("refresh_token"));  // no rotation by default

  auto bad_secret = refresh("backstop-emulator-refresh-token", "wrong", 401);
  EXPECT_EQ(bad_secret["error"], "access_denied");
  auto bad_refresh = refresh("nope", "backstop-emulator-secret", 403);
  EXPECT_EQ(bad_refresh["error"], "invalid_grant");

  auto r = cli_->Get("/v3/brokerage/accounts");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(json::parse(r->body)["Error"], "Unauthorized");
  EXPECT_EQ(get("/v3/brokerage/accounts").first, 200);

  ASSERT_TRUE(cli_->Post("/__emulator/expire-tokens"));
  auto [status, body] = get("/v3/brokerage/accounts");
  EXPECT_EQ(status, 401);
  EXPECT_EQ(body["Error"], "Unauthorized");
}

TEST_F(EmulatorTest, RotationReturnsANewRefreshTokenAndRetiresTheOld) {
  auto o = test_options();
  o.rotate_refresh_tokens = true;
  start(o);  // start() already used the initial refresh token once
  auto initial = refresh("backstop-emulator-refresh-token", "backstop-emulator-secret", 403);
  EXPECT_EQ(initial["error"], "invalid_grant");
  // Get a fresh chain: authorization code -> refresh token -> rotate.
  auto r = cli_->Get(
      "/authorize?response_type=code&client_id=backstop-emulator&audience=https%3A%2F%2Fapi."
      "tradestation.com"
      "&redirect_uri=http%3A%2F%2Flocalhost%3A3000%2Fcb&scope=openid%20offline_access%20Trade&"
      "state=xyz");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 302);
  const std::string location = r->get_header_value("Location");
  ASSERT_EQ(location.rfind("http://localhost:3000/cb?code=", 0), 0u) << location;
  EXPECT_NE(location.find("state=xyz"), std::string::npos);
  const std::string code =
      location.substr(location.find("code=") + 5, location.find('&') - location.find("code=") - 5);
  auto exchange = [&](int expect) {
    auto res =
        cli_->Post("/oauth/token", httplib::Params{{"grant_type", "authorization_code"},
                                                   {"client_id", "backstop-emulator"},
                                                   {"client_secret", "backstop-emulator-secret"},
                                                   {"code", code},
                                                   {"redirect_uri", "http://localhost:3000/cb"}});
    EXPECT_TRUE(res);
    EXPECT_EQ(res->status, expect) << res->body;
    return json::parse(res->body);
  };
  auto tokens = exchange(200);
  ASSERT_TRUE(tokens.contains("refresh_token"));
  EXPECT_EQ(exchange(403)["error"], "invalid_grant");  // codes are single use

  auto rotated = refresh(tokens["refresh_token"]);
  ASSERT_TRUE(rotated.contains("refresh_token"));
  EXPECT_NE(rotated["refresh_token"], tokens["refresh_token"]);
  EXPECT_EQ(refresh(tokens["refresh_token"], "backstop-emulator-secret", 403)["error"],
            "invalid_grant");
  EXPECT_TRUE(refresh(rotated["refresh_token"]).contains("access_token"));
}

TEST_F(EmulatorTest, AuthorizeRequiresAudienceAndOfflineAccess) {
  start();
  auto r = cli_->Get(
      "/authorize?response_type=code&client_id=backstop-emulator"
      "&redirect_uri=http%3A%2F%2Flocalhost%2Fcb&scope=openid%20offline_access&state=s");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 302);
  EXPECT_NE(r->get_header_value("Location").find("error=invalid_request"), std::string::npos);
  r = cli_->Get(
      "/authorize?response_type=code&client_id=backstop-emulator&audience=https%3A%2F%2Fapi."
      "tradestation.com"
      "&redirect_uri=http%3A%2F%2Flocalhost%2Fcb&scope=openid");
  ASSERT_TRUE(r);
  EXPECT_NE(r->get_header_value("Location").find("offline_access"), std::string::npos);
  r = cli_->Get(
      "/authorize?response_type=code&client_id=backstop-emulator&audience=https%3A%2F%2Fapi."
      "tradestation.com"
      "&redirect_uri=https%3A%2F%2Fevil.example%2Fcb&scope=openid%20offline_access");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
}

// ---- Orders

TEST_F(EmulatorTest, EachOrderTypeInTheResponseShape) {
  start();
  quote("100", "100.01", "100");
  auto [status, body] = send("POST", "/v3/orderexecution/orders", order("Market", "buy", 10));
  ASSERT_EQ(status, 200);
  // An object {Orders, Errors}, not the array the spec declares.
  ASSERT_TRUE(body.is_object());
  EXPECT_EQ(body["Orders"][0]["Message"], "Sent order: Buy 10 AAPL @ Market");
  const std::string market = body["Orders"][0]["OrderID"];
  auto m = wait_status(market, "FLL");
  EXPECT_EQ(m["FilledPrice"], "100.01");
  EXPECT_EQ(m["Legs"][0]["ExecQuantity"], "10");
  EXPECT_EQ(m["Legs"][0]["BuyOrSell"], "Buy");
  EXPECT_TRUE(m.contains("ClosedDateTime"));

  auto lim = order("Limit", "SELLSHORT", 5, "GCP");
  lim["LimitPrice"] = "105.50";
  auto l = wait_status(place(lim), "ACK");
  EXPECT_EQ(l["LimitPrice"], "105.5");
  EXPECT_EQ(l["Duration"], "GTC+");  // response spelling
  EXPECT_EQ(l["Legs"][0]["BuyOrSell"], "SellShort");

  auto stp = order("StopMarket", "Sell", 10, "DYP");
  stp["StopPrice"] = "95";
  auto s = wait_status(place(stp), "ACK");
  EXPECT_EQ(s["StopPrice"], "95");
  EXPECT_EQ(s["Duration"], "DAY+");
  EXPECT_EQ(s["AdvancedOptions"], "STPTRG=STT;");

  auto sl = order("StopLimit", "BUYTOCOVER", 5, "1");
  sl["StopPrice"] = "110";
  sl["LimitPrice"] = "110.50";
  auto x = wait_status(place(sl), "ACK");
  EXPECT_EQ(x["Duration"], "1 min");
  EXPECT_EQ(x["OrderType"], "StopLimit");

  // IOC that cannot fill at once is cancelled: OUT. FOK the touch cannot fill: OUT.
  auto ioc = order("Limit", "BUY", 5, "IOC");
  ioc["LimitPrice"] = "90";
  wait_status(place(ioc), "OUT");
  auto fok = order("Limit", "BUY", 5, "FOK");
  fok["LimitPrice"] = "90";
  wait_status(place(fok), "OUT");

  // Off-tick price: 200 with a FAILED entry in Errors.
  auto bad = order("Limit", "BUY", 1);
  bad["LimitPrice"] = "100.001";
  auto [st2, b2] = send("POST", "/v3/orderexecution/orders", bad);
  EXPECT_EQ(st2, 200);
  EXPECT_EQ(b2["Errors"][0]["Error"], "FAILED");
  // Missing StopPrice on a stop: 400.
  EXPECT_EQ(send("POST", "/v3/orderexecution/orders", order("StopMarket", "SELL", 1)).first, 400);
}

TEST_F(EmulatorTest, RepeatedOrderConfirmIdIsRefusedAsDuplicate) {
  start();
  auto o = order("Limit", "BUY", 1);
  o["LimitPrice"] = "50";
  o["OrderConfirmID"] = "BKS-1";
  const std::string id = place(o);
  auto [status, body] = send("POST", "/v3/orderexecution/orders", o);
  EXPECT_EQ(status, 200);
  EXPECT_FALSE(body.contains("Orders"));
  EXPECT_NE(body["Errors"][0]["Message"].get<std::string>().find("Duplicate"), std::string::npos);
  auto requests = log()["requests"];
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0]["OrderID"], id);
  EXPECT_FALSE(requests[0]["duplicate"]);
  EXPECT_TRUE(requests[1]["duplicate"]);
  EXPECT_EQ(requests[1]["OrderConfirmID"], "BKS-1");

  o["OrderConfirmID"] = std::string(23, 'x');
  EXPECT_EQ(send("POST", "/v3/orderexecution/orders", o).first, 400);
}

TEST_F(EmulatorTest, BracketExitsAreHeldUntilTheEntryFills) {
  start();
  quote("100", "100.01", "100");
  auto entry = order("Limit", "BUY", 10, "DAY");
  entry["LimitPrice"] = "99";
  auto tp = order("Limit", "SELL", 10, "GTC");
  tp["LimitPrice"] = "110";
  auto sl = order("StopMarket", "SELL", 10, "GTC");
  sl["StopPrice"] = "95";
  // Stop first, as in the spec's "Buy Limit Entry with Multiple Brackets" example.
  entry["OSOs"] = json::array({{{"Type", "BRK"}, {"Orders", json::array({sl, tp})}}});
  auto [status, body] = send("POST", "/v3/orderexecution/orders", entry);
  ASSERT_EQ(status, 200) << body.dump();
  ASSERT_EQ(body["Orders"].size(), 3u);
  EXPECT_EQ(body["Orders"][1]["Message"], "Sent order: Sell 10 AAPL @ 95.00 Stop Market");
  const std::string e = body["Orders"][0]["OrderID"], s = body["Orders"][1]["OrderID"],
                    t = body["Orders"][2]["OrderID"];
  wait_status(e, "ACK");
  auto held = wait_status(s, "DON");
  EXPECT_NE(held["GroupName"].get<std::string>().rfind("BRK ", 0), std::string::npos);
  EXPECT_EQ(held["ConditionalOrders"][0], (json{{"OrderID", e}, {"Relationship", "OSP"}}));

  quote("98.99", "99", "99");  // entry fills, exits activate
  wait_status(e, "FLL");
  wait_status(t, "ACK");
  wait_status(s, "ACK");
  quote("94.75", "94.76", "94.75");  // through the stop: it fills, the take-profit is cancelled
  auto stop = wait_status(s, "FLL");
  EXPECT_EQ(stop["FilledPrice"], "94.75");
  wait_status(t, "CAN");
  auto [ps, positions] = get(std::string("/v3/brokerage/accounts/") + kAccount + "/positions");
  EXPECT_EQ(ps, 200);
  EXPECT_TRUE(positions["Positions"].empty());
}

TEST_F(EmulatorTest, OrderGroupsOcoAndBracket) {
  start();
  auto a = order("StopMarket", "Buy", 10, "GTC");
  a["StopPrice"] = "337";
  auto b = order("StopMarket", "SellShort", 10, "GTC");
  b["StopPrice"] = "150";
  auto [status, body] =
      send("POST", "/v3/orderexecution/ordergroups", json{{"Type", "OCO"}, {"Orders", {a, b}}});
  ASSERT_EQ(status, 200) << body.dump();
  ASSERT_EQ(body["Orders"].size(), 2u);
  auto first = wait_status(body["Orders"][0]["OrderID"], "ACK");
  EXPECT_EQ(first["GroupName"].get<std::string>().rfind("OCO ", 0), 0u);
  EXPECT_EQ(first["ConditionalOrders"][0]["OrderID"], body["Orders"][1]["OrderID"]);
  // A bracket group needs one symbol and one side.
  auto [s2, b2] =
      send("POST", "/v3/orderexecution/ordergroups", json{{"Type", "BRK"}, {"Orders", {a, b}}});
  EXPECT_EQ(s2, 200);
  EXPECT_EQ(b2["Errors"].size(), 2u);
}

// A wrongly typed Type is a malformed request: 400 naming the type, not the 500 of an exception
// (nlohmann's value() threw on it).
TEST_F(EmulatorTest, OrderGroupWithANumberForItsTypeIsABadRequest) {
  start();
  auto a = order("StopMarket", "Buy", 10, "GTC");
  a["StopPrice"] = "337";
  auto [status, body] = send("POST", "/v3/orderexecution/ordergroups", json{{"Type", 5}, {"Orders", {a, a}}});
  EXPECT_EQ(status, 400) << body.dump();
}

TEST_F(EmulatorTest, ReplaceChangesPriceAndQuantity) {
  start();
  quote("100", "100.01", "100");
  auto o = order("Limit", "BUY", 10);
  o["LimitPrice"] = "90";
  const std::string id = place(o);
  wait_status(id, "ACK");
  auto [status, body] = send("PUT", "/v3/orderexecution/orders/" + id,
                             json{{"Quantity", "12"}, {"LimitPrice", "91.25"}});
  ASSERT_EQ(status, 200) << body.dump();
  EXPECT_EQ(body["Message"], "Cancel/Replace order sent.");
  auto r = order_by_id(id);
  EXPECT_EQ(r["LimitPrice"], "91.25");
  EXPECT_EQ(r["Legs"][0]["QuantityOrdered"], "12");
  EXPECT_EQ(send("PUT", "/v3/orderexecution/orders/" + id, json{{"OrderType", "Market"}}).first,
            400);
  EXPECT_EQ(send("PUT", "/v3/orderexecution/orders/1-2345", json{{"Quantity", "1"}}).first, 400);
}

TEST_F(EmulatorTest, CancelIsAsynchronous) {
  start();
  auto o = order("Limit", "BUY", 10);
  o["LimitPrice"] = "90";
  const std::string id = place(o);
  auto [status, body] = send("DELETE", "/v3/orderexecution/orders/" + id, {});
  ASSERT_EQ(status, 200);
  EXPECT_EQ(body, (json{{"Message", "Cancel request sent"}, {"OrderID", id}}));
  EXPECT_EQ(order_by_id(id)["Status"], "UCN");  // cancel_delay is 200 ms
  auto c = wait_status(id, "CAN");
  EXPECT_TRUE(c.contains("ClosedDateTime"));
  auto [s2, b2] = send("DELETE", "/v3/orderexecution/orders/" + id, {});
  EXPECT_EQ(s2, 400);
  EXPECT_EQ(b2["Message"], "Not an open order.");
}

TEST_F(EmulatorTest, OrderListPages) {
  start();
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    auto o = order("Limit", "BUY", 1);
    o["LimitPrice"] = std::to_string(80 + i);
    ids.push_back(place(o));
  }
  std::vector<std::string> seen;
  std::string path = std::string("/v3/brokerage/accounts/") + kAccount + "/orders?pageSize=2";
  std::string used_token;
  for (int page = 0; page < 3; ++page) {
    auto [status, body] = get(path);
    ASSERT_EQ(status, 200) << body.dump();
    for (const auto& o : body["Orders"]) seen.push_back(o["OrderID"]);
    if (page < 2) {
      ASSERT_TRUE(body.contains("NextToken")) << page;
      used_token = body["NextToken"];
      path = std::string("/v3/brokerage/accounts/") + kAccount +
             "/orders?pageSize=2&nextToken=" + used_token;
    } else {
      EXPECT_FALSE(body.contains("NextToken"));
    }
  }
  EXPECT_EQ(seen, ids);
  EXPECT_EQ(get(path).first, 400);  // a token serves one request
  EXPECT_EQ(get(std::string("/v3/brokerage/accounts/") + kAccount + "/orders?pageSize=601").first,
            400);
}

// ---- Streams

TEST_F(EmulatorTest, OrderStreamSnapshotHeartbeatAndUpdates) {
  start();
  quote("100", "100.01", "100");
  auto o = order("Limit", "BUY", 10);
  o["LimitPrice"] = "90";
  const std::string resting = place(o);
  auto s = stream(orders_stream());
  ASSERT_FALSE(s->wait_for(is_order(resting, "ACK")).is_null());
  ASSERT_FALSE(s->wait_for(has_key("StreamStatus", "EndSnapshot")).is_null());
  ASSERT_FALSE(s->wait_for([](const json& l) { return l.contains("Heartbeat"); }).is_null());

  const std::string market = place(order("Market", "BUY", 10));
  // A fill first shows on an ACK frame, then FLL without and with ClosedDateTime.
  auto ack_fill = s->wait_for([&](const json& l) {
    return is_order(market, "ACK")(l) && l["Legs"][0]["ExecQuantity"] == "10";
  });
  EXPECT_FALSE(ack_fill.is_null());
  EXPECT_FALSE(s->wait_for([&](const json& l) {
                  return is_order(market, "FLL")(l) && !l.contains("ClosedDateTime");
                }).is_null());
  EXPECT_FALSE(s->wait_for([&](const json& l) {
                  return is_order(market, "FLL")(l) && l.contains("ClosedDateTime");
                }).is_null());

  auto stop = order("StopMarket", "SELL", 10, "GTC");
  stop["StopPrice"] = "95";
  const std::string sid = place(stop);
  ASSERT_FALSE(s->wait_for(is_order(sid, "ACK")).is_null());
  quote("94.5", "94.51", "94.5");
  EXPECT_FALSE(s->wait_for(is_order(sid, "STP")).is_null());  // stop hit, not yet terminal
  EXPECT_FALSE(s->wait_for(is_order(sid, "FLL")).is_null());

  ASSERT_EQ(send("DELETE", "/v3/orderexecution/orders/" + resting, {}).first, 200);
  EXPECT_FALSE(s->wait_for(is_order(resting, "UCN")).is_null());
  EXPECT_FALSE(s->wait_for(is_order(resting, "CAN")).is_null());
}

TEST_F(EmulatorTest, PositionAndQuoteStreams) {
  start();
  quote("100", "100.01", "100");
  place(order("Market", "BUY", 3));
  auto positions = stream(std::string("/v3/brokerage/stream/accounts/") + kAccount + "/positions");
  auto p = positions->wait_for(has_key("Symbol", "AAPL"));
  ASSERT_FALSE(p.is_null());
  EXPECT_EQ(p["Quantity"], "3");
  EXPECT_FALSE(positions->wait_for(has_key("StreamStatus", "EndSnapshot")).is_null());

  auto quotes = stream("/v3/marketdata/stream/quotes/AAPL,NOPE");
  EXPECT_FALSE(quotes->wait_for(has_key("Last", "100")).is_null());
  EXPECT_FALSE(quotes->wait_for(has_key("Symbol", "NOPE")).is_null());
  quote("101", "101.01", "101");
  EXPECT_FALSE(quotes->wait_for(has_key("Last", "101")).is_null());
  EXPECT_FALSE(positions->wait_for(has_key("Last", "101")).is_null());
  EXPECT_EQ(quotes->count(has_key("StreamStatus", "EndSnapshot")), 0u);  // v2 streams have none

  place(order("Market", "SELL", 3));
  EXPECT_FALSE(
      positions->wait_for([](const json& l) { return l.value("Deleted", false); }).is_null());
}

// ---- Faults, each visible in the log

TEST_F(EmulatorTest, GhostStopIsListedAsWorkingAndNeverTriggers) {
  start();
  faults({{"ghost_stop_rate", 1.0}});
  quote("100", "100.01", "100");
  auto stop = order("StopMarket", "SELL", 10, "GTC");
  stop["StopPrice"] = "95";
  const std::string id = place(stop);
  quote("90", "90.01", "90");
  EXPECT_EQ(wait_status(id, "ACK")["Status"], "ACK");
  EXPECT_EQ(fault_count("ghost_stop"), 1u);
  EXPECT_EQ(fault_count("ghost_stop_crossed"), 1u);
}

TEST_F(EmulatorTest, SilentlyRejectedStopHasNoRejFrame) {
  start();
  faults({{"ts_reject_stop_silently", 1.0}});
  auto s = stream(orders_stream());
  ASSERT_FALSE(s->wait_for(has_key("StreamStatus", "EndSnapshot")).is_null());
  auto stop = order("StopMarket", "SELL", 10, "GTC");
  stop["StopPrice"] = "95";
  const std::string id = place(stop);
  EXPECT_FALSE(s->wait_for(is_order(id, "ACK")).is_null());
  auto o = order_by_id(id);
  EXPECT_EQ(o["Status"], "REJ");
  EXPECT_TRUE(o.contains("RejectReason"));
  auto [status, body] = send("DELETE", "/v3/orderexecution/orders/" + id, {});
  EXPECT_EQ(status, 400);
  EXPECT_EQ(body["Message"], "Not an open order.");
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(s->count(is_order(id, "REJ")), 0u);
  EXPECT_EQ(fault_count("ts_reject_stop_silently"), 1u);
}

// Without a state file a restarted emulator is a broker that kept nothing; it must still never
// hand out an order id its previous life did: a journal that outlived it would take a new order's
// updates for an old order's. Both kinds of id: the venue's, and the emulator's own (an order it
// refused itself).
TEST_F(EmulatorTest, AnEmulatorStartedAfreshRepeatsNoOrderIdOfItsPreviousLife) {
  const auto place_both = [&] {
    faults({{"ts_reject_stop_silently", 1.0}});
    auto stop = order("StopMarket", "SELL", 10, "GTC");
    stop["StopPrice"] = "95";
    const std::string refused = place(stop);
    EXPECT_EQ(order_by_id(refused)["Status"], "REJ");
    auto limit = order("Limit", "BUY", 10);
    limit["LimitPrice"] = "90";
    const std::string resting = place(limit);
    return std::make_pair(refused, resting);
  };
  start();
  const auto first = place_both();
  emu_->stop();
  start();  // the same options: no state file
  const auto second = place_both();
  EXPECT_NE(second.first, first.first);
  EXPECT_NE(second.second, first.second);
  EXPECT_NE(second.first, first.second);
  EXPECT_NE(second.second, first.first);
}

TEST_F(EmulatorTest, DroppedFillFramesOnAStreamThatKeepsBeating) {
  start();
  faults({{"ts_drop_fill_frame", 1.0}});
  auto s = stream(orders_stream());
  ASSERT_FALSE(s->wait_for(has_key("StreamStatus", "EndSnapshot")).is_null());
  const std::string id = place(order("Market", "BUY", 10));
  wait_status(id, "FLL");  // the order did fill
  ASSERT_FALSE(s->wait_for(is_order(id, "ACK")).is_null());
  const auto beats = s->count([](const json& l) { return l.contains("Heartbeat"); });
  std::this_thread::sleep_for(400ms);
  EXPECT_GT(s->count([](const json& l) { return l.contains("Heartbeat"); }), beats);
  EXPECT_EQ(s->count(is_order(id, "FLL")), 0u);
  EXPECT_EQ(fault_count("ts_drop_fill_frame"), 1u);
  // A reconnect's snapshot tells the truth.
  auto again = stream(orders_stream());
  EXPECT_FALSE(again->wait_for(is_order(id, "FLL")).is_null());
}

TEST_F(EmulatorTest, StalledStreamGoesSilentThenDrops) {
  start();
  faults({{"ts_stall", 1.0}});
  auto s = stream(orders_stream());
  ASSERT_FALSE(s->wait_for(has_key("StreamStatus", "EndSnapshot")).is_null());
  EXPECT_TRUE(s->wait_ended(4000ms));  // stall_length is 1 s
  EXPECT_EQ(s->count([](const json& l) { return l.contains("Heartbeat"); }), 0u);
  EXPECT_GE(fault_count("ts_stall"), 1u);
}

TEST_F(EmulatorTest, GoAwayOnBrokerageAndMarketDataStreams) {
  start();
  faults({{"ts_goaway", 1.0}});
  auto orders = stream(orders_stream());
  auto quotes = stream("/v3/marketdata/stream/quotes/AAPL");
  EXPECT_FALSE(orders->wait_for(has_key("StreamStatus", "GoAway")).is_null());
  EXPECT_FALSE(quotes->wait_for(has_key("Error", "GoAway")).is_null());
  EXPECT_TRUE(orders->wait_ended());
  EXPECT_GE(fault_count("ts_goaway"), 2u);
}

TEST_F(EmulatorTest, Http429ComesInBursts) {
  start();
  faults({{"ts_429", 1.0}, {"ts_429_burst", 2}});
  auto [status, body] = get("/v3/brokerage/accounts");
  EXPECT_EQ(status, 429);
  EXPECT_EQ(body["Error"], "TooManyRequests");
  faults({{"ts_429", 0.0}});
  EXPECT_EQ(get("/v3/brokerage/accounts").first, 429);  // rest of the burst
  EXPECT_EQ(get("/v3/brokerage/accounts").first, 200);
  EXPECT_EQ(fault_count("ts_429"), 2u);
}

TEST_F(EmulatorTest, AccessTokenExpiresEarly) {
  start();
  faults({{"ts_token_expiry", 1.0}});
  EXPECT_EQ(get("/v3/brokerage/accounts").first, 401);
  faults({{"ts_token_expiry", 0.0}});
  EXPECT_EQ(get("/v3/brokerage/accounts").first, 401);  // that token stays dead
  token_ = refresh("backstop-emulator-refresh-token")["access_token"];
  EXPECT_EQ(get("/v3/brokerage/accounts").first, 200);
  EXPECT_EQ(fault_count("ts_token_expiry"), 1u);
}

TEST_F(EmulatorTest, SlowAckAndVenueReject) {
  start();
  faults({{"ack_delay_ms", 300}, {"reject_rate", 1.0}});
  auto s = stream(orders_stream());
  ASSERT_FALSE(s->wait_for(has_key("StreamStatus", "EndSnapshot")).is_null());
  const auto t0 = std::chrono::steady_clock::now();
  auto o = order("Limit", "BUY", 1);
  o["LimitPrice"] = "50";
  const std::string id = place(o);  // accepted for processing...
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 300ms);
  EXPECT_FALSE(s->wait_for(is_order(id, "REJ")).is_null());  // ...then rejected on the stream
  EXPECT_EQ(order_by_id(id)["Status"], "REJ");
  EXPECT_EQ(fault_count("ts_slow_ack"), 1u);
  EXPECT_EQ(fault_count("reject"), 1u);
}

TEST(TradeStationEmulatorTls, ServesHttpsWithARuntimeCertificate) {
  auto o = test_options();
  o.tls = true;
  tse::TradeStationEmulator emu(o);
  emu.start(0);
  ASSERT_NE(emu.certificate_pem().find("BEGIN CERTIFICATE"), std::string::npos);
  const std::string ca = ::testing::TempDir() + "tse-ca.pem";
  std::ofstream(ca) << emu.certificate_pem();
  httplib::SSLClient cli("localhost", emu.port());
  cli.set_ca_cert_path(ca.c_str());
  cli.enable_server_certificate_verification(true);
  auto r = cli.Post("/oauth/token",
                    httplib::Params{{"grant_type", "refresh_token"},
                                    {"client_id", "backstop-emulator"},
                                    {"client_secret", "backstop-emulator-secret"},
                                    {"refresh_token", "backstop-emulator-refresh-token"}});
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  EXPECT_EQ(r->status, 200);
  emu.stop();
  std::remove(ca.c_str());
}

// ---- State file (Options::state_file): the emulator survives a restart like a broker's back end

class EmulatorStateTest : public EmulatorTest {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("ts-emulator-state-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    EmulatorTest::TearDown();
    std::filesystem::remove_all(dir_);
  }
  tse::Options state_options() {
    auto o = test_options();
    o.state_file = dir_ / "state.json";
    return o;
  }
  // A new emulator object on the same file and a fresh port; the old one is gone first.
  void restart() {
    const auto options = emu_->options();
    emu_->stop();
    emu_.reset();
    emu_ = std::make_unique<tse::TradeStationEmulator>(options);
    emu_->start(0);
    cli_ = std::make_unique<httplib::Client>("127.0.0.1", emu_->port());
    cli_->set_read_timeout(5, 0);
  }
  json state_file() {
    std::ifstream in(dir_ / "state.json");
    return json::parse(in);
  }
  static bool has_order(const json& state, const std::string& id, const std::string& status) {
    for (const auto& o : state["emulator"]["orders"])
      if (o["last"]["id"] == id && o["last"]["status"] == status) return true;
    return false;
  }
  std::filesystem::path dir_;
};

TEST_F(EmulatorStateTest, RestartKeepsOrdersPositionsBalancesLogsAndTokens) {
  auto options = state_options();
  options.cancel_delay = 1000ms;  // long enough that the restart comes before the cancel lands
  start(options);
  quote("100", "100.01", "100");
  auto resting = order("Limit", "BUY", 5);
  resting["LimitPrice"] = "90";
  resting["OrderConfirmID"] = "KEEP-1";
  const std::string resting_id = place(resting);
  auto filled = order("Limit", "BUY", 10);
  filled["LimitPrice"] = "99";
  const std::string filled_id = place(filled);
  quote("98.99", "99", "99");  // the quote fills it
  wait_status(filled_id, "FLL");
  auto to_cancel = order("Limit", "BUY", 1);
  to_cancel["LimitPrice"] = "80";
  const std::string cancel_id = place(to_cancel);
  ASSERT_EQ(send("DELETE", "/v3/orderexecution/orders/" + cancel_id, {}).first, 200);

  const std::string accts = std::string("/v3/brokerage/accounts/") + kAccount;
  const json resting_before = order_by_id(resting_id), filled_before = order_by_id(filled_id);
  const json positions_before = get(accts + "/positions").second;
  const json balances_before = get(accts + "/balances").second;
  const json requests_before = log()["requests"];
  ASSERT_EQ(positions_before["Positions"].size(), 1u);

  restart();  // token_ is the first life's access token

  EXPECT_EQ(order_by_id(resting_id), resting_before);  // still working, same OrderID
  EXPECT_EQ(resting_before["Status"], "ACK");
  EXPECT_EQ(order_by_id(filled_id), filled_before);
  EXPECT_EQ(get(accts + "/positions").second, positions_before);
  EXPECT_EQ(get(accts + "/balances").second, balances_before);
  // The cancel accepted before the restart lands after it.
  EXPECT_EQ(order_by_id(cancel_id)["Status"], "UCN");
  wait_status(cancel_id, "CAN");

  auto [status, dup] = send("POST", "/v3/orderexecution/orders", resting);
  EXPECT_EQ(status, 200);
  EXPECT_FALSE(dup.contains("Orders")) << dup.dump();
  EXPECT_NE(dup["Errors"][0]["Message"].get<std::string>().find("Duplicate"), std::string::npos);

  EXPECT_FALSE(refresh(emu_->options().refresh_token)["access_token"].get<std::string>().empty());
  auto fresh = order("Limit", "BUY", 1);
  fresh["LimitPrice"] = "85";
  const std::string fresh_id = place(fresh);
  for (const auto& old : {resting_id, filled_id, cancel_id}) EXPECT_NE(fresh_id, old);
  EXPECT_GT(std::stoull(fresh_id), std::stoull(cancel_id));

  const json requests = log()["requests"];
  ASSERT_GT(requests.size(), requests_before.size());
  for (std::size_t i = 0; i < requests_before.size(); ++i)
    EXPECT_EQ(requests[i], requests_before[i]) << i;
}

TEST_F(EmulatorStateTest, StateIsWrittenBeforeTheAnswerAndTheFillFrameWaitsForIt) {
  start(state_options());
  quote("100", "100.01", "100");
  auto o = order("Limit", "BUY", 3);
  o["LimitPrice"] = "95";
  const std::string id = place(o);
  EXPECT_TRUE(has_order(state_file(), id, "working"));  // already there when the answer came

  auto s = stream(std::string("/v3/brokerage/stream/accounts/") + kAccount + "/orders");
  ASSERT_FALSE(s->wait_for(has_key("StreamStatus", "EndSnapshot")).is_null());
  // The state cannot be written while FILE.new is a directory (root ignores permissions, this
  // does not): the quote fills the order, and its fill frame must wait for the write.
  const auto blocker = dir_ / "state.json.new";
  std::filesystem::create_directory(blocker);
  auto r = cli_->Post("/__emulator/quote", json{{"symbol", "AAPL"}, {"bid", "94.99"}, {"ask", "95"}, {"last", "95"}}.dump(),
                      "application/json");
  ASSERT_TRUE(r);
  EXPECT_NE(r->status, 200) << "the failed write is reported: " << r->body;
  EXPECT_TRUE(s->wait_for(is_order(id, "FLL"), 300ms).is_null()) << "a fill frame left before its state was written";
  EXPECT_TRUE(has_order(state_file(), id, "working"));
  // Writable again: the next locked operation writes the fill, then lets the frame go.
  std::filesystem::remove(blocker);
  get(std::string("/v3/brokerage/accounts/") + kAccount + "/positions");
  ASSERT_FALSE(s->wait_for(is_order(id, "FLL")).is_null());
  EXPECT_TRUE(has_order(state_file(), id, "filled"));
}

TEST_F(EmulatorStateTest, FirstStartWritesTheFile) {
  start(state_options());
  const json state = state_file();
  EXPECT_EQ(state["version"], 1);
  EXPECT_TRUE(state["emulator"]["orders"].empty());
}

TEST_F(EmulatorStateTest, UnreadableStateFileThrowsNamingIt) {
  const auto path = dir_ / "state.json";
  for (const std::string text : {"{not json", R"({"version":1})", R"({"version":99})"}) {
    std::ofstream(path) << text;
    tse::TradeStationEmulator emu(state_options());
    try {
      emu.start(0);
      ADD_FAILURE() << "started on " << text;
    } catch (const backstop::Error& e) {
      EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
    }
  }
}

// The standalone emulator as a process of its own, so that it can be killed with SIGKILL.
class EmulatorProcess {
 public:
  explicit EmulatorProcess(const std::filesystem::path& state) {
    std::vector<std::string> argv{BACKSTOP_TS_EMULATOR_BIN, "--port", "0", "--tick-ms", "0",
                                  "--state", state.string()};
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    int out[2];
    if (::pipe(out) != 0) throw std::runtime_error("pipe failed");
    pid_ = ::fork();  // only async-signal-safe calls in the child until exec
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::dup2(out[1], 1);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(out[1]);
    out_ = ::fdopen(out[0], "r");
    // The banner's first line names the port: "TradeStation v3 emulator on http://127.0.0.1:N".
    char buf[512];
    const std::string marker = "emulator on http://127.0.0.1:";
    while (port_ == 0 && std::fgets(buf, sizeof buf, out_)) {
      const std::string l = buf;
      if (auto at = l.find(marker); at != std::string::npos)
        port_ = std::stoi(l.substr(at + marker.size()));
    }
  }
  ~EmulatorProcess() {
    kill9();
    std::fclose(out_);  // kept open until now: the child must never write into a closed pipe
  }
  int port() const { return port_; }
  void kill9() {
    if (pid_ <= 0 || exited_) return;
    ::kill(pid_, SIGKILL);
    wait();
  }
  int wait() {  // the exit status
    int status = 0;
    ::waitpid(pid_, &status, 0);
    exited_ = true;
    return status;
  }

 private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
  int port_ = 0;
  bool exited_ = false;
};

TEST_F(EmulatorStateTest, KilledWithSigkillComesBackWithItsOrdersAndTokens) {
  const auto path = dir_ / "state.json";
  auto first = std::make_unique<EmulatorProcess>(path);
  ASSERT_GT(first->port(), 0);
  cli_ = std::make_unique<httplib::Client>("127.0.0.1", first->port());
  token_ = refresh("backstop-emulator-refresh-token")["access_token"];
  quote("100", "100.01", "100");
  auto o = order("StopMarket", "SELL", 2);
  o["StopPrice"] = "95";
  o["OrderConfirmID"] = "KILL-1";
  const std::string id = place(o);
  first->kill9();  // no chance to write anything after the answer

  EmulatorProcess second(path);
  ASSERT_GT(second.port(), 0);
  cli_ = std::make_unique<httplib::Client>("127.0.0.1", second.port());
  const json restored = order_by_id(id);  // with the first life's access token
  EXPECT_EQ(restored.value("Status", ""), "ACK") << restored.dump();
  EXPECT_EQ(restored.value("StopPrice", ""), "95");
  auto [status, dup] = send("POST", "/v3/orderexecution/orders", o);
  EXPECT_FALSE(dup.contains("Orders")) << dup.dump();
  EXPECT_EQ(log()["requests"][0]["OrderID"], id);
}

TEST_F(EmulatorStateTest, CommandLineExitsNonZeroOnACorruptStateFile) {
  std::ofstream(dir_ / "state.json") << "{not json";
  EmulatorProcess emu(dir_ / "state.json");  // reads stdout to its end: the process has ended
  EXPECT_EQ(emu.port(), 0);
  const int status = emu.wait();
  ASSERT_TRUE(WIFEXITED(status)) << "ended by a signal";
  EXPECT_NE(WEXITSTATUS(status), 0);
}

TEST(TradeStationEmulatorFaultSpec, NamedProfileWithOverrides) {
  auto p = tse::parse_fault_spec("demo,ts_goaway=0.25,ack_delay_ms=200");
  EXPECT_EQ(p.name, "demo");
  EXPECT_DOUBLE_EQ(p.extra_rate("ts_goaway"), 0.25);
  EXPECT_EQ(p.ack_delay, std::chrono::milliseconds(200));
  EXPECT_THROW(tse::parse_fault_spec("nonsense"), backstop::ConfigError);
}

}  // namespace
