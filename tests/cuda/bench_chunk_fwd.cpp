// kimi_cuda_bench's chunk forward tables: the state kernels side by side (--state), the intra
// kernels side by side (--intra), and the forward / forward + backward rows (the default and
// --profile).
#include <cstdio>

#include "tests/cuda/bench_common.h"

namespace kimi::cuda_bench {

// The forward's state kernel side by side: the WMMA TF32 kernel (KIMI_CUDA_STATE_KERNEL=old),
// the tensor-core kernel with its own tile choice, and with 1, 2, 4, 8 warps (V tiles of 16, 32,
// 64, 128 columns; KIMI_CUDA_STATE_WARPS), without and with O warps ("o": KIMI_CUDA_STATE_OWARPS).
void bench_state(int reps) {
  ChunkInputs in;
  std::printf("\nchunk forward state kernel, bf16, H=16 K=V=128, B*T=65,536 tokens (ms)\n");
  std::printf("%8s %6s %6s %8s %10s %10s %10s\n", "T", "B", "gate", "kernel", "total", "intra",
              "state");
  for (int gi = 0; gi < 2; ++gi)
    for (int64_t seq : {2048, 8192, 32768})
      for (const char* variant : {"old", "auto", "1", "2", "4", "8", "1o", "2o", "4o"}) {
        const std::string v = variant;
        if (v == "old") setenv("KIMI_CUDA_STATE_KERNEL", "old", 1);
        if (v != "old" && v != "auto") {
          setenv("KIMI_CUDA_STATE_WARPS", v.substr(0, 1).c_str(), 1);
          setenv("KIMI_CUDA_STATE_OWARPS", v.back() == 'o' ? "1" : "0", 1);
        }
        const FwdTimes t = time_chunk_fwd(in, gi, seq, reps);
        unsetenv("KIMI_CUDA_STATE_KERNEL");
        unsetenv("KIMI_CUDA_STATE_WARPS");
        unsetenv("KIMI_CUDA_STATE_OWARPS");
        std::printf("%8ld %6ld %6s %8s %10.3f %10.3f %10.3f\n", long(seq), long(in.NT / seq),
                    gate_names[gi], (v == "old" || v == "auto") ? variant : ("w" + v).c_str(),
                    t.total, t.intra, t.state);
      }
}

// The forward's KDA intra kernel side by side: the WMMA TF32 kernel (KIMI_CUDA_INTRA_KERNEL=old)
// and the bf16 tensor-core kernel (delta_rule_chunk_intra_mma.cu), with the forward totals.
void bench_intra(int reps) {
  ChunkInputs in;
  std::printf(
      "\nchunk forward intra kernel, bf16, H=16 K=V=128, B*T=65,536 tokens (ms); old = the "
      "WMMA TF32 kernel of the gate kind, new = bf16 mma.sync\n");
  std::printf("%6s %8s %6s %8s %10s %10s %10s\n", "gate", "T", "B", "intra", "total", "intra",
              "state");
  for (int gi = 0; gi < 3; ++gi)
    for (int64_t seq : {2048, 8192, 32768})
      for (const char* variant : {"old", "new"}) {
        setenv("KIMI_CUDA_INTRA_KERNEL", variant, 1);
        const FwdTimes t = time_chunk_fwd(in, gi, seq, reps);
        unsetenv("KIMI_CUDA_INTRA_KERNEL");
        std::printf("%6s %8ld %6ld %8s %10.3f %10.3f %10.3f\n", gate_names[gi], long(seq),
                    long(in.NT / seq), variant, t.total, t.intra, t.state);
      }
}

void bench_chunk(int reps, bool profile) {
  using T = __nv_bfloat16;
  const int64_t H = 16, K = 128, V = 128, NT = 65536;
  std::printf("\nKDA chunk forward, bf16 in, fp32 state, H=%ld K=V=%ld, B*T=%ld tokens\n", long(H),
              long(K), long(NT));
  ChunkInputs in;
  Dev<T>&dq = in.dq, &dk = in.dk, &dv = in.dv, &dg = in.dg, &dbeta = in.dbeta, &o = in.o;
  auto gate_ptr = [&](int gi) -> const T* { return in.gate(gi); };
  std::printf("%8s %6s %6s %6s %10s %10s %10s %12s\n", "T", "B", "gate", "intra", "total ms",
              "intra ms", "state ms", "M tokens/s");
  for (const char* threads : {"512", "256"}) {
    if (profile && std::strcmp(threads, "512") != 0) continue;
    setenv("KIMI_CUDA_CHUNK_THREADS", threads, 1);  // intra-kernel block size (delta_rule_chunk.cu)
    for (int gi = 0; gi < 3; ++gi)
      for (int64_t seq : {2048, 8192, 32768}) {
        if (profile && seq != 8192) continue;
        if (gi > 0 && std::strcmp(threads, "512") != 0) continue;  // 256 threads: KDA only
        if (profile) {  // three calls (two warm-up), for ncu
          time_chunk_fwd(in, gi, seq, 1);
          KIMI_CUDA_CHECK(cudaStreamSynchronize(kc::stream()));
          return;
        }
        const FwdTimes t = time_chunk_fwd(in, gi, seq, reps);
        std::printf("%8ld %6ld %6s %6s %10.3f %10.3f %10.3f %12.2f\n", long(seq), long(NT / seq),
                    gate_names[gi], threads, t.total, t.intra, t.state,
                    NT / (t.total * 1e-3) / 1e6);
      }
  }
  unsetenv("KIMI_CUDA_CHUNK_THREADS");
  // Forward + backward (training: no h0, no final state, no dh0), the backward's stages timed
  // by events: F1 intra, F2 states h, B1 dh walk, B2 dGq/dW/dKd, B3 UT bwd, B4 Gram bwd.
  {
    std::printf(
        "\nKDA chunk forward + backward, bf16, same shape (peers: tools/peer_bench.py, timed "
        "in the same run)\n");
    Dev<T> dout(uniform(NT * H * V, 6, -1, 1)), gq(NT * H * K), gk(NT * H * K), gv(NT * H * V);
    Dev<T> gg(NT * H * K), gb(NT * H);
    std::printf("%8s %6s %6s %9s %9s %9s %9s | %6s %6s %6s %6s %6s %6s\n", "T", "B", "gate",
                "fwd ms", "bwd ms", "total ms", "M tok/s", "F1", "F2 h", "B1 dh", "B2", "B3 ut",
                "B4");
    std::vector<cudaEvent_t> evs(8);
    for (auto& e : evs) KIMI_CUDA_CHECK(cudaEventCreate(&e));
    kc::ChunkBwdEvents be{};
    for (int i = 0; i < 7; ++i) be.e[i] = evs[i + 1];
    for (int gi = 0; gi < 3; ++gi)
      for (int64_t seq : {2048, 8192, 32768}) {
        const int64_t B = NT / seq;
        RecurrenceDims d{B, seq, H, K, V, gates[gi], 1.0 / std::sqrt(double(K)), 64};
        auto step = [&](const kc::ChunkBwdEvents* e) {
          kc::delta_rule_chunk_fwd<T>(d, dq.ptr(), dk.ptr(), dv.ptr(), gate_ptr(gi), dbeta.ptr(),
                                      nullptr, o.ptr(), nullptr, kc::stream());
          kc::delta_rule_chunk_bwd<T>(d, dq.ptr(), dk.ptr(), dv.ptr(), gate_ptr(gi), dbeta.ptr(),
                                      nullptr, dout.ptr(), nullptr, gq.ptr(), gk.ptr(), gv.ptr(),
                                      gg.ptr(), gb.ptr(), nullptr, kc::stream(), e);
        };
        for (int i = 0; i < 2; ++i) step(nullptr);
        std::vector<double> tot, fwd, bwd, st[6];
        for (int i = 0; i < reps; ++i) {
          KIMI_CUDA_CHECK(cudaEventRecord(evs[0], kc::stream()));
          step(&be);
          KIMI_CUDA_CHECK(cudaEventSynchronize(evs[7]));
          float m = 0;
          KIMI_CUDA_CHECK(cudaEventElapsedTime(&m, evs[0], evs[7]));
          tot.push_back(m);
          KIMI_CUDA_CHECK(cudaEventElapsedTime(&m, evs[0], evs[1]));
          fwd.push_back(m);
          KIMI_CUDA_CHECK(cudaEventElapsedTime(&m, evs[1], evs[7]));
          bwd.push_back(m);
          for (int k2 = 0; k2 < 6; ++k2) {
            KIMI_CUDA_CHECK(cudaEventElapsedTime(&m, evs[k2 + 1], evs[k2 + 2]));
            st[k2].push_back(m);
          }
        }
        const double ms = median(tot);
        std::printf("%8ld %6ld %6s %9.3f %9.3f %9.3f %9.2f | %6.2f %6.2f %6.2f %6.2f %6.2f %6.2f\n",
                    long(seq), long(B), gate_names[gi], median(fwd), median(bwd), ms,
                    NT / (ms * 1e-3) / 1e6, median(st[0]), median(st[1]), median(st[2]),
                    median(st[3]), median(st[4]), median(st[5]));
      }
    for (auto& e : evs) cudaEventDestroy(e);
  }
  // The recurrent kernel (the GPU oracle) at T=2048, for scale.
  {
    RecurrenceDims d{NT / 2048, 2048, H, K, V, GateKind::kPerChannel, 1.0 / std::sqrt(double(K)),
                     64};
    const double ms = time_ms(1, 3, [&] {
      kc::delta_rule_recurrent_fwd<T>(d, dq.ptr(), dk.ptr(), dv.ptr(), dg.ptr(), dbeta.ptr(),
                                      nullptr, o.ptr(), nullptr, kc::stream());
    });
    std::printf("recurrent (token by token) forward, T=2048: %.3f ms (%.2f M tokens/s)\n", ms,
                NT / (ms * 1e-3) / 1e6);
  }
}

}  // namespace kimi::cuda_bench
