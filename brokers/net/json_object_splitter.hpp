#pragma once
// Incremental splitter for streams of concatenated JSON objects (TradeStation HTTP streams):
// chunk boundaries are not message boundaries, so feed it whatever arrived and it hands back each
// complete top-level object text for a JSON parser.
//
//   net::JsonObjectSplitter splitter;
//   splitter.feed(chunk, [&](std::string_view object) { handle(nlohmann::json::parse(object)); });
//
// Header-only on purpose: the per-byte loop must inline into the caller.
#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.hpp"

namespace backstop::net {

// Splits a byte stream of concatenated top-level JSON objects into object texts. Objects may be
// split across feeds or share one; strings may hold braces and escaped quotes; whitespace and
// stray non-object bytes between objects (legacy "END" lines) are skipped and counted.
// Only objects ({...}) are recognised at top level. Does not validate JSON beyond bracing.
//
//   splitter.feed(chunk, [&](std::string_view object) { parse(object); });
class JsonObjectSplitter {
 public:
  // An object growing beyond max_object_bytes makes feed() throw ParseError (and reset).
  explicit JsonObjectSplitter(std::size_t max_object_bytes = 16u << 20)
      : max_object_bytes_(max_object_bytes) {}

  // Calls on_object for each object completed by `bytes`, in order. The view is valid only
  // during the call. Objects wholly inside `bytes` are not copied.
  template <class OnObject>
  void feed(std::string_view bytes, OnObject&& on_object);

  // Forgets any partial object (after a reconnect).
  void reset();
  std::size_t buffered_bytes() const { return partial_.size(); }
  std::uint64_t skipped_bytes() const { return skipped_; }
  std::uint64_t objects() const { return objects_; }

 private:
  // Scans from `i` while inside an object; returns the index one past the closing brace, or
  // npos when `bytes` ran out first. Updates the nesting state.
  std::size_t scan(std::string_view bytes, std::size_t i);
  void append_partial(std::string_view piece);

  std::string partial_;  // the unfinished object carried over from earlier feeds
  std::size_t max_object_bytes_;
  int depth_ = 0;
  bool in_string_ = false;
  bool escaped_ = false;
  std::uint64_t skipped_ = 0;
  std::uint64_t objects_ = 0;
};

template <class OnObject>
void JsonObjectSplitter::feed(std::string_view bytes, OnObject&& on_object) {
  std::size_t i = 0;
  const std::size_t n = bytes.size();
  if (depth_ > 0) {  // continue the object begun in an earlier feed
    const std::size_t end = scan(bytes, 0);
    if (end == std::string_view::npos) {
      append_partial(bytes);
      return;
    }
    append_partial(bytes.substr(0, end));
    ++objects_;
    // Move out first so on_object may call feed()/reset() without corrupting the view.
    std::string object;
    object.swap(partial_);
    on_object(std::string_view(object));
    object.clear();
    if (partial_.empty()) partial_.swap(object);  // keep the capacity for the next split object
    i = end;
  }
  while (i < n) {
    const char c = bytes[i];
    if (c != '{') {
      if (c != ' ' && c != '\n' && c != '\r' && c != '\t') ++skipped_;
      ++i;
      continue;
    }
    const std::size_t start = i;
    depth_ = 1;
    in_string_ = false;
    escaped_ = false;
    const std::size_t end = scan(bytes, i + 1);
    if (end == std::string_view::npos) {
      append_partial(bytes.substr(start));
      return;
    }
    ++objects_;
    on_object(bytes.substr(start, end - start));
    i = end;
  }
}

inline void JsonObjectSplitter::reset() {
  partial_.clear();
  depth_ = 0;
  in_string_ = false;
  escaped_ = false;
}

inline void JsonObjectSplitter::append_partial(std::string_view piece) {
  if (partial_.size() + piece.size() > max_object_bytes_) {
    const std::size_t size = partial_.size() + piece.size();
    reset();
    throw ParseError("JSON stream: object larger than " + std::to_string(max_object_bytes_) +
                     " bytes (" + std::to_string(size) + " buffered)");
  }
  partial_.append(piece);
}

inline std::size_t JsonObjectSplitter::scan(std::string_view bytes, std::size_t i) {
  const char* p = bytes.data();
  const std::size_t n = bytes.size();
  int depth = depth_;
  bool in_string = in_string_;
  if (escaped_) {  // the previous feed ended on a backslash inside a string
    escaped_ = false;
    if (i < n) ++i;
  }
  while (i < n) {
    if (in_string) {
      // Inside a string only a quote or a backslash matters; skip everything else quickly.
      while (i < n && p[i] != '"' && p[i] != '\\') ++i;
      if (i == n) break;
      if (p[i] == '\\') {
        if (i + 1 == n) {
          escaped_ = true;
          i = n;
          break;
        }
        i += 2;
        continue;
      }
      in_string = false;
      ++i;
      continue;
    }
    const char c = p[i++];
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (--depth == 0) {
        depth_ = 0;
        in_string_ = false;
        return i;
      }
    }
  }
  depth_ = depth;
  in_string_ = in_string;
  return std::string_view::npos;
}

}  // namespace backstop::net
