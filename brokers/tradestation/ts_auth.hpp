#pragma once
// TradeStation OAuth2 (Auth0) pieces that need no event loop: the refresh-token file, form
// encoding, token responses, and the first authorization (`backstop auth tradestation`).
// api-notes section 1 ([DOC-AUTH], [DOC-REFRESH], [DOC-SCOPES]).
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "config/config.hpp"

namespace backstop::tradestation {

// Scopes Backstop asks for: refresh tokens need offline_access; orders need Trade.
inline constexpr const char* kScopes = "openid offline_access MarketData ReadAccount Trade";
inline constexpr const char* kAudience = "https://api.tradestation.com";

std::string form_encode(std::string_view s);
std::string url_decode(std::string_view s);
// Value of `key` in a query string "a=1&b=2" (decoded); nullopt when absent.
std::optional<std::string> query_param(std::string_view query, std::string_view key);

// Reads the refresh token (whitespace trimmed); nullopt when the file does not exist or is empty.
std::optional<std::string> read_refresh_token(const std::string& path);
// Replaces the file atomically: temp file in the same directory, mode 0600, write, fsync, rename,
// fsync the directory. A crash leaves the old token or the new one, never a torn file.
// Throws Error with the path (never the token) on failure.
void write_refresh_token(const std::string& path, const std::string& token);

struct TokenResponse {
  std::string access_token;
  std::string refresh_token;  // empty unless issued (code exchange, or rotation)
  std::int64_t expires_in = 1200;
};
// Parses a token endpoint answer; throws ParseError (message without secrets).
TokenResponse parse_token_response(const std::string& body);

// The /authorize URL next to the token URL (https://signin.tradestation.com/oauth/token ->
// https://signin.tradestation.com/authorize).
std::string authorize_endpoint(const std::string& token_url);
std::string authorize_url(const TradeStationSettings& s, const std::string& state);

struct AuthorizeOptions {
  std::chrono::seconds timeout{300};            // waiting for the browser
  std::function<void(const std::string&)> on_url;  // default: print it to stdout
};
// The whole first authorization: prints the URL, listens on the loopback redirect URI, checks
// `state`, exchanges the code, stores the refresh token (0600). Returns an empty string on
// success, else the reason. Blocking; for the command line and tests.
std::string authorize(const TradeStationSettings& settings, const AuthorizeOptions& options = {});

}  // namespace backstop::tradestation

// `backstop auth tradestation --config FILE [--broker NAME] [--timeout SECONDS]`.
int auth_tradestation_main(int argc, char** argv);
