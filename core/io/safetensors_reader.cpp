// Safetensors reader: the file is memory-mapped and its whole header validated in open()
// (safetensors_header.cpp); tensors are copied out converted to the type asked for. Format:
// https://github.com/huggingface/safetensors (u64 LE header size, JSON header, raw LE data).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "core/io/half.h"
#include "core/io/safetensors.h"
#include "core/io/safetensors_internal.h"

namespace kimi::io {

using safetensors_detail::check_ranges;
using safetensors_detail::Entry;
using safetensors_detail::fail;
using safetensors_detail::json;
using safetensors_detail::kMaxDepth;
using safetensors_detail::kMaxHeaderBytes;
using safetensors_detail::parse_entry;
using safetensors_detail::parse_metadata;
using safetensors_detail::printable;
using safetensors_detail::too_deep;
using safetensors_detail::type_of;

namespace {

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

}  // namespace kimi::io
