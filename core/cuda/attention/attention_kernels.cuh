// The launchers of the attention kernels (not a public API; core/cuda/attention/attention.cu picks
// one). Each takes a filled parameter block and launches on `stream`; the forward launchers run
// p.n_split key splits (grid.z), writing p.o_part / p.lse_part when n_split > 1.
#pragma once

#include <cuda_runtime.h>

#include "core/cuda/attention/attention_common.cuh"
#include "core/cuda/runtime/check.h"

namespace kimi::cuda::attn {

// Tile sizes (queries x keys per block) of the forward kernels, needed to size the splits
// (the tensor-core forward doubles its query block when Tq > 64, where splits do not matter).
constexpr int kMmaFwdBq = 64, kMmaFwdBk = 64;
constexpr int kFmaFwdBq = 32, kFmaFwdBk = 32;

// Tensor cores: Op = Ti = bf16 (m16n8k16) or Op = Ti = float (TF32 m16n8k8). F32 inputs at bf16
// precision are converted to bf16 copies first (attention.cu): converting inside the tile
// loads stalled on the loads (v1: 3x slower than bf16 inputs).
template <class Ti, class Op>
void launch_fwd_mma(const Params<Ti>& p, cudaStream_t stream);
template <class Ti, class Op>
void launch_bwd_mma(const Params<Ti>& p, cudaStream_t stream);

// Plain fp32 FMA (the oracle path).
template <class Ti>
void launch_fwd_fma(const Params<Ti>& p, cudaStream_t stream);
template <class Ti>
void launch_bwd_fma(const Params<Ti>& p, cudaStream_t stream);

// Large tiles need the opt-in shared-memory limit (up to 227 KB on Hopper).
template <class Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    KIMI_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(bytes)));
}

}  // namespace kimi::cuda::attn
