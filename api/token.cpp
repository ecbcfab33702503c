// The API's bearer token: created once, kept in a 0600 file, compared in constant time.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "api/api_server.hpp"
#include "core/error.hpp"

namespace backstop {

namespace {

std::string random_hex(std::size_t bytes) {
  std::string raw(bytes, '\0');
  // /dev/urandom first; std::random_device (also the kernel's generator on Linux) if it is absent.
  std::ifstream urandom("/dev/urandom", std::ios::binary);
  if (!urandom.read(raw.data(), static_cast<std::streamsize>(bytes))) {
    std::random_device rd;
    for (auto& c : raw) c = static_cast<char>(rd() & 0xff);
  }
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(bytes * 2);
  for (unsigned char c : raw) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 0xf]);
  }
  return out;
}

std::string octal(mode_t m) {
  std::ostringstream s;
  s << '0' << std::oct << (m & 0777);
  return s.str();
}

std::string trimmed(std::string s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

}  // namespace

bool constant_time_equal(std::string_view a, std::string_view b) {
  // Walk the whole of the expected length whatever the input: only the final answer depends
  // on the contents.
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const std::size_t n = std::max(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

std::string load_or_create_token(const std::string& path) {
  if (path.empty()) throw ConfigError("api.token_file: empty path");
  // O_EXCL: two processes starting at once cannot both write a token; O_NOFOLLOW: a symlink
  // planted at the path is not followed. The mode is 0600 from creation, never widened later.
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd >= 0) {
    const std::string token = random_hex(32);
    const std::string line = token + "\n";
    const bool ok = ::fchmod(fd, 0600) == 0 && ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) &&
                    ::fsync(fd) == 0;
    const int err = errno;
    ::close(fd);
    if (!ok) {
      ::unlink(path.c_str());
      throw Error("api.token_file " + path + ": cannot write the token: " + std::strerror(err));
    }
    return token;
  }
  if (errno != EEXIST) throw Error("api.token_file " + path + ": cannot create: " + std::strerror(errno));

  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0)
    throw Error("api.token_file " + path + ": cannot check: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw Error("api.token_file " + path + " is not a regular file");
  if ((st.st_mode & 077) != 0)
    throw Error("api.token_file " + path + " has mode " + octal(st.st_mode) +
                ": anyone else on this machine could read the API token; it must be 0600 (chmod 600 " + path +
                ") or delete it to have a new one generated");
  if (st.st_uid != ::geteuid())
    throw Error("api.token_file " + path + " belongs to another user (uid " + std::to_string(st.st_uid) + ")");
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) throw Error("api.token_file " + path + ": cannot read");
  const std::string token = trimmed(text.str());
  // A short token is guessable; an odd character would not survive an HTTP header.
  if (token.size() < 32) throw Error("api.token_file " + path + ": the token is shorter than 32 characters");
  for (unsigned char c : token)
    if (c <= 0x20 || c >= 0x7f) throw Error("api.token_file " + path + ": the token has a non-printable character");
  return token;
}

}  // namespace backstop
