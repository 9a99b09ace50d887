// Validation of a safetensors header (the JSON after the 8-byte size): each tensor entry, the
// metadata, and the data ranges against the data area and each other. Messages quote the damaged
// input cut short and with control bytes masked, so that every problem stays one line.
#include <algorithm>
#include <stdexcept>
#include <tuple>

#include "core/io/safetensors_internal.h"

namespace kimi::io::safetensors_detail {
namespace {

constexpr size_t kMaxRank = 32;

// A JSON string literal of s cut to max_len bytes; replace: a cut multi-byte character must not
// make dump() throw.
std::string quote(const std::string& s, size_t max_len) {
  return json(s.substr(0, max_len)).dump(-1, ' ', false, json::error_handler_t::replace);
}

// dump() for error messages: stops once max_len characters are written (a value can be as large
// as the 100 MB header), then printable() adds "..." and masks control bytes.
void dump_into(const json& j, size_t max_len, std::string& out) {
  if (j.is_string()) {
    out += quote(j.get_ref<const std::string&>(), max_len);
  } else if (j.is_array() || j.is_object()) {
    out += j.is_array() ? '[' : '{';
    for (auto it = j.begin(); it != j.end() && out.size() <= max_len; ++it) {
      if (it != j.begin()) out += ',';
      if (j.is_object()) out += quote(it.key(), max_len) + ':';
      dump_into(*it, max_len, out);
    }
    out += j.is_array() ? ']' : '}';
  } else {
    out += j.dump();
  }
}

std::string brief(const json& j, size_t max_len) {
  std::string out;
  dump_into(j, max_len, out);
  return printable(out, max_len);
}

std::vector<int64_t> parse_shape(const std::string& where, const json& j, uint64_t* count) {
  if (!j.is_array())
    throw std::invalid_argument(where + "'shape' is not an array (got " + type_of(j) + ")");
  if (j.size() > kMaxRank)
    throw std::invalid_argument(
        fmt::format("{}rank {} is absurd (limit {})", where, j.size(), kMaxRank));
  std::vector<int64_t> shape;
  uint64_t n = 1;  // product of the non-zero dims, checked for overflow even when a dim is 0
  bool zero = false;
  for (size_t i = 0; i < j.size(); ++i) {
    const json& d = j[i];
    if (d.is_number_integer() && !d.is_number_unsigned() && d.get<int64_t>() < 0)
      throw std::invalid_argument(
          fmt::format("{}dimension {} is negative ({})", where, i, d.get<int64_t>()));
    if (!d.is_number_unsigned())
      throw std::invalid_argument(
          fmt::format("{}dimension {} is not a non-negative integer (got {} {})", where, i,
                      type_of(d), brief(d, 40)));
    const uint64_t v = d.get<uint64_t>();
    if (v > static_cast<uint64_t>(INT64_MAX) || (v != 0 && __builtin_mul_overflow(n, v, &n)) ||
        n > static_cast<uint64_t>(INT64_MAX))
      throw std::invalid_argument(
          fmt::format("{}shape {} overflows the element count", where, brief(j, 80)));
    zero |= v == 0;
    shape.push_back(static_cast<int64_t>(v));
  }
  *count = zero ? 0 : n;
  return shape;
}

}  // namespace

std::string printable(std::string_view s, size_t max_len, bool ascii_only) {
  std::string out;
  for (char c : s.substr(0, max_len)) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f || (ascii_only && u >= 0x80)) ? '?' : c;
  }
  if (s.size() > max_len) out += "...";
  return out;
}

bool too_deep(const char* p, uint64_t n) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (uint64_t i = 0; i < n; ++i) {
    const char c = p[i];
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxDepth) return true;
    } else if (c == ']' || c == '}') {
      --depth;  // may go negative on broken JSON; the parser reports that
    }
  }
  return false;
}

std::string format_shape(const std::vector<int64_t>& shape) {
  std::string out = "[";  // (not fmt::join: GCC 12 warns falsely inside fmt 9's int parsing)
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

Entry parse_entry(const std::string& name, const json& j) {
  const std::string where = fmt::format("tensor '{}': ", printable(name));
  if (!j.is_object())
    throw std::invalid_argument(where + "entry is not a JSON object (got " + type_of(j) + ")");
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!j.contains(key)) throw std::invalid_argument(where + "missing '" + key + "'");
  const json& jd = j["dtype"];
  if (!jd.is_string())
    throw std::invalid_argument(where + "'dtype' is not a string (got " + type_of(jd) + ")");
  Entry e{name, DType::kF32, {}, 0, 0};
  const std::string& dname = jd.get_ref<const std::string&>();
  if (!dtype_from_name(dname, &e.dtype))
    throw std::invalid_argument(where + "unsupported dtype '" + printable(dname, 20) +
                                "' (supported: F32, F64, BF16, F16, I32, I64)");
  uint64_t count = 0;
  e.shape = parse_shape(where, j["shape"], &count);
  const json& jo = j["data_offsets"];
  if (!jo.is_array() || jo.size() != 2 || !jo[0].is_number_unsigned() ||
      !jo[1].is_number_unsigned())
    throw std::invalid_argument(
        where + "'data_offsets' is not an array of two non-negative integers (got " +
        brief(jo, 60) + ")");
  e.begin = jo[0].get<uint64_t>();
  e.end = jo[1].get<uint64_t>();
  if (e.begin > e.end)
    throw std::invalid_argument(
        fmt::format("{}data_offsets begin {} > end {}", where, e.begin, e.end));
  uint64_t nbytes = 0;
  if (__builtin_mul_overflow(count, dtype_size(e.dtype), &nbytes))
    throw std::invalid_argument(fmt::format("{}shape {} x {} overflows the byte count", where,
                                            format_shape(e.shape), dtype_name(e.dtype)));
  if (nbytes != e.end - e.begin)
    throw std::invalid_argument(fmt::format(
        "{}shape {} x {} ({} bytes each) does not match data_offsets [{}, {}) ({} bytes)", where,
        format_shape(e.shape), dtype_name(e.dtype), dtype_size(e.dtype), e.begin, e.end,
        e.end - e.begin));
  return e;
}

std::map<std::string, std::string> parse_metadata(const json& j) {
  if (!j.is_object())
    throw std::invalid_argument("'__metadata__' is not a JSON object (got " + type_of(j) + ")");
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : j.items()) {
    if (!v.is_string())
      throw std::invalid_argument("metadata value '" + printable(k) + "' is not a string (got " +
                                  type_of(v) + ")");
    out[k] = v.get<std::string>();
  }
  return out;
}

void check_ranges(std::vector<Entry>& entries, uint64_t data_size) {
  for (const Entry& e : entries)
    if (e.end > data_size)
      throw std::invalid_argument(
          fmt::format("tensor '{}': data_offsets end {} is beyond the data area ({} bytes)",
                      printable(e.name), e.end, data_size));
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  const Entry* prev = nullptr;
  for (const Entry& e : entries) {
    if (e.begin == e.end) continue;
    if (prev && e.begin < prev->end)
      throw std::invalid_argument(fmt::format("tensors '{}' [{}, {}) and '{}' [{}, {}) overlap",
                                              printable(prev->name), prev->begin, prev->end,
                                              printable(e.name), e.begin, e.end));
    if (!prev || e.end > prev->end) prev = &e;
  }
}

}  // namespace kimi::io::safetensors_detail
