// net::JsonObjectSplitter (brokers/net/json_object_splitter.hpp), the TradeStation stream framer.
// The first input byte picks a mode; the rest is the stream.
// Mode "raw" (any bytes):
//  - every yielded text starts with '{' and ends with '}' or ']', and is a piece of the input;
//  - the result does not depend on how the bytes are cut into chunks (objects, skipped count,
//    what is left buffered), and a one-byte-at-a-time feed agrees too;
//  - with a small size limit, feed() throws ParseError only when an object outgrows it, and the
//    buffer never holds more than the limit.
// Mode "valid" (a stream of valid JSON objects): pieces of the input separated by 0xFF that
// nlohmann accepts as objects are concatenated with random whitespace and chunked randomly; the
// splitter must yield exactly those objects, each a valid JSON object, and skip nothing.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "brokers/net/json_object_splitter.hpp"
#include "fuzz/fuzz_support.hpp"

using backstop::fuzz::printable;
using backstop::fuzz::Rng;
using backstop::net::JsonObjectSplitter;

namespace {

struct Run {
  std::vector<std::string> objects;
  std::uint64_t skipped = 0;
  std::size_t buffered = 0;
};

// Cuts `stream` into chunks with sizes from rng (max_chunk 0: one feed).
Run split(std::string_view stream, Rng& rng, std::size_t max_chunk) {
  JsonObjectSplitter s;
  Run r;
  std::size_t i = 0;
  while (i < stream.size()) {
    const std::size_t n = max_chunk == 0 ? stream.size() : 1 + rng.below(max_chunk);
    const std::string_view chunk = stream.substr(i, n);
    s.feed(chunk, [&](std::string_view o) { r.objects.emplace_back(o); });
    i += chunk.size();
  }
  FUZZ_CHECK(s.objects() == r.objects.size(), "objects() %llu, yielded %zu",
             static_cast<unsigned long long>(s.objects()), r.objects.size());
  r.skipped = s.skipped_bytes();
  r.buffered = s.buffered_bytes();
  return r;
}

void same(const Run& a, const Run& b, const char* what) {
  FUZZ_CHECK(a.objects.size() == b.objects.size(), "%s: %zu objects vs %zu", what, a.objects.size(),
             b.objects.size());
  for (std::size_t i = 0; i < a.objects.size(); ++i)
    FUZZ_CHECK(a.objects[i] == b.objects[i], "%s: object %zu differs: \"%s\" vs \"%s\"", what, i,
               printable(a.objects[i]).c_str(), printable(b.objects[i]).c_str());
  FUZZ_CHECK(a.skipped == b.skipped, "%s: skipped %llu vs %llu", what, static_cast<unsigned long long>(a.skipped),
             static_cast<unsigned long long>(b.skipped));
  FUZZ_CHECK(a.buffered == b.buffered, "%s: buffered %zu vs %zu", what, a.buffered, b.buffered);
}

void raw_mode(std::string_view stream, Rng& rng) {
  const Run whole = split(stream, rng, 0);
  std::size_t from = 0;
  for (const auto& o : whole.objects) {
    FUZZ_CHECK(!o.empty() && o.front() == '{', "object does not start with '{': \"%s\"", printable(o).c_str());
    FUZZ_CHECK(o.back() == '}' || o.back() == ']', "object does not end with a closer: \"%s\"", printable(o).c_str());
    const auto at = stream.find(o, from);
    FUZZ_CHECK(at != std::string_view::npos, "object is not a piece of the input, in order");
    from = at + o.size();
  }
  same(whole, split(stream, rng, 1), "one byte per feed");
  same(whole, split(stream, rng, 7), "chunks of 1..7");
  same(whole, split(stream, rng, 64), "chunks of 1..64");

  // A small limit: throws only for an object that outgrew it; never buffers beyond it.
  const std::size_t limit = 16 + rng.below(48);
  JsonObjectSplitter small(limit);
  std::size_t i = 0;
  while (i < stream.size()) {
    const std::string_view chunk = stream.substr(i, 1 + rng.below(16));
    i += chunk.size();
    try {
      small.feed(chunk, [&](std::string_view) {});
    } catch (const backstop::ParseError&) {
      FUZZ_CHECK(small.buffered_bytes() == 0, "a refused object left %zu bytes buffered", small.buffered_bytes());
      continue;
    }
    FUZZ_CHECK(small.buffered_bytes() <= limit, "buffered %zu bytes over a limit of %zu", small.buffered_bytes(), limit);
  }
}

void valid_mode(std::string_view input, Rng& rng) {
  static const char* const kSeparators[] = {"", "\n", "\r\n", " ", "\t\n  "};
  std::vector<std::string> expected;
  std::string stream;
  std::size_t start = 0;
  while (start <= input.size()) {
    std::size_t end = input.find('\xff', start);
    if (end == std::string_view::npos) end = input.size();
    std::string_view piece = input.substr(start, end - start);
    start = end + 1;
    while (!piece.empty() && (piece.front() == ' ' || piece.front() == '\n' || piece.front() == '\r' || piece.front() == '\t'))
      piece.remove_prefix(1);
    while (!piece.empty() && (piece.back() == ' ' || piece.back() == '\n' || piece.back() == '\r' || piece.back() == '\t'))
      piece.remove_suffix(1);
    // nlohmann stops at a NUL byte as if the input ended there: such a piece is not one object.
    if (piece.empty() || piece.front() != '{' || piece.find('\0') != std::string_view::npos ||
        !nlohmann::json::accept(piece))
      continue;
    expected.emplace_back(piece);
    stream += kSeparators[rng.below(5)];
    stream += piece;
  }
  stream += kSeparators[rng.below(5)];
  for (std::size_t max_chunk : {std::size_t{0}, std::size_t{1}, std::size_t{3}, std::size_t{32}}) {
    const Run r = split(stream, rng, max_chunk);
    FUZZ_CHECK(r.objects.size() == expected.size(), "valid stream of %zu objects gave %zu (chunks up to %zu)",
               expected.size(), r.objects.size(), max_chunk);
    for (std::size_t i = 0; i < expected.size(); ++i) {
      FUZZ_CHECK(r.objects[i] == expected[i], "object %zu: \"%s\", expected \"%s\"", i,
                 printable(r.objects[i]).c_str(), printable(expected[i]).c_str());
      FUZZ_CHECK(nlohmann::json::accept(r.objects[i]), "yielded a non-JSON object");
    }
    FUZZ_CHECK(r.skipped == 0, "skipped %llu bytes of a valid stream", static_cast<unsigned long long>(r.skipped));
    FUZZ_CHECK(r.buffered == 0, "%zu bytes left buffered after a complete stream", r.buffered);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  Rng rng(data, size);
  const std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1) valid_mode(stream, rng);
  else raw_mode(stream, rng);
  return 0;
}
