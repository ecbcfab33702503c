#pragma once
// Internal to the config loader: typed reads from a JSON tree that record every problem with its
// path instead of stopping at the first one, expand ${ENV} references, and suggest the closest
// known name for a typo.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.hpp"

namespace backstop::config_detail {

using nlohmann::json;

// Levenshtein distance, case-insensitive.
std::size_t edit_distance(std::string_view a, std::string_view b);
// The candidate closest to `word`, when it is close enough to be a plausible typo of it.
std::optional<std::string> closest(std::string_view word, const std::vector<std::string>& candidates);
// " (did you mean "x"?)" when a candidate is close, else " (known: a, b, c)" (or "" when there
// are no candidates).
std::string suggestion(std::string_view word, const std::vector<std::string>& candidates,
                       std::string_view known_label = "known");

// "value" in double quotes, JSON-escaped and cut short when long.
std::string quote(std::string_view value);
// "a string", "an object", ... for "expected X, got Y" messages.
std::string type_phrase(const json& j);
// The value of a scalar for a message ("a number (1.5)"); never used for secrets.
std::string describe(const json& j);

std::string child_path(const std::string& parent, std::string_view key);
std::string index_path(const std::string& parent, std::size_t i);

// What every read shares: where issues go and where ${NAME} values come from.
class Reader {
 public:
  Reader(EnvLookup env, std::vector<ConfigIssue>& issues) : env_(std::move(env)), issues_(issues) {}

  void error(std::string path, std::string message);
  std::size_t issue_count() const { return issues_.size(); }
  std::optional<std::string> getenv(const std::string& name) const { return env_(name); }

  // Expands ${NAME} (and "$${" to a literal "${"). Records one issue per missing or malformed
  // reference at `path` and returns nullopt if there was any. `secret`: never quote the text.
  std::optional<std::string> expand(std::string_view raw, const std::string& path, bool secret);
  // Expands every string inside a free-form tree in place (strategy params).
  void expand_tree(json& j, const std::string& path);
  // "~/x" -> "$HOME/x"; other paths unchanged.
  std::optional<std::string> expand_home(const std::string& value, const std::string& path);

 private:
  EnvLookup env_;
  std::vector<ConfigIssue>& issues_;
};

enum class Need { optional, required };

// One JSON object at a path. A missing optional section is read as an empty object, so that
// every field takes its default through the same code.
class ObjectReader {
 public:
  // `j` may be nullptr (absent). A non-object value records "expected an object".
  ObjectReader(Reader& r, const json* j, std::string path);

  bool is_object() const { return obj_ != nullptr; }
  const std::string& path() const { return path_; }
  std::string path_of(std::string_view key) const { return child_path(path_, key); }
  Reader& reader() const { return r_; }
  bool has(std::string_view key) const;  // present and not null
  const json* raw(std::string_view key) const;  // nullptr when absent or null

  // Records "unknown key" for every key not in `known`, suggesting the closest known one.
  // `explain` may give a better reason for a key (one valid only for another broker kind).
  using Explain = std::function<std::optional<std::string>(const std::string& key)>;
  void reject_unknown_keys(const std::vector<std::string>& known, const Explain& explain = {}) const;

  // Each read returns nullopt when the key is absent (recording "missing" when required) or
  // the value is invalid (recording why). Callers keep their default on nullopt.
  std::optional<std::string> string(std::string_view key, Need need = Need::optional,
                                    bool secret = false) const;
  // The text as written, before ${ENV} expansion: what a message may show.
  std::optional<std::string> written(std::string_view key) const;
  std::optional<std::int64_t> integer(std::string_view key, std::int64_t min, std::int64_t max,
                                      Need need = Need::optional) const;
  std::optional<double> number(std::string_view key, double min, double max,
                               Need need = Need::optional) const;
  std::optional<bool> boolean(std::string_view key, Need need = Need::optional) const;
  std::optional<Duration> millis(std::string_view key, std::int64_t min_ms,
                                 Need need = Need::optional) const;
  std::optional<Duration> seconds(std::string_view key, std::int64_t min_s,
                                  Need need = Need::optional) const;
  // A non-empty string with no surrounding whitespace: names that others refer to.
  std::optional<std::string> name(std::string_view key, Need need = Need::optional) const;
  // A string that must be one of `choices`.
  std::optional<std::string> choice(std::string_view key, const std::vector<std::string>& choices,
                                    Need need = Need::optional) const;
  std::optional<std::vector<std::string>> strings(std::string_view key,
                                                  Need need = Need::optional) const;
  // A file path: ${ENV} and "~/" expanded.
  std::optional<std::string> path_value(std::string_view key, Need need = Need::optional) const;

 private:
  const json* present(std::string_view key, Need need) const;
  void wrong_type(std::string_view key, const std::string& expected, const json& got,
                  bool secret = false) const;

  Reader& r_;
  const json* obj_ = nullptr;
  std::string path_;
};

// An array at a path; nullptr when absent (recording "missing" when required) or not an array.
const json* read_array(Reader& r, const json* j, const std::string& path, Need need);

}  // namespace backstop::config_detail
