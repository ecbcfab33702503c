// Contract test: the adapter's REST traffic goes through Prism (`prism proxy <official spec>
// <emulator> --errors`), which judges every request the adapter builds and every answer it parses
// against IBKR's OpenAPI 2.29.0. Any violation fails the test unless it is a spec defect listed,
// with evidence, in tests/ibkr/SPEC_DEFECTS.md (the item number is named next to each allowance).
//
// Prism's verdicts are read from its log: each step runs alone (one adapter call, waited for) and
// the violations logged during that step must all be allowed for that step.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <cstdio>
#include <sstream>

#include <nlohmann/json.hpp>

#include "brokers/ibkr/ibkr_broker.hpp"
#include "brokers/net/http_client.hpp"
#include "core/event_loop.hpp"
#include "emulators/ibkr/ibkr_gateway_emulator.hpp"

extern char** environ;

namespace backstop {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

bool port_open(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

std::string strip_ansi(const std::string& s) { return std::regex_replace(s, std::regex("\x1b\\[[0-9;]*m"), ""); }

// One Prism child process in its own process group; killed in the destructor.
class Prism {
 public:
  Prism(const std::string& spec, const std::string& upstream, std::uint16_t port, const fs::path& log)
      : log_(log) {
    std::vector<std::string> args = {BACKSTOP_PRISM_BIN, "proxy", spec, upstream, "--errors", "--host", "127.0.0.1",
                                     "--port", std::to_string(port)};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    // NODE_TLS_REJECT_UNAUTHORIZED=0 only in Prism's environment: it talks to the self-signed
    // emulator; the adapter keeps verifying (its leg to Prism is plain http on loopback).
    std::vector<std::string> env_store;
    for (char** e = environ; *e; ++e) env_store.emplace_back(*e);
    env_store.emplace_back("NODE_TLS_REJECT_UNAUTHORIZED=0");
    env_store.emplace_back("NO_COLOR=1");
    env_store.emplace_back("FORCE_COLOR=0");
    std::vector<char*> envp;
    for (auto& e : env_store) envp.push_back(e.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    rc_ = posix_spawn(&pid_, argv[0], &fa, &attr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
  }
  ~Prism() {
    if (rc_ == 0 && pid_ > 0) {
      ::kill(-pid_, SIGTERM);
      int status = 0;
      for (int i = 0; i < 50 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i) ::usleep(100'000);
      if (::waitpid(pid_, &status, WNOHANG) == 0) {
        ::kill(-pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
      }
    }
  }
  bool spawned() const { return rc_ == 0; }
  std::string log() const {
    std::ifstream in(log_);
    std::stringstream ss;
    ss << in.rdbuf();
    return strip_ansi(ss.str());
  }

 private:
  fs::path log_;
  pid_t pid_ = -1;
  int rc_ = -1;
};

// A violation Prism may report because the spec, not the adapter, is wrong: on requests whose
// "METHOD target" matches `request`, a validation message containing `message_part`.
struct Allowed {
  std::regex request;
  const char* message_part;
  const char* defect;  // tests/ibkr/SPEC_DEFECTS.md item
};

struct Observed {
  std::string method, target;
  int status = 0;
  std::string body;
};

class IbkrContract : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(BACKSTOP_PRISM_BIN))
        << "Prism missing at " << BACKSTOP_PRISM_BIN
        << ": mkdir -p tools/prism && npm install --prefix tools/prism @stoplight/prism-cli@5";
    const std::string spec = std::string(BACKSTOP_SPEC_DIR) + "/ibkr-webapi-2.29.0.openapi.json";
    ASSERT_TRUE(fs::exists(spec)) << spec;
    IbkrEmulatorOptions eo;
    eo.accounts = {"DU1234567", "DU7654321"};  // so that account selection is exercised
    eo.pacing_window_scale = 0.02;
    emu = std::make_unique<IbkrGatewayEmulator>(eo);
    emu->start();
    cert = fs::temp_directory_path() / ("ibkr-contract-" + std::to_string(::getpid()) + ".pem");
    std::ofstream(cert) << emu->certificate_pem();
    prism_port = free_port();
    prism_log = fs::temp_directory_path() / ("ibkr-contract-prism-" + std::to_string(::getpid()) + ".log");
    prism = std::make_unique<Prism>(spec, emu->base_url() + "/v1/api", prism_port, prism_log);
    ASSERT_TRUE(prism->spawned()) << "cannot start " << BACKSTOP_PRISM_BIN;
    const auto deadline = std::chrono::steady_clock::now() + 40s;
    while (!port_open(prism_port) && std::chrono::steady_clock::now() < deadline) ::usleep(100'000);
    ASSERT_TRUE(port_open(prism_port)) << "Prism did not start:\n" << prism->log();
  }
  void TearDown() override {
    if (broker) broker->stop();
    broker.reset();
    loop.run_until(clock.now() + 50'000'000);
    prism.reset();  // kills Prism
    if (emu) emu->stop();
    fs::remove(cert);
    fs::remove(prism_log);
  }

  IbkrBrokerOptions options() {
    IbkrBrokerOptions o;
    o.settings.base_url = emu->base_url() + "/v1/api";
    o.settings.tls.pinned_cert_file = cert.string();
    o.settings.suppress_message_ids = {"o451"};
    o.rest_base_url_override = "http://127.0.0.1:" + std::to_string(prism_port);
    o.use_websocket = false;  // /ws is not in the spec (SPEC_DEFECTS.md item 13)
    o.account = "DU7654321";
    o.symbols = {{"AAPL", "AAPL"}, {"ES", "ES:CME:202612"}};
    o.slow_endpoint_interval = 150ms;
    o.auth_poll_interval = 300ms;
    o.request_timeout = 10s;
    o.on_response = [this](const std::string& m, const std::string& t, int st, const std::string& b) {
      seen.push_back({m, t, st, b});
    };
    return o;
  }

  template <class P>
  bool run_until(P pred, std::chrono::milliseconds limit = 15s) {
    const Timestamp deadline = clock.now() + std::chrono::nanoseconds(limit).count();
    while (!pred()) {
      if (clock.now() >= deadline) return false;
      loop.run_until(std::min(deadline, clock.now() + 5'000'000));
    }
    return true;
  }

  // Runs one step; then checks that each path in `expect_paths` went through Prism during it.
  template <class F>
  void step(const std::string& name, F body, std::vector<std::string> expect_paths) {
    SCOPED_TRACE(name);
    const std::size_t from = seen.size();
    body();
    for (const auto& p : expect_paths) {
      bool found = false;
      for (std::size_t i = from; i < seen.size(); ++i) found |= seen[i].target.find(p) != std::string::npos;
      EXPECT_TRUE(found) << name << ": the adapter sent no request to " << p;
    }
  }

  std::string order_id_for(const std::string& cid) {
    const auto log = nlohmann::json::parse(emu->log_json());
    for (const auto& o : log["orders"])
      if (o.value("cOID", "") == cid && o.contains("order_id") && !o["order_id"].is_null() &&
          o["order_id"] != "") {
        const auto& id = o["order_id"];
        return id.is_string() ? id.get<std::string>() : id.dump();
      }
    return {};
  }

  SystemClock clock;
  EventLoop loop{clock};
  std::unique_ptr<IbkrGatewayEmulator> emu;
  std::unique_ptr<Prism> prism;
  std::unique_ptr<IbkrBroker> broker;
  fs::path cert, prism_log;
  std::uint16_t prism_port = 0;
  std::vector<Observed> seen;  // every REST answer the adapter received (through Prism)
};

TEST_F(IbkrContract, EveryRestEndpointTheAdapterCallsMatchesTheOfficialSpec) {
  broker = std::make_unique<IbkrBroker>(options(), loop);
  step("session start", [&] {
    broker->start();
    ASSERT_TRUE(run_until([&] { return broker->health().connectivity == Connectivity::connected; }))
        << broker->health().detail;
    EXPECT_EQ(broker->account(), "DU7654321");
    ASSERT_TRUE(run_until([&] {
      for (const auto& o : seen)
        if (o.target == "/tickle") return true;
      return false;
    }));
  }, {"/iserver/auth/status", "/iserver/accounts", "/iserver/account", "/iserver/questions/suppress", "/tickle"});

  step("contract resolution and rules", [&] {
    int done = 0;
    broker->resolve_conid("AAPL", [&](std::optional<std::int64_t> c, std::string e) {
      EXPECT_EQ(c, 265598) << e;
      ++done;
    });
    broker->resolve_conid("ES", [&](std::optional<std::int64_t> c, std::string e) {
      EXPECT_EQ(c, 495512557) << e;
      ++done;
    });
    ASSERT_TRUE(run_until([&] { return done == 2; }));
  }, {"/trsrv/stocks", "/iserver/secdef/search", "/trsrv/futures", "/iserver/contract/rules"});

  // Order endpoints: the spec's oneOf is ambiguous (items 1-4), so Prism replaces the answer with
  // its own error; the adapter must then say "unknown", and the order exists at the gateway.
  std::string cid = "CT" + std::to_string(::getpid());
  std::optional<CommandResult> placed;
  step("place order", [&] {
    OrderSpec s;
    s.client_order_id = cid;
    s.symbol = "AAPL";
    s.side = Side::buy;
    s.quantity = 5;
    s.type = OrderType::limit;
    s.limit_price = Price::parse("188.00");
    s.tif = TimeInForce::gtc;
    broker->submit(s, [&](CommandResult r) { placed = r; });
    ASSERT_TRUE(run_until([&] { return placed.has_value(); }));
    EXPECT_NE(placed->outcome, Outcome::failed_locally) << placed->message;
  }, {"/iserver/account/DU7654321/orders"});
  const std::string order_id = placed && placed->outcome == Outcome::accepted ? placed->broker_order_id : order_id_for(cid);
  ASSERT_FALSE(order_id.empty()) << emu->log_json();

  step("live orders (query by client id)", [&] {
    std::optional<OrderQueryResult> q;
    broker->query_by_client_id(cid, [&](OrderQueryResult r) { q = r; });
    ASSERT_TRUE(run_until([&] { return q.has_value(); }));
  }, {"/iserver/account/orders"});

  step("single order status", [&] {
    std::optional<OrderQueryResult> q;
    broker->query_order(order_id, [&](OrderQueryResult r) { q = r; });
    ASSERT_TRUE(run_until([&] { return q.has_value(); }));
  }, {"/iserver/account/order/status/" + order_id});

  step("modify", [&] {
    OrderSpec s;
    s.client_order_id = cid;
    s.symbol = "AAPL";
    s.side = Side::buy;
    s.quantity = 5;
    s.type = OrderType::limit;
    s.limit_price = Price::parse("188.10");
    s.tif = TimeInForce::gtc;
    std::optional<CommandResult> m;
    broker->replace(order_id, s, [&](CommandResult r) { m = r; });
    ASSERT_TRUE(run_until([&] { return m.has_value(); }));
  }, {"/iserver/account/DU7654321/order/" + order_id});

  step("cancel", [&] {
    std::optional<CommandResult> c;
    broker->cancel(order_id, [&](CommandResult r) { c = r; });
    ASSERT_TRUE(run_until([&] { return c.has_value(); }));
  }, {"/iserver/account/DU7654321/order/" + order_id});

  step("trades", [&] {
    std::optional<FillsResult> f;
    broker->list_fills([&](FillsResult r) { f = r; });
    ASSERT_TRUE(run_until([&] { return f.has_value(); }));
    EXPECT_EQ(f->outcome, Outcome::accepted) << f->message;
  }, {"/iserver/account/trades"});

  step("positions", [&] {
    std::optional<PositionsResult> p;
    broker->list_positions([&](PositionsResult r) { p = r; });
    ASSERT_TRUE(run_until([&] { return p.has_value(); }));
  }, {"/portfolio/accounts", "/positions/invalidate", "/portfolio/DU7654321/positions/0"});

  step("market data snapshot", [&] {
    bool done = false;
    broker->snapshot("AAPL", [&](Outcome, std::optional<Quote>, std::string) { done = true; }, 2);
    ASSERT_TRUE(run_until([&] { return done; }));
  }, {"/iserver/marketdata/snapshot"});

  // The reply endpoint: Prism hides the question behind item 1, so the adapter never sees a reply
  // id through it. The request the adapter would send ({"confirmed":true} to a stale id) is checked
  // directly; its 400 answer passes unchanged.
  step("reply (stale id)", [&] {
    net::HttpClient::Options ho;
    ho.base_url = "http://127.0.0.1:" + std::to_string(prism_port);
    ho.post = [this](std::function<void()> f) { loop.post(std::move(f)); };
    net::HttpClient raw(ho);
    std::optional<net::HttpResult> r;
    raw.request({"POST", "/iserver/reply/00000000-0000-0000-0000-000000000000", {}, R"({"confirmed":true})", 5s},
                [&](net::HttpResult x) { r = std::move(x); });
    ASSERT_TRUE(run_until([&] { return r.has_value(); }));
    ASSERT_TRUE(r->ok());
    seen.push_back({"POST", "/iserver/reply/00000000-0000-0000-0000-000000000000", r->response->status, r->response->body});
    EXPECT_NE(r->response->body.find("reply id not found"), std::string::npos) << r->response->body;
  }, {"/iserver/reply/"});

  step("session recovery", [&] {
    emu->expire_session();
    broker->stop();
    broker.reset();
    auto o = options();
    broker = std::make_unique<IbkrBroker>(o, loop);
    broker->start();
    ASSERT_TRUE(run_until([&] { return broker->stats().session_recoveries >= 1; }));
    ASSERT_TRUE(run_until([&] { return broker->health().connectivity == Connectivity::connected; }));
  }, {"/iserver/auth/ssodh/init", "/iserver/auth/status"});

  // Prism's verdicts: with --errors a violation replaces the answer by a problem document whose
  // `validation` array names each violation. Every one must be a listed spec defect.
  const std::regex place("^POST /iserver/account/[^/]+/orders$"), modify("^POST /iserver/account/[^/]+/order/[0-9]+$"),
      cancel("^DELETE /iserver/account/[^/]+/order/[0-9]+$"), status("^GET /iserver/account/order/status/[0-9]+$"),
      live("^GET /iserver/account/orders$"), snapshot("^GET /iserver/marketdata/snapshot$"),
      paccounts("^GET /portfolio/accounts$"), tickle("^POST /tickle$");
  const std::vector<Allowed> allowed = {
      {place, "exactly one schema in oneOf", "1"},
      {modify, "exactly one schema in oneOf", "2"},
      {modify, "Response body must be object", "2"},
      {cancel, "exactly one schema in oneOf", "3"},
      {status, "exactly one schema in oneOf", "4"},
      {live, "conid must be string", "5"},
      {live, "filledQuantity must be string", "5"},
      {live, "remainingQuantity must be string", "5"},
      {live, "totalSize must be string", "5"},
      {live, "lastExecutionTime_r must be string", "5"},
      {status, "side must be equal to one of the allowed values: BUY, SELL", "6"},
      {snapshot, "_updated", "7"},
      {paccounts, "accountStatus must match format \"int32\"", "8"},
      {paccounts, "accountStatus must be <= 2147483647", "8"},
      {snapshot, "Request query parameter fields must be equal to one of the allowed values", "12"},
      {tickle, "exactly one schema in oneOf", "14"},
  };
  int violations = 0;
  for (const auto& o : seen) {
    if (o.body.find("stoplight.io/prism/errors") == std::string::npos) continue;
    const auto problem = nlohmann::json::parse(o.body, nullptr, false);
    ASSERT_TRUE(problem.is_object()) << o.body;
    const std::string request = o.method + " " + std::string(net::loggable_target(o.target));
    for (const auto& v : problem.value("validation", nlohmann::json::array())) {
      ++violations;
      std::string where;
      for (const auto& l : v.value("location", nlohmann::json::array())) where += (where.empty() ? "" : ".") + l.dump();
      const std::string text = where + " " + v.value("code", "") + ": " + v.value("message", "");
      bool ok = false;
      for (const auto& a : allowed) ok |= std::regex_search(request, a.request) && text.find(a.message_part) != std::string::npos;
      EXPECT_TRUE(ok) << "Prism violation not listed in tests/ibkr/SPEC_DEFECTS.md: " << request << " -> HTTP "
                      << o.status << ": " << text;
    }
  }
  std::set<std::string> endpoints;
  for (const auto& o : seen) endpoints.insert(o.method + " " + std::string(net::loggable_target(o.target)));
  std::string list;
  for (const auto& e : endpoints) list += "\n  " + e;
  std::printf("REST requests judged by Prism (%zu answers, %d allowed violations):%s\n", seen.size(), violations,
              list.c_str());
}

}  // namespace
}  // namespace backstop
