// Gradients summed over ranks in buckets (dist.bucket_mb in the trainer's plan, issue 14): one
// collective per bucket instead of one per parameter, and a buffer no larger than the bucket.
#pragma once

#include <vector>

#include "core/dist/communicator.h"
#include "core/tensor/tensor.h"

namespace kimi::dist {

// Parameters in their given order, packed greedily into buckets of at most bucket_bytes (a
// parameter larger than that is a bucket of its own). Every rank must give the same parameters
// in the same order: the layout is a function of their sizes only.
std::vector<std::vector<size_t>> plan_buckets(const std::vector<Tensor>& params,
                                              size_t bucket_bytes);

// Every parameter's gradient becomes scale * (sum over ranks of local_weight * gradient). An
// undefined gradient counts as zeros (and is set), so that a parameter no loss reached on one
// rank keeps the ranks in step. F32 parameters on one device: each bucket is packed into a
// flat tensor on that device and summed there (GPU gradients need a communicator that takes
// device buffers, NCCL's; the TCP one gets host buffers), after the backward, not overlapped
// with it as OverlappedReducer is on the CPU.
void all_reduce_grads(const std::vector<Tensor>& params, Communicator& comm, size_t bucket_bytes,
                      float scale, float local_weight = 1.f);

}  // namespace kimi::dist
