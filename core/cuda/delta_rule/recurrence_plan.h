// Which CUDA kernels run one linear-recurrence call (the delta rule or the gated linear
// recurrence), in one place: the glue (recurrence_cuda.cpp) runs what it says, and
// cuda_supports() (core/cuda/supports.cpp) refuses what it cannot honour.
//   BF16 tensors         the bf16 kernels, the requested form
//   F32 at tf32 / bf16   TF32 / bf16 operands, the requested form
//   F32 at fp32          the exact recurrent kernels whatever the form (the chunk kernels run on
//                        tensor cores, which have no fp32 mode)
//   V > 128              the recurrent kernels whatever the form (the chunk kernels tile V <= 128)
//   T == 1 with a state  the delta rule's decode step (the state read and written once)
// The chunk kernels use chunks of kCudaChunk tokens, so form chunk with another chunk size is
// refused rather than silently changed; the two fallbacks to the recurrent kernels are logged
// once per process.
#pragma once

#include <cstdint>

#include "core/backend/precision.h"

namespace kimi::cuda {

inline constexpr int64_t kCudaChunk = 64;  // detail::chunk::kC of the chunk kernels
inline constexpr int64_t kCudaMaxK = 128;  // every kernel holds a state column of K values
inline constexpr int64_t kCudaChunkMaxV = 128;

// Why form chunk runs the recurrent kernels (kNone: it does not, or form recurrent was asked).
enum class ChunkFallback { kNone, kFp32, kWideV };

struct RecurrencePlan {
  bool chunk = false;   // the chunk kernels (forward and backward), else the recurrent ones
  bool decode = false;  // the forward is the delta rule's decode step (T == 1 with a state)
  bool bf16 = false;    // the kernels' element type: bf16, else fp32
  ChunkFallback fallback = ChunkFallback::kNone;
};

// q_bf16: q is BF16 (else F32); chunk_form: form chunk was asked.
inline RecurrencePlan plan_recurrence(bool delta, bool q_bf16, int64_t T, int64_t V, bool has_h0,
                                      bool chunk_form, ComputePrecision prec) {
  RecurrencePlan p;
  p.bf16 = q_bf16 || prec == ComputePrecision::kBF16;
  p.chunk = chunk_form;
  if (p.chunk && !q_bf16 && prec == ComputePrecision::kFP32) {
    p.chunk = false;
    p.fallback = ChunkFallback::kFp32;
  } else if (p.chunk && V > kCudaChunkMaxV) {
    p.chunk = false;
    p.fallback = ChunkFallback::kWideV;
  }
  p.decode = delta && T == 1 && has_h0;
  return p;
}

}  // namespace kimi::cuda
