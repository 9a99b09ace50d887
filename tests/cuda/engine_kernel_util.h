// Shared by the engine's kernel tests (part of kimi_cuda_engine_test): bf16 bits on the host,
// self-freeing device copies, random data, and the float64 softmax of the latent attention that
// the MLA decode and MLA attend tests both check against.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "inference/engine/cuda/engine_kernels.h"

namespace kimi::inference::engine::cuda::ktest {

inline bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

inline uint16_t bf16_bits(float f) {  // round to nearest even
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
inline float bf16_val(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Device copies that free themselves.
template <class T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(const std::vector<T>& v) : n(v.size()) {
    EXPECT_EQ(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(p, v.data(), n * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  ~Dev() { cudaFree(p); }
  std::vector<T> get() const {
    std::vector<T> v(n);
    EXPECT_EQ(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return v;
  }
  const bf16* b() const { return reinterpret_cast<const bf16*>(p); }
};

inline std::vector<float> randn(size_t n, std::mt19937& rng, float s = 1.f) {
  std::normal_distribution<float> nd(0.f, s);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}
// bf16 bits of v, and v rounded to them in place (the exact values the device reads).
inline std::vector<uint16_t> to_bits(std::vector<float>& v) {
  std::vector<uint16_t> b(v.size());
  for (size_t i = 0; i < v.size(); ++i) b[i] = bf16_bits(v[i]), v[i] = bf16_val(b[i]);
  return b;
}

// Softmax over t < n of scale * (q . rows[t]) (rows of D floats), in float64: the weights and
// the raw scores (before the scale's exp), for the latent attention references.
struct Softmax {
  std::vector<double> w, score;
};
template <class Q>
Softmax softmax_rows(const Q* q, const float* rows, int n, int D, double scale) {
  Softmax s;
  s.w.resize(n), s.score.resize(n);
  double m = -1e300, l = 0;
  for (int t = 0; t < n; ++t) {
    double x = 0;
    for (int e = 0; e < D; ++e) x += double(q[e]) * rows[size_t(t) * D + e];
    s.score[t] = x, m = std::max(m, x * scale);
  }
  for (int t = 0; t < n; ++t) s.w[t] = std::exp(s.score[t] * scale - m), l += s.w[t];
  for (double& x : s.w) x /= l;
  return s;
}

}  // namespace kimi::inference::engine::cuda::ktest
