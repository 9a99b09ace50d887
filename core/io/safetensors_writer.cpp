// Safetensors writer: the header is planned first (every name and shape checked before a byte is
// written), then header and data go to a temp file that is fsynced and renamed over the target.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <utility>

#include "core/io/atomic_file.h"
#include "core/io/safetensors.h"
#include "core/io/safetensors_internal.h"

namespace kimi::io {

using safetensors_detail::fail;
using safetensors_detail::format_shape;

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
