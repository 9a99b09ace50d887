// Safetensors reader (mmap, full header validation) and atomic writer. Format:
// https://github.com/huggingface/safetensors (u64 LE header size, JSON header, raw LE data).
// Depends only on fmt, nlohmann_json, the std library and header-only core/ headers: the
// ASan + UBSan fuzz target (tests/sanitize) compiles this file alone.
#include "core/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <numeric>
#include <string_view>
#include <utility>

#include "core/io/atomic_file.h"
#include "core/io/half.h"
#include "core/tensor/error.h"

namespace kimi::io {
namespace {

using nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference implementation's limit
constexpr size_t kMaxRank = 32;
// A valid header nests 3 levels ({ "t": { "shape": [ ); deeper input such as 10,000 '['s would
// blow the stack in the recursive code that walks or dumps the parsed value.
constexpr int kMaxDepth = 8;

[[noreturn]] void fail(const std::string& path, const std::string& msg) {
  throw kimi::UserError(fmt::format("{}: {}", path, msg));
}

// Control bytes from a damaged file must not break the one-line error message.
// With ascii_only (text quoting raw header bytes) non-ASCII bytes become '?' as well.
std::string printable(std::string_view s, size_t max_len = 120, bool ascii_only = false) {
  std::string out;
  for (char c : s.substr(0, max_len)) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f || (ascii_only && u >= 0x80)) ? '?' : c;
  }
  if (s.size() > max_len) out += "...";
  return out;
}

std::string type_of(const json& j) { return j.type_name(); }

// True if [p, p + n) opens more than kMaxDepth arrays/objects at once, counting brackets outside
// strings only. Runs before the parser so nothing ever builds or walks a deeper value.
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

std::string format_shape(const std::vector<int64_t>& shape) {
  std::string out = "[";  // (not fmt::join: GCC 12 warns falsely inside fmt 9's int parsing)
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

// Every tensor entry, before the cross-entry checks.
struct Entry {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;
};

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

// Ranges are checked against the data area and against each other (empty tensors never overlap).
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

template <typename Src, typename Dst>
void convert_n(const std::byte* src, size_t n, Dst* dst) {
  if constexpr (std::is_same_v<Src, Dst>) {
    if (n) std::memcpy(dst, src, n * sizeof(Src));
  } else {
    for (size_t i = 0; i < n; ++i) {
      Src v;
      std::memcpy(&v, src + i * sizeof(Src), sizeof(Src));
      dst[i] = static_cast<Dst>(v);
    }
  }
}

template <typename Dst>
std::vector<Dst> convert(const TensorInfo& t) {
  const size_t n = t.nbytes / dtype_size(t.dtype);
  std::vector<Dst> out(n);
  switch (t.dtype) {
    case DType::kF32: convert_n<float>(t.data, n, out.data()); break;
    case DType::kF64: convert_n<double>(t.data, n, out.data()); break;
    case DType::kI32: convert_n<int32_t>(t.data, n, out.data()); break;
    case DType::kI64: convert_n<int64_t>(t.data, n, out.data()); break;
    case DType::kBF16:
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, t.data + 2 * i, 2);
        out[i] =
            static_cast<Dst>(t.dtype == DType::kBF16 ? bf16_to_float(h) : half_bits_to_float(h));
      }
      break;
  }
  return out;
}

}  // namespace

// ---- reader ----

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept { *this = std::move(other); }

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    map_ = std::exchange(other.map_, nullptr);
    map_size_ = std::exchange(other.map_size_, 0);
    metadata_ = std::move(other.metadata_);
    tensors_ = std::move(other.tensors_);
    order_ = std::move(other.order_);
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() { release(); }

void SafetensorsFile::release() noexcept {
  if (map_) munmap(map_, map_size_);
  map_ = nullptr;
  map_size_ = 0;
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, fmt::format("cannot open file: {}", std::strerror(errno)));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, "not a regular file");
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    fail(path, "file is empty (0 bytes); a safetensors file starts with an 8-byte header size");
  }
  void* m = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  if (m == MAP_FAILED)
    fail(path, fmt::format("cannot memory-map file: {}", std::strerror(map_errno)));
  f.map_ = m;
  f.map_size_ = size;
  const auto* base = static_cast<const std::byte*>(m);
  if (size < 8)
    fail(path, fmt::format("file is {} bytes, too short for the 8-byte header size", size));
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint64_t>(base[i]);
  if (n > kMaxHeaderBytes)
    fail(path, fmt::format("header size {} is absurd (limit {} bytes)", n, kMaxHeaderBytes));
  if (n > size - 8)
    fail(path, fmt::format("header size {} goes beyond the end of the file ({} bytes)", n, size));
  const auto* hdr = reinterpret_cast<const char*>(base + 8);
  if (too_deep(hdr, n))
    fail(path, fmt::format("header JSON nested deeper than {} levels", kMaxDepth));
  json header;
  try {
    header = json::parse(hdr, hdr + n);
  } catch (const json::exception& e) {
    std::string what = e.what();
    if (auto p = what.find("] "); p != std::string::npos) what = what.substr(p + 2);
    fail(path, "header is not valid JSON: " + printable(what, 200, true));
  }
  if (!header.is_object()) fail(path, "header is not a JSON object (got " + type_of(header) + ")");
  const uint64_t data_size = size - 8 - n;
  const std::byte* data = base + 8 + n;
  std::vector<Entry> entries;
  try {
    for (const auto& [name, value] : header.items()) {
      if (name == "__metadata__")
        f.metadata_ = parse_metadata(value);
      else
        entries.push_back(parse_entry(name, value));
    }
    check_ranges(entries, data_size);
  } catch (const std::invalid_argument& e) {
    fail(path, e.what());
  }
  for (Entry& e : entries) {
    f.order_.push_back(e.name);
    TensorInfo info{e.name, e.dtype, std::move(e.shape), data + e.begin,
                    static_cast<size_t>(e.end - e.begin)};
    f.tensors_.emplace(e.name, std::move(info));
  }
  return f;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail(path_, fmt::format("no tensor '{}'", name));
  return it->second;
}

std::vector<double> SafetensorsFile::read_f64(const std::string& name) const {
  return convert<double>(info(name));
}
std::vector<float> SafetensorsFile::read_f32(const std::string& name) const {
  return convert<float>(info(name));
}

std::vector<int64_t> SafetensorsFile::read_i64(const std::string& name) const {
  const TensorInfo& t = info(name);
  if (t.dtype != DType::kI32 && t.dtype != DType::kI64)
    fail(path_, fmt::format("tensor '{}' is {}, not an integer dtype (I32, I64)", name,
                            dtype_name(t.dtype)));
  return convert<int64_t>(t);
}

// ---- writer ----

namespace {

// Writes all of [p, p + n) to fd; false on error (errno set).
bool write_all(int fd, const void* p, size_t n) {
  const auto* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = ::write(fd, c, std::min<size_t>(n, size_t{1} << 30));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    c += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

struct Layout {
  std::string header;                             // JSON padded with spaces to a multiple of 8
  std::vector<std::pair<size_t, size_t>> pieces;  // (tensor index, nbytes) in data order
};

Layout plan_layout(const std::string& path, const std::vector<TensorToWrite>& tensors,
                   const std::map<std::string, std::string>& metadata) {
  std::vector<size_t> idx(tensors.size());
  std::iota(idx.begin(), idx.end(), size_t{0});
  // Decreasing element size keeps every tensor aligned to its element size without padding.
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
    return dtype_size(tensors[a].dtype) > dtype_size(tensors[b].dtype);
  });
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  Layout out;
  uint64_t offset = 0;
  for (size_t i : idx) {
    const TensorToWrite& t = tensors[i];
    if (t.name.empty() || t.name == "__metadata__")
      fail(path, fmt::format("invalid tensor name '{}'", t.name));
    if (h.contains(t.name)) fail(path, fmt::format("duplicate tensor name '{}'", t.name));
    uint64_t n = dtype_size(t.dtype);
    for (int64_t d : t.shape) {
      if (d < 0)
        fail(path, fmt::format("tensor '{}': negative dimension in shape {}", t.name,
                               format_shape(t.shape)));
      if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n))
        fail(path,
             fmt::format("tensor '{}': shape {} is too large", t.name, format_shape(t.shape)));
    }
    if (n > 0 && t.data == nullptr) fail(path, fmt::format("tensor '{}': data is null", t.name));
    h[t.name] = {{"dtype", std::string(dtype_name(t.dtype))},
                 {"shape", t.shape},
                 {"data_offsets", {offset, offset + n}}};
    out.pieces.emplace_back(i, static_cast<size_t>(n));
    offset += n;
  }
  try {
    out.header = h.dump();
  } catch (const nlohmann::json::exception&) {
    fail(path, "tensor names and metadata must be valid UTF-8");
  }
  out.header.append((8 - out.header.size() % 8) % 8, ' ');
  return out;
}

}  // namespace

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const Layout layout = plan_layout(path, tensors, metadata);
  const size_t slash = path.rfind('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  std::string tmp = (dir == "/" ? "" : dir) + "/." + base + ".tmp.XXXXXX";
  const int fd = mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0)
    fail(path,
         fmt::format("cannot create a temporary file in '{}': {}", dir, std::strerror(errno)));
  auto abort_write = [&](const char* what) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    fail(path, fmt::format("{}: {}", what, std::strerror(err)));
  };
  unsigned char size_le[8];
  for (int i = 0; i < 8; ++i)
    size_le[i] = static_cast<unsigned char>(uint64_t{layout.header.size()} >> (8 * i));
  if (!write_all(fd, size_le, 8) || !write_all(fd, layout.header.data(), layout.header.size()))
    abort_write("cannot write");
  kill_point_in_write(path);  // a test hook (core/io/atomic_file.h); nothing when not asked for
  for (const auto& [i, n] : layout.pieces)
    if (!write_all(fd, tensors[i].data, n)) abort_write("cannot write");
  if (::fchmod(fd, 0644) != 0) abort_write("cannot set permissions");
  if (::fsync(fd) != 0) abort_write("cannot fsync");
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail(path, fmt::format("cannot close: {}", std::strerror(err)));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail(path, fmt::format("cannot rename the temporary file over it: {}", std::strerror(err)));
  }
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);  // best effort: makes the rename durable
    ::close(dfd);
  }
}

}  // namespace kimi::io
