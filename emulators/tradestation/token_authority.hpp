#pragma once
// The emulator's OAuth2 authorization server: the auth-code redirect, the token endpoint
// (authorization_code and refresh_token grants, optional refresh-token rotation) and the
// access-token check every /v3 call goes through. Shapes follow Auth0, which serves
// signin.tradestation.com ([DOC-AUTH], [DOC-REFRESH]; api-notes section 1).
#include <chrono>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "emulators/tradestation/tradestation_emulator.hpp"

namespace backstop::tradestation_emulator {

class TokenAuthority {
 public:
  using Params = std::map<std::string, std::string>;
  struct Reply {
    int status = 200;
    nlohmann::json body;
    std::string location;  // set for 302 redirects
  };
  enum class Check { ok, missing, invalid, expired };

  explicit TokenAuthority(const Options& options);

  Reply authorize(const Params& query);
  Reply token(const Params& form);
  // Checks an Authorization header value ("Bearer <token>").
  Check check(const std::string& authorization_header);
  // Fault: the token stops working before its lifetime is over.
  void expire_early(const std::string& authorization_header);
  void expire_all();
  std::string current_refresh_token() const;  // for logs and the CLI banner

  // Issued tokens and codes for the emulator's state file, so that a client's tokens outlive a
  // restart of the emulator (a real auth server is not restarted with the API). Expiries are
  // written as wall-clock times, since the steady clock does not survive the process.
  nlohmann::json save_state() const;
  void restore_state(const nlohmann::json& state);  // throws json::exception; all or nothing
  // Moves on every change of what save_state() writes; owners persist when it has moved.
  std::uint64_t changes() const;

 private:
  std::string random_token(std::size_t bytes);
  Reply issue(const std::string& scope, bool with_refresh_token);
  static Reply oauth_error(int status, const std::string& error, const std::string& description);
  bool redirect_allowed(const std::string& uri) const;

  struct Code {
    std::string redirect_uri, scope;
    std::chrono::steady_clock::time_point expires;
  };
  const Options& options_;
  mutable std::mutex mutex_;
  std::mt19937_64 rng_;
  std::map<std::string, std::chrono::steady_clock::time_point> access_;  // token -> expiry
  std::map<std::string, std::string> refresh_;                           // token -> scope
  std::map<std::string, Code> codes_;
  std::string latest_refresh_;
  std::uint64_t changes_ = 0;
};

}  // namespace backstop::tradestation_emulator
