// Helpers shared by the CUDA parity tests and the benchmark: device arrays filled from host
// doubles (as fp32 or bf16), random delta-rule problems (k L2-normalised, g <= 0, beta in
// (0,1)), and FLA's get_err_ratio ||x - ref|| / ||ref|| (NaN or a size mismatch gives +inf).
#pragma once

#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

#include "core/cuda/allocator.h"
#include "core/cuda/check.h"
#include "core/cuda/copy.h"
#include "core/dtype.h"
#include "core/kernels/cpu/delta_rule.h"

namespace kimi::cuda_test {

using cpu::GateKind;
using cpu::RecurrenceDims;

inline double rel_err(const std::vector<double>& x, const std::vector<double>& ref) {
  if (x.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) return std::numeric_limits<double>::infinity();
    num += (x[i] - ref[i]) * (x[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

inline double round_bf16(double x) { return bf16_to_float(float_to_bf16(static_cast<float>(x))); }
inline std::vector<double> round_bf16(std::vector<double> v) {
  for (auto& e : v) e = round_bf16(e);
  return v;
}

// A device array of T (float or __nv_bfloat16); empty() stands for nullptr.
template <class T>
class Dev {
 public:
  Dev() = default;
  explicit Dev(size_t n) : buf_(n * sizeof(T)), n_(n) { poison(); }
  explicit Dev(const std::vector<double>& h) : Dev(h.size()) { upload(h); }
  void upload(const std::vector<double>& h) {
    std::vector<T> tmp(h.size());
    for (size_t i = 0; i < h.size(); ++i) tmp[i] = from_double(h[i]);
    cuda::copy_to_device(buf_.get(), tmp.data(), h.size() * sizeof(T));
  }
  std::vector<double> download() const {
    std::vector<T> tmp(n_);
    cuda::copy_to_host(tmp.data(), buf_.get(), n_ * sizeof(T));
    std::vector<double> out(n_);
    for (size_t i = 0; i < n_; ++i) out[i] = to_double(tmp[i]);
    return out;
  }
  // All bytes 0xFF: NaN in fp32 and bf16, so an element a kernel forgets to write shows.
  void poison() {
    if (n_) KIMI_CUDA_CHECK(cudaMemsetAsync(buf_.get(), 0xFF, n_ * sizeof(T), cuda::stream()));
  }
  T* ptr() const { return n_ ? buf_.as<T>() : nullptr; }
  size_t size() const { return n_; }

  static T from_double(double x) {
    if constexpr (std::is_same_v<T, float>)
      return static_cast<float>(x);
    else {
      __nv_bfloat16_raw raw;
      raw.x = float_to_bf16(static_cast<float>(x));
      return T(raw);
    }
  }
  static double to_double(T x) {
    if constexpr (std::is_same_v<T, float>)
      return x;
    else {
      const __nv_bfloat16_raw raw(x);
      return bf16_to_float(raw.x);
    }
  }

 private:
  cuda::Buffer buf_;
  size_t n_ = 0;
};

// Inputs of one call; empty vectors stand for nullptr (no gate, zero h0 / dht, no beta).
struct Problem {
  RecurrenceDims d;
  bool delta = true;  // false: the gated linear recurrence
  std::vector<double> q, k, v, g, beta, h0, do_, dht;
};

inline Problem random_problem(const RecurrenceDims& d, bool delta, uint64_t seed,
                              double max_decay = 1.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> n01;
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  auto normal = [&](int64_t n, double s) {
    std::vector<double> x(n);
    for (auto& e : x) e = s * n01(rng);
    return x;
  };
  const int64_t BTH = d.B * d.T * d.H;
  Problem p;
  p.d = d;
  p.delta = delta;
  p.q = normal(BTH * d.K, 1.0);
  p.k = normal(BTH * d.K, 1.0);
  for (int64_t r = 0; r < BTH; ++r) {
    double s = 0;
    for (int64_t i = 0; i < d.K; ++i) s += p.k[r * d.K + i] * p.k[r * d.K + i];
    for (int64_t i = 0; i < d.K; ++i) p.k[r * d.K + i] /= std::sqrt(s);
  }
  p.v = normal(BTH * d.V, 1.0);
  if (d.gate != GateKind::kNone) {
    p.g.resize(d.gate == GateKind::kPerChannel ? BTH * d.K : BTH);
    for (auto& e : p.g) e = -max_decay * u01(rng);
  }
  if (delta) {
    p.beta.resize(BTH);
    for (auto& e : p.beta) e = 0.05 + 0.9 * u01(rng);
  }
  p.h0 = normal(d.B * d.H * d.K * d.V, 0.5);
  p.do_ = normal(BTH * d.V, 1.0);
  p.dht = normal(d.B * d.H * d.K * d.V, 1.0);
  return p;
}

// The problem as the kernels see it in type T: every input rounded to fp32, and the Ti inputs
// further to bf16 for bf16 (states h0 and dht stay fp32).
template <class T>
Problem as_type(Problem p) {
  for (auto* v : {&p.q, &p.k, &p.v, &p.g, &p.beta, &p.do_, &p.h0, &p.dht})
    for (auto& e : *v) e = static_cast<float>(e);
  if constexpr (!std::is_same_v<T, float>) {
    for (auto* v : {&p.q, &p.k, &p.v, &p.g, &p.beta, &p.do_}) *v = round_bf16(*v);
  }
  return p;
}

}  // namespace kimi::cuda_test
