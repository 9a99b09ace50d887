// Warp-level tensor-core products for the attention kernels (not a public API). One warp owns a
// 16-row slab of the result, held as mma.sync accumulator fragments: n-tile j (8 columns) is
// float c[j][4] = rows (g, g, g+8, g+8), columns (2t, 2t+1, 2t, 2t+1) with g = lane / 4,
// t = lane % 4 (PTX ISA, "Matrix fragments for mma.m16n8k16 / m16n8k8").
// Three shapes of product, each for bf16 operands (m16n8k16, ldmatrix from shared memory) and
// fp32 operands (TF32 m16n8k8, scalar shared loads, rounded with cvt.rna):
//   warp_nt: C += A B^T   A [16][K] row-major, B stored [N][K]          (S = Q K^T, dP^T = V dO^T)
//   warp_rn: C += P B     P in registers (a C fragment), B stored [K][N] (O += P V, dV += P^T dO)
//   warp_tn: C += A^T B   A stored [K][16], B stored [K][N]              (dQ += dS K)
// The TF32 forms of rn/tn number the k index of an 8-wide step as keys (0,2,4,6 | 1,3,5,7): a
// sum over k does not care about its order, and then the C fragment of P is already an A
// fragment (a0..a3 = c0, c2, c1, c3) with no shuffles; B is read with the same numbering.
// Shared-memory row strides: bf16 rows padded by 8 elements (16 bytes: ldmatrix rows land in
// different banks), fp32 rows by 4 (the scalar fragment loads are then conflict-free).
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "core/cuda/attention/attention_common.cuh"

namespace kimi::cuda::attn {

template <class Op>
struct OpTraits {  // fp32 operands: TF32
  static constexpr int kPad = 4;
};
template <>
struct OpTraits<bf16> {
  static constexpr int kPad = 8;
};

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo: the lower column
  return *reinterpret_cast<uint32_t*>(&v);
}
__device__ __forceinline__ uint32_t tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
}

__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma_tf32(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8x8 b16 matrices; lane l gives the row address of matrix l / 8, row l % 8. Lane l gets
// from matrix i: row l/4, columns 2(l%4), +1 (.trans: the transposed matrix's).
__device__ __forceinline__ void ldsm4(uint32_t (&r)[4], const bf16* p) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
__device__ __forceinline__ void ldsm4_t(uint32_t (&r)[4], const bf16* p) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

// ---- bf16 operands -------------------------------------------------------------------------
template <int N, int K>
__device__ __forceinline__ void warp_nt(float (&c)[N / 8][4], const bf16* A, int lda, const bf16* B,
                                        int ldb) {
  const int l = threadIdx.x & 31;
#pragma unroll
  for (int k0 = 0; k0 < K; k0 += 16) {
    uint32_t a[4];  // matrices (rows 0-7 | 8-15) x (cols k0 | k0+8) = a0, a1, a2, a3
    ldsm4(a, A + ((l & 7) + ((l >> 3) & 1) * 8) * lda + k0 + (l >> 4) * 8);
#pragma unroll
    for (int n0 = 0; n0 < N; n0 += 16) {
      uint32_t b[4];  // (B rows n0 | n0+8) x (k0 | k0+8): b0,b1 of n-tile n0, then of n0+8
      ldsm4(b, B + (n0 + (l & 7) + (l >> 4) * 8) * ldb + k0 + ((l >> 3) & 1) * 8);
      mma_bf16(c[n0 / 8], a, b[0], b[1]);
      mma_bf16(c[n0 / 8 + 1], a, b[2], b[3]);
    }
  }
}

// B [K][N] through ldmatrix.trans: matrices (rows k0 | k0+8) x (cols n0 | n0+8).
template <int N>
__device__ __forceinline__ void rn_b_step(float (&c)[N / 8][4], const uint32_t (&a)[4],
                                          const bf16* B, int ldb, int k0) {
  const int l = threadIdx.x & 31;
#pragma unroll
  for (int n0 = 0; n0 < N; n0 += 16) {
    uint32_t b[4];
    ldsm4_t(b, B + (k0 + (l & 7) + ((l >> 3) & 1) * 8) * ldb + n0 + (l >> 4) * 8);
    mma_bf16(c[n0 / 8], a, b[0], b[1]);
    mma_bf16(c[n0 / 8 + 1], a, b[2], b[3]);
  }
}

template <int N, int K>
__device__ __forceinline__ void warp_rn(float (&c)[N / 8][4], const float (&p)[K / 8][4],
                                        const bf16* B, int ldb) {
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
    const uint32_t a[4] = {pack_bf16(p[2 * kk][0], p[2 * kk][1]),
                           pack_bf16(p[2 * kk][2], p[2 * kk][3]),
                           pack_bf16(p[2 * kk + 1][0], p[2 * kk + 1][1]),
                           pack_bf16(p[2 * kk + 1][2], p[2 * kk + 1][3])};
    rn_b_step<N>(c, a, B, ldb, kk * 16);
  }
}

template <int N, int K>
__device__ __forceinline__ void warp_tn(float (&c)[N / 8][4], const bf16* A, int lda, const bf16* B,
                                        int ldb) {
  const int l = threadIdx.x & 31;
#pragma unroll
  for (int k0 = 0; k0 < K; k0 += 16) {
    // A^T tiles, transposed on load: matrix i = (A rows k0 + (i/2)*8) x (cols (i%2)*8).
    uint32_t a[4];
    ldsm4_t(a, A + (k0 + (l & 7) + (l >> 4) * 8) * lda + ((l >> 3) & 1) * 8);
    rn_b_step<N>(c, a, B, ldb, k0);
  }
}

// ---- fp32 operands, TF32 tensor cores --------------------------------------------------------
template <int N, int K>
__device__ __forceinline__ void warp_nt(float (&c)[N / 8][4], const float* A, int lda,
                                        const float* B, int ldb) {
  const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
#pragma unroll 4
  for (int k0 = 0; k0 < K; k0 += 8) {
    const uint32_t a[4] = {tf32(A[g * lda + k0 + t]), tf32(A[(g + 8) * lda + k0 + t]),
                           tf32(A[g * lda + k0 + t + 4]), tf32(A[(g + 8) * lda + k0 + t + 4])};
#pragma unroll
    for (int n = 0; n < N / 8; ++n) {
      const float* b = B + (n * 8 + g) * ldb + k0 + t;
      mma_tf32(c[n], a, tf32(b[0]), tf32(b[4]));
    }
  }
}

// B [K][N] with the permuted k numbering: k index t <-> row 2t, t+4 <-> row 2t+1.
template <int N>
__device__ __forceinline__ void rn_b_step(float (&c)[N / 8][4], const uint32_t (&a)[4],
                                          const float* B, int ldb, int k0) {
  const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
  const float* b = B + (k0 + 2 * t) * ldb + g;
#pragma unroll
  for (int n = 0; n < N / 8; ++n) mma_tf32(c[n], a, tf32(b[n * 8]), tf32(b[ldb + n * 8]));
}

template <int N, int K>
__device__ __forceinline__ void warp_rn(float (&c)[N / 8][4], const float (&p)[K / 8][4],
                                        const float* B, int ldb) {
#pragma unroll
  for (int j = 0; j < K / 8; ++j) {
    const uint32_t a[4] = {tf32(p[j][0]), tf32(p[j][2]), tf32(p[j][1]), tf32(p[j][3])};
    rn_b_step<N>(c, a, B, ldb, j * 8);
  }
}

template <int N, int K>
__device__ __forceinline__ void warp_tn(float (&c)[N / 8][4], const float* A, int lda,
                                        const float* B, int ldb) {
  const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
#pragma unroll
  for (int k0 = 0; k0 < K; k0 += 8) {
    const float* a0 = A + (k0 + 2 * t) * lda + g;  // rows 2t, 2t+1 of A^T's k
    const uint32_t a[4] = {tf32(a0[0]), tf32(a0[8]), tf32(a0[lda]), tf32(a0[lda + 8])};
    rn_b_step<N>(c, a, B, ldb, k0);
  }
}

// ---- several 16-row m-tiles per warp (the forward): each B fragment is loaded once and used
// kMT times, which divides the shared-memory traffic of K and V per FLOP by kMT -------------
template <int kMT, int N, int K>
__device__ __forceinline__ void warp_nt_m(float (&c)[kMT][N / 8][4], const bf16* A, int lda,
                                          const bf16* B, int ldb) {
  const int l = threadIdx.x & 31;
#pragma unroll
  for (int k0 = 0; k0 < K; k0 += 16) {
    uint32_t a[kMT][4];
#pragma unroll
    for (int mi = 0; mi < kMT; ++mi)
      ldsm4(a[mi], A + (mi * 16 + (l & 7) + ((l >> 3) & 1) * 8) * lda + k0 + (l >> 4) * 8);
#pragma unroll
    for (int n0 = 0; n0 < N; n0 += 16) {
      uint32_t b[4];
      ldsm4(b, B + (n0 + (l & 7) + (l >> 4) * 8) * ldb + k0 + ((l >> 3) & 1) * 8);
#pragma unroll
      for (int mi = 0; mi < kMT; ++mi) {
        mma_bf16(c[mi][n0 / 8], a[mi], b[0], b[1]);
        mma_bf16(c[mi][n0 / 8 + 1], a[mi], b[2], b[3]);
      }
    }
  }
}

template <int kMT, int N, int K>
__device__ __forceinline__ void warp_rn_m(float (&c)[kMT][N / 8][4],
                                          const float (&p)[kMT][K / 8][4], const bf16* B, int ldb) {
  const int l = threadIdx.x & 31;
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
    uint32_t a[kMT][4];
#pragma unroll
    for (int mi = 0; mi < kMT; ++mi) {
      a[mi][0] = pack_bf16(p[mi][2 * kk][0], p[mi][2 * kk][1]);
      a[mi][1] = pack_bf16(p[mi][2 * kk][2], p[mi][2 * kk][3]);
      a[mi][2] = pack_bf16(p[mi][2 * kk + 1][0], p[mi][2 * kk + 1][1]);
      a[mi][3] = pack_bf16(p[mi][2 * kk + 1][2], p[mi][2 * kk + 1][3]);
    }
#pragma unroll
    for (int n0 = 0; n0 < N; n0 += 16) {
      uint32_t b[4];
      ldsm4_t(b, B + (kk * 16 + (l & 7) + ((l >> 3) & 1) * 8) * ldb + n0 + (l >> 4) * 8);
#pragma unroll
      for (int mi = 0; mi < kMT; ++mi) {
        mma_bf16(c[mi][n0 / 8], a[mi], b[0], b[1]);
        mma_bf16(c[mi][n0 / 8 + 1], a[mi], b[2], b[3]);
      }
    }
  }
}

template <int kMT, int N, int K>
__device__ __forceinline__ void warp_nt_m(float (&c)[kMT][N / 8][4], const float* A, int lda,
                                          const float* B, int ldb) {
  const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
#pragma unroll 2
  for (int k0 = 0; k0 < K; k0 += 8) {
    uint32_t a[kMT][4];
#pragma unroll
    for (int mi = 0; mi < kMT; ++mi) {
      const float* am = A + mi * 16 * lda + k0 + t;
      a[mi][0] = tf32(am[g * lda]), a[mi][1] = tf32(am[(g + 8) * lda]);
      a[mi][2] = tf32(am[g * lda + 4]), a[mi][3] = tf32(am[(g + 8) * lda + 4]);
    }
#pragma unroll
    for (int n = 0; n < N / 8; ++n) {
      const float* b = B + (n * 8 + g) * ldb + k0 + t;
      const uint32_t b0 = tf32(b[0]), b1 = tf32(b[4]);
#pragma unroll
      for (int mi = 0; mi < kMT; ++mi) mma_tf32(c[mi][n], a[mi], b0, b1);
    }
  }
}

template <int kMT, int N, int K>
__device__ __forceinline__ void warp_rn_m(float (&c)[kMT][N / 8][4],
                                          const float (&p)[kMT][K / 8][4], const float* B,
                                          int ldb) {
  const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
#pragma unroll
  for (int j = 0; j < K / 8; ++j) {
    uint32_t a[kMT][4];
#pragma unroll
    for (int mi = 0; mi < kMT; ++mi) {
      a[mi][0] = tf32(p[mi][j][0]), a[mi][1] = tf32(p[mi][j][2]);
      a[mi][2] = tf32(p[mi][j][1]), a[mi][3] = tf32(p[mi][j][3]);
    }
    const float* b = B + (j * 8 + 2 * t) * ldb + g;  // permuted k: rows 2t, 2t+1
#pragma unroll
    for (int n = 0; n < N / 8; ++n) {
      const uint32_t b0 = tf32(b[n * 8]), b1 = tf32(b[ldb + n * 8]);
#pragma unroll
      for (int mi = 0; mi < kMT; ++mi) mma_tf32(c[mi][n], a[mi], b0, b1);
    }
  }
}

}  // namespace kimi::cuda::attn
