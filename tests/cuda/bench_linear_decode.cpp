// kimi_cuda_bench's other tables: the chunkwise gated linear recurrence (--linear) and the KDA
// decode step.
#include <cstdio>

#include "tests/cuda/bench_common.h"

namespace kimi::cuda_bench {

// The chunkwise gated linear recurrence (Mamba2 SSD core / simple_gla): scalar gate (and one
// per-channel row), bf16, same shape as the KDA rows; forward (no h0, final state kept) and
// forward + backward (training: no h0, no final state, no dh0). Medians of CUDA-event times.
// Forward columns: "fwd" the default path (the one-kernel walk where one block holds a head's V,
// here T = 2048 and 8192; else the two kernels), "fused" the one-kernel walk forced
// (KIMI_CUDA_LR_FUSED=1, scalar rows; '-' for the per-channel one), "2-kernel" the intra kernel +
// the walk (=0), "old" the scan + output kernels they replaced (KIMI_CUDA_LR_KERNEL=old).
// "fwd+bwd" the default (the backward on the delta rule's tensor-core stages for a scalar gate),
// "+old bwd" the same forward + the fp32 scans and grad kernel (KIMI_CUDA_LR_BWD_KERNEL=old).
void bench_linear(int reps) {
  using T = __nv_bfloat16;
  using cuda_test::ScopedEnv;
  const int64_t H = 16, K = 128, V = 128, NT = 65536;
  std::printf(
      "\nlinear recurrence chunk (simple_gla), bf16 in, fp32 state, H=%ld K=V=%ld, "
      "B*T=%ld tokens (peers: tools/peer_bench.py)\n",
      long(H), long(K), long(NT));
  Dev<T> q(uniform(NT * H * K, 21, -1, 1)), k(uniform(NT * H * K, 22, -0.2, 0.2));
  Dev<T> v(uniform(NT * H * V, 23, -1, 1)), dout(uniform(NT * H * V, 24, -1, 1));
  Dev<T> gs(uniform(NT * H, 25, -0.2, -0.001)), gc(uniform(NT * H * K, 26, -0.2, -0.001));
  Dev<T> o(NT * H * V), gq(NT * H * K), gk(NT * H * K), gv(NT * H * V), gg(NT * H * K);
  std::printf("%8s %6s %8s %8s %9s %11s %8s %11s %12s %8s\n", "T", "B", "gate", "fwd ms",
              "fused ms", "2-kernel ms", "old ms", "fwd+bwd ms", "+old bwd ms", "M tok/s");
  for (int64_t seq : {2048, 8192, 32768, -8192}) {
    const bool channel = seq < 0;
    if (channel) seq = -seq;
    const int64_t B = NT / seq;
    const RecurrenceDims d{B,
                           seq,
                           H,
                           K,
                           V,
                           channel ? GateKind::kPerChannel : GateKind::kScalar,
                           1.0 / std::sqrt(double(K)),
                           64};
    const T* g = channel ? gc.ptr() : gs.ptr();
    Dev<float> ht(B * H * K * V);
    auto fwd_ms = [&](const char* env, const char* value) {
      const ScopedEnv e(env, value);
      return time_ms(2, reps, [&] {
        kc::linear_recurrence_chunk_fwd<T>(d, q.ptr(), k.ptr(), v.ptr(), g, nullptr, o.ptr(),
                                           ht.ptr(), kc::stream());
      });
    };
    const double fwd = time_ms(2, reps, [&] {
      kc::linear_recurrence_chunk_fwd<T>(d, q.ptr(), k.ptr(), v.ptr(), g, nullptr, o.ptr(),
                                         ht.ptr(), kc::stream());
    });
    const double fused = channel ? -1.0 : fwd_ms("KIMI_CUDA_LR_FUSED", "1");
    const double two = fwd_ms("KIMI_CUDA_LR_FUSED", "0");
    const double old = fwd_ms("KIMI_CUDA_LR_KERNEL", "old");
    auto train_ms = [&] {
      return time_ms(2, reps, [&] {
        kc::linear_recurrence_chunk_fwd<T>(d, q.ptr(), k.ptr(), v.ptr(), g, nullptr, o.ptr(),
                                           nullptr, kc::stream());
        kc::linear_recurrence_chunk_bwd<T>(d, q.ptr(), k.ptr(), v.ptr(), g, nullptr, dout.ptr(),
                                           nullptr, gq.ptr(), gk.ptr(), gv.ptr(), gg.ptr(), nullptr,
                                           kc::stream());
      });
    };
    const double tot = train_ms();
    double old_bwd = 0;
    {
      const cuda_test::ScopedEnv e("KIMI_CUDA_LR_BWD_KERNEL", "old");
      old_bwd = train_ms();
    }
    char fused_s[16] = "-";
    if (fused >= 0) std::snprintf(fused_s, sizeof fused_s, "%.3f", fused);
    std::printf("%8ld %6ld %8s %8.3f %9s %11.3f %8.3f %11.3f %12.3f %8.2f\n", long(seq), long(B),
                channel ? "channel" : "scalar", fwd, fused_s, two, old, tot, old_bwd,
                NT / (tot * 1e-3) / 1e6);
  }
}

void bench_decode(int reps) {
  using T = __nv_bfloat16;
  const int64_t H = 32, K = 128, V = 128;
  std::printf("\nKDA decode step, bf16 q/k/v/g/beta, fp32 state [B,32,128,128] updated in place\n");
  std::printf("%6s %10s %14s %10s\n", "B", "us", "state MB r+w", "TB/s");
  for (int64_t B : {1, 64, 256}) {
    RecurrenceDims d{B, 1, H, K, V, GateKind::kPerChannel, 1.0 / std::sqrt(double(K)), 64};
    Dev<T> q(uniform(B * H * K, 11, -1, 1)), k(uniform(B * H * K, 12, -0.1, 0.1));
    Dev<T> v(uniform(B * H * V, 13, -1, 1)), g(uniform(B * H * K, 14, -0.2, -0.001));
    Dev<T> beta(uniform(B * H, 15, 0.05, 0.95)), o(B * H * V);
    Dev<float> state(uniform(B * H * K * V, 16, -1, 1));
    const double ms = time_ms(5, reps * 5, [&] {
      kc::delta_rule_decode_step<T>(d, q.ptr(), k.ptr(), v.ptr(), g.ptr(), beta.ptr(), state.ptr(),
                                    o.ptr(), kc::stream());
    });
    const double bytes = 2.0 * B * H * K * V * 4;
    std::printf("%6ld %10.2f %14.1f %10.2f\n", long(B), ms * 1e3, bytes / 1e6,
                bytes / (ms * 1e-3) / 1e12);
  }
}

}  // namespace kimi::cuda_bench
