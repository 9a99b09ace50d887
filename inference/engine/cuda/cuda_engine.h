// The CUDA decode engine (decode_engine.h): the bf16 weight arena, the per-slot caches and the
// step buffers sized for all slots; a step enqueues every kernel on one stream (and can be
// captured once per batch size into a CUDA graph, which the timing replays). The chunked
// prefill (cuda_engine_prefill.cpp) has buffers of its own, sized for one chunk and grown on
// demand. One cuBLAS handle on the engine's stream, with a fixed workspace, serves the
// prefill's GEMMs and the decode step's above 8 rows (captured into the step's graph).
#pragma once

#include <map>
#include <utility>
#include <vector>

#include "inference/engine/cuda/device_buffer.h"
#include "inference/engine/cuda/engine_kernels.h"
#include "inference/engine/decode_engine.h"

namespace kimi::inference::engine::cuda {

class CudaEngine final : public DecodeEngine {
 public:
  explicit CudaEngine(const WeightLayout& layout);
  ~CudaEngine() override;

  const WeightLayout& layout() const override { return layout_; }
  void init_random(uint64_t seed) override;
  void load_hf(const std::string& dir) override;
  std::vector<float> read_weight(const WeightEntry& e) const override;
  void allocate_slots(int64_t slots, int64_t max_tokens) override;
  const CacheLayout& caches() const override { return caches_; }
  void reset() override;
  void fill_synthetic(int64_t n, int64_t length, uint64_t seed) override;
  void step(const std::vector<int32_t>& slots, const std::vector<int32_t>& tokens,
            std::vector<float>* logits) override;
  void prefill(int32_t slot, const std::vector<int32_t>& tokens,
               std::vector<float>* logits) override;
  void set_prefill_chunk(int64_t tokens) override;
  int64_t prefill_chunk() const override { return prefill_chunk_; }
  int64_t length(int64_t slot) const override;
  std::vector<float> read_slot(int64_t slot, bool kda) const override;
  double time_steps_ms(int64_t batch, int warmup, int reps) override;
  StepPartMs time_step_parts(int64_t batch, int reps) override;
  int64_t distinct_experts_last_step() override;
  int64_t graph_nodes() const override { return graph_nodes_; }
  double copy_bandwidth() override;
  int64_t free_device_bytes() const override;
  int64_t max_slots(int64_t max_tokens) const override;
  std::string device_name() const override;

 private:
  // Step buffers for `slots` rows, in bytes (the same formula allocates them).
  int64_t workspace_bytes(int64_t slots) const;
  int splits_for(int batch) const;
  void run_step(int batch);  // enqueues one step of rows [0, batch) of tokens_ / slots_
  void run_kda(int layer, int batch);
  void run_mla(int layer, int batch);
  // Returns whether it left next_norm's output of the new h in x_ (moe_combine_norm).
  bool run_ffn(int layer, int batch, const bf16* next_norm);
  // Above 8 rows the GEMV re-reads each weight row once per 8 (gemv.cu); a tensor-core GEMM
  // (cuBLAS, or expert_mma for the routed experts) reads it about once. KIMI_ENGINE_GEMV=old
  // keeps the one-warp-per-row GEMV at every batch (the oracle); unset or =v1, it runs at B <= 8
  // only; =split, B <= 8 takes gemv_split / expert_gemv_split instead (opt-in: not faster yet).
  enum class GemvMode { kSplit, kV1, kOld };
  bool batched(int batch) const { return gemv_mode_ != GemvMode::kOld && batch > kGemvTile; }
  // The B <= 8 product of the mode (gemv_split or gemv).
  void small_gemv(const bf16* W, int N, int K, const void* x, bool x_f32, int64_t xs, int B,
                  float* y, int64_t ys, bool accumulate);
  // y [B, N] (+)= x [B, K] W^T for bf16 x (row stride xs) and a bf16 weight [N, K].
  void project(const bf16* W, int N, int K, const bf16* x, int64_t xs, int B, float* y, int64_t ys,
               bool accumulate);
  // Part boundaries of a timed un-graphed step (time_step_parts); nothing otherwise.
  void mark(StepPart part);
  void clear_graphs();
  // The prefill (cuda_engine_prefill.cpp): one chunk of n rows of `slot`, whose caches hold L.
  struct PrefillBuffers {
    int* tokens;
    float *h, *xf, *proj, *f, *z, *qa, *olat, *scores, *wts, *gu, *ys, *logits;
    float *q, *k, *v, *g, *beta, *o;
    float *kv_b, *up;  // MLA: kv_b in fp32, the up-projection's fp32 output
    bf16 *x, *attn, *xs, *act;
    int *ids, *inv;
    MoePlan plan;
  };
  int64_t prefill_bytes(int64_t n, PrefillBuffers* carve) const;
  void reserve_prefill(int64_t n, int64_t context);
  void release_prefill();
  void run_prefill_chunk(int slot, int64_t L, int n, bool logits);
  void prefill_kda(int layer, int slot, int n);
  void prefill_mla(int layer, int slot, int64_t L, int n);
  void prefill_ffn(int layer, int n);
  template <class T>
  T* w(int64_t offset) const {
    return reinterpret_cast<T*>(arena_.get<char>() + offset);
  }

  WeightLayout layout_;
  CacheLayout caches_;
  cudaStream_t stream_ = nullptr;
  int sms_ = 132;
  int forced_splits_per_sm_ = 0;  // KIMI_ENGINE_MLA_SPLITS_PER_SM, 0 = mla_splits.h's rule
  DeviceBuffer arena_;
  DeviceBuffer kda_state_, kda_tails_, mla_rows_, lengths_;
  // Step buffers (workspace_bytes): see allocate_slots.
  DeviceBuffer work_;
  float *h_ = nullptr, *xf_ = nullptr, *proj_ = nullptr, *fbuf_ = nullptr, *zbuf_ = nullptr,
        *qa_ = nullptr;
  float *part_o_ = nullptr, *part_ml_ = nullptr, *olat_ = nullptr, *scores_ = nullptr;
  float *wts_ = nullptr, *gu_ = nullptr, *y_ = nullptr, *logits_ = nullptr;
  bf16 *x_ = nullptr, *attn_ = nullptr, *act_ = nullptr;
  int *ids_ = nullptr, *tokens_ = nullptr, *slots_ = nullptr;
  unsigned* ticket_ = nullptr;
  float *kda_opart_ = nullptr, *kda_ss_ = nullptr;  // the split KDA update's partial o, sums
  unsigned* kda_tickets_ = nullptr;  // moe_route_fused's (zeroed by reset, left zero by the kernel)
  MoePlan plan_{};
  int64_t proj_cols_ = 0, max_splits_rows_ = 0;
  int last_batch_ = 0;
  int64_t graph_nodes_ = 0;
  std::vector<int64_t> host_len_;
  std::map<int, cudaGraphExec_t> graphs_;
  // Prefill state: buffers for prefill_rows_ rows, the attention's fp32 latent copy and score
  // tiles (pattn_, for a context of prefill_context_ tokens), the cuBLAS handle.
  int64_t prefill_chunk_ = kDefaultPrefillChunk, prefill_rows_ = 0, prefill_context_ = 0;
  DeviceBuffer pwork_, pattn_;
  PrefillBuffers pb_{};
  float *latent_f32_ = nullptr, *score_tile_ = nullptr;
  int64_t score_floats_ = 0;
  cublasHandle_t blas_ = nullptr;
  DeviceBuffer blas_ws_;  // cuBLAS's workspace, fixed before any capture (graph-safe)
  static constexpr int kGemvTile = 8;
  GemvMode gemv_mode_ = GemvMode::kV1;
  // KIMI_ENGINE_ROUTING=old: router, top-k and plan as three kernels (else moe_route_fused at
  // B <= 8); KIMI_ENGINE_NORM=old: moe_combine then rms_norm (else moe_combine_norm).
  bool routing_old_ = false, norm_old_ = false;
  // KIMI_ENGINE_KDA=old: the KDA update as one block per (row, head) at every batch (else the
  // value columns split over up to kKdaMaxSplit blocks while B * heads < SMs).
  bool kda_old_ = false;
  static constexpr int kKdaMaxSplit = 4;
  std::vector<std::pair<StepPart, cudaEvent_t>>* marks_ = nullptr;
  std::vector<cudaEvent_t> mark_events_;
};

}  // namespace kimi::inference::engine::cuda
