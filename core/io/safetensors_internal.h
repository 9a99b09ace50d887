// Internal to core/io/safetensors*.cpp: the limits and the one-line error messages that the
// header validation (safetensors_header.cpp), the reader and the writer share. Like those files
// it needs only fmt, nlohmann_json, the std library and header-only core/ headers: the ASan +
// UBSan and libFuzzer targets (tests/sanitize, tests/fuzz) compile the safetensors*.cpp alone.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor/dtype.h"
#include "core/tensor/error.h"

namespace kimi::io::safetensors_detail {

using nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference implementation's limit
// A valid header nests 3 levels ({ "t": { "shape": [ ); deeper input such as 10,000 '['s would
// blow the stack in the recursive code that walks or dumps the parsed value.
constexpr int kMaxDepth = 8;

[[noreturn]] inline void fail(const std::string& path, const std::string& msg) {
  throw kimi::UserError(fmt::format("{}: {}", path, msg));
}

// Control bytes from a damaged file must not break the one-line error message.
// With ascii_only (text quoting raw header bytes) non-ASCII bytes become '?' as well.
std::string printable(std::string_view s, size_t max_len = 120, bool ascii_only = false);

inline std::string type_of(const json& j) { return j.type_name(); }

std::string format_shape(const std::vector<int64_t>& shape);

// True if [p, p + n) opens more than kMaxDepth arrays/objects at once, counting brackets outside
// strings only. Runs before the parser so nothing ever builds or walks a deeper value.
bool too_deep(const char* p, uint64_t n);

// Every tensor entry, before the cross-entry checks.
struct Entry {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;
};

// The checks below throw std::invalid_argument with the problem; the reader prefixes the path.
Entry parse_entry(const std::string& name, const json& j);
std::map<std::string, std::string> parse_metadata(const json& j);
// Ranges are checked against the data area and against each other (empty tensors never overlap).
void check_ranges(std::vector<Entry>& entries, uint64_t data_size);

}  // namespace kimi::io::safetensors_detail
