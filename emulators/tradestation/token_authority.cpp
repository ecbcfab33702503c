#include "emulators/tradestation/token_authority.hpp"

#include <cctype>
#include <sstream>

namespace backstop::tradestation_emulator {

namespace {
constexpr const char* kAudience = "https://api.tradestation.com";
constexpr const char* kDefaultScope = "openid offline_access profile MarketData ReadAccount Trade";

std::string param(const TokenAuthority::Params& p, const std::string& key) {
  auto it = p.find(key);
  return it == p.end() ? std::string() : it->second;
}

bool has_scope(const std::string& scopes, const std::string& wanted) {
  std::istringstream in(scopes);
  std::string s;
  while (in >> s)
    if (s == wanted) return true;  // scopes are case sensitive [DOC-SCOPES]
  return false;
}

std::string url_encode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}
}  // namespace

TokenAuthority::TokenAuthority(const Options& options)
    : options_(options), rng_(std::random_device{}()), latest_refresh_(options.refresh_token) {
  refresh_[options.refresh_token] = kDefaultScope;
}

std::string TokenAuthority::random_token(std::size_t bytes) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < bytes; ++i) {
    const auto b = static_cast<unsigned>(rng_() & 0xff);
    out += hex[b >> 4];
    out += hex[b & 15];
  }
  return out;
}

TokenAuthority::Reply TokenAuthority::oauth_error(int status, const std::string& error,
                                                  const std::string& description) {
  return {status, {{"error", error}, {"error_description", description}}, {}};
}

bool TokenAuthority::redirect_allowed(const std::string& uri) const {
  if (!options_.redirect_uris.empty()) {
    for (const auto& u : options_.redirect_uris)
      if (u == uri) return true;
    return false;
  }
  for (const char* prefix :
       {"http://localhost", "http://127.0.0.1", "https://localhost", "https://127.0.0.1"})
    if (uri.rfind(prefix, 0) == 0) return true;
  return false;
}

TokenAuthority::Reply TokenAuthority::authorize(const Params& q) {
  const std::string redirect = param(q, "redirect_uri");
  if (param(q, "client_id") != options_.client_id)
    return oauth_error(400, "invalid_request", "Unknown client.");
  // redirect_uri must be one of the key's registered callback URLs [DOC-AUTH]; a bad one is
  // answered on the spot, never redirected to.
  if (redirect.empty() || !redirect_allowed(redirect))
    return oauth_error(400, "invalid_request",
                       "The redirect_uri is not registered for this client.");

  const std::string scope = param(q, "scope");
  std::string error;
  if (param(q, "response_type") != "code")
    error = "response_type must be code";
  else if (param(q, "audience") != kAudience)
    error = std::string("audience must be ") + kAudience;  // required [DOC-AUTH]
  else if (!has_scope(scope, "openid"))
    error = "scope must include openid";
  else if (!has_scope(scope, "offline_access"))
    error = "scope must include offline_access";

  const std::string sep = redirect.find('?') == std::string::npos ? "?" : "&";
  const std::string state = param(q, "state");
  const std::string state_part = state.empty() ? "" : "&state=" + url_encode(state);
  if (!error.empty())
    return {302,
            {},
            redirect + sep + "error=invalid_request&error_description=" + url_encode(error) +
                state_part};

  std::lock_guard lock(mutex_);
  const std::string code = random_token(16);
  codes_[code] = {redirect, scope, std::chrono::steady_clock::now() + std::chrono::minutes(1)};
  ++changes_;
  // The callback arrives as a 302 to redirect_uri?code=…&state=… [DOC-AUTH].
  return {302, {}, redirect + sep + "code=" + code + state_part};
}

TokenAuthority::Reply TokenAuthority::issue(const std::string& scope, bool with_refresh_token) {
  const std::string access = random_token(24);
  ++changes_;  // under mutex_, held by token()
  access_[access] = std::chrono::steady_clock::now() + options_.access_token_lifetime;
  nlohmann::json body{{"access_token", access},
                      {"expires_in", options_.access_token_lifetime.count()},
                      {"scope", scope},
                      {"id_token", "emulator." + random_token(12) + ".idtoken"},
                      {"token_type", "Bearer"}};
  if (with_refresh_token) {
    const std::string refresh = random_token(24);
    refresh_[refresh] = scope;
    latest_refresh_ = refresh;
    body["refresh_token"] = refresh;
  }
  return {200, body, {}};
}

TokenAuthority::Reply TokenAuthority::token(const Params& form) {
  const std::string grant = param(form, "grant_type");
  if (grant.empty())
    return oauth_error(400, "invalid_request", "Missing required parameter: grant_type");
  // Auth0 answers a wrong client with 401 access_denied, a bad grant with 403 invalid_grant.
  if (param(form, "client_id") != options_.client_id ||
      param(form, "client_secret") != options_.client_secret)
    return oauth_error(401, "access_denied", "Unauthorized");

  std::lock_guard lock(mutex_);
  if (grant == "refresh_token") {
    auto it = refresh_.find(param(form, "refresh_token"));
    if (it == refresh_.end())
      return oauth_error(403, "invalid_grant", "Unknown or invalid refresh token.");
    const std::string scope = it->second;
    // With rotation on, each refresh returns a new refresh token and the old one stops
    // working [DOC-REFRESH].
    if (options_.rotate_refresh_tokens) refresh_.erase(it);
    return issue(scope, options_.rotate_refresh_tokens);
  }
  if (grant == "authorization_code") {
    auto it = codes_.find(param(form, "code"));
    if (it == codes_.end() || it->second.expires < std::chrono::steady_clock::now())
      return oauth_error(403, "invalid_grant", "Invalid authorization code");
    const Code code = it->second;
    codes_.erase(it);  // single use
    ++changes_;
    if (param(form, "redirect_uri") != code.redirect_uri)
      return oauth_error(403, "invalid_grant", "Redirect URI mismatch.");
    return issue(code.scope, true);
  }
  return oauth_error(403, "unsupported_grant_type",
                     "Grant type '" + grant + "' not allowed for the client.");
}

namespace {
std::string bearer(const std::string& header) {
  const std::string prefix = "Bearer ";
  if (header.size() <= prefix.size() || header.compare(0, prefix.size(), prefix) != 0) return {};
  return header.substr(prefix.size());
}
}  // namespace

TokenAuthority::Check TokenAuthority::check(const std::string& header) {
  const std::string token = bearer(header);
  if (token.empty()) return Check::missing;
  std::lock_guard lock(mutex_);
  auto it = access_.find(token);
  if (it == access_.end()) return Check::invalid;
  return it->second < std::chrono::steady_clock::now() ? Check::expired : Check::ok;
}

void TokenAuthority::expire_early(const std::string& header) {
  std::lock_guard lock(mutex_);
  if (auto it = access_.find(bearer(header)); it != access_.end()) {
    it->second = std::chrono::steady_clock::now() - std::chrono::seconds(1);
    ++changes_;
  }
}

void TokenAuthority::expire_all() {
  std::lock_guard lock(mutex_);
  for (auto& [token, expiry] : access_)
    expiry = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  ++changes_;
}

std::string TokenAuthority::current_refresh_token() const {
  std::lock_guard lock(mutex_);
  return latest_refresh_;
}

namespace {
using Steady = std::chrono::steady_clock;
using Wall = std::chrono::system_clock;

// Nanoseconds since the epoch; the gap to now carries over between the clocks.
std::int64_t wall_ns(Steady::time_point t) {
  const auto wall = Wall::now() + std::chrono::duration_cast<Wall::duration>(t - Steady::now());
  return std::chrono::duration_cast<std::chrono::nanoseconds>(wall.time_since_epoch()).count();
}
Steady::time_point steady_from(const nlohmann::json& j) {
  const Wall::time_point wall(
      std::chrono::duration_cast<Wall::duration>(std::chrono::nanoseconds(j.get<std::int64_t>())));
  return Steady::now() + std::chrono::duration_cast<Steady::duration>(wall - Wall::now());
}
}  // namespace

nlohmann::json TokenAuthority::save_state() const {
  std::lock_guard lock(mutex_);
  auto access = nlohmann::json::array(), refresh = nlohmann::json::array(),
       codes = nlohmann::json::array();
  for (const auto& [token, expires] : access_)
    access.push_back({{"token", token}, {"expires_at", wall_ns(expires)}});
  for (const auto& [token, scope] : refresh_) refresh.push_back({{"token", token}, {"scope", scope}});
  for (const auto& [code, c] : codes_)
    codes.push_back({{"code", code},
                     {"redirect_uri", c.redirect_uri},
                     {"scope", c.scope},
                     {"expires_at", wall_ns(c.expires)}});
  return {{"access", access}, {"refresh", refresh}, {"codes", codes}, {"latest_refresh", latest_refresh_}};
}

void TokenAuthority::restore_state(const nlohmann::json& state) {
  std::map<std::string, Steady::time_point> access;
  std::map<std::string, std::string> refresh;
  std::map<std::string, Code> codes;
  for (const auto& a : state.at("access"))
    access[a.at("token").get<std::string>()] = steady_from(a.at("expires_at"));
  for (const auto& r : state.at("refresh"))
    refresh[r.at("token").get<std::string>()] = r.at("scope").get<std::string>();
  for (const auto& c : state.at("codes"))
    codes[c.at("code").get<std::string>()] = {c.at("redirect_uri").get<std::string>(),
                                              c.at("scope").get<std::string>(),
                                              steady_from(c.at("expires_at"))};
  const auto latest = state.at("latest_refresh").get<std::string>();
  std::lock_guard lock(mutex_);
  access_ = std::move(access);
  refresh_ = std::move(refresh);
  codes_ = std::move(codes);
  latest_refresh_ = latest;
}

std::uint64_t TokenAuthority::changes() const {
  std::lock_guard lock(mutex_);
  return changes_;
}

}  // namespace backstop::tradestation_emulator
