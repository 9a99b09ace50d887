// Pieces of the tensor-core KDA intra kernel (delta_rule_chunk_intra_mma.cu; not a public API):
// its block size and shared-memory layout, the gate's exp, and the exact fp32 path for diagonal
// tiles whose decays are too strong for the split at a reference row.
#pragma once

#include <cuda_bf16.h>

#include <algorithm>

#include "core/cuda/delta_rule/delta_rule_chunk.cuh"
#include "core/cuda/delta_rule/state_mma_tiles.h"

namespace kimi::cuda::detail::chunk::intra_mma {

using bf16 = __nv_bfloat16;
namespace mt = mma_tiles;

constexpr int kIntraWarps = 8;
constexpr int kIntraThreads = 32 * kIntraWarps;

// Shared memory, in bytes. bf16 rows padded by 8 elements, fp32 G rows by 8 floats (the float2
// fragment loads of a half-warp then hit distinct banks). After the Gram products the q region
// holds Tinv and, once the right-hand sides are made, the G region the substitution's scratch;
// k and v become the right-hand sides beta exp(G) k and beta v in place. Without the delta rule
// (kDelta = false: the linear recurrence) there is no v and no A_kk: 69,888 bytes at kD = 128
// against 104,704, three blocks per multiprocessor instead of two.
template <int kD, bool kDelta = true>
struct IntraMmaLayout {
  static constexpr int ldb = kD + 8;             // bf16 rows of k, q, v
  static constexpr int ldg = kD + 8;             // fp32 rows of G
  static constexpr int kTBytes = kC * kLdA * 4;  // an fp32 C x C matrix
  // q, then Tinv; G, then the substitution's scratch.
  static constexpr int kQBytes = std::max(kC * ldb * 2, kTBytes);
  static constexpr int kGBytes = std::max(kC * ldg * 4, kTBytes);
  static constexpr int kK = 0, kQ = kK + kC * ldb * 2, kV = kQ + kQBytes;
  static constexpr int kAkk = kV + (kDelta ? kC * ldb * 2 : 0);  // fp32 Diag(beta) A_kk, lower
  static constexpr int kG = kAkk + (kDelta ? kTBytes : 0);
  static constexpr int kBeta = kG + kGBytes;
  static constexpr int kBytes = kBeta + kC * 4;
  static_assert(kQ % 128 == 0 && kV % 128 == 0 && kAkk % 128 == 0 && kG % 128 == 0,
                "16-byte aligned rows");
};

// exp of a log-decay difference; without a gate every decay is 1 (and the G reads feeding it
// are dead code).
template <GateKind kGate>
__device__ __forceinline__ float gexp(float x) {
  if constexpr (kGate == GateKind::kNone)
    return 1.f;
  else
    return __expf(x);
}

__device__ __forceinline__ float2 ld_bf2(const bf16* p) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
}

// One diagonal tile (J, J) of A_kk and A_qk exactly: fp32 products with one exp(G_i - G_j) per
// channel and pair, as the old kernel does every diagonal block. Lane-strided over the 256
// entries; only for blocks whose gate span is too wide for the split (strong decays).
template <int kD, int ldb, int ldg>
__device__ void exact_diag_tile(int J, const bf16* sK, const bf16* sQ, const float* sG, int lane,
                                float (&ck)[2][4], float (&cq)[2][4]) {
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const mt::RowCol x = mt::c_elem(lane, e);
      const int i = 16 * J + x.row, j = 16 * J + 8 * nt + x.col;
      float akk = 0.f, aqk = 0.f;
      if (j <= i)
        for (int c = 0; c < kD; ++c) {
          const float kj =
              __bfloat162float(sK[j * ldb + c]) * __expf(sG[i * ldg + c] - sG[j * ldg + c]);
          akk += __bfloat162float(sK[i * ldb + c]) * kj;
          aqk += __bfloat162float(sQ[i * ldb + c]) * kj;
        }
      ck[nt][e] = akk;
      cq[nt][e] = aqk;
    }
}

}  // namespace kimi::cuda::detail::chunk::intra_mma
