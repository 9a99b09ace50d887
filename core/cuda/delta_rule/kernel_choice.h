// Which of two kernels a stage of the chunk backward runs (new tensor-core one or the old one
// kept as the oracle): an environment variable set to "old", read once at the first call, unless
// a test or benchmark forces one (force(kEnv) goes back to the variable). Host-only.
#pragma once

#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

#include "core/cuda/delta_rule/delta_rule.cuh"

namespace kimi::cuda::detail {

class KernelChoice {
 public:
  explicit KernelChoice(const char* var) : var_(var) {}
  void force(ChunkBwdDhKernel k) { forced_.store(int(k)); }
  bool old() {
    const auto f = ChunkBwdDhKernel(forced_.load());
    if (f != ChunkBwdDhKernel::kEnv) return f == ChunkBwdDhKernel::kOld;
    int v = env_.load();
    if (v < 0) {
      const char* e = std::getenv(var_);
      const std::string_view sv = e ? e : "";
      if (!sv.empty() && sv != "old" && sv != "new")  // a typo is refused, never taken as new
        throw std::invalid_argument(std::string(var_) + "=" + std::string(sv) +
                                    ": give old or new");
      v = sv == "old" ? 1 : 0;
      env_.store(v);
    }
    return v == 1;
  }

 private:
  const char* var_;
  std::atomic<int> env_{-1};  // -1: not read yet; 0: new; 1: old
  std::atomic<int> forced_{int(ChunkBwdDhKernel::kEnv)};
};

}  // namespace kimi::cuda::detail
