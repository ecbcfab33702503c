#include "config/detail/reader.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>

namespace backstop::config_detail {

namespace {

char lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

bool is_name_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool is_name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) {
    if (!out.empty()) out += ", ";
    out += s;
  }
  return out;
}

bool is_plain_key(std::string_view key) {
  return !key.empty() && std::all_of(key.begin(), key.end(), [](char c) { return is_name_char(c) || c == '-'; });
}

// 1 rather than 1.0 in messages about limits written as integers.
std::string format_number(double d) {
  if (std::trunc(d) == d && std::fabs(d) < 1e15) return std::to_string(static_cast<long long>(d));
  return json(d).dump();
}

}  // namespace

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      const std::size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + cost});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::optional<std::string> closest(std::string_view word, const std::vector<std::string>& candidates) {
  std::optional<std::string> best;
  std::size_t best_distance = std::numeric_limits<std::size_t>::max();
  for (const auto& c : candidates) {
    const auto d = edit_distance(word, c);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  // Two edits, or a third of the word for long words: close enough to be a typo, far enough
  // that "id" is not offered for "xyz".
  const std::size_t limit = std::max<std::size_t>(2, word.size() / 3);
  if (!best || best_distance > limit || best_distance >= std::min(word.size(), best->size()))
    return std::nullopt;
  return best;
}

std::string suggestion(std::string_view word, const std::vector<std::string>& candidates,
                       std::string_view known_label) {
  if (auto c = closest(word, candidates)) return " (did you mean \"" + *c + "\"?)";
  if (candidates.empty()) return "";
  return " (" + std::string(known_label) + ": " + join(candidates) + ")";
}

std::string quote(std::string_view value) {
  constexpr std::size_t kMax = 80;
  std::string cut(value.substr(0, kMax));
  std::string out = json(cut).dump(-1, ' ', false, json::error_handler_t::replace);
  if (value.size() > kMax) out.insert(out.size() - 1, "...");
  return out;
}

std::string type_phrase(const json& j) {
  switch (j.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float: return "a number";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    default: return "an unsupported value";
  }
}

std::string describe(const json& j) {
  if (j.is_number() || j.is_boolean()) return type_phrase(j) + " (" + j.dump() + ")";
  if (j.is_string()) return "a string (" + quote(j.get_ref<const std::string&>()) + ")";
  return type_phrase(j);
}

std::string child_path(const std::string& parent, std::string_view key) {
  // Keys that are not plain identifiers (broker symbols with dots, say) are bracketed so that
  // the path stays unambiguous.
  const std::string part = is_plain_key(key) ? std::string(key) : "[" + quote(key) + "]";
  if (parent.empty()) return part;
  return part.front() == '[' ? parent + part : parent + "." + part;
}

std::string index_path(const std::string& parent, std::size_t i) {
  return parent + "[" + std::to_string(i) + "]";
}

// ---- Reader ----

void Reader::error(std::string path, std::string message) {
  issues_.push_back(ConfigIssue{std::move(path), std::move(message)});
}

std::optional<std::string> Reader::expand(std::string_view raw, const std::string& path, bool secret) {
  std::string out;
  bool failed = false;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != '$') {
      out += raw[i];
      continue;
    }
    if (raw.compare(i, 3, "$${") == 0) {  // escape for a literal "${"
      out += "${";
      i += 2;
      continue;
    }
    if (raw.compare(i, 2, "${") != 0) {
      out += '$';
      continue;
    }
    const auto close = raw.find('}', i + 2);
    const auto name = close == std::string_view::npos ? std::string_view{} : raw.substr(i + 2, close - i - 2);
    const bool well_formed = !name.empty() && is_name_start(name.front()) &&
                             std::all_of(name.begin(), name.end(), is_name_char);
    if (!well_formed) {
      // The text may be a literal secret: quote it only when it is not.
      error(path, "malformed environment reference" +
                      (secret ? std::string() : " in " + quote(raw)) +
                      " (write ${NAME}, or $${ for a literal \"${\")");
      return std::nullopt;
    }
    if (auto value = env_(std::string(name))) {
      out += *value;
    } else {
      error(path, "environment variable " + std::string(name) + " is not set");
      failed = true;
    }
    i = close;
  }
  if (failed) return std::nullopt;
  return out;
}

void Reader::expand_tree(json& j, const std::string& path) {
  if (j.is_string()) {
    if (auto v = expand(j.get_ref<const std::string&>(), path, false)) j = *v;
  } else if (j.is_object()) {
    for (auto& [key, value] : j.items()) expand_tree(value, child_path(path, key));
  } else if (j.is_array()) {
    for (std::size_t i = 0; i < j.size(); ++i) expand_tree(j[i], index_path(path, i));
  }
}

std::optional<std::string> Reader::expand_home(const std::string& value, const std::string& path) {
  if (value != "~" && value.rfind("~/", 0) != 0) return value;
  const auto home = env_("HOME");
  if (!home || home->empty()) {
    error(path, "starts with \"~\" but environment variable HOME is not set");
    return std::nullopt;
  }
  return *home + value.substr(1);
}

// ---- ObjectReader ----

ObjectReader::ObjectReader(Reader& r, const json* j, std::string path) : r_(r), path_(std::move(path)) {
  static const json kEmpty = json::object();
  if (j == nullptr || j->is_null()) {
    obj_ = &kEmpty;
  } else if (j->is_object()) {
    obj_ = j;
  } else {
    r_.error(path_, "expected an object, got " + describe(*j));
  }
}

bool ObjectReader::has(std::string_view key) const { return raw(key) != nullptr; }

const json* ObjectReader::raw(std::string_view key) const {
  if (!obj_) return nullptr;
  const auto it = obj_->find(key);
  if (it == obj_->end() || it->is_null()) return nullptr;
  return &*it;
}

void ObjectReader::reject_unknown_keys(const std::vector<std::string>& known, const Explain& explain) const {
  if (!obj_) return;
  for (const auto& [key, value] : obj_->items()) {
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    if (explain) {
      if (auto why = explain(key)) {
        r_.error(path_of(key), *why);
        continue;
      }
    }
    r_.error(path_of(key), "unknown key" + suggestion(key, known, "known keys"));
  }
}

const json* ObjectReader::present(std::string_view key, Need need) const {
  if (!obj_) return nullptr;
  const json* v = raw(key);
  if (!v && need == Need::required) {
    const auto it = obj_->find(key);
    r_.error(path_of(key), it == obj_->end() ? "missing (required)" : "required, got null");
  }
  return v;
}

void ObjectReader::wrong_type(std::string_view key, const std::string& expected, const json& got,
                              bool secret) const {
  r_.error(path_of(key), "expected " + expected + ", got " + (secret ? type_phrase(got) : describe(got)));
}

std::optional<std::string> ObjectReader::written(std::string_view key) const {
  const json* v = raw(key);
  if (!v || !v->is_string()) return std::nullopt;
  return v->get<std::string>();
}

std::optional<std::string> ObjectReader::string(std::string_view key, Need need, bool secret) const {
  const json* v = present(key, need);
  if (!v) return std::nullopt;
  if (!v->is_string()) {
    wrong_type(key, "a string", *v, secret);
    return std::nullopt;
  }
  return r_.expand(v->get_ref<const std::string&>(), path_of(key), secret);
}

std::optional<std::int64_t> ObjectReader::integer(std::string_view key, std::int64_t min,
                                                  std::int64_t max, Need need) const {
  const json* v = present(key, need);
  if (!v) return std::nullopt;
  std::int64_t value = 0;
  if (v->is_number_unsigned()) {
    const auto u = v->get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      r_.error(path_of(key), "must be at most " + std::to_string(max) + ", got " + v->dump());
      return std::nullopt;
    }
    value = static_cast<std::int64_t>(u);
  } else if (v->is_number_integer()) {
    value = v->get<std::int64_t>();
  } else {
    wrong_type(key, "an integer", *v);
    return std::nullopt;
  }
  if (value < min || value > max) {
    std::string bound;
    if (max == std::numeric_limits<std::int64_t>::max())
      bound = "must be at least " + std::to_string(min);
    else
      bound = "must be between " + std::to_string(min) + " and " + std::to_string(max);
    r_.error(path_of(key), bound + ", got " + std::to_string(value));
    return std::nullopt;
  }
  return value;
}

std::optional<double> ObjectReader::number(std::string_view key, double min, double max, Need need) const {
  const json* v = present(key, need);
  if (!v) return std::nullopt;
  if (!v->is_number()) {
    wrong_type(key, "a number", *v);
    return std::nullopt;
  }
  const double value = v->get<double>();
  if (!std::isfinite(value) || value < min || value > max) {
    r_.error(path_of(key), "must be between " + format_number(min) + " and " + format_number(max) + ", got " + v->dump());
    return std::nullopt;
  }
  return value;
}

std::optional<bool> ObjectReader::boolean(std::string_view key, Need need) const {
  const json* v = present(key, need);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) {
    wrong_type(key, "a boolean (true or false)", *v);
    return std::nullopt;
  }
  return v->get<bool>();
}

std::optional<Duration> ObjectReader::millis(std::string_view key, std::int64_t min_ms, Need need) const {
  // A day is far beyond any sensible timeout and keeps nanosecond arithmetic clear of overflow.
  if (auto v = integer(key, min_ms, 86'400'000, need)) return std::chrono::milliseconds(*v);
  return std::nullopt;
}

std::optional<Duration> ObjectReader::seconds(std::string_view key, std::int64_t min_s, Need need) const {
  if (auto v = integer(key, min_s, 86'400, need)) return std::chrono::seconds(*v);
  return std::nullopt;
}

std::optional<std::string> ObjectReader::name(std::string_view key, Need need) const {
  auto v = string(key, need);
  if (!v) return std::nullopt;
  if (v->empty()) {
    r_.error(path_of(key), "must not be empty");
    return std::nullopt;
  }
  if (std::isspace(static_cast<unsigned char>(v->front())) || std::isspace(static_cast<unsigned char>(v->back()))) {
    r_.error(path_of(key), "has leading or trailing whitespace (" + quote(*v) + ")");
    return std::nullopt;
  }
  return v;
}

std::optional<std::string> ObjectReader::choice(std::string_view key, const std::vector<std::string>& choices,
                                                Need need) const {
  auto v = string(key, need);
  if (!v) return std::nullopt;
  if (std::find(choices.begin(), choices.end(), *v) == choices.end()) {
    std::string list;
    for (const auto& c : choices) list += (list.empty() ? "" : ", ") + quote(c);
    const auto near = closest(*v, choices);
    r_.error(path_of(key), "unknown value " + quote(*v) +
                               (near ? " (did you mean \"" + *near + "\"?)" : " (expected one of " + list + ")"));
    return std::nullopt;
  }
  return v;
}

std::optional<std::vector<std::string>> ObjectReader::strings(std::string_view key, Need need) const {
  const json* v = present(key, need);
  if (!v) return std::nullopt;
  if (!v->is_array()) {
    wrong_type(key, "an array of strings", *v);
    return std::nullopt;
  }
  std::vector<std::string> out;
  bool ok = true;
  const auto base = path_of(key);
  for (std::size_t i = 0; i < v->size(); ++i) {
    const json& item = (*v)[i];
    if (!item.is_string()) {
      r_.error(index_path(base, i), "expected a string, got " + describe(item));
      ok = false;
      continue;
    }
    if (auto s = r_.expand(item.get_ref<const std::string&>(), index_path(base, i), false))
      out.push_back(std::move(*s));
    else
      ok = false;
  }
  if (!ok) return std::nullopt;
  return out;
}

std::optional<std::string> ObjectReader::path_value(std::string_view key, Need need) const {
  auto v = string(key, need);
  if (!v) return std::nullopt;
  if (v->empty()) {
    r_.error(path_of(key), "must not be empty");
    return std::nullopt;
  }
  return r_.expand_home(*v, path_of(key));
}

const json* read_array(Reader& r, const json* j, const std::string& path, Need need) {
  if (!j || j->is_null()) {
    if (need == Need::required) r.error(path, "missing (required)");
    return nullptr;
  }
  if (!j->is_array()) {
    r.error(path, "expected an array, got " + describe(*j));
    return nullptr;
  }
  return j;
}

}  // namespace backstop::config_detail
