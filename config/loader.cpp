// Reads and validates the config. Each section parser reads every field it can, records every
// problem with its path, and keeps going: one run of check-config shows everything to fix.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "config/config.hpp"
#include "config/detail/reader.hpp"
#include "core/url.hpp"

namespace backstop {

using namespace config_detail;

namespace {

constexpr std::int64_t kMaxInt = std::numeric_limits<std::int64_t>::max();

const std::vector<std::string> kFaultProfileNames = {"none", "demo", "ghost_stops", "lossy_stream", "chaos"};

std::string octal_mode(unsigned mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", mode & 0777);
  return buf;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::vector<std::string> concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Names defined in one section, for cross-references and duplicate detection.
class NameTable {
 public:
  // Records a definition; reports a duplicate at `path`.
  void define(Reader& r, const std::string& name, const std::string& path, const char* what) {
    const auto it = where_.find(name);
    if (it != where_.end()) {
      r.error(path, std::string("duplicate ") + what + " name " + quote(name) + " (also " + it->second + ")");
      return;
    }
    where_.emplace(name, path);
    names_.push_back(name);
  }
  bool has(const std::string& name) const { return where_.count(name) != 0; }
  const std::vector<std::string>& names() const { return names_; }
  // Reports `value` at `path` unless defined; true when defined.
  bool check(Reader& r, const std::string& path, const std::string& value, const char* what) const {
    if (has(value)) return true;
    r.error(path, std::string("unknown ") + what + " " + quote(value) +
                      (names_.empty() ? std::string(" (none is defined)") : suggestion(value, names_, "defined")));
    return false;
  }

 private:
  std::map<std::string, std::string> where_;
  std::vector<std::string> names_;  // in definition order, for messages
};

struct Context {
  Reader& r;
  // Permission bits of the config file when loaded from one: a literal secret in a file
  // others can read is refused.
  std::optional<unsigned> file_mode;
  NameTable brokers;
  NameTable instruments;
  NameTable strategies;
};

// Secrets must not be readable by anyone else. A missing file is fine: the refresh token file is
// created by the first authorization, the API token file by the first start.
void check_secret_file(Reader& r, const std::string& path, const std::string& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) {
    if (errno == ENOENT) return;
    r.error(path, "cannot check secret file " + quote(file) + ": " + std::strerror(errno));
    return;
  }
  if (!S_ISREG(st.st_mode)) {
    r.error(path, "secret file " + quote(file) + " is not a regular file");
    return;
  }
  if ((st.st_mode & 077) != 0) {
    r.error(path, "secret file " + quote(file) + " has mode " + octal_mode(st.st_mode) +
                      "; it must be 0600 or stricter (chmod 600 " + file + ")");
  }
}

// Certificates must exist now: finding out at the first connection is finding out too late.
void check_readable_file(Reader& r, const std::string& path, const std::string& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) {
    r.error(path, "cannot read " + quote(file) + ": " + std::strerror(errno));
    return;
  }
  if (!S_ISREG(st.st_mode)) {
    r.error(path, quote(file) + " is not a regular file");
    return;
  }
  if (::access(file.c_str(), R_OK) != 0) r.error(path, "cannot read " + quote(file) + ": " + std::strerror(errno));
}

struct UrlValue {
  Url url;
  std::string text;  // after ${ENV} expansion
};

// A URL a real broker adapter connects to: TLS unless the host is this machine (emulators).
std::optional<UrlValue> read_url(const ObjectReader& o, std::string_view key, Need need, bool require_tls) {
  const auto value = o.string(key, need);
  if (!value) return std::nullopt;
  const auto path = o.path_of(key);
  std::string why;
  auto url = parse_url(*value, &why);
  if (!url) {
    const auto written = o.written(key).value_or(*value);
    // Userinfo or a query may hold credentials: such a URL is not repeated.
    const bool showable = written.find_first_of("@?") == std::string::npos;
    o.reader().error(path, why + (showable && why.rfind("not a URL", 0) == 0 ? " (" + quote(written) + ")" : ""));
    return std::nullopt;
  }
  if (require_tls && !url->tls() && !url->is_loopback()) {
    o.reader().error(path, "TLS is required for " + quote(url->host) +
                               ": use https (plain http is accepted only for loopback hosts such as 127.0.0.1)");
    return std::nullopt;
  }
  return UrlValue{std::move(*url), *value};
}

TlsConfig read_tls(Context& c, const json* j, const std::string& path, const std::optional<Url>& base) {
  TlsConfig tls;
  ObjectReader o(c.r, j, path);
  o.reject_unknown_keys({"verify", "ca_file", "pinned_cert_file", "insecure_skip_verify"});
  if (auto v = o.boolean("verify")) tls.verify = *v;
  if (auto v = o.boolean("insecure_skip_verify")) tls.insecure_skip_verify = *v;
  if (auto v = o.path_value("ca_file")) {
    tls.ca_file = *v;
    check_readable_file(c.r, o.path_of("ca_file"), *v);
  }
  if (auto v = o.path_value("pinned_cert_file")) {
    tls.pinned_cert_file = *v;
    check_readable_file(c.r, o.path_of("pinned_cert_file"), *v);
  }
  if (!tls.pinned_cert_file.empty() && !tls.verifies_peer()) {
    c.r.error(o.path_of(tls.insecure_skip_verify ? "insecure_skip_verify" : "verify"),
              "contradicts pinned_cert_file (a pinned certificate is a way of verifying)");
  } else if (!tls.verifies_peer() && base && base->tls() && !base->is_loopback()) {
    // Off-machine, an unverified certificate is an open door to whoever sits on the path.
    c.r.error(o.path_of(tls.insecure_skip_verify ? "insecure_skip_verify" : "verify"),
              "certificate verification may be turned off only for loopback hosts, not " + quote(base->host));
  }
  return tls;
}

// A value such as client_secret written literally (not as ${NAME}) in a file others can read.
void check_literal_secret(Context& c, const ObjectReader& o, std::string_view key) {
  const auto written = o.written(key);
  if (!written || !c.file_mode || written->find("${") != std::string::npos) return;
  if ((*c.file_mode & 077) == 0) return;
  c.r.error(o.path_of(key), "secret written literally in a config file with mode " + octal_mode(*c.file_mode) +
                                "; reference an environment variable (${NAME}) or chmod 600 the file");
}

FaultProfile read_faults(Context& c, const ObjectReader& parent) {
  const json* j = parent.raw("faults");
  const auto path = parent.path_of("faults");
  if (!j) return FaultProfile::named("none");
  if (j->is_string()) {
    const auto name = parent.string("faults");
    if (!name) return {};
    if (!contains(kFaultProfileNames, *name)) {
      c.r.error(path, "unknown fault profile " + quote(*name) + suggestion(*name, kFaultProfileNames));
      return {};
    }
    return FaultProfile::named(*name);
  }
  if (!j->is_object()) {
    c.r.error(path, "expected a profile name (string) or an object, got " + describe(*j));
    return {};
  }
  FaultProfile p;
  p.name = "custom";
  ObjectReader o(c.r, j, path);
  o.reject_unknown_keys({"ghost_stop_rate", "reject_rate", "ack_delay_ms", "ack_delay_jitter_ms", "query_delay_ms",
                         "drop_order_event_rate", "drop_fill_event_rate", "disconnect_rate",
                         "disconnect_length_ms", "stale_position_rate", "lost_reply_rate", "extra"});
  auto rate = [&](std::string_view key, double& out) {
    if (auto v = o.number(key, 0, 1)) out = *v;
  };
  rate("ghost_stop_rate", p.ghost_stop_rate);
  rate("reject_rate", p.reject_rate);
  rate("drop_order_event_rate", p.drop_order_event_rate);
  rate("drop_fill_event_rate", p.drop_fill_event_rate);
  rate("disconnect_rate", p.disconnect_rate);
  rate("stale_position_rate", p.stale_position_rate);
  rate("lost_reply_rate", p.lost_reply_rate);
  if (auto v = o.millis("ack_delay_ms", 0)) p.ack_delay = *v;
  if (auto v = o.millis("ack_delay_jitter_ms", 0)) p.ack_delay_jitter = *v;
  if (auto v = o.millis("query_delay_ms", 0)) p.query_delay = *v;
  if (auto v = o.millis("disconnect_length_ms", 0)) p.disconnect_length = *v;
  if (o.has("extra")) {
    // Emulator fault names are open-ended ("goaway_rate", "http_429_rate"); only the values
    // are checked here.
    ObjectReader extra(c.r, o.raw("extra"), o.path_of("extra"));
    if (extra.is_object()) {
      for (const auto& [key, value] : o.raw("extra")->items()) {
        (void)value;
        if (auto v = extra.number(key, 0, 1)) p.extra[key] = *v;
      }
    }
  }
  return p;
}

const std::vector<std::string> kBrokerCommonKeys = {"name", "kind", "account"};
const std::map<BrokerKind, std::vector<std::string>> kBrokerKindKeys = {
    {BrokerKind::sim, {"faults", "seed", "tick_ms"}},
    {BrokerKind::tradestation,
     {"base_url", "token_url", "client_id", "client_secret", "refresh_token_file", "redirect_uri", "tls",
      "stream_inactivity_timeout_s"}},
    {BrokerKind::ibkr, {"base_url", "tls", "confirm_message_ids", "suppress_message_ids", "tickle_interval_s"}},
};

void read_sim(Context& c, const ObjectReader& o, SimBrokerSettings& s) {
  s.faults = read_faults(c, o);
  if (auto v = o.integer("seed", 0, kMaxInt)) s.seed = static_cast<std::uint64_t>(*v);
  if (auto v = o.millis("tick_ms", 1)) s.tick = *v;
}

void read_tradestation(Context& c, const ObjectReader& o, TradeStationSettings& s) {
  std::optional<Url> base;
  if (auto v = read_url(o, "base_url", Need::required, true)) {
    base = v->url;
    s.base_url = v->text;
  }
  bool token_url_loopback = false;
  if (auto v = read_url(o, "token_url", Need::optional, true)) {
    s.token_url = v->text;
    token_url_loopback = v->url.is_loopback();
  }
  // The authorization code travels to this address: TLS unless it stays on this machine.
  if (auto v = read_url(o, "redirect_uri", Need::optional, true)) s.redirect_uri = v->text;
  if (auto v = o.string("client_id", Need::required)) {
    if (v->empty())
      c.r.error(o.path_of("client_id"), "must not be empty");
    else
      s.client_id = *v;
  }
  if (o.has("client_secret")) {
    if (auto v = o.string("client_secret", Need::optional, /*secret=*/true)) {
      if (v->empty())
        c.r.error(o.path_of("client_secret"), "must not be empty (leave it out for the PKCE flow)");
      else
        s.client_secret = *v;
    }
    // An emulator's made-up secret (token endpoint on this machine) may sit in the file.
    if (!token_url_loopback) check_literal_secret(c, o, "client_secret");
  }
  if (auto v = o.path_value("refresh_token_file", Need::required)) {
    s.refresh_token_file = *v;
    check_secret_file(c.r, o.path_of("refresh_token_file"), *v);
  }
  s.tls = read_tls(c, o.raw("tls"), o.path_of("tls"), base);
  if (auto v = o.seconds("stream_inactivity_timeout_s", 1)) {
    // TradeStation sends a heartbeat after 5 s of silence; a shorter timeout would tear down
    // healthy streams (api-notes/TRADESTATION.md, streams).
    if (*v < std::chrono::seconds(10))
      c.r.error(o.path_of("stream_inactivity_timeout_s"),
                "must be at least 10: streams send a heartbeat only every 5 s");
    else
      s.stream_inactivity_timeout = *v;
  }
}

bool is_ibkr_message_id(const std::string& id) {
  // "o163", "p12": a lower-case letter and digits (api-notes/IBKR.md, suppressible message ids).
  return id.size() >= 2 && std::islower(static_cast<unsigned char>(id[0])) &&
         std::all_of(id.begin() + 1, id.end(), [](unsigned char ch) { return std::isdigit(ch); });
}

void read_message_ids(Context& c, const ObjectReader& o, std::string_view key, std::vector<std::string>& out) {
  auto ids = o.strings(key);
  if (!ids) return;
  bool ok = true;
  for (std::size_t i = 0; i < ids->size(); ++i) {
    if (!is_ibkr_message_id((*ids)[i])) {
      c.r.error(index_path(o.path_of(key), i),
                "not an IBKR message id " + quote((*ids)[i]) + " (expected a letter and digits, such as \"o163\")");
      ok = false;
    }
  }
  if (ok) out = std::move(*ids);
}

void read_ibkr(Context& c, const ObjectReader& o, IbkrSettings& s) {
  std::optional<Url> base = parse_url(s.base_url);
  if (o.has("base_url")) {
    base.reset();
    if (auto v = read_url(o, "base_url", Need::optional, true)) {
      base = v->url;
      s.base_url = v->text;
    }
  }
  s.tls = read_tls(c, o.raw("tls"), o.path_of("tls"), base);
  read_message_ids(c, o, "confirm_message_ids", s.confirm_message_ids);
  read_message_ids(c, o, "suppress_message_ids", s.suppress_message_ids);
  if (s.suppress_message_ids.size() > 51)
    c.r.error(o.path_of("suppress_message_ids"), "at most 51 ids can be suppressed, got " +
                                                     std::to_string(s.suppress_message_ids.size()));
  // The brokerage session ends after about 5 minutes without a request.
  if (auto v = o.seconds("tickle_interval_s", 1)) {
    if (*v > std::chrono::seconds(240))
      c.r.error(o.path_of("tickle_interval_s"),
                "must be at most 240: the gateway ends idle sessions after about 5 minutes");
    else
      s.tickle_interval = *v;
  }
}

BrokerConfig read_broker(Context& c, const json& j, const std::string& path) {
  BrokerConfig b;
  ObjectReader o(c.r, &j, path);
  if (!o.is_object()) return b;
  if (auto v = o.name("name", Need::required)) {
    b.name = *v;
    c.brokers.define(c.r, b.name, o.path_of("name"), "broker");
  }
  const auto kind_text = o.choice("kind", {"sim", "tradestation", "ibkr"}, Need::required);
  const auto kind = kind_text ? broker_kind_from_string(*kind_text) : std::nullopt;

  std::vector<std::string> all_keys = kBrokerCommonKeys;
  for (const auto& [k, keys] : kBrokerKindKeys) all_keys = concat(all_keys, keys);
  if (!kind) {
    // Without a kind only outright typos can be told apart from settings of another kind.
    o.reject_unknown_keys(all_keys);
    return b;
  }
  b.kind = *kind;
  const auto known = concat(kBrokerCommonKeys, kBrokerKindKeys.at(*kind));
  o.reject_unknown_keys(known, [&](const std::string& key) -> std::optional<std::string> {
    std::string owners;
    for (const auto& [k, keys] : kBrokerKindKeys)
      if (k != *kind && contains(keys, key)) owners += std::string(owners.empty() ? "" : " and ") + to_string(k);
    if (owners.empty()) return std::nullopt;
    return "applies to " + owners + " brokers, not to a " + to_string(*kind) + " broker";
  });

  const Need account_need = *kind == BrokerKind::sim ? Need::optional : Need::required;
  if (auto v = o.name("account", account_need)) b.account = *v;

  switch (*kind) {
    case BrokerKind::sim: {
      SimBrokerSettings s;
      if (b.account.empty()) b.account = "SIM0001";
      read_sim(c, o, s);
      b.settings = std::move(s);
      break;
    }
    case BrokerKind::tradestation: {
      TradeStationSettings s;
      read_tradestation(c, o, s);
      b.settings = std::move(s);
      break;
    }
    case BrokerKind::ibkr: {
      IbkrSettings s;
      read_ibkr(c, o, s);
      b.settings = std::move(s);
      break;
    }
  }
  return b;
}

bool valid_expiry(const std::string& e) {
  if ((e.size() != 6 && e.size() != 8) ||
      !std::all_of(e.begin(), e.end(), [](unsigned char ch) { return std::isdigit(ch); }))
    return false;
  const int year = std::stoi(e.substr(0, 4));
  const int month = std::stoi(e.substr(4, 2));
  if (year < 2000 || month < 1 || month > 12) return false;
  if (e.size() == 6) return true;
  static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  const int day = std::stoi(e.substr(6, 2));
  const int days = month == 2 && !leap ? 28 : kDays[month - 1];
  return day >= 1 && day <= days;
}

Instrument read_instrument(Context& c, const json& j, const std::string& path) {
  Instrument in;
  ObjectReader o(c.r, &j, path);
  if (!o.is_object()) return in;
  o.reject_unknown_keys({"symbol", "asset_class", "tick_size", "multiplier", "exchange", "currency", "expiry",
                         "broker_symbols"});
  if (auto v = o.name("symbol", Need::required)) {
    in.symbol = *v;
    c.instruments.define(c.r, in.symbol, o.path_of("symbol"), "instrument");
  }
  if (auto v = o.choice("asset_class", {"stock", "future"})) in.asset_class = *asset_class_from_string(*v);

  // Exact decimal as a string: a JSON number would pass through a double first.
  const json* tick = o.raw("tick_size");
  if (!tick) {
    o.string("tick_size", Need::required);
  } else if (!tick->is_string()) {
    c.r.error(o.path_of("tick_size"), "expected a string (an exact decimal such as \"0.25\"), got " + describe(*tick));
  } else if (auto text = o.string("tick_size")) {
    Price p;
    std::string why;
    if (!Price::try_parse(*text, p, &why))
      c.r.error(o.path_of("tick_size"), why);
    else if (p.units() <= 0)
      c.r.error(o.path_of("tick_size"), "must be positive, got " + quote(*text));
    else
      in.tick_size = TickSize(p);
  }
  if (auto v = o.integer("multiplier", 1, kMaxInt)) in.multiplier = *v;

  const Need future_need = in.is_future() ? Need::required : Need::optional;
  if (auto v = o.name("exchange", future_need))
    in.exchange = *v;
  else if (!in.is_future() && !o.has("exchange"))
    in.exchange = "SMART";  // IBKR's smart routing: the usual choice for stocks
  if (auto v = o.string("currency")) {
    if (v->size() != 3 || !std::all_of(v->begin(), v->end(), [](unsigned char ch) { return std::isupper(ch); }))
      c.r.error(o.path_of("currency"), "expected a three-letter ISO code such as \"USD\", got " + quote(*v));
    else
      in.currency = *v;
  }
  if (in.is_future()) {
    if (auto v = o.string("expiry", Need::required)) {
      if (!valid_expiry(*v))
        c.r.error(o.path_of("expiry"), "expected YYYYMM or YYYYMMDD, got " + quote(*v));
      else
        in.expiry = *v;
    }
  } else if (o.has("expiry")) {
    c.r.error(o.path_of("expiry"), "only futures have an expiry (asset_class is \"stock\")");
  }

  if (o.has("broker_symbols")) {
    ObjectReader syms(c.r, o.raw("broker_symbols"), o.path_of("broker_symbols"));
    if (syms.is_object()) {
      for (const auto& [broker, value] : o.raw("broker_symbols")->items()) {
        (void)value;
        c.brokers.check(c.r, syms.path_of(broker), broker, "broker");
        if (auto s = syms.name(broker, Need::optional)) in.broker_symbols[broker] = *s;
      }
    }
  }
  return in;
}

StrategyConfig read_strategy(Context& c, const json& j, const std::string& path) {
  StrategyConfig s;
  ObjectReader o(c.r, &j, path);
  if (!o.is_object()) return s;
  o.reject_unknown_keys({"name", "kind", "instrument", "quantity", "params", "protection"});
  if (auto v = o.name("name", Need::required)) {
    s.name = *v;
    c.strategies.define(c.r, s.name, o.path_of("name"), "strategy");
  }
  if (auto v = o.choice("kind", strategy_kinds(), Need::required)) s.kind = *v;
  if (auto v = o.name("instrument", Need::required)) {
    s.instrument = *v;
    c.instruments.check(c.r, o.path_of("instrument"), *v, "instrument");
  }
  if (auto v = o.integer("quantity", 1, kMaxInt, Need::required)) s.quantity = *v;
  if (const json* params = o.raw("params")) {
    if (!params->is_object()) {
      c.r.error(o.path_of("params"), "expected an object, got " + describe(*params));
    } else {
      s.params = *params;
      c.r.expand_tree(s.params, o.path_of("params"));
    }
  }
  if (auto v = o.choice("protection", {"verify", "guard", "local", "mirror"}))
    s.protection = *protection_policy_from_string(*v);
  return s;
}

RouteConfig read_route(Context& c, const json& j, const std::string& path,
                       std::map<std::string, std::string>& routed) {
  RouteConfig rt;
  ObjectReader o(c.r, &j, path);
  if (!o.is_object()) return rt;
  o.reject_unknown_keys({"strategy", "brokers", "mode", "return_to_primary"});
  if (auto v = o.name("strategy", Need::required)) {
    rt.strategy = *v;
    if (c.strategies.check(c.r, o.path_of("strategy"), *v, "strategy")) {
      const auto [it, fresh] = routed.emplace(*v, path);
      if (!fresh)
        c.r.error(o.path_of("strategy"), "strategy " + quote(*v) + " is already routed by " + it->second +
                                             " (each strategy has exactly one route)");
    }
  }
  if (auto v = o.choice("mode", {"failover", "dual"})) rt.mode = *route_mode_from_string(*v);
  if (auto list = o.strings("brokers", Need::required)) {
    const auto base = o.path_of("brokers");
    std::set<std::string> seen;
    for (std::size_t i = 0; i < list->size(); ++i) {
      const auto& name = (*list)[i];
      if (!c.brokers.check(c.r, index_path(base, i), name, "broker")) continue;
      if (!seen.insert(name).second)
        c.r.error(index_path(base, i), "broker " + quote(name) + " is listed twice");
    }
    if (list->empty())
      c.r.error(base, "at least one broker is required");
    else if (rt.mode == RouteMode::dual && list->size() != 2)
      c.r.error(base, "dual mode needs exactly 2 brokers, got " + std::to_string(list->size()));
    rt.brokers = std::move(*list);
  }
  if (auto v = o.boolean("return_to_primary")) {
    if (rt.mode == RouteMode::dual)
      c.r.error(o.path_of("return_to_primary"), "applies only to failover routes");
    else
      rt.return_to_primary = *v;
  }
  return rt;
}

void read_risk(Context& c, const json* j, RiskConfig& risk) {
  ObjectReader o(c.r, j, "risk");
  o.reject_unknown_keys({"max_order_quantity", "max_notional", "max_orders_per_second"});
  if (auto v = o.integer("max_order_quantity", 1, kMaxInt)) risk.max_order_quantity = *v;
  if (const json* n = o.raw("max_notional")) {
    if (!n->is_string()) {
      c.r.error(o.path_of("max_notional"), "expected a string (an exact decimal such as \"1000000\"), got " + describe(*n));
    } else if (auto text = o.string("max_notional")) {
      Price p;
      std::string why;
      if (!Price::try_parse(*text, p, &why))
        c.r.error(o.path_of("max_notional"), why);
      else if (p.units() <= 0)
        c.r.error(o.path_of("max_notional"), "must be positive, got " + quote(*text));
      else
        risk.max_notional = p;
    }
  }
  if (auto v = o.number("max_orders_per_second", 0.001, 1000)) risk.max_orders_per_second = *v;
}

void read_protection(Context& c, const json* j, ProtectionConfig& p) {
  ObjectReader o(c.r, j, "protection");
  o.reject_unknown_keys({"verify_deadline_ms", "reverify_interval_s", "ghost_grace_ms", "trigger",
                         "allow_marketable_stops", "default_stop_tif", "outside_rth", "market_data_source"});
  if (auto v = o.millis("verify_deadline_ms", 1)) p.verify_deadline = *v;
  if (auto v = o.seconds("reverify_interval_s", 1)) p.reverify_interval = *v;
  if (auto v = o.millis("ghost_grace_ms", 0)) p.ghost_grace = *v;
  if (auto v = o.choice("trigger", {"last", "bid_ask", "double_bid_ask"}))
    p.trigger = *trigger_method_from_string(*v);
  if (auto v = o.boolean("allow_marketable_stops")) p.allow_marketable_stops = *v;
  // IOC and FOK make no sense for an order meant to rest until price reaches it.
  if (auto v = o.choice("default_stop_tif", {"gtc", "day"})) p.default_stop_tif = *tif_from_string(*v);
  if (auto v = o.boolean("outside_rth")) p.outside_rth = *v;
  if (auto v = o.name("market_data_source")) {
    if (c.brokers.check(c.r, o.path_of("market_data_source"), *v, "broker")) p.market_data_source = *v;
  }
}

void read_reconciliation(Context& c, const json* j, ReconciliationConfig& rc) {
  ObjectReader o(c.r, j, "reconciliation");
  o.reject_unknown_keys({"positions_interval_s", "orders_interval_s", "stuck_order_threshold_s"});
  if (auto v = o.seconds("positions_interval_s", 1)) rc.positions_interval = *v;
  if (auto v = o.seconds("orders_interval_s", 1)) rc.orders_interval = *v;
  if (auto v = o.seconds("stuck_order_threshold_s", 1)) rc.stuck_order_threshold = *v;
}

void read_health(Context& c, const json* j, HealthConfig& h) {
  ObjectReader o(c.r, j, "health");
  o.reject_unknown_keys({"failure_threshold", "open_interval_s", "half_open_probes", "request_timeout_ms",
                         "latency_degraded_ms", "check_interval_ms"});
  if (auto v = o.integer("failure_threshold", 1, 1000)) h.failure_threshold = static_cast<int>(*v);
  if (auto v = o.seconds("open_interval_s", 1)) h.open_interval = *v;
  if (auto v = o.integer("half_open_probes", 1, 1000)) h.half_open_probes = static_cast<int>(*v);
  if (auto v = o.millis("request_timeout_ms", 1)) h.request_timeout = *v;
  if (auto v = o.millis("latency_degraded_ms", 1)) h.latency_degraded = *v;
  if (auto v = o.millis("check_interval_ms", 10)) h.check_interval = *v;
  // A broker could never be seen as slow if requests time out first.
  if (h.latency_degraded >= h.request_timeout)
    c.r.error(o.path_of("latency_degraded_ms"),
              "must be less than request_timeout_ms (" +
                  std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(h.request_timeout).count()) +
                  ")");
}

void read_api(Context& c, const json* j, ApiConfig& api) {
  ObjectReader o(c.r, j, "api");
  o.reject_unknown_keys({"enabled", "bind", "port", "token_file", "allow_non_loopback"});
  if (auto v = o.boolean("enabled")) api.enabled = *v;
  if (auto v = o.boolean("allow_non_loopback")) api.allow_non_loopback = *v;
  if (auto v = o.name("bind")) {
    api.bind = *v;
    // The API places orders: exposing it beyond this machine must be a deliberate choice.
    if (!is_loopback_host(*v) && !api.allow_non_loopback)
      c.r.error(o.path_of("bind"), quote(*v) +
                                       " is not a loopback address; set api.allow_non_loopback to true to "
                                       "expose the API beyond this machine");
  }
  if (auto v = o.integer("port", 1, 65535)) api.port = static_cast<int>(*v);
  if (auto v = o.path_value("token_file")) api.token_file = *v;
  if (api.enabled) check_secret_file(c.r, o.path_of("token_file"), api.token_file);
}

// Thread placement. Whether the CPU exists is checked where the threads start (Session): a config
// is often checked on another machine than the one it runs on.
void read_runtime(Context& c, const json* j, RuntimeConfig& rt) {
  ObjectReader o(c.r, j, "runtime");
  o.reject_unknown_keys({"loop_cpu", "journal_writer_cpu", "busy_poll_us"});
  if (auto v = o.integer("busy_poll_us", 0, 1'000'000)) rt.busy_poll = std::chrono::microseconds(*v);
  if (auto v = o.integer("loop_cpu", 0, 1023)) rt.loop_cpu = static_cast<int>(*v);
  if (auto v = o.integer("journal_writer_cpu", 0, 1023)) rt.journal_writer_cpu = static_cast<int>(*v);
  // A spinning loop holds its CPU for up to the whole spin: a writer placed there would wait that
  // long each time it has a commit to do.
  if (rt.busy_poll.count() > 0 && rt.loop_cpu && rt.loop_cpu == rt.journal_writer_cpu)
    c.r.error(o.path_of("journal_writer_cpu"), "CPU " + std::to_string(*rt.loop_cpu) +
                                                   " is loop_cpu, whose thread busy-polls (busy_poll_us): give the "
                                                   "journal's writer another CPU");
}

// After every section is read: rules that tie sections together.
void check_across(Context& c, Config& cfg, const std::map<std::string, std::string>& routed) {
  for (std::size_t i = 0; i < cfg.strategies.size(); ++i) {
    const auto& s = cfg.strategies[i];
    const auto path = index_path("strategies", i);
    if (s.quantity > cfg.risk.max_order_quantity)
      c.r.error(child_path(path, "quantity"), "exceeds risk.max_order_quantity (" +
                                                  std::to_string(cfg.risk.max_order_quantity) + ")");
    if (s.name.empty() || routed.count(s.name)) continue;
    c.r.error(path, "strategy " + quote(s.name) + " has no route (add {\"strategy\": " + quote(s.name) +
                        ", \"brokers\": [...]} to routes)");
  }
  for (std::size_t i = 0; i < cfg.strategies.size(); ++i) {
    const auto& s = cfg.strategies[i];
    const auto* route = cfg.route_for(s.name);
    // `local` holds the strategy's stops in Backstop, none at the broker (Router::hold_stops). A
    // broker's bracket ties its exits together and cannot include a stop it does not hold, so the
    // router refuses brackets under `local`: a strategy kind that trades in brackets would have
    // every trade refused. Said here, before it runs.
    if (s.protection == ProtectionPolicy::local && s.kind == "bracket_breakout")
      c.r.error(child_path(index_path("strategies", i), "protection"),
                "\"local\" holds stops in Backstop, and kind \"bracket_breakout\" sends brackets, whose exits the "
                "broker ties together (it cannot include a stop it does not hold); use \"guard\" or \"mirror\", "
                "or a kind that sends single orders (\"mean_reversion\")");
    // A dual route's second broker holds the strategy's twin position with its own stops: a
    // mirror there would be a second exit for a position it does not hold.
    if (s.protection == ProtectionPolicy::mirror && route && route->mode == RouteMode::dual)
      c.r.error(child_path(index_path("strategies", i), "protection"),
                "\"mirror\" on a dual route: its second broker holds the strategy's twin position and stops, "
                "not a stand-in for the first; use a failover route");
    // The mirror stop lives at a second venue; a route with one broker has none.
    if (s.protection == ProtectionPolicy::mirror && route && route->brokers.size() < 2)
      c.r.error(child_path(index_path("strategies", i), "protection"),
                "\"mirror\" needs a route with at least two brokers (the second holds the mirror stop)");
  }
}

Config read_config(Context& c, const json& doc) {
  Config cfg;
  ObjectReader root(c.r, &doc, "");
  if (!root.is_object()) return cfg;
  root.reject_unknown_keys({"journal", "brokers", "instruments", "strategies", "routes", "risk", "protection",
                            "reconciliation", "health", "api", "runtime"});

  if (!root.has("journal")) {
    c.r.error("journal", "missing (required)");
  } else {
    ObjectReader o(c.r, root.raw("journal"), "journal");
    o.reject_unknown_keys({"path"});
    if (auto v = o.path_value("path", Need::required)) cfg.journal.path = *v;
  }

  if (const json* list = read_array(c.r, root.raw("brokers"), "brokers", Need::required)) {
    if (list->empty()) c.r.error("brokers", "at least one broker is required");
    for (std::size_t i = 0; i < list->size(); ++i) cfg.brokers.push_back(read_broker(c, (*list)[i], index_path("brokers", i)));
  }
  if (const json* list = read_array(c.r, root.raw("instruments"), "instruments", Need::optional)) {
    for (std::size_t i = 0; i < list->size(); ++i)
      cfg.instruments.push_back(read_instrument(c, (*list)[i], index_path("instruments", i)));
  }
  if (const json* list = read_array(c.r, root.raw("strategies"), "strategies", Need::optional)) {
    for (std::size_t i = 0; i < list->size(); ++i)
      cfg.strategies.push_back(read_strategy(c, (*list)[i], index_path("strategies", i)));
  }
  std::map<std::string, std::string> routed;  // strategy -> the route path that routes it
  if (const json* list = read_array(c.r, root.raw("routes"), "routes", Need::optional)) {
    for (std::size_t i = 0; i < list->size(); ++i)
      cfg.routes.push_back(read_route(c, (*list)[i], index_path("routes", i), routed));
  }
  read_risk(c, root.raw("risk"), cfg.risk);
  read_protection(c, root.raw("protection"), cfg.protection);
  read_reconciliation(c, root.raw("reconciliation"), cfg.reconciliation);
  read_health(c, root.raw("health"), cfg.health);
  read_api(c, root.raw("api"), cfg.api);
  read_runtime(c, root.raw("runtime"), cfg.runtime);
  check_across(c, cfg, routed);
  return cfg;
}

// nlohmann keeps the last of two equal keys without a word; in a config that silently drops
// the first setting. The parser callback tracks where it is to name the duplicate's path.
class DuplicateKeyFinder {
 public:
  explicit DuplicateKeyFinder(std::vector<ConfigIssue>& issues) : issues_(issues) {}

  bool operator()(int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start: stack_.push_back(Frame{true, {}, {}, 0}); break;
      case json::parse_event_t::array_start: stack_.push_back(Frame{false, {}, {}, 0}); break;
      case json::parse_event_t::key: {
        auto& top = stack_.back();
        top.key = parsed.get<std::string>();
        if (!top.keys.insert(top.key).second)
          issues_.push_back({child_path(here(), top.key), "duplicate key (only the last value would count)"});
        break;
      }
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        stack_.pop_back();
        element_done();
        break;
      case json::parse_event_t::value: element_done(); break;
    }
    return true;
  }

 private:
  struct Frame {
    bool is_object;
    std::set<std::string> keys;
    std::string key;
    std::size_t index;
  };
  void element_done() {
    if (!stack_.empty() && !stack_.back().is_object) ++stack_.back().index;
  }
  // Path of the innermost open container.
  std::string here() const {
    std::string path;
    for (std::size_t i = 0; i + 1 < stack_.size(); ++i)
      path = stack_[i].is_object ? child_path(path, stack_[i].key) : index_path(path, stack_[i].index);
    return path;
  }

  std::vector<ConfigIssue>& issues_;
  std::vector<Frame> stack_;
};

// "line 3, column 10: syntax error while parsing object - invalid literal", located at the end
// of the offending token. nlohmann's own text may quote the token ("last read: ..."), which
// could be a secret, so only its reason is kept.
// "line L, column C" of a byte offset in the text.
std::string line_and_column(std::string_view text, std::size_t offset) {
  std::size_t line = 1, column = 1;
  for (std::size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

ConfigIssue syntax_issue(std::string_view text, const json::parse_error& e) {
  std::size_t offset = e.byte == 0 ? 0 : e.byte - 1;
  if (offset >= text.size()) offset = text.empty() ? 0 : text.size() - 1;
  while (offset > 0 && offset < text.size() && std::isspace(static_cast<unsigned char>(text[offset]))) --offset;
  std::string reason = e.what();
  if (const auto colon = reason.find(": "); colon != std::string::npos) reason = reason.substr(colon + 2);
  if (const auto last = reason.find("; last read: "); last != std::string::npos) {
    const auto expected = reason.find("; expected ", last);
    reason = reason.substr(0, last) + (expected == std::string::npos ? "" : reason.substr(expected));
  }
  return {"", line_and_column(text, offset) + ": " + reason};
}

// A number no double can hold ("1e99999"): nlohmann reports it as out_of_range 406, naming the
// number but not where it is; the first place the text holds it is that place.
ConfigIssue number_overflow_issue(std::string_view text, const json::exception& e) {
  const std::string what = e.what();
  const auto open = what.find('\'');
  const auto close = open == std::string::npos ? std::string::npos : what.rfind('\'');
  const std::string number = close != std::string::npos && close > open ? what.substr(open + 1, close - open - 1) : "";
  const auto at = number.empty() ? std::string_view::npos : text.find(number);
  const std::string reason = "number out of range (too large for a 64-bit floating-point value)";
  if (at == std::string_view::npos) return {"", reason};
  return {"", line_and_column(text, at) + ": " + reason};
}

LoadResult load(std::string_view text, const std::string& origin, const LoadOptions& options,
                std::optional<unsigned> file_mode) {
  LoadResult result;
  result.origin = origin;
  json doc;
  DuplicateKeyFinder duplicates(result.issues);
  try {
    doc = json::parse(text.begin(), text.end(), std::ref(duplicates), /*allow_exceptions=*/true,
                      /*ignore_comments=*/true);
  } catch (const json::parse_error& e) {
    result.issues.clear();  // duplicates found before the syntax error only add noise
    result.issues.push_back(syntax_issue(text, e));
    return result;
  } catch (const json::exception& e) {
    // Found by the config fuzzer: a number overflowing a double is out_of_range, not a parse
    // error, and escaped as an exception.
    result.issues.clear();
    result.issues.push_back(number_overflow_issue(text, e));
    return result;
  }
  EnvLookup env = options.env ? options.env : [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  };
  Reader reader(std::move(env), result.issues);
  Context context{reader, file_mode, {}, {}, {}};
  Config cfg = read_config(context, doc);
  cfg.origin = origin;
  if (result.issues.empty()) result.config = std::move(cfg);
  return result;
}

std::string format_issues(const LoadResult& r) {
  std::string out;
  for (const auto& issue : r.issues) {
    if (!out.empty()) out += '\n';
    out += r.origin + ": " + issue.to_string();
  }
  return out;
}

}  // namespace

LoadResult load_config_text(std::string_view text, const std::string& origin, const LoadOptions& options) {
  return load(text, origin, options, std::nullopt);
}

LoadResult load_config_file(const std::string& path, const LoadOptions& options) {
  std::ifstream in(path, std::ios::binary);
  struct stat st {};
  if (!in || ::stat(path.c_str(), &st) != 0) {
    LoadResult r;
    r.origin = path;
    r.issues.push_back({"", std::string("cannot read the file: ") + std::strerror(errno)});
    return r;
  }
  if (!S_ISREG(st.st_mode)) {
    LoadResult r;
    r.origin = path;
    r.issues.push_back({"", "cannot read the file: not a regular file"});
    return r;
  }
  std::ostringstream text;
  text << in.rdbuf();
  return load(text.str(), path, options, static_cast<unsigned>(st.st_mode & 0777));
}

const Config& LoadResult::value() const& {
  if (!config) throw ConfigError(format_issues(*this));
  return *config;
}

Config LoadResult::value() && {
  if (!config) throw ConfigError(format_issues(*this));
  return std::move(*config);
}

Config default_sim_config() { return load_config_text(default_sim_config_text(), "<default sim config>").value(); }

std::vector<std::string> default_ibkr_confirm_message_ids() { return {"o163", "o354", "o383", "o451", "o10331"}; }

const std::vector<std::string>& strategy_kinds() {
  static const std::vector<std::string> kinds = {"bracket_breakout", "mean_reversion"};
  return kinds;
}

const BrokerConfig* Config::find_broker(std::string_view name) const {
  for (const auto& b : brokers)
    if (b.name == name) return &b;
  return nullptr;
}

const Instrument* Config::find_instrument(std::string_view symbol) const {
  for (const auto& i : instruments)
    if (i.symbol == symbol) return &i;
  return nullptr;
}

const StrategyConfig* Config::find_strategy(std::string_view name) const {
  for (const auto& s : strategies)
    if (s.name == name) return &s;
  return nullptr;
}

const RouteConfig* Config::route_for(std::string_view strategy) const {
  for (const auto& r : routes)
    if (r.strategy == strategy) return &r;
  return nullptr;
}

const char* to_string(BrokerKind k) {
  switch (k) {
    case BrokerKind::sim: return "sim";
    case BrokerKind::tradestation: return "tradestation";
    case BrokerKind::ibkr: return "ibkr";
  }
  return "?";
}

const char* to_string(RouteMode m) { return m == RouteMode::dual ? "dual" : "failover"; }

std::optional<BrokerKind> broker_kind_from_string(std::string_view s) {
  for (auto k : {BrokerKind::sim, BrokerKind::tradestation, BrokerKind::ibkr})
    if (s == to_string(k)) return k;
  return std::nullopt;
}

std::optional<RouteMode> route_mode_from_string(std::string_view s) {
  for (auto m : {RouteMode::failover, RouteMode::dual})
    if (s == to_string(m)) return m;
  return std::nullopt;
}

}  // namespace backstop
