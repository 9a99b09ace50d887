// Errors with place and reason: KIMI_CHECK(cond, "fmt {}", args...) throws kimi::Error
// carrying file:line. User-facing errors (config, files) use kimi::UserError: one line, no place.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace kimi {

// An internal invariant or API misuse (shape mismatch, missing backward, ...).
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A problem in what the user gave us (a config key, a file). Printed as one line.
class UserError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] inline void throw_error(const char* file, int line, const std::string& msg) {
  throw Error(fmt::format("{} ({}:{})", msg, file, line));
}

}  // namespace kimi

#define KIMI_CHECK(cond, ...)                                                         \
  do {                                                                                \
    if (!(cond)) ::kimi::throw_error(__FILE__, __LINE__, ::fmt::format(__VA_ARGS__)); \
  } while (0)

#define KIMI_FAIL(...) ::kimi::throw_error(__FILE__, __LINE__, ::fmt::format(__VA_ARGS__))
