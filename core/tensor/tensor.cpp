// Tensor storage, factories, metadata and element access. Views live in tensor_views.cpp.
#include "core/tensor/tensor.h"

#include <fmt/format.h>

#include <cstdlib>
#include <cstring>

#include "core/kernels/strided.h"
#include "core/tensor/device_memory.h"

namespace kimi {

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (int64_t i = static_cast<int64_t>(s.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

Storage::Storage(size_t n, Device dev) : nbytes(n), device(dev) {
  if (dev == Device::kCPU) {
    size_t rounded = (n + 63) / 64 * 64;
    data = rounded ? std::aligned_alloc(64, rounded) : nullptr;
    KIMI_CHECK(n == 0 || data, "out of host memory allocating {} bytes", n);
  } else {
    data = device_alloc(dev, n);
  }
}

Storage::Storage(void* d, size_t n, std::shared_ptr<void> keep)
    : data(d), nbytes(n), keep_(std::move(keep)), owned_(false) {}

Storage::~Storage() {
  if (!owned_) return;
  if (device == Device::kCPU)
    std::free(data);
  else
    device_free(device, data, nbytes);
}

static std::shared_ptr<TensorImpl> make_impl(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) KIMI_CHECK(d >= 0, "negative dimension in shape {}", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(shape_numel(shape) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return impl;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  return Tensor(make_impl(shape, dtype, device));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(0.0);
  return t;
}

Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) {
  return full(shape, 1.0, dtype, device);
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

template <class T>
static Tensor from_vec(const std::vector<T>& v, const Shape& shape) {
  KIMI_CHECK(static_cast<int64_t>(v.size()) == shape_numel(shape),
             "from_vector: {} values for shape {}", v.size(), shape_str(shape));
  Tensor t = Tensor::empty(shape, dtype_of<T>());
  if (!v.empty()) std::memcpy(t.raw_data(), v.data(), v.size() * sizeof(T));
  return t;
}
Tensor Tensor::from_vector(const std::vector<float>& v, const Shape& s) { return from_vec(v, s); }
Tensor Tensor::from_vector(const std::vector<double>& v, const Shape& s) { return from_vec(v, s); }
Tensor Tensor::from_vector(const std::vector<int32_t>& v, const Shape& s) { return from_vec(v, s); }
Tensor Tensor::from_vector(const std::vector<int64_t>& v, const Shape& s) { return from_vec(v, s); }

Tensor Tensor::scalar(double value, DType dtype, Device device) {
  return full({}, value, dtype, device);
}

Tensor Tensor::from_blob(void* data, const Shape& shape, DType dtype, std::shared_ptr<void> keep) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage =
      std::make_shared<Storage>(data, shape_numel(shape) * dtype_size(dtype), std::move(keep));
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(impl);
}

const Shape& Tensor::shape() const {
  KIMI_CHECK(defined(), "shape() of an undefined tensor");
  return impl_->shape;
}
const Shape& Tensor::strides() const { return impl_->strides; }
int64_t Tensor::size(int64_t d) const {
  int64_t n = dim();
  if (d < 0) d += n;
  KIMI_CHECK(d >= 0 && d < n, "size({}) of a {}-d tensor", d, n);
  return impl_->shape[d];
}
int64_t Tensor::numel() const { return shape_numel(shape()); }
DType Tensor::dtype() const { return impl_->dtype; }
Device Tensor::device() const { return impl_->storage->device; }
int64_t Tensor::offset() const { return impl_->offset; }
const std::shared_ptr<Storage>& Tensor::storage() const { return impl_->storage; }

bool Tensor::is_contiguous() const {
  int64_t acc = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (impl_->shape[i] == 1) continue;
    if (impl_->strides[i] != acc) return false;
    acc *= impl_->shape[i];
  }
  return true;
}

std::string Tensor::str() const {
  if (!defined()) return "Tensor[undefined]";
  return fmt::format("Tensor[{} {} {}]", dtype_name(dtype()), device_name(device()),
                     shape_str(shape()));
}

void* Tensor::raw_data() const {
  KIMI_CHECK(defined(), "raw_data() of an undefined tensor");
  return static_cast<char*>(impl_->storage->data) + impl_->offset * dtype_size(impl_->dtype);
}

void check_same_device(const Tensor& a, const Tensor& b, const char* op) {
  KIMI_CHECK(a.device() == b.device(), "{}: tensors on different devices ({} and {})", op,
             device_name(a.device()), device_name(b.device()));
}

void check_cpu(const Tensor& a, const char* op) {
  KIMI_CHECK(a.device() == Device::kCPU, "{}: needs a CPU tensor, got {}", op, a.str());
}

// Reads element i of a typed buffer as double / writes a double, for any dtype.
static double load_as_double(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::kF32: return static_cast<const float*>(p)[i];
    case DType::kF64: return static_cast<const double*>(p)[i];
    case DType::kBF16: return bf16_to_float(static_cast<const uint16_t*>(p)[i]);
    case DType::kF16: return f16_to_float(static_cast<const uint16_t*>(p)[i]);
    case DType::kI32: return static_cast<const int32_t*>(p)[i];
    case DType::kI64: return static_cast<double>(static_cast<const int64_t*>(p)[i]);
  }
  return 0;
}
static void store_double(void* p, DType t, int64_t i, double v) {
  switch (t) {
    case DType::kF32: static_cast<float*>(p)[i] = static_cast<float>(v); break;
    case DType::kF64: static_cast<double*>(p)[i] = v; break;
    case DType::kBF16: static_cast<uint16_t*>(p)[i] = float_to_bf16(static_cast<float>(v)); break;
    case DType::kF16: static_cast<uint16_t*>(p)[i] = float_to_f16(static_cast<float>(v)); break;
    case DType::kI32: static_cast<int32_t*>(p)[i] = static_cast<int32_t>(v); break;
    case DType::kI64: static_cast<int64_t*>(p)[i] = static_cast<int64_t>(v); break;
  }
}

// A strided copy between tensors of one dtype, element bits moved as E (an unsigned integer of
// the dtype's size): no conversion through double, a memcpy per row where both rows are dense.
template <class E>
void copy_same_dtype(const Tensor& dst, const Tensor& src) {
  E* d = static_cast<E*>(dst.storage()->data) + dst.offset();
  const E* s = static_cast<const E*>(src.storage()->data) + src.offset();
  cpu::for_each_row<2>(dst.shape(), {&dst.strides(), &src.strides()},
                       [&](auto offs, int64_t n, auto inner) {
                         E* o = d + offs[0];
                         const E* i = s + offs[1];
                         if (inner[0] == 1 && inner[1] == 1) {
                           std::memcpy(o, i, static_cast<size_t>(n) * sizeof(E));
                           return;
                         }
                         for (int64_t j = 0; j < n; ++j) o[j * inner[0]] = i[j * inner[1]];
                       });
}

// Strided copy with dtype conversion between CPU tensors of the same shape.
void cpu_copy_convert(const Tensor& dst, const Tensor& src) {
  const void* s = static_cast<const char*>(src.storage()->data);
  void* d = dst.storage()->data;
  const DType st = src.dtype(), dt = dst.dtype();
  const int64_t s0 = src.offset(), d0 = dst.offset();
  if (st == dt && src.is_contiguous() && dst.is_contiguous()) {
    std::memcpy(dst.raw_data(), src.raw_data(), src.numel() * dtype_size(st));
    return;
  }
  if (st == dt) {  // a view made contiguous (permute, narrow): the common case
    switch (dtype_size(st)) {
      case 2: return copy_same_dtype<uint16_t>(dst, src);
      case 4: return copy_same_dtype<uint32_t>(dst, src);
      case 8: return copy_same_dtype<uint64_t>(dst, src);
      default: break;
    }
  }
  cpu::for_each_row<2>(dst.shape(), {&dst.strides(), &src.strides()},
                       [&](auto offs, int64_t n, auto inner) {
                         for (int64_t j = 0; j < n; ++j)
                           store_double(d, dt, d0 + offs[0] + j * inner[0],
                                        load_as_double(s, st, s0 + offs[1] + j * inner[1]));
                       });
}

void Tensor::copy_(const Tensor& src) {
  KIMI_CHECK(shape() == src.shape(), "copy_: shape {} from {}", shape_str(shape()),
             shape_str(src.shape()));
  if (device() == Device::kCPU && src.device() == Device::kCPU) {
    cpu_copy_convert(*this, src);
    return;
  }
  device_copy(*this, src);
}

void Tensor::fill_(double value) {
  if (device() != Device::kCPU) {
    device_fill(*this, value);
    return;
  }
  void* d = impl_->storage->data;
  const DType t = dtype();
  const int64_t o = offset();
  if (is_contiguous() && t == DType::kF32) {
    float* p = data<float>();
    std::fill(p, p + numel(), static_cast<float>(value));
    return;
  }
  cpu::for_each_row<1>(shape(), {&strides()}, [&](auto offs, int64_t n, auto inner) {
    for (int64_t j = 0; j < n; ++j) store_double(d, t, o + offs[0] + j * inner[0], value);
  });
}

double Tensor::item() const {
  KIMI_CHECK(numel() == 1, "item() of a tensor with {} elements", numel());
  Tensor c = to(Device::kCPU);
  return load_as_double(c.storage()->data, c.dtype(), c.offset());
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  Tensor c = to(Device::kCPU);
  Tensor out = Tensor::empty(c.shape(), dtype_of<T>());
  cpu_copy_convert(out, c);
  const T* p = out.data<T>();
  return std::vector<T>(p, p + out.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;

Tensor Tensor::clone() const {
  Tensor out = Tensor::empty(shape(), dtype(), device());
  out.copy_(*this);
  return out;
}

// --- autograd fields ----------------------------------------------------------------------
bool Tensor::requires_grad() const { return impl_->requires_grad || impl_->grad_fn != nullptr; }
Tensor& Tensor::set_requires_grad(bool v) {
  KIMI_CHECK(!v || is_floating(dtype()), "requires_grad on a {} tensor", dtype_name(dtype()));
  impl_->requires_grad = v;
  return *this;
}
Tensor Tensor::grad() const { return impl_->grad ? Tensor(impl_->grad) : Tensor(); }
void Tensor::set_grad(const Tensor& g) { impl_->grad = g.defined() ? g.impl() : nullptr; }
void Tensor::zero_grad() { impl_->grad.reset(); }
const std::shared_ptr<Node>& Tensor::grad_fn() const { return impl_->grad_fn; }
int Tensor::output_nr() const { return impl_->output_nr; }
void Tensor::set_grad_fn(std::shared_ptr<Node> fn, int nr) {
  impl_->grad_fn = std::move(fn);
  impl_->output_nr = nr;
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>(*impl_);
  impl->requires_grad = false;
  impl->grad.reset();
  impl->grad_fn.reset();
  return Tensor(impl);
}

}  // namespace kimi
