// Elementwise CPU scalar functions and loops over contiguous buffers (core/cpu/elementwise.cpp
// makes inputs contiguous or walks broadcast strides). Forward and backward of each unary
// function sit side by side.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/kernels/elementwise.h"

// The kinds (kimi::UnaryKind, kimi::BinaryKind) are shared with the CUDA kernels.
namespace kimi::cpu {

template <class T>
inline T sigmoid_of(T x) {
  return x >= 0 ? T(1) / (T(1) + std::exp(-x)) : std::exp(x) / (T(1) + std::exp(x));
}

// y = f(x); p is the scalar of the *Scalar kinds.
template <class T>
inline T unary_value(UnaryKind k, T x, double p) {
  switch (k) {
    case UnaryKind::kNeg: return -x;
    case UnaryKind::kExp: return std::exp(x);
    case UnaryKind::kLog: return std::log(x);
    case UnaryKind::kSqrt: return std::sqrt(x);
    case UnaryKind::kRsqrt: return T(1) / std::sqrt(x);
    case UnaryKind::kSigmoid: return sigmoid_of(x);
    case UnaryKind::kSilu: return x * sigmoid_of(x);
    // PyTorch's softplus: linear above the threshold 20 (beta 1).
    case UnaryKind::kSoftplus: return x > T(20) ? x : std::log1p(std::exp(x));
    case UnaryKind::kTanh: return std::tanh(x);
    case UnaryKind::kRelu: return x > T(0) ? x : T(0);
    case UnaryKind::kAbs: return std::abs(x);
    case UnaryKind::kAddScalar: return x + T(p);
    case UnaryKind::kMulScalar: return x * T(p);
    case UnaryKind::kPowScalar: return std::pow(x, T(p));
  }
  return x;
}

// dy/dx given x and y = f(x).
template <class T>
inline T unary_derivative(UnaryKind k, T x, T y, double p) {
  switch (k) {
    case UnaryKind::kNeg: return T(-1);
    case UnaryKind::kExp: return y;
    case UnaryKind::kLog: return T(1) / x;
    case UnaryKind::kSqrt: return T(0.5) / y;
    case UnaryKind::kRsqrt: return T(-0.5) * y * y * y;
    case UnaryKind::kSigmoid: return y * (T(1) - y);
    case UnaryKind::kSilu: {
      T s = sigmoid_of(x);
      return s * (T(1) + x * (T(1) - s));
    }
    case UnaryKind::kSoftplus: return x > T(20) ? T(1) : sigmoid_of(x);
    case UnaryKind::kTanh: return T(1) - y * y;
    case UnaryKind::kRelu: return x > T(0) ? T(1) : T(0);
    case UnaryKind::kAbs: return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
    case UnaryKind::kAddScalar: return T(1);
    case UnaryKind::kMulScalar: return T(p);
    case UnaryKind::kPowScalar: return T(p) * std::pow(x, T(p - 1));
  }
  return T(0);
}

// The kinds with a transcendental function run on Eigen's SIMD exp / log1p / tanh over
// contiguous blocks: the per-element switch and std::exp of the loops below took ~2.6 ns an
// element, and silu, sigmoid and softplus a fifth of a CPU quickstart step (--profile-step).
// sigmoid = 1 / (1 + e^-x) and silu = x / (1 + e^-x) reach the same limits (0 where e^-x
// overflows); the other kinds keep the scalar loops.
inline bool unary_simd_kind(UnaryKind k) {
  return k == UnaryKind::kExp || k == UnaryKind::kSigmoid || k == UnaryKind::kSilu ||
         k == UnaryKind::kSoftplus || k == UnaryKind::kTanh;
}
inline constexpr int64_t kSimdBlock = 16384;  // elements a block (an OpenMP work item)

template <class T>
using SimdArray = Eigen::Array<T, Eigen::Dynamic, 1>;

template <class T>
void unary_fwd_block(UnaryKind k, int64_t n, const T* x, T* y) {
  const Eigen::Map<const SimdArray<T>> X(x, n);
  Eigen::Map<SimdArray<T>> Y(y, n);
  switch (k) {
    case UnaryKind::kExp: Y = X.exp(); break;
    case UnaryKind::kSigmoid: Y = (T(1) + (-X).exp()).inverse(); break;
    case UnaryKind::kSilu: Y = X / (T(1) + (-X).exp()); break;
    case UnaryKind::kSoftplus: {
      // max(x, 0) + log1p(e^-|x|), log1p(z) as log(u) - ((u - 1) - z) / u with u = 1 + z;
      // above 20 x itself, as PyTorch. exp and log run on SIMD arrays; the selects in a plain
      // loop (Eigen 3.4's select() has no packet path and would make exp and log scalar).
      const SimdArray<T> z = (-X.abs()).exp();
      const SimdArray<T> lu = (T(1) + z).log();
      for (int64_t i = 0; i < n; ++i) {
        const T u = T(1) + z[i];
        const T l1p = u == T(1) ? z[i] : lu[i] - ((u - T(1)) - z[i]) / u;
        y[i] = x[i] > T(20) ? x[i] : std::max(x[i], T(0)) + l1p;
      }
      break;
    }
    case UnaryKind::kTanh: Y = X.tanh(); break;
    default: break;
  }
}

template <class T>
void unary_bwd_block(UnaryKind k, int64_t n, const T* x, const T* y, const T* dy, T* dx) {
  const Eigen::Map<const SimdArray<T>> X(x, n), Y(y, n), DY(dy, n);
  Eigen::Map<SimdArray<T>> DX(dx, n);
  switch (k) {
    case UnaryKind::kExp: DX = DY * Y; break;
    case UnaryKind::kSigmoid: DX = DY * Y * (T(1) - Y); break;
    case UnaryKind::kSilu: {
      const SimdArray<T> s = (T(1) + (-X).exp()).inverse();
      DX = DY * s * (T(1) + X * (T(1) - s));
      break;
    }
    case UnaryKind::kSoftplus: {
      const SimdArray<T> s = (T(1) + (-X).exp()).inverse();  // sigmoid; 1 above 20
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (x[i] > T(20) ? T(1) : s[i]);
      break;
    }
    case UnaryKind::kTanh: DX = DY * (T(1) - Y * Y); break;
    default: break;
  }
}

// f(first, count) over [0, n) in blocks of kSimdBlock, the blocks in parallel.
template <class F>
void for_simd_blocks(int64_t n, F&& f) {
  const int64_t blocks = (n + kSimdBlock - 1) / kSimdBlock;
#pragma omp parallel for if (blocks > 4) schedule(static)
  for (int64_t b = 0; b < blocks; ++b) f(b * kSimdBlock, std::min(kSimdBlock, n - b * kSimdBlock));
}

template <class T>
void unary_fwd(UnaryKind k, int64_t n, const T* x, T* y, double p) {
  if constexpr (std::is_floating_point_v<T>) {
    if (unary_simd_kind(k))
      return for_simd_blocks(n, [&](int64_t i, int64_t m) { unary_fwd_block(k, m, x + i, y + i); });
  }
#pragma omp parallel for if (n > 65536) schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] = unary_value(k, x[i], p);
}

// dx = dy * f'(x)
template <class T>
void unary_bwd(UnaryKind k, int64_t n, const T* x, const T* y, const T* dy, T* dx, double p) {
  if constexpr (std::is_floating_point_v<T>) {
    if (unary_simd_kind(k))
      return for_simd_blocks(
          n, [&](int64_t i, int64_t m) { unary_bwd_block(k, m, x + i, y + i, dy + i, dx + i); });
  }
#pragma omp parallel for if (n > 65536) schedule(static)
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * unary_derivative(k, x[i], y[i], p);
}

template <class T>
inline T binary_value(BinaryKind k, T a, T b) {
  switch (k) {
    case BinaryKind::kAdd: return a + b;
    case BinaryKind::kSub: return a - b;
    case BinaryKind::kMul: return a * b;
    case BinaryKind::kDiv: return a / b;
    case BinaryKind::kMax: return a >= b ? a : b;
  }
  return a;
}

}  // namespace kimi::cpu
