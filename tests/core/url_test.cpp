// The one URL parser (core/url.hpp): the config's narrow form and the network clients' wider one.
#include "core/url.hpp"

#include <gtest/gtest.h>

using namespace backstop;

TEST(Url, Parse) {
  auto u = parse_url("https://localhost:5000/v1/api");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->scheme, "https");
  EXPECT_EQ(u->host, "localhost");
  EXPECT_EQ(u->port, 5000);
  EXPECT_EQ(u->path, "/v1/api");
  EXPECT_EQ(u->query, "");
  EXPECT_TRUE(u->tls());
  EXPECT_TRUE(u->is_loopback());
  u = parse_url("HTTPS://Sim-Api.TradeStation.com");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->port, 443);
  EXPECT_EQ(u->host, "sim-api.tradestation.com");
  EXPECT_FALSE(u->is_loopback());
  u = parse_url("http://[::1]:8080/x");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, 8080);
  EXPECT_FALSE(u->tls());
  EXPECT_TRUE(u->is_loopback());
  for (const char* bad : {"", "x", "://h", "http://", "http://:80", "http://h:", "http://h:0", "http://h:65536",
                          "http://a b", "http://-h", "http://h..com", "http://h?q=1", "http://h#f", "http://[::1",
                          "http://[::1]x", "ws://h", "http://u:p@h/x"})
    EXPECT_FALSE(parse_url(bad)) << bad;
  EXPECT_TRUE(is_loopback_host("127.0.0.1"));
  EXPECT_TRUE(is_loopback_host("127.1.2.3"));
  EXPECT_FALSE(is_loopback_host("127.0.0.256"));
  EXPECT_FALSE(is_loopback_host("128.0.0.1"));
  EXPECT_FALSE(is_loopback_host("localhost.example.com"));
}

TEST(Url, ReasonsNameTheProblemWithoutRepeatingTheText) {
  std::string why;
  EXPECT_FALSE(parse_url("ftp://h/x", &why));
  EXPECT_EQ(why, "unsupported scheme \"ftp\", expected http or https");
  EXPECT_FALSE(parse_url("wss://h/x", &why));
  EXPECT_EQ(why, "unsupported scheme \"wss\", expected http or https");
  EXPECT_FALSE(parse_url("https://user:secret@h/x", &why));
  EXPECT_EQ(why, "credentials in the URL are not allowed");
  EXPECT_EQ(why.find("secret"), std::string::npos);
  EXPECT_FALSE(parse_url("https://h/x?token=1", &why));
  EXPECT_EQ(why, "a query or fragment is not allowed here");
  EXPECT_FALSE(parse_url("https://h:99999", &why));
  EXPECT_EQ(why, "not a URL: port must be 1-65535");
}

// The network clients' form: WebSocket schemes (default ports as their HTTP twins) and a query.
TEST(Url, WiderFormTakesWebSocketsAndAQuery) {
  const UrlForm wide{.websocket = true, .query = true};
  auto u = parse_url("WSS://LocalHost:5000/v1/api/ws?oauth_token=x&a=b", nullptr, wide);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->scheme, "wss");
  EXPECT_EQ(u->host, "localhost");
  EXPECT_EQ(u->port, 5000);
  EXPECT_EQ(u->path, "/v1/api/ws");
  EXPECT_EQ(u->query, "?oauth_token=x&a=b");
  EXPECT_TRUE(u->tls());
  u = parse_url("wss://api.ibkr.com/ws", nullptr, wide);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->port, 443);
  u = parse_url("ws://127.0.0.1?x", nullptr, wide);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->port, 80);
  EXPECT_EQ(u->path, "");
  EXPECT_EQ(u->query, "?x");
  std::string why;
  EXPECT_FALSE(parse_url("https://h/x#frag", &why, wide));
  EXPECT_EQ(why, "a fragment is not allowed in a URL");
  EXPECT_FALSE(parse_url("ftp://h", &why, wide));
  EXPECT_EQ(why, "unsupported scheme \"ftp\", expected http, https, ws or wss");
}
