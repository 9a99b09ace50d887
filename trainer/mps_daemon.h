// `kimi-lab sweep --jobs N --mps`: a private CUDA MPS control daemon for the sweep's lifetime.
// Without MPS, processes on one GPU time-slice it (one context at a time), so the paper's small
// models, whose steps are chains of short kernels, gain nothing from N children
// (results/sweep_jobs). Under MPS the children's kernels share the GPU at once.
#pragma once

#include <string>

namespace kimi {

class MpsDaemon {
 public:
  // Uses the daemon named by CUDA_MPS_PIPE_DIRECTORY when that is set; otherwise starts one
  // (`nvidia-cuda-mps-control -d`) with its pipe and log folders in a fresh /tmp folder and sets
  // CUDA_MPS_PIPE_DIRECTORY / CUDA_MPS_LOG_DIRECTORY, which the children inherit. Throws
  // kimi::UserError naming the command when it cannot start.
  MpsDaemon();
  // Stops the daemon this object started (`quit`), and removes its folder.
  ~MpsDaemon();
  MpsDaemon(const MpsDaemon&) = delete;
  MpsDaemon& operator=(const MpsDaemon&) = delete;

  const std::string& pipe_dir() const { return pipe_dir_; }
  bool started_here() const { return !root_.empty(); }

 private:
  std::string root_;  // the /tmp folder of a daemon started here; empty when reusing one
  std::string pipe_dir_;
};

}  // namespace kimi
