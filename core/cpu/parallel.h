// OpenMP loop over independent (batch, head) items for the CPU kernels, with a serial path for
// small calls. Eigen parallelises a GEMM itself when it runs outside a multi-threaded region, so
// the serial path pins the calling thread's OpenMP thread count to 1 while it runs.
#pragma once

#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace kimi::cpu {

// Runs f(i) for i in [0, n). With threads, one OpenMP team shares the items (Eigen then stays
// single-threaded inside each); without, everything runs on the calling thread. Threads pay off
// only above ~0.1 ms of work: waking a team costs tens of microseconds, far more on a loaded
// machine, and tiny calls (decode steps, gradient checks) are common.
template <class F>
void for_each_item(int64_t n, bool threads, F&& f) {
#ifdef _OPENMP
  if (threads && n > 1) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
  // nthreads-var is per task: this changes only the calling thread, and is restored.
  // (If Eigen::setNbThreads was called, Eigen ignores it and may still split large GEMMs.)
  struct Restore {
    int prev = omp_get_max_threads();
    ~Restore() { omp_set_num_threads(prev); }
  } restore;
  omp_set_num_threads(1);
#endif
  for (int64_t i = 0; i < n; ++i) f(i);
}

}  // namespace kimi::cpu
