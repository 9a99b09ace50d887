// Tensor: a strided view over shared storage, plus the autograd fields (grad, grad_fn).
// Layout conventions (stated once): activations [B, T, H, D] row-major, recurrent state
// [B, H, K, V], linear weights [out, in] as in PyTorch so checkpoints load unchanged.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor/dtype.h"
#include "core/tensor/error.h"

namespace kimi {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);
Shape contiguous_strides(const Shape& s);

// Owns device memory. CPU memory is 64-byte aligned; CUDA memory comes from the caching
// allocator (core/cuda) when that backend is built.
struct Storage {
  void* data = nullptr;
  size_t nbytes = 0;
  Device device = Device::kCPU;
  Storage(size_t nbytes, Device device);
  // Wraps memory owned elsewhere (e.g. a memory-mapped file); `keep` holds it alive.
  Storage(void* data, size_t nbytes, std::shared_ptr<void> keep);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

 private:
  std::shared_ptr<void> keep_;
  bool owned_ = true;
};

class Node;
struct TensorImpl;

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // --- factories -------------------------------------------------------------------
  static Tensor empty(const Shape& shape, DType dtype = DType::kF32, Device device = Device::kCPU);
  static Tensor zeros(const Shape& shape, DType dtype = DType::kF32, Device device = Device::kCPU);
  static Tensor ones(const Shape& shape, DType dtype = DType::kF32, Device device = Device::kCPU);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::kF32,
                     Device device = Device::kCPU);
  static Tensor from_vector(const std::vector<float>& v, const Shape& shape);
  static Tensor from_vector(const std::vector<double>& v, const Shape& shape);
  static Tensor from_vector(const std::vector<int32_t>& v, const Shape& shape);
  static Tensor from_vector(const std::vector<int64_t>& v, const Shape& shape);
  static Tensor scalar(double value, DType dtype = DType::kF32, Device device = Device::kCPU);
  // A tensor over existing memory (no copy); `keep` owns that memory.
  static Tensor from_blob(void* data, const Shape& shape, DType dtype, std::shared_ptr<void> keep);

  // --- metadata --------------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  const Shape& strides() const;
  int64_t dim() const { return static_cast<int64_t>(shape().size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const;
  DType dtype() const;
  Device device() const;
  bool is_contiguous() const;
  int64_t offset() const;
  std::string str() const;  // "Tensor[F32 cpu 2x3]"

  // Pointer to the first element (offset applied). Checks the dtype matches T.
  template <class T>
  T* data() const;
  void* raw_data() const;
  const std::shared_ptr<Storage>& storage() const;

  // --- element access and copies (CPU) ----------------------------------------------
  double item() const;  // a one-element tensor's value as double
  template <class T>
  std::vector<T> to_vector() const;  // contiguous copy, converted to T
  Tensor clone() const;              // contiguous copy, no graph
  Tensor to(DType dtype) const;      // differentiable between float types
  Tensor to(Device device) const;
  void copy_(const Tensor& src);  // in place, same shape, no graph (for optimizers, loading)
  void fill_(double value);
  void zero_() { fill_(0.0); }

  // --- views (differentiable; share storage) --------------------------------------------
  Tensor reshape(const Shape& shape) const;  // copies only if not viewable
  Tensor view(const Shape& shape) const;     // must be contiguous
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor transpose(int64_t a, int64_t b) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor select(int64_t dim, int64_t index) const;  // narrow + drop the dim
  Tensor expand(const Shape& shape) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  Tensor flatten(int64_t start = 0, int64_t end = -1) const;
  Tensor contiguous() const;

  // --- autograd ---------------------------------------------------------------------
  bool requires_grad() const;
  Tensor& set_requires_grad(bool v);
  Tensor grad() const;  // undefined until a backward reached this leaf
  void set_grad(const Tensor& g);
  void zero_grad();
  const std::shared_ptr<Node>& grad_fn() const;
  int output_nr() const;
  void set_grad_fn(std::shared_ptr<Node> fn, int output_nr);
  Tensor detach() const;  // same storage, no graph
  // Backward from this tensor: a scalar needs no gradient; otherwise pass one of its shape.
  void backward(const Tensor& grad = Tensor()) const;

  const std::shared_ptr<TensorImpl>& impl() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape, strides;
  DType dtype = DType::kF32;
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<Node> grad_fn;
  int output_nr = 0;
};

template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::kF32;
}
template <>
constexpr DType dtype_of<double>() {
  return DType::kF64;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::kI32;
}
template <>
constexpr DType dtype_of<int64_t>() {
  return DType::kI64;
}
template <>
constexpr DType dtype_of<uint16_t>() {
  return DType::kBF16;
}

template <class T>
T* Tensor::data() const {
  KIMI_CHECK(defined(), "data() of an undefined tensor");
  KIMI_CHECK(dtype() == dtype_of<T>(), "data<{}>() of a {} tensor", dtype_name(dtype_of<T>()),
             dtype_name(dtype()));
  return static_cast<T*>(impl_->storage->data) + impl_->offset;
}

template <class T>
struct TypeTag {
  using type = T;
};
// Calls f(TypeTag<float>{}) or f(TypeTag<double>{}) for a float dtype. A function, not a macro,
// so OpenMP pragmas work inside the lambda. Inside: `using scalar_t = KIMI_SCALAR_T(tag);`.
template <class F>
decltype(auto) dispatch_float(DType t, const char* name, F&& f) {
  switch (t) {
    case DType::kF32: return f(TypeTag<float>{});
    case DType::kF64: return f(TypeTag<double>{});
    default: KIMI_FAIL("{}: unsupported dtype {} (want F32 or F64)", name, dtype_name(t));
  }
}
#define KIMI_SCALAR_T(tag) typename decltype(tag)::type

void check_same_device(const Tensor& a, const Tensor& b, const char* op);
void check_cpu(const Tensor& a, const char* op);

}  // namespace kimi
