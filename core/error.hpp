#pragma once
// One exception hierarchy for Backstop. Each error carries what the user needs to act on it:
// the input that was wrong, the config path, the broker's message, the HTTP status.
#include <stdexcept>
#include <string>

namespace backstop {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Malformed text from a broker, a file or a user (a price, a timestamp, a JSON frame).
class ParseError : public Error {
 public:
  using Error::Error;
};

// A configuration value that is missing or invalid; the message names the path.
class ConfigError : public Error {
 public:
  using Error::Error;
};

// The durable journal cannot be opened or written; Backstop must not trade without it.
class JournalError : public Error {
 public:
  using Error::Error;
};

}  // namespace backstop
