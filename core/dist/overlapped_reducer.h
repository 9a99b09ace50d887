// Gradients summed over ranks while the backward still runs (issue 14), as PyTorch DDP and
// llm.c do: parameters are packed into buckets in reverse order (the order a backward
// finishes them: the last layers first); each parameter's gradient is copied into its bucket
// when autograd reports it final (LeafGradReady), and a full bucket is summed by a
// communication thread while the backward computes the rest. Buckets are summed in a fixed
// order, the same on every rank, so ranks whose backwards finish gradients in a different
// order (or that run no backward at all: no labelled rows) still meet in every collective.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/autograd/autograd.h"
#include "core/dist/communicator.h"
#include "core/tensor/tensor.h"

namespace kimi::dist {

class OverlappedReducer {
 public:
  // `weight` scales this rank's gradients before the sum (its share of the global batch).
  // CPU F32 parameters (the TCP communicator); the communicator is this object's until
  // finish() returns.
  OverlappedReducer(const std::vector<Tensor>& params, Communicator& comm, size_t bucket_bytes,
                    double weight);
  ~OverlappedReducer();  // after an exception: waits for the thread, drops the sums
  OverlappedReducer(const OverlappedReducer&) = delete;
  OverlappedReducer& operator=(const OverlappedReducer&) = delete;

  // The hook for run_backward / Tensor backward of the step's last backward.
  LeafGradReady hook();
  // Hands over every bucket not yet full (a parameter never reported contributes its
  // gradient as it stands, from earlier micro-batches, or zeros when it has none), waits
  // for all sums, and sets every parameter's gradient to the sum over ranks. A parameter with
  // no gradient on any rank (an MoE router's correction bias) keeps none, as in one process:
  // the optimizer skips it. Rethrows a communication error.
  void finish();
  // Buckets whose sum had started before finish() was called: the overlap achieved.
  size_t buckets_started_early() const { return started_early_; }
  size_t num_buckets() const { return buckets_.size(); }

 private:
  struct Bucket {
    std::vector<size_t> params;  // indices into params_
    std::vector<size_t> offset;  // each one's offset in data
    std::vector<bool> copied;    // each one's gradient is in data
    std::vector<float> data;
    size_t filled = 0;  // parameters copied in
    bool handed = false, done = false;
  };
  void on_ready(const Tensor& leaf);
  void copy_in(size_t b, size_t slot);  // weight * the parameter's gradient into the bucket
  void hand_over(size_t b);             // under mu_
  void communicate();

  std::vector<Tensor> params_;
  std::vector<float> had_grad_;  // per parameter: 1 when this rank's gradient was defined
  Communicator& comm_;
  double weight_;
  std::vector<Bucket> buckets_;
  std::unordered_map<const TensorImpl*, std::pair<size_t, size_t>> where_;  // bucket, slot
  std::mutex mu_;
  std::condition_variable cv_;
  bool finishing_ = false, abort_ = false;
  std::atomic<size_t> started_early_{0};
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace kimi::dist
