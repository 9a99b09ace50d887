// The kinds of elementwise function, shared by the CPU and CUDA kernels (a kernel switches on
// them; the op layer names them).
#pragma once

namespace kimi {

enum class UnaryKind {
  kNeg,
  kExp,
  kLog,
  kSqrt,
  kRsqrt,
  kSigmoid,
  kSilu,
  kSoftplus,
  kTanh,
  kRelu,
  kAbs,
  kAddScalar,
  kMulScalar,
  kPowScalar
};
enum class BinaryKind { kAdd, kSub, kMul, kDiv, kMax };

}  // namespace kimi
