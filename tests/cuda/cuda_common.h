// Helpers shared by the CUDA parity tests and the benchmark: device arrays filled from host
// doubles (as fp32 or bf16), random delta-rule problems (k L2-normalised, g <= 0, beta in
// (0,1)), and FLA's get_err_ratio ||x - ref|| / ||ref|| (NaN or a size mismatch gives +inf).
#pragma once

#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "core/cpu/delta_rule.h"
#include "core/cuda/runtime/allocator.h"
#include "core/cuda/runtime/check.h"
#include "core/cuda/runtime/copy.h"
#include "core/tensor/dtype.h"
#include "tests/recurrence_problem.h"

namespace kimi::cuda_test {

using kimi::GateKind;
using kimi::RecurrenceDims;

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

// Inputs of one call and random problems: tests/recurrence_problem.h (the same draws as the
// CPU kernel tests).
using Problem = test::RecurrenceProblem<double>;
using test::random_problem;

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

// An environment setting for one scope: the caller's value (or none) back on the way out,
// exceptions included, so a failed case cannot leave the rest of the run on another kernel.
struct ScopedEnv {
  const char* name;
  bool had;
  std::string before;
  ScopedEnv(const char* n, const char* value) : name(n), had(std::getenv(n) != nullptr) {
    if (had) before = std::getenv(n);
    setenv(n, value, 1);
  }
  ~ScopedEnv() {
    if (had)
      setenv(name, before.c_str(), 1);
    else
      unsetenv(name);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
};

}  // namespace kimi::cuda_test
