#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "config/check_config.hpp"
#include "config/config.hpp"
#include "config/detail/reader.hpp"

namespace backstop {
// Readable failures: "brokers[0].seed: expected ..." instead of a byte dump.
void PrintTo(const ConfigIssue& issue, std::ostream* os) { *os << '"' << issue.to_string() << '"'; }
}  // namespace backstop

namespace {

using namespace backstop;
using nlohmann::json;
namespace fs = std::filesystem;

const std::string kExamples = BACKSTOP_CONFIG_EXAMPLES_DIR;
const std::string kTestData = BACKSTOP_CONFIG_TEST_DATA_DIR;

// A scratch directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "backstop-config-test-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name, const std::string& content, unsigned mode = 0600) const {
    const auto p = (fs::path(path_) / name).string();
    std::ofstream(p) << content;
    ::chmod(p.c_str(), mode);
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

using Env = std::map<std::string, std::string>;

LoadOptions with_env(Env env) {
  LoadOptions o;
  o.env = [env = std::move(env)](const std::string& name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
  return o;
}

LoadResult load(const json& doc, Env env = {}) { return load_config_text(doc.dump(2), "test.json", with_env(env)); }
LoadResult load_text(const std::string& text, Env env = {}) { return load_config_text(text, "test.json", with_env(env)); }

// The smallest valid config; tests break one thing at a time.
json minimal() {
  return json::parse(R"({
    "journal": {"path": "t.db"},
    "brokers": [{"name": "sim", "kind": "sim"}],
    "instruments": [{"symbol": "AAPL", "tick_size": "0.01"}],
    "strategies": [{"name": "s", "kind": "bracket_breakout", "instrument": "AAPL", "quantity": 10}],
    "routes": [{"strategy": "s", "brokers": ["sim"]}]
  })");
}

json ts_broker() {
  return json::parse(R"({"name": "ts", "kind": "tradestation", "account": "SIM1234567M",
    "base_url": "https://sim-api.tradestation.com/v3", "client_id": "${TS_CLIENT_ID}",
    "client_secret": "${TS_CLIENT_SECRET}", "refresh_token_file": "/nonexistent/ts_token"})");
}

const Env kTsEnv = {{"TS_CLIENT_ID", "id-123"}, {"TS_CLIENT_SECRET", "s3cr3t-value"}};

std::vector<ConfigIssue> issues(const LoadResult& r) { return r.issues; }
std::vector<ConfigIssue> one(std::string path, std::string message) {
  return {ConfigIssue{std::move(path), std::move(message)}};
}

// ---- the examples ----

class ExampleConfigs : public ::testing::Test {
 protected:
  void SetUp() override {
    cert_ = dir_.file("gateway.pem", "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n", 0644);
    env_ = {{"HOME", dir_.path()},
            {"TS_CLIENT_ID", "id"},
            {"TS_CLIENT_SECRET", "secret"},
            {"IBKR_GATEWAY_CERT", cert_}};
  }
  TempDir dir_;
  std::string cert_;
  Env env_;
};

TEST_F(ExampleConfigs, EveryExampleLoads) {
  const std::vector<std::string> names = {"sim.json",  "tradestation.json", "tradestation-emulated.json",
                                          "ibkr.json", "ibkr-emulated.json", "failover.json",
                                          "dual-run.json", "failover-emulated.json", "dual-run-emulated.json",
                                          "sim-api.json"};
  for (const auto& name : names) {
    const auto r = load_config_file(kExamples + "/" + name, with_env(env_));
    EXPECT_TRUE(r.ok()) << name << ":\n" << ::testing::PrintToString(r.issues);
  }
  // No example is left out of this list.
  std::size_t count = 0;
  for (const auto& entry : fs::directory_iterator(kExamples)) count += entry.path().extension() == ".json";
  EXPECT_EQ(count, names.size());
}

TEST_F(ExampleConfigs, ExamplesNameTheirEnvironmentVariables) {
  // Each ${NAME} an example uses must be documented in its header comment.
  for (const auto& entry : fs::directory_iterator(kExamples)) {
    if (entry.path().extension() != ".json") continue;
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    const std::string s = text.str();
    const std::string header = s.substr(0, s.find('{'));
    for (auto at = s.find("${"); at != std::string::npos; at = s.find("${", at + 2)) {
      const auto name = s.substr(at + 2, s.find('}', at) - at - 2);
      EXPECT_NE(header.find(name), std::string::npos) << entry.path() << " does not document " << name;
    }
  }
}

TEST_F(ExampleConfigs, ExampleContent) {
  auto failover = load_config_file(kExamples + "/failover.json", with_env(env_)).value();
  ASSERT_EQ(failover.routes.size(), 1u);
  EXPECT_EQ(failover.routes[0].brokers, (std::vector<std::string>{"ib", "ts"}));
  EXPECT_EQ(failover.routes[0].mode, RouteMode::failover);
  EXPECT_EQ(failover.find_broker("ib")->ibkr()->tls.pinned_cert_file, cert_);
  const auto* ts = failover.find_broker("ts")->tradestation();
  ASSERT_NE(ts, nullptr);
  EXPECT_EQ(ts->client_secret, "secret");
  EXPECT_EQ(ts->refresh_token_file, dir_.path() + "/.backstop/ts_refresh_token");  // "~" expanded
  EXPECT_EQ(ts->token_url, "https://signin.tradestation.com/oauth/token");         // default
  EXPECT_EQ(failover.protection.market_data_source, std::optional<std::string>("ts"));
  const auto* es = failover.find_instrument("ES-2026-12");
  ASSERT_NE(es, nullptr);
  EXPECT_TRUE(es->is_future());
  EXPECT_EQ(es->tick_size.value(), Price::parse("0.25"));
  EXPECT_EQ(es->symbol_at("ts"), "ESZ26");

  auto dual = load_config_file(kExamples + "/dual-run.json", with_env(env_)).value();
  EXPECT_EQ(dual.routes[0].mode, RouteMode::dual);

  auto ib = load_config_file(kExamples + "/ibkr.json", with_env(env_)).value();
  EXPECT_EQ(ib.brokers[0].ibkr()->confirm_message_ids, default_ibkr_confirm_message_ids());
}

TEST(DefaultConfig, IsTheSimExample) {
  std::ifstream in(kExamples + "/sim.json");
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(default_sim_config_text(), text.str());

  const Config c = default_sim_config();
  EXPECT_EQ(c.journal.path, "backstop-demo.db");
  ASSERT_EQ(c.brokers.size(), 1u);
  ASSERT_NE(c.brokers[0].sim(), nullptr);
  EXPECT_EQ(c.brokers[0].name, "sim");
  EXPECT_EQ(c.brokers[0].sim()->faults.name, "demo");
  EXPECT_EQ(c.brokers[0].sim()->faults.ghost_stop_rate, FaultProfile::named("demo").ghost_stop_rate);
  ASSERT_EQ(c.instruments.size(), 1u);
  EXPECT_EQ(c.instruments[0].symbol, "AAPL");
  EXPECT_EQ(c.instruments[0].tick_size.value(), Price::parse("0.01"));
  ASSERT_EQ(c.strategies.size(), 1u);
  EXPECT_EQ(c.strategies[0].kind, "bracket_breakout");
  EXPECT_EQ(c.strategies[0].protection, ProtectionPolicy::guard);
  ASSERT_NE(c.route_for(c.strategies[0].name), nullptr);
  EXPECT_EQ(c.route_for(c.strategies[0].name)->brokers, std::vector<std::string>{"sim"});
}

// ---- defaults and values ----

TEST(Load, DefaultsForOptionalSections) {
  const auto r = load(minimal());
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(r.issues);
  const Config& c = *r.config;
  EXPECT_EQ(c.brokers[0].account, "SIM0001");
  EXPECT_EQ(c.brokers[0].sim()->faults.name, "none");
  EXPECT_EQ(c.brokers[0].sim()->tick, std::chrono::milliseconds(100));
  EXPECT_EQ(c.instruments[0].exchange, "SMART");
  EXPECT_EQ(c.instruments[0].currency, "USD");
  EXPECT_EQ(c.strategies[0].protection, ProtectionPolicy::verify);
  EXPECT_EQ(c.routes[0].mode, RouteMode::failover);
  EXPECT_TRUE(c.routes[0].return_to_primary);
  EXPECT_EQ(c.risk.max_order_quantity, 1000);
  EXPECT_EQ(c.risk.max_notional, Price::parse("1000000"));
  EXPECT_EQ(c.protection.verify_deadline, std::chrono::milliseconds(5000));
  EXPECT_EQ(c.protection.trigger, TriggerMethod::last);
  EXPECT_EQ(c.protection.default_stop_tif, TimeInForce::gtc);
  EXPECT_FALSE(c.protection.market_data_source.has_value());
  EXPECT_EQ(c.reconciliation.positions_interval, std::chrono::seconds(30));
  EXPECT_EQ(c.reconciliation.orders_interval, std::chrono::seconds(300));
  EXPECT_EQ(c.health.failure_threshold, 3);
  EXPECT_FALSE(c.api.enabled);
  EXPECT_EQ(c.api.port, 8787);
  EXPECT_FALSE(c.runtime.loop_cpu.has_value());  // no pinning unless asked for
  EXPECT_FALSE(c.runtime.journal_writer_cpu.has_value());
  EXPECT_EQ(c.runtime.busy_poll.count(), 0);  // the idle loop sleeps
}

TEST(Load, RuntimeThreadPlacement) {
  auto doc = minimal();
  doc["runtime"] = {{"loop_cpu", 0}, {"journal_writer_cpu", 1}, {"busy_poll_us", 200}};
  const auto r = load(doc);
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(r.issues);
  EXPECT_EQ(r.config->runtime.loop_cpu, 0);
  EXPECT_EQ(r.config->runtime.journal_writer_cpu, 1);
  EXPECT_EQ(r.config->runtime.busy_poll, std::chrono::microseconds(200));
}

TEST(Broken, RuntimeThreadPlacement) {
  auto doc = minimal();
  doc["runtime"] = {{"loop_cpu", -1}};
  EXPECT_EQ(issues(load(doc)), one("runtime.loop_cpu", "must be between 0 and 1023, got -1"));
  doc["runtime"] = {{"journal_writer_cpu", "1"}};
  EXPECT_EQ(issues(load(doc)).size(), 1u);
  EXPECT_EQ(issues(load(doc))[0].path, "runtime.journal_writer_cpu");
  doc["runtime"] = {{"busy_poll_us", 2'000'000}};
  EXPECT_EQ(issues(load(doc)), one("runtime.busy_poll_us", "must be between 0 and 1000000, got 2000000"));
  doc["runtime"] = {{"loop_cpu", 1}, {"journal_writer_cpu", 1}, {"busy_poll_us", 100}};
  EXPECT_EQ(issues(load(doc)), one("runtime.journal_writer_cpu",
                                   "CPU 1 is loop_cpu, whose thread busy-polls (busy_poll_us): give the journal's "
                                   "writer another CPU"));
  doc["runtime"] = {{"loop_cpu", 1}, {"journal_writer_cpu", 1}};  // sharing a CPU is fine when the loop sleeps
  EXPECT_TRUE(load(doc).ok());
  doc["runtime"] = {{"loop_cpus", 0}};
  EXPECT_EQ(issues(load(doc)).size(), 1u);
  EXPECT_EQ(issues(load(doc))[0].path, "runtime.loop_cpus");
}

TEST(Load, CustomFaultProfileAndParams) {
  auto doc = minimal();
  doc["brokers"][0]["faults"] = json::parse(
      R"({"ghost_stop_rate": 1, "ack_delay_ms": 20, "lost_reply_rate": 0.5, "extra": {"goaway_rate": 0.25}})");
  doc["strategies"][0]["params"] = json::parse(R"({"lookback": 20, "note": "${NOTE}", "list": ["${NOTE}"]})");
  const auto r = load(doc, {{"NOTE", "hello"}});
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(r.issues);
  const auto& f = r.config->brokers[0].sim()->faults;
  EXPECT_EQ(f.ghost_stop_rate, 1.0);
  EXPECT_EQ(f.ack_delay, std::chrono::milliseconds(20));
  EXPECT_EQ(f.lost_reply_rate, 0.5);  // every field of a fault profile can be set, not only named profiles'
  EXPECT_EQ(f.extra_rate("goaway_rate"), 0.25);
  EXPECT_EQ(r.config->strategies[0].params["note"], "hello");
  EXPECT_EQ(r.config->strategies[0].params["list"][0], "hello");
  EXPECT_EQ(r.config->strategies[0].params["lookback"], 20);
}

TEST(Load, EnvironmentExpansion) {
  auto doc = minimal();
  doc["journal"]["path"] = "${DIR}/j-${NAME}.db";
  doc["strategies"][0]["params"]["literal"] = "cost $5, $${NOT_A_VAR}";
  const auto r = load(doc, {{"DIR", "/data"}, {"NAME", "x"}});
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(r.issues);
  EXPECT_EQ(r.config->journal.path, "/data/j-x.db");
  EXPECT_EQ(r.config->strategies[0].params["literal"], "cost $5, ${NOT_A_VAR}");
}

TEST(Load, CommentsAreAllowed) {
  const auto r = load_text(R"(// top
  { /* block */ "journal": {"path": "t.db"}, // trailing
    "brokers": [{"name": "sim", "kind": "sim"}] })");
  EXPECT_TRUE(r.ok()) << ::testing::PrintToString(r.issues);
}

// ---- broken configs: each produces exactly the expected path and reason ----

TEST(Broken, WrongTypesNameTheExpectedType) {
  auto doc = minimal();
  doc["brokers"][0]["seed"] = "7";
  EXPECT_EQ(issues(load(doc)), one("brokers[0].seed", "expected an integer, got a string (\"7\")"));

  doc = minimal();
  doc["instruments"][0]["tick_size"] = 0.01;
  EXPECT_EQ(issues(load(doc)),
            one("instruments[0].tick_size", "expected a string (an exact decimal such as \"0.25\"), got a number (0.01)"));

  doc = minimal();
  doc["routes"][0]["return_to_primary"] = "yes";
  EXPECT_EQ(issues(load(doc)),
            one("routes[0].return_to_primary", "expected a boolean (true or false), got a string (\"yes\")"));

  doc = minimal();
  doc["brokers"] = json::object();
  EXPECT_EQ(issues(load(doc))[0], (ConfigIssue{"brokers", "expected an array, got an object"}));

  doc = minimal();
  doc["risk"] = 5;
  EXPECT_EQ(issues(load(doc)), one("risk", "expected an object, got a number (5)"));

  doc = minimal();
  doc["strategies"][0]["quantity"] = 1.5;
  EXPECT_EQ(issues(load(doc)), one("strategies[0].quantity", "expected an integer, got a number (1.5)"));
}

TEST(Broken, UnknownKeysSuggestTheClosest) {
  auto doc = minimal();
  doc["strategies"][0]["protecton"] = "guard";
  EXPECT_EQ(issues(load(doc)), one("strategies[0].protecton", "unknown key (did you mean \"protection\"?)"));

  doc = minimal();
  doc["reconcilation"] = json::object();
  EXPECT_EQ(issues(load(doc)), one("reconcilation", "unknown key (did you mean \"reconciliation\"?)"));

  doc = minimal();
  doc["journal"]["xyzzy"] = 1;
  EXPECT_EQ(issues(load(doc)), one("journal.xyzzy", "unknown key (known keys: path)"));

  // A setting of another broker kind says so instead of guessing.
  doc = minimal();
  doc["brokers"][0]["base_url"] = "https://x.example.com";
  EXPECT_EQ(issues(load(doc)),
            one("brokers[0].base_url", "applies to tradestation and ibkr brokers, not to a sim broker"));
}

TEST(Broken, UnknownValuesSuggestTheClosest) {
  auto doc = minimal();
  doc["strategies"][0]["protection"] = "gaurd";
  EXPECT_EQ(issues(load(doc)), one("strategies[0].protection", "unknown value \"gaurd\" (did you mean \"guard\"?)"));
  doc = minimal();
  doc["brokers"][0]["faults"] = "dmeo";
  EXPECT_EQ(issues(load(doc)), one("brokers[0].faults", "unknown fault profile \"dmeo\" (did you mean \"demo\"?)"));
  doc = minimal();
  doc["protection"]["trigger"] = "close";
  EXPECT_EQ(issues(load(doc)),
            one("protection.trigger",
                "unknown value \"close\" (expected one of \"last\", \"bid_ask\", \"double_bid_ask\")"));
}

TEST(Broken, MissingEnvironmentVariableNamesPathAndVariable) {
  auto doc = minimal();
  doc["brokers"].push_back(ts_broker());
  const auto r = load(doc, {{"TS_CLIENT_ID", "id"}});
  EXPECT_EQ(issues(r), one("brokers[1].client_secret", "environment variable TS_CLIENT_SECRET is not set"));

  // Every missing variable is named, also within one string.
  doc = minimal();
  doc["journal"]["path"] = "${A}/${B}.db";
  EXPECT_EQ(issues(load(doc)), (std::vector<ConfigIssue>{{"journal.path", "environment variable A is not set"},
                                                          {"journal.path", "environment variable B is not set"}}));
  doc = minimal();
  doc["journal"]["path"] = "${A";
  EXPECT_EQ(issues(load(doc)),
            one("journal.path", "malformed environment reference in \"${A\" (write ${NAME}, or $${ for a literal \"${\")"));
}

TEST(Broken, SecretsAreNeverPrinted) {
  auto doc = minimal();
  auto b = ts_broker();
  b["client_secret"] = "${SECRET_SOMEWHERE";  // malformed, and possibly a literal secret
  doc["brokers"].push_back(b);
  auto r = load(doc, kTsEnv);
  ASSERT_EQ(r.issues.size(), 1u);
  EXPECT_EQ(r.issues[0].path, "brokers[1].client_secret");
  EXPECT_EQ(r.issues[0].message.find("SECRET_SOMEWHERE"), std::string::npos) << r.issues[0].message;

  b["client_secret"] = 123456789;
  doc["brokers"][1] = b;
  EXPECT_EQ(issues(load(doc, kTsEnv)), one("brokers[1].client_secret", "expected a string, got a number"));

  // A syntax error next to a secret does not quote it.
  r = load_text("{\"journal\": {\"path\": \"x\"}, \"brokers\": [{\"client_secret\": \"hunter2\" x}]}");
  ASSERT_EQ(r.issues.size(), 1u);
  EXPECT_EQ(r.issues[0].message.find("hunter2"), std::string::npos) << r.issues[0].message;

  // A valid config's error messages never contain the expanded secret.
  doc = minimal();
  b = ts_broker();
  b["base_url"] = "${TS_CLIENT_SECRET}";
  doc["brokers"].push_back(b);
  r = load(doc, kTsEnv);
  ASSERT_FALSE(r.ok());
  for (const auto& i : r.issues) EXPECT_EQ(i.message.find("s3cr3t-value"), std::string::npos) << i.message;
}

TEST(Broken, BadUrls) {
  auto doc = minimal();
  auto b = ts_broker();
  b["base_url"] = "htp:/x";
  doc["brokers"].push_back(b);
  EXPECT_EQ(issues(load(doc, kTsEnv)), one("brokers[1].base_url", "not a URL (\"htp:/x\")"));

  doc["brokers"][1]["base_url"] = "ftp://sim-api.tradestation.com/v3";
  EXPECT_EQ(issues(load(doc, kTsEnv)),
            one("brokers[1].base_url", "unsupported scheme \"ftp\", expected http or https"));

  doc["brokers"][1]["base_url"] = "https://sim-api.tradestation.com:99999/v3";
  EXPECT_EQ(issues(load(doc, kTsEnv)),
            one("brokers[1].base_url", "not a URL: port must be 1-65535 (\"https://sim-api.tradestation.com:99999/v3\")"));

  doc["brokers"][1]["base_url"] = "https://user:pw@sim-api.tradestation.com/v3";
  EXPECT_EQ(issues(load(doc, kTsEnv)), one("brokers[1].base_url", "credentials in the URL are not allowed"));

  doc["brokers"][1]["base_url"] = "http://sim-api.tradestation.com/v3";
  EXPECT_EQ(issues(load(doc, kTsEnv)),
            one("brokers[1].base_url", "TLS is required for \"sim-api.tradestation.com\": use https (plain http is "
                                       "accepted only for loopback hosts such as 127.0.0.1)"));

  // Loopback hosts (the emulators) may use plain http.
  doc["brokers"][1]["base_url"] = "http://127.0.0.1:18443/v3";
  EXPECT_TRUE(load(doc, kTsEnv).ok());
  doc["brokers"][1]["base_url"] = "http://localhost:18443";
  EXPECT_TRUE(load(doc, kTsEnv).ok());
}

TEST(Broken, TlsVerificationOffOnlyOnLoopback) {
  auto doc = minimal();
  doc["brokers"].push_back(json::parse(
      R"({"name": "ib", "kind": "ibkr", "account": "DU1", "base_url": "https://gw.example.com/v1/api",
          "tls": {"insecure_skip_verify": true}})"));
  EXPECT_EQ(issues(load(doc)),
            one("brokers[1].tls.insecure_skip_verify",
                "certificate verification may be turned off only for loopback hosts, not \"gw.example.com\""));
  doc["brokers"][1]["base_url"] = "https://localhost:5000/v1/api";
  EXPECT_TRUE(load(doc).ok());
  doc["brokers"][1]["tls"] = json::parse(R"({"pinned_cert_file": "/nonexistent/gw.pem"})");
  EXPECT_EQ(issues(load(doc)),
            one("brokers[1].tls.pinned_cert_file", "cannot read \"/nonexistent/gw.pem\": No such file or directory"));
}

TEST(Broken, RouteToUndefinedBroker) {
  auto doc = minimal();
  doc["brokers"].push_back(ts_broker());
  doc["routes"][0]["brokers"] = {"sim", "tss"};
  EXPECT_EQ(issues(load(doc, kTsEnv)), one("routes[0].brokers[1]", "unknown broker \"tss\" (did you mean \"ts\"?)"));

  doc["routes"][0]["brokers"] = {"sim", "zzzzzz"};
  EXPECT_EQ(issues(load(doc, kTsEnv)), one("routes[0].brokers[1]", "unknown broker \"zzzzzz\" (defined: sim, ts)"));
}

TEST(Broken, CrossReferences) {
  auto doc = minimal();
  doc["routes"][0]["strategy"] = "t";
  EXPECT_EQ(issues(load(doc)), (std::vector<ConfigIssue>{
                                   {"routes[0].strategy", "unknown strategy \"t\" (defined: s)"},
                                   {"strategies[0]", "strategy \"s\" has no route (add {\"strategy\": \"s\", "
                                                     "\"brokers\": [...]} to routes)"}}));
  doc = minimal();
  doc["strategies"][0]["instrument"] = "APPL";
  EXPECT_EQ(issues(load(doc)), one("strategies[0].instrument", "unknown instrument \"APPL\" (did you mean \"AAPL\"?)"));

  doc = minimal();
  doc["instruments"][0]["broker_symbols"] = {{"sin", "AAPL"}};
  EXPECT_EQ(issues(load(doc)), one("instruments[0].broker_symbols.sin", "unknown broker \"sin\" (did you mean \"sim\"?)"));

  doc = minimal();
  doc["strategies"][0]["instrument"] = "X";
  doc["instruments"] = json::array();
  EXPECT_EQ(issues(load(doc)), one("strategies[0].instrument", "unknown instrument \"X\" (none is defined)"));

  doc = minimal();
  doc["protection"]["market_data_source"] = "ib";
  EXPECT_EQ(issues(load(doc)), one("protection.market_data_source", "unknown broker \"ib\" (defined: sim)"));

  doc = minimal();
  doc["brokers"].push_back({{"name", "sim"}, {"kind", "sim"}});
  EXPECT_EQ(issues(load(doc)), one("brokers[1].name", "duplicate broker name \"sim\" (also brokers[0].name)"));

  doc = minimal();
  doc["routes"].push_back({{"strategy", "s"}, {"brokers", {"sim"}}});
  EXPECT_EQ(issues(load(doc)),
            one("routes[1].strategy", "strategy \"s\" is already routed by routes[0] (each strategy has exactly one route)"));
}

TEST(Broken, RouteRules) {
  auto doc = minimal();
  doc["brokers"].push_back({{"name", "sim2"}, {"kind", "sim"}});
  doc["brokers"].push_back({{"name", "sim3"}, {"kind", "sim"}});
  doc["routes"][0]["mode"] = "dual";
  doc["routes"][0]["brokers"] = {"sim", "sim2", "sim3"};
  EXPECT_EQ(issues(load(doc)), one("routes[0].brokers", "dual mode needs exactly 2 brokers, got 3"));

  doc["routes"][0]["brokers"] = {"sim", "sim"};
  EXPECT_EQ(issues(load(doc)), one("routes[0].brokers[1]", "broker \"sim\" is listed twice"));

  doc = minimal();
  doc["strategies"][0]["protection"] = "mirror";
  EXPECT_EQ(issues(load(doc)),
            one("strategies[0].protection",
                "\"mirror\" needs a route with at least two brokers (the second holds the mirror stop)"));

  doc = minimal();
  doc["brokers"].push_back({{"name", "sim2"}, {"kind", "sim"}});
  doc["routes"][0]["mode"] = "dual";
  doc["routes"][0]["brokers"] = {"sim", "sim2"};
  doc["strategies"][0]["protection"] = "mirror";
  EXPECT_EQ(issues(load(doc)),
            one("strategies[0].protection",
                "\"mirror\" on a dual route: its second broker holds the strategy's twin position and stops, not "
                "a stand-in for the first; use a failover route"));

  // `local` with a kind that trades in brackets: every bracket would be refused by the router.
  doc = minimal();
  doc["strategies"][0]["protection"] = "local";
  EXPECT_EQ(issues(load(doc)),
            one("strategies[0].protection",
                "\"local\" holds stops in Backstop, and kind \"bracket_breakout\" sends brackets, whose exits the "
                "broker ties together (it cannot include a stop it does not hold); use \"guard\" or \"mirror\", "
                "or a kind that sends single orders (\"mean_reversion\")"));
  // With single orders it is a policy like the others.
  doc["strategies"][0]["kind"] = "mean_reversion";
  const auto loaded = load(doc);
  EXPECT_EQ(issues(loaded), std::vector<ConfigIssue>{});
}

TEST(Broken, SecretFileWithOpenMode) {
  TempDir dir;
  const auto token = dir.file("ts_token", "refresh", 0644);
  auto doc = minimal();
  auto b = ts_broker();
  b["refresh_token_file"] = token;
  doc["brokers"].push_back(b);
  EXPECT_EQ(issues(load(doc, kTsEnv)),
            one("brokers[1].refresh_token_file", "secret file \"" + token +
                                                     "\" has mode 0644; it must be 0600 or stricter (chmod 600 " +
                                                     token + ")"));
  ::chmod(token.c_str(), 0600);
  EXPECT_TRUE(load(doc, kTsEnv).ok());
  ::chmod(token.c_str(), 0400);
  EXPECT_TRUE(load(doc, kTsEnv).ok());

  // An enabled API's token file is a secret too.
  doc = minimal();
  doc["api"] = {{"enabled", true}, {"token_file", dir.file("api.token", "t", 0640)}};
  EXPECT_EQ(issues(load(doc)).size(), 1u);
  EXPECT_EQ(issues(load(doc))[0].path, "api.token_file");
}

TEST(Broken, LiteralSecretInReadableConfigFile) {
  TempDir dir;
  auto doc = minimal();
  auto b = ts_broker();
  b["client_secret"] = "literal-secret";
  doc["brokers"].push_back(b);
  const auto file = dir.file("c.json", doc.dump(2), 0644);
  auto r = load_config_file(file, with_env(kTsEnv));
  EXPECT_EQ(issues(r), one("brokers[1].client_secret",
                           "secret written literally in a config file with mode 0644; reference an environment "
                           "variable (${NAME}) or chmod 600 the file"));
  ::chmod(file.c_str(), 0600);
  EXPECT_TRUE(load_config_file(file, with_env(kTsEnv)).ok());
}

TEST(Broken, BadTickSizes) {
  auto doc = minimal();
  doc["instruments"][0]["tick_size"] = "0.0x";
  std::string why;
  Price p;
  ASSERT_FALSE(Price::try_parse("0.0x", p, &why));
  ASSERT_EQ(why.rfind("malformed price \"0.0x\": ", 0), 0u) << why;
  EXPECT_EQ(issues(load(doc)), one("instruments[0].tick_size", why));

  doc["instruments"][0]["tick_size"] = "0";
  EXPECT_EQ(issues(load(doc)), one("instruments[0].tick_size", "must be positive, got \"0\""));
}

TEST(Broken, Futures) {
  auto doc = minimal();
  doc["instruments"][0] = json::parse(R"({"symbol": "ES", "asset_class": "future", "tick_size": "0.25"})");
  doc["strategies"][0]["instrument"] = "ES";
  EXPECT_EQ(issues(load(doc)), (std::vector<ConfigIssue>{{"instruments[0].exchange", "missing (required)"},
                                                          {"instruments[0].expiry", "missing (required)"}}));
  doc["instruments"][0]["exchange"] = "CME";
  doc["instruments"][0]["expiry"] = "202613";
  EXPECT_EQ(issues(load(doc)), one("instruments[0].expiry", "expected YYYYMM or YYYYMMDD, got \"202613\""));
  doc["instruments"][0]["expiry"] = "20261218";
  EXPECT_TRUE(load(doc).ok());

  doc = minimal();
  doc["instruments"][0]["expiry"] = "202612";
  EXPECT_EQ(issues(load(doc)), one("instruments[0].expiry", "only futures have an expiry (asset_class is \"stock\")"));
}

TEST(Broken, ApiBindNeedsOptIn) {
  auto doc = minimal();
  doc["api"] = {{"bind", "0.0.0.0"}};
  EXPECT_EQ(issues(load(doc)),
            one("api.bind", "\"0.0.0.0\" is not a loopback address; set api.allow_non_loopback to true to expose the "
                            "API beyond this machine"));
  doc["api"]["allow_non_loopback"] = true;
  EXPECT_TRUE(load(doc).ok());
}

TEST(Broken, RangesAndLimits) {
  auto doc = minimal();
  doc["strategies"][0]["quantity"] = 2000;
  EXPECT_EQ(issues(load(doc)), one("strategies[0].quantity", "exceeds risk.max_order_quantity (1000)"));
  doc = minimal();
  doc["api"] = {{"port", 70000}};
  EXPECT_EQ(issues(load(doc)), one("api.port", "must be between 1 and 65535, got 70000"));
  doc = minimal();
  doc["brokers"][0]["faults"] = {{"reject_rate", 1.5}};
  EXPECT_EQ(issues(load(doc)), one("brokers[0].faults.reject_rate", "must be between 0 and 1, got 1.5"));
  doc = minimal();
  doc["health"] = {{"latency_degraded_ms", 5000}};
  EXPECT_EQ(issues(load(doc)), one("health.latency_degraded_ms", "must be less than request_timeout_ms (3000)"));
  doc = minimal();
  doc["risk"] = {{"max_notional", 100000}};
  EXPECT_EQ(issues(load(doc)),
            one("risk.max_notional", "expected a string (an exact decimal such as \"1000000\"), got a number (100000)"));
}

TEST(Broken, MissingRequiredSections) {
  EXPECT_EQ(issues(load(json::object())), (std::vector<ConfigIssue>{{"journal", "missing (required)"},
                                                                     {"brokers", "missing (required)"}}));
  auto doc = minimal();
  doc["brokers"] = json::array();
  doc.erase("routes");
  doc.erase("strategies");
  doc["instruments"] = json::array();
  EXPECT_EQ(issues(load(doc)), one("brokers", "at least one broker is required"));
  EXPECT_EQ(issues(load_text("[]")), one("", "expected an object, got an array"));
}

TEST(Broken, JsonSyntaxErrorReportsLineAndColumn) {
  const auto r = load_text("{\n  \"journal\": {\"path\": \"t.db\"},\n  \"brokers\": [tru]\n}\n");
  ASSERT_EQ(r.issues.size(), 1u);
  EXPECT_EQ(r.issues[0].path, "");
  EXPECT_EQ(r.issues[0].message.rfind("line 3, column 18: syntax error", 0), 0u) << r.issues[0].message;

  const auto trailing = load_text("{\n  // comment\n  \"journal\": {\"path\": \"t.db\"},\n}");
  ASSERT_EQ(trailing.issues.size(), 1u);
  EXPECT_EQ(trailing.issues[0].message.rfind("line 4, column 1: ", 0), 0u) << trailing.issues[0].message;
}

// Found by the config fuzzer: a number too large for a double threw instead of being an issue.
TEST(Broken, NumberTooLargeForADoubleIsAnIssueWithItsPlace) {
  const auto r = load_text("{\n  \"journal\": {\"path\": \"t.db\"},\n  \"risk\": {\"max_notional\": 222222222222e22222}\n}\n");
  ASSERT_EQ(r.issues.size(), 1u);
  EXPECT_EQ(r.issues[0].path, "");
  EXPECT_EQ(r.issues[0].message, "line 3, column 28: number out of range (too large for a 64-bit floating-point value)");
  EXPECT_THROW((void)r.value(), ConfigError);
}

TEST(Broken, DuplicateKeys) {
  const auto r = load_text(R"({"journal": {"path": "a.db"},
    "brokers": [{"name": "sim", "kind": "sim"}, {"name": "x", "kind": "sim", "name": "y"}],
    "journal": {"path": "b.db"}})");
  EXPECT_EQ(issues(r), (std::vector<ConfigIssue>{
                           {"brokers[1].name", "duplicate key (only the last value would count)"},
                           {"journal", "duplicate key (only the last value would count)"}}));
}

TEST(Broken, EveryErrorIsReportedAtOnce) {
  auto doc = minimal();
  doc["brokers"][0]["seed"] = -1;
  doc["brokers"][0]["tick_ms"] = "100";
  doc["instruments"][0]["tick_size"] = "abc";
  doc["strategies"][0]["protecton"] = "guard";
  doc["routes"][0]["brokers"] = {"simm"};
  doc["health"] = {{"failure_threshold", 0}};
  doc["api"] = {{"bind", "10.0.0.1"}};
  const auto r = load(doc);
  ASSERT_EQ(r.issues.size(), 7u) << ::testing::PrintToString(r.issues);
  std::vector<std::string> paths;
  for (const auto& i : r.issues) paths.push_back(i.path);
  EXPECT_EQ(paths, (std::vector<std::string>{"brokers[0].seed", "brokers[0].tick_ms", "instruments[0].tick_size",
                                             "strategies[0].protecton", "routes[0].brokers[0]",
                                             "health.failure_threshold", "api.bind"}));
  EXPECT_FALSE(r.ok());
  try {
    (void)r.value();
    FAIL() << "value() must throw";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("test.json: brokers[0].seed: must be at least 0, got -1"), std::string::npos) << what;
    EXPECT_NE(what.find("test.json: api.bind: "), std::string::npos) << what;
  }
}

// ---- helpers ----

TEST(Suggestion, EditDistance) {
  using namespace backstop::config_detail;
  EXPECT_EQ(edit_distance("protecton", "protection"), 1u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(closest("protecton", {"name", "protection"}), std::optional<std::string>("protection"));
  EXPECT_EQ(closest("xyz", {"id", "name"}), std::nullopt);
  EXPECT_EQ(closest("ts", {"ts"}), std::optional<std::string>("ts"));
}

// ---- check-config ----

int run_check(std::vector<std::string> args, std::string& out, std::string& err) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  std::ostringstream o, e;
  const int code = check_config_main(static_cast<int>(argv.size()), argv.data(), o, e);
  out = o.str();
  err = e.str();
  return code;
}

TEST(CheckConfig, Usage) {
  std::string out, err;
  EXPECT_EQ(run_check({"check-config", "--help"}, out, err), 0);
  EXPECT_NE(out.find("usage: backstop check-config"), std::string::npos);
  EXPECT_EQ(run_check({"check-config"}, out, err), 2);
  EXPECT_NE(err.find("no config file given"), std::string::npos);
  EXPECT_EQ(run_check({"check-config", "--frobnicate", "x.json"}, out, err), 2);
  EXPECT_NE(err.find("unknown option --frobnicate"), std::string::npos);
}

TEST(CheckConfig, ValidAndBrokenFiles) {
  std::string out, err;
  const auto sim = kExamples + "/sim.json";
  EXPECT_EQ(run_check({"check-config", sim}, out, err), 0);
  EXPECT_EQ(out, sim + ": ok (1 broker, 1 strategy, 1 route)\n");

  const auto broken = kTestData + "/broken.json";
  EXPECT_EQ(run_check({"check-config", broken}, out, err), 1);
  EXPECT_EQ(out, broken + ": brokers[0].seed: expected an integer, got a string (\"7\")\n" + broken +
                     ": instruments[0].tick_size: malformed price \"0.0x\": " +
                     [] {
                       std::string why;
                       Price p;
                       Price::try_parse("0.0x", p, &why);
                       return why.substr(std::string("malformed price \"0.0x\": ").size());
                     }() +
                     "\n" + broken + ": strategies[0].protecton: unknown key (did you mean \"protection\"?)\n" +
                     broken + ": routes[0].brokers[0]: unknown broker \"simm\" (did you mean \"sim\"?)\n");

  EXPECT_EQ(run_check({"check-config", kTestData}, out, err), 1);
  EXPECT_EQ(out, kTestData + ": cannot read the file: not a regular file\n");

  EXPECT_EQ(run_check({"check-config", "/nonexistent/backstop.json"}, out, err), 1);
  EXPECT_EQ(out, "/nonexistent/backstop.json: cannot read the file: No such file or directory\n");

  // Several files: one bad file makes the whole run fail, and each is reported.
  EXPECT_EQ(run_check({"check-config", sim, broken}, out, err), 1);
  EXPECT_EQ(out.rfind(sim + ": ok", 0), 0u);
}

TEST(CheckConfig, ExamplesPassWithTheirEnvironment) {
  // check-config reads the real environment.
  TempDir dir;
  const auto cert = dir.file("gw.pem", "cert", 0644);
  // Put the process environment back afterwards: other tests in this process read it.
  struct Restore {
    std::map<std::string, std::optional<std::string>> saved;
    Restore() {
      for (const char* n : {"TS_CLIENT_ID", "TS_CLIENT_SECRET", "IBKR_GATEWAY_CERT", "HOME"}) {
        const char* v = std::getenv(n);
        saved[n] = v ? std::optional<std::string>(v) : std::nullopt;
      }
    }
    ~Restore() {
      for (const auto& [n, v] : saved) v ? ::setenv(n.c_str(), v->c_str(), 1) : ::unsetenv(n.c_str());
    }
  } restore;
  ::setenv("TS_CLIENT_ID", "id", 1);
  ::setenv("TS_CLIENT_SECRET", "secret", 1);
  ::setenv("IBKR_GATEWAY_CERT", cert.c_str(), 1);
  ::setenv("HOME", dir.path().c_str(), 1);
  std::vector<std::string> args = {"check-config"};
  for (const auto& entry : fs::directory_iterator(kExamples))
    if (entry.path().extension() == ".json") args.push_back(entry.path().string());
  std::string out, err;
  EXPECT_EQ(run_check(args, out, err), 0) << out << err;
}

}  // namespace
