// Reading and writing safetensors files (Hugging Face's format): an 8-byte little-endian u64
// header size N, N bytes of JSON ({"__metadata__": {str: str}, name: {"dtype", "shape",
// "data_offsets": [begin, end]}}), then the raw little-endian tensor bytes, offsets relative to
// the first byte after the header. Spec: https://github.com/huggingface/safetensors
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor/dtype.h"

namespace kimi::io {

// One tensor of an open file. `data` points into the read-only mapping (valid while the
// SafetensorsFile lives) and may be unaligned; `nbytes` = product(shape) * dtype_size(dtype).
struct TensorInfo {
  std::string name;
  kimi::DType dtype;
  std::vector<int64_t> shape;
  const std::byte* data;
  size_t nbytes;
};

// A safetensors file memory-mapped read-only. The whole header is validated in open(); every
// problem (truncation, bad JSON, bad offsets, overlaps, ...) is a one-line kimi::UserError
// "PATH: problem". Movable, not copyable; unmaps in the destructor.
class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path);

  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  // The "__metadata__" object (empty if absent). On a temporary (`open(p).metadata()`) it
  // returns a copy, so `const auto& m = SafetensorsFile::open(p).metadata();` cannot dangle.
  const std::map<std::string, std::string>& metadata() const& { return metadata_; }
  std::map<std::string, std::string> metadata() && { return std::move(metadata_); }
  // Tensor names in file order: by data offset, ties (empty tensors) broken by name.
  std::vector<std::string> names() const { return order_; }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  // Throws kimi::UserError "PATH: no tensor 'NAME'".
  const TensorInfo& info(const std::string& name) const;
  // Copies converted to the requested type. read_f64 / read_f32 accept every dtype;
  // read_i64 accepts the integer dtypes only (kimi::UserError otherwise).
  std::vector<double> read_f64(const std::string& name) const;
  std::vector<float> read_f32(const std::string& name) const;
  std::vector<int64_t> read_i64(const std::string& name) const;
  const std::string& path() const& { return path_; }
  std::string path() && { return std::move(path_); }

 private:
  SafetensorsFile() = default;
  void release() noexcept;

  std::string path_;
  void* map_ = nullptr;  // the mmap()ed file, or nullptr
  size_t map_size_ = 0;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, TensorInfo> tensors_;
  std::vector<std::string> order_;
};

// A tensor to write: name, dtype, shape and a pointer to its contiguous bytes (not owned).
struct TensorToWrite {
  std::string name;
  kimi::DType dtype;
  std::vector<int64_t> shape;
  const void* data;
};

// Writes atomically: a temp file in the same folder, fsync, then rename over `path`.
// The header is padded with spaces to a multiple of 8; tensors are laid out back to back (as
// the reference implementation requires) in order of decreasing element size, so every tensor
// starts at a multiple of its element size. Throws kimi::UserError on I/O errors or bad input
// (duplicate / empty / "__metadata__" names, negative dims).
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace kimi::io
