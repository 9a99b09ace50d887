// Checks of numeric flags that CLI11 2.1 lets through: its int64 conversion saturates, so
// 99999999999999999999 would be read silently as 2^63-1.
#pragma once

#include <CLI/CLI.hpp>
#include <charconv>
#include <cstdint>
#include <string>

namespace kimi::cli {

// A whole number that fits int64 (other malformed text is left to CLI11's own conversion).
inline const CLI::Validator kFitsInt64(
    [](std::string& text) -> std::string {
      int64_t v = 0;
      const char* end = text.data() + text.size();
      const auto [ptr, ec] = std::from_chars(text.data(), end, v);
      if (ec == std::errc::result_out_of_range)
        return "value " + text + " does not fit a 64-bit integer";
      return "";
    },
    "INT64");

}  // namespace kimi::cli
