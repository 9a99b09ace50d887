// One decode step of the CUDA engine, layer by layer (all kernels on one stream, no host sync),
// its timing through a captured CUDA graph, the copy-bandwidth ceiling, and the registration.
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "core/tensor/error.h"
#include "inference/engine/cuda/cuda_engine.h"

namespace kimi::inference::engine::cuda {

void CudaEngine::run_step(int B) {
  const models::KimiLinearConfig& c = layout_.config;
  const int d = static_cast<int>(c.hidden_size);
  const float eps = static_cast<float>(c.rms_norm_eps);
  mark(StepPart::kEmbed);
  embed(tokens_, w<bf16>(layout_.embed), B, d, h_, stream_);
  bool normed = false;  // x_ already holds the next norm's output (moe_combine_norm)
  for (size_t i = 0; i < layout_.layers.size(); ++i) {
    const LayerOffsets& o = layout_.layers[i];
    if (!normed) {
      mark(StepPart::kNorm);
      rms_norm(h_, d, w<bf16>(o.input_norm), B, d, eps, x_, nullptr, stream_);
    }
    if (o.is_mla)
      run_mla(static_cast<int>(i), B);
    else
      run_kda(static_cast<int>(i), B);
    mark(StepPart::kNorm);
    rms_norm(h_, d, w<bf16>(o.post_norm), B, d, eps, x_, o.is_moe ? xf_ : nullptr, stream_);
    const bool last = i + 1 == layout_.layers.size();
    normed = run_ffn(static_cast<int>(i), B,
                     w<bf16>(last ? layout_.final_norm : layout_.layers[i + 1].input_norm));
  }
  if (!normed) {
    mark(StepPart::kNorm);
    rms_norm(h_, d, w<bf16>(layout_.final_norm), B, d, eps, x_, nullptr, stream_);
  }
  mark(StepPart::kHead);
  project(w<bf16>(layout_.lm_head), static_cast<int>(c.vocab_size), d, x_, d, B, logits_,
          c.vocab_size, false);
  advance_lengths(slots_, B, lengths_.get<int>(), stream_);
  mark(StepPart::kCount);
}

void CudaEngine::project(const bf16* W, int N, int K, const bf16* x, int64_t xs, int B, float* y,
                         int64_t ys, bool accumulate) {
  if (batched(B))
    gemm(blas_, GemmType::kBF16, B, N, K, x, xs, W, K, true, y, ys, accumulate);
  else
    small_gemv(W, N, K, x, false, xs, B, y, ys, accumulate);
}

void CudaEngine::small_gemv(const bf16* W, int N, int K, const void* x, bool x_f32, int64_t xs,
                            int B, float* y, int64_t ys, bool accumulate) {
  if (gemv_mode_ == GemvMode::kSplit)
    gemv_split(W, N, K, x, x_f32, xs, B, y, ys, accumulate, stream_);
  else
    gemv(W, N, K, x, x_f32, xs, B, y, ys, accumulate, stream_);
}

void CudaEngine::mark(StepPart part) {
  if (!marks_) return;
  const size_t i = marks_->size();
  if (i == mark_events_.size()) {
    cudaEvent_t e = nullptr;
    KIMI_CUDA_CHECK(cudaEventCreate(&e));
    mark_events_.push_back(e);
  }
  KIMI_CUDA_CHECK(cudaEventRecord(mark_events_[i], stream_));
  marks_->emplace_back(part, mark_events_[i]);
}

void CudaEngine::run_kda(int layer, int B) {
  const models::KimiLinearConfig& c = layout_.config;
  const LayerOffsets& o = layout_.layers[layer];
  const int d = static_cast<int>(c.hidden_size), K = static_cast<int>(c.kda_head_dim);
  const int H = static_cast<int>(c.kda_num_heads), HK = H * K;
  const int rows = static_cast<int>(layout_.kda_rows);
  mark(StepPart::kKdaProj);
  project(w<bf16>(o.kda_in), rows, d, x_, d, B, proj_, rows, false);
  // f_b and g_b take fp32 inputs of 128 columns: 1 MB of weights, re-read from L2.
  small_gemv(w<bf16>(o.f_b), HK, K, proj_ + 3 * HK, true, rows, B, fbuf_, HK, false);
  small_gemv(w<bf16>(o.g_b), HK, K, proj_ + 3 * HK + K, true, rows, B, zbuf_, HK, false);
  const int64_t ki = caches_.kda_index[layer];
  KdaStep a{};
  a.B = B, a.H = H, a.K = K, a.W = static_cast<int>(c.short_conv_kernel_size);
  a.slots = slots_;
  a.proj = proj_, a.proj_stride = rows, a.f = fbuf_, a.z = zbuf_;
  a.conv_q = w<bf16>(o.q_conv), a.conv_k = w<bf16>(o.k_conv), a.conv_v = w<bf16>(o.v_conv);
  a.a_log = w<float>(o.a_log), a.dt_bias = w<float>(o.dt_bias);
  a.g_bias = w<bf16>(o.g_b_bias), a.o_norm = w<bf16>(o.o_norm);
  a.state = kda_state_.get<float>() + ki * caches_.slots * caches_.state_elems;
  a.tails = kda_tails_.get<float>() + ki * caches_.slots * caches_.conv_elems;
  a.norm_eps = static_cast<float>(c.rms_norm_eps);
  a.out = attn_;
  // Value columns over up to 4 blocks per (row, head) while the heads alone leave SMs idle.
  a.vsplit = 1;
  while (!kda_old_ && a.vsplit < kKdaMaxSplit && int64_t{B} * H * a.vsplit < sms_) a.vsplit *= 2;
  a.o_part = kda_opart_, a.ss_part = kda_ss_, a.tickets = kda_tickets_;
  mark(StepPart::kKdaUpdate);
  kda_decode(a, stream_);
  mark(StepPart::kKdaOut);
  project(w<bf16>(o.o_proj), d, HK, attn_, HK, B, h_, d, true);
}

void CudaEngine::run_mla(int layer, int B) {
  const models::KimiLinearConfig& c = layout_.config;
  const LayerOffsets& o = layout_.layers[layer];
  const int d = static_cast<int>(c.hidden_size), rows = static_cast<int>(layout_.mla_rows);
  mark(StepPart::kMlaProj);
  project(w<bf16>(o.mla_in), rows, d, x_, d, B, proj_, rows, false);
  MlaStep a{};
  a.B = B, a.H = static_cast<int>(c.num_attention_heads);
  a.nope = static_cast<int>(c.qk_nope_head_dim), a.rope = static_cast<int>(c.qk_rope_head_dim);
  a.vd = static_cast<int>(c.v_head_dim), a.rank = static_cast<int>(c.kv_lora_rank);
  a.slots = slots_, a.lengths = lengths_.get<int>();
  a.proj = proj_, a.proj_stride = rows;
  a.kv_norm = w<bf16>(o.kv_norm), a.kv_b = w<bf16>(o.kv_b);
  a.norm_eps = static_cast<float>(c.mla_norm_eps);
  a.scale = 1.f / std::sqrt(static_cast<float>(a.nope + a.rope));
  a.cache = mla_rows_.get<bf16>() +
            caches_.mla_index[layer] * caches_.slots * caches_.max_tokens * caches_.row_elems;
  a.max_tokens = caches_.max_tokens;
  a.qa = qa_, a.part_o = part_o_, a.part_ml = part_ml_, a.o_lat = olat_;
  a.splits = splits_for(B);
  a.out = attn_;
  mark(StepPart::kMlaAttend);
  mla_decode(a, stream_);
  const int hv = a.H * a.vd;
  mark(StepPart::kMlaOut);
  project(w<bf16>(o.o_proj), d, hv, attn_, hv, B, h_, d, true);
}

bool CudaEngine::run_ffn(int layer, int B, const bf16* next_norm) {
  const models::KimiLinearConfig& c = layout_.config;
  const LayerOffsets& o = layout_.layers[layer];
  const int d = static_cast<int>(c.hidden_size);
  const int hid = static_cast<int>(o.is_moe ? layout_.shared_hidden : layout_.mlp_hidden);
  // The down projections read SwiGLU's output straight from the gate_up output (no swiglu
  // launch) where the split GEMV runs.
  const bool fuse_swiglu = gemv_mode_ == GemvMode::kSplit && !batched(B);
  auto dense_ffn = [&] {
    mark(StepPart::kFfn);
    project(w<bf16>(o.mlp_gate_up), 2 * hid, d, x_, d, B, proj_, 2 * hid, false);
    if (fuse_swiglu) {
      gemv_swiglu(w<bf16>(o.mlp_down), d, hid, proj_, 2 * hid, B, h_, d, true, stream_);
      return;
    }
    swiglu(proj_, B, hid, act_, stream_);
    project(w<bf16>(o.mlp_down), d, hid, act_, hid, B, h_, d, true);
  };
  if (!o.is_moe) {
    dense_ffn();
    return false;
  }
  const int E = static_cast<int>(c.num_experts), K = static_cast<int>(c.num_experts_per_token);
  const int h = static_cast<int>(c.moe_intermediate_size), S = B * K;
  int moe_index = 0;
  for (int i = 0; i < layer; ++i) moe_index += layout_.layers[i].is_moe;
  int* ids = ids_ + static_cast<int64_t>(moe_index) * caches_.slots * K;
  mark(StepPart::kRoute);
  const float scale = static_cast<float>(c.routed_scaling_factor);
  if (!routing_old_ && !batched(B)) {
    moe_route_fused(xf_, w<float>(o.router), w<float>(o.router_bias), B, d, E, K, c.moe_renormalize,
                    scale, scores_, ids, wts_, plan_, ticket_, stream_);
  } else {
    moe_router(xf_, w<float>(o.router), B, d, E, scores_, stream_);
    moe_topk(scores_, w<float>(o.router_bias), B, E, K, c.moe_renormalize, scale, ids, wts_,
             stream_);
    moe_plan(ids, S, E, plan_, stream_);
  }
  const int64_t stride = o.expert_stride / 2;
  const int groups = std::min(E, S);
  mark(StepPart::kExperts);
  auto experts = [&](const bf16* W0, int N, int Kd, const bf16* x, int64_t xs, int in_div, float* y,
                     int64_t ys) {
    if (batched(B))
      expert_mma(W0, stride, N, Kd, x, xs, in_div, plan_, groups, y, ys, stream_);
    else if (gemv_mode_ == GemvMode::kSplit)
      expert_gemv_split(W0, stride, N, Kd, x, xs, in_div, plan_, groups, B, y, ys, stream_);
    else
      expert_gemv(W0, stride, N, Kd, x, xs, in_div, plan_, groups, y, ys, stream_);
  };
  experts(w<bf16>(o.experts), 2 * h, d, x_, d, K, gu_, 2 * h);
  if (fuse_swiglu) {
    expert_swiglu(w<bf16>(o.experts) + 2 * int64_t{h} * d, stride, d, h, gu_, 2 * h, plan_, groups,
                  B, y_, d, stream_);
  } else {
    swiglu(gu_, S, h, act_, stream_);
    experts(w<bf16>(o.experts) + 2 * int64_t{h} * d, d, h, act_, h, 1, y_, d);
  }
  if (norm_old_) {
    moe_combine(y_, wts_, B, K, d, h_, stream_);
    if (o.mlp_gate_up >= 0) dense_ffn();
    return false;
  }
  // The shared expert first (it reads x_), then the routed sum and the next norm in one kernel.
  if (o.mlp_gate_up >= 0) dense_ffn();
  mark(StepPart::kExperts);
  moe_combine_norm(y_, wts_, B, K, d, h_, next_norm, static_cast<float>(c.rms_norm_eps), x_,
                   stream_);
  return true;
}

double CudaEngine::time_steps_ms(int64_t batch, int warmup, int reps) {
  if (batch < 1 || batch > caches_.slots || warmup < 1 || reps < 1)
    throw UserError("decode engine: time_steps_ms needs 1 <= batch <= slots, warmup, reps >= 1");
  for (int64_t s = 0; s < batch; ++s)
    if (host_len_[s] + warmup + reps > caches_.max_tokens)
      throw UserError("decode engine: slot caches too short for the timed steps");
  const int B = static_cast<int>(batch);
  std::vector<int32_t> slots(B), tokens(B);
  for (int b = 0; b < B; ++b) slots[b] = b, tokens[b] = (b * 7919 + 13) % layout_.config.vocab_size;
  step(slots, tokens, nullptr);  // eager: sets the kernels' attributes before the capture
  cudaGraphExec_t exec = nullptr;
  auto it = graphs_.find(B);
  if (it != graphs_.end()) {
    exec = it->second;
  } else {
    cudaGraph_t graph = nullptr;
    KIMI_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    run_step(B);
    KIMI_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
    size_t nodes = 0;
    KIMI_CUDA_CHECK(cudaGraphGetNodes(graph, nullptr, &nodes));
    graph_nodes_ = static_cast<int64_t>(nodes);
    KIMI_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    KIMI_CUDA_CHECK(cudaGraphDestroy(graph));
    graphs_[B] = exec;
  }
  for (int i = 1; i < warmup; ++i) KIMI_CUDA_CHECK(cudaGraphLaunch(exec, stream_));
  cudaEvent_t e0, e1;
  KIMI_CUDA_CHECK(cudaEventCreate(&e0));
  KIMI_CUDA_CHECK(cudaEventCreate(&e1));
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    KIMI_CUDA_CHECK(cudaEventRecord(e0, stream_));
    KIMI_CUDA_CHECK(cudaGraphLaunch(exec, stream_));
    KIMI_CUDA_CHECK(cudaEventRecord(e1, stream_));
    KIMI_CUDA_CHECK(cudaEventSynchronize(e1));
    float t = 0;
    KIMI_CUDA_CHECK(cudaEventElapsedTime(&t, e0, e1));
    ms.push_back(t);
  }
  cudaEventDestroy(e0), cudaEventDestroy(e1);
  for (int b = 0; b < B; ++b) host_len_[b] += (warmup - 1) + reps;
  last_batch_ = B;
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

StepPartMs CudaEngine::time_step_parts(int64_t batch, int reps) {
  if (batch < 1 || batch > caches_.slots || reps < 1)
    throw UserError("decode engine: time_step_parts needs 1 <= batch <= slots, reps >= 1");
  for (int64_t s = 0; s < batch; ++s)
    if (host_len_[s] + reps + 1 > caches_.max_tokens)
      throw UserError("decode engine: slot caches too short for the timed steps");
  const int B = static_cast<int>(batch);
  std::vector<int32_t> slots(B), tokens(B);
  for (int b = 0; b < B; ++b) slots[b] = b, tokens[b] = (b * 7919 + 13) % layout_.config.vocab_size;
  step(slots, tokens, nullptr);  // untimed: first launches, cuBLAS heuristics
  StepPartMs sum{};
  std::vector<std::pair<StepPart, cudaEvent_t>> marks;
  for (int r = 0; r < reps; ++r) {
    marks.clear();
    KIMI_CUDA_CHECK(cudaMemcpyAsync(slots_, slots.data(), B * 4, cudaMemcpyHostToDevice, stream_));
    KIMI_CUDA_CHECK(
        cudaMemcpyAsync(tokens_, tokens.data(), B * 4, cudaMemcpyHostToDevice, stream_));
    marks_ = &marks;
    try {
      run_step(B);
    } catch (...) {
      marks_ = nullptr;
      throw;
    }
    marks_ = nullptr;
    KIMI_CUDA_CHECK(cudaStreamSynchronize(stream_));
    // Each interval belongs to the part whose mark opened it; the last mark closes the step.
    for (size_t i = 0; i + 1 < marks.size(); ++i) {
      float t = 0;
      KIMI_CUDA_CHECK(cudaEventElapsedTime(&t, marks[i].second, marks[i + 1].second));
      sum[static_cast<int>(marks[i].first)] += t;
    }
    for (int b = 0; b < B; ++b) ++host_len_[b];
  }
  last_batch_ = B;
  for (double& v : sum) v /= reps;
  return sum;
}

double CudaEngine::copy_bandwidth() {
  const int64_t bytes = std::min<int64_t>(int64_t{1} << 30, free_device_bytes() / 4);
  DeviceBuffer a(bytes), b(bytes);
  cudaEvent_t e0, e1;
  KIMI_CUDA_CHECK(cudaEventCreate(&e0));
  KIMI_CUDA_CHECK(cudaEventCreate(&e1));
  std::vector<double> ms;
  for (int r = 0; r < 13; ++r) {
    KIMI_CUDA_CHECK(cudaEventRecord(e0, stream_));
    KIMI_CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, stream_));
    KIMI_CUDA_CHECK(cudaEventRecord(e1, stream_));
    KIMI_CUDA_CHECK(cudaEventSynchronize(e1));
    float t = 0;
    KIMI_CUDA_CHECK(cudaEventElapsedTime(&t, e0, e1));
    if (r >= 3) ms.push_back(t);  // 3 warm-ups
  }
  cudaEventDestroy(e0), cudaEventDestroy(e1);
  std::sort(ms.begin(), ms.end());
  return 2.0 * static_cast<double>(bytes) / (ms[ms.size() / 2] * 1e-3);
}

namespace {

const bool registered = [] {
  register_engine_factory([](const WeightLayout& l) -> std::unique_ptr<DecodeEngine> {
    return std::make_unique<CudaEngine>(l);
  });
  return true;
}();

}  // namespace
}  // namespace kimi::inference::engine::cuda
