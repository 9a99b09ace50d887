// The CUDA decode engine: construction, weights (random or HF), slots and caches, steps, timing.
// The per-layer step is in cuda_engine_step.cpp.
#include "inference/engine/cuda/cuda_engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>

#include "core/tensor/error.h"
#include "inference/engine/hf_loader.h"
#include "inference/engine/mla_splits.h"

namespace kimi::inference::engine::cuda {
namespace {

constexpr int64_t kGiB = int64_t{1} << 30;
constexpr int64_t kMargin = 512 << 20;  // left free for the runtime and cuBLAS-free launches
constexpr size_t kBlasWorkspace = size_t{32} << 20;

double gib(int64_t b) { return static_cast<double>(b) / kGiB; }

// Hands out 256-byte aligned pieces of one buffer; with a null base it only counts.
struct Carver {
  char* base = nullptr;
  int64_t at = 0;
  template <class T>
  T* take(int64_t count) {
    at = (at + 255) / 256 * 256;
    T* p = base ? reinterpret_cast<T*>(base + at) : nullptr;
    at += std::max<int64_t>(count, 1) * static_cast<int64_t>(sizeof(T));
    return p;
  }
};

int device_sms() {
  int dev = 0, sms = 132;
  KIMI_CUDA_CHECK(cudaGetDevice(&dev));
  KIMI_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  return sms;
}

}  // namespace

CudaEngine::CudaEngine(const WeightLayout& layout) : layout_(layout) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0)
    throw UserError("decode engine: no CUDA device is available");
  const models::KimiLinearConfig& c = layout_.config;
  const int64_t smem =
      mla_smem_bytes(static_cast<int>(c.num_attention_heads), static_cast<int>(c.kv_lora_rank),
                     static_cast<int>(c.qk_rope_head_dim));
  if (smem > 200 * 1024 || c.num_attention_heads * c.kv_lora_rank > kMlaMaxAccPerThread * 256)
    throw UserError(fmt::format(
        "decode engine: MLA with {} heads x kv_lora_rank {} is beyond the attention kernel "
        "(heads * rank <= 16384, {} KiB of shared memory)",
        c.num_attention_heads, c.kv_lora_rank, smem / 1024));
  sms_ = device_sms();
  forced_splits_per_sm_ = mla_splits_per_sm_from_env();  // mla_splits.h: the default rule
  const int64_t free = free_device_bytes();
  if (layout_.total_bytes + kMargin > free)
    throw UserError(
        fmt::format("decode engine: the bf16 weights need {:.1f} GiB, the device has "
                    "{:.1f} GiB free",
                    gib(layout_.total_bytes), gib(free)));
  KIMI_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  arena_ = DeviceBuffer(layout_.total_bytes);
  KIMI_CUDA_CHECK(cudaMemsetAsync(arena_.get(), 0, layout_.total_bytes, stream_));
  KIMI_CUDA_CHECK(cudaStreamSynchronize(stream_));
  auto env_is = [](const char* key, const char* value) {
    const char* v = std::getenv(key);
    return v != nullptr && std::string(v) == value;
  };
  // The split-K GEMV stays opt-in: on an H100 (session 15, call C1) it tied session 14's GEMV at
  // B = 1 and lost at B = 8 (the routed experts at 1.2 against 2.2 TB/s), so v1 is the default.
  const char* gemv = std::getenv("KIMI_ENGINE_GEMV");
  const std::string g = gemv == nullptr ? "" : gemv;
  if (g != "" && g != "v1" && g != "old" && g != "split")
    throw UserError("KIMI_ENGINE_GEMV=" + g + ": give v1 (the default), split or old");
  gemv_mode_ = g == "old" ? GemvMode::kOld : g == "split" ? GemvMode::kSplit : GemvMode::kV1;
  routing_old_ = env_is("KIMI_ENGINE_ROUTING", "old");
  norm_old_ = env_is("KIMI_ENGINE_NORM", "old");
  kda_old_ = env_is("KIMI_ENGINE_KDA", "old");
  KIMI_CUBLAS_CHECK(cublasCreate(&blas_));
  KIMI_CUBLAS_CHECK(cublasSetStream(blas_, stream_));
  // A workspace of our own, set before any capture: a captured cuBLAS call must not allocate.
  blas_ws_ = DeviceBuffer(kBlasWorkspace);
  KIMI_CUBLAS_CHECK(cublasSetWorkspace(blas_, blas_ws_.get(), kBlasWorkspace));
  // As core/cuda/gemm: fp32 compute stays fp32 unless a call asks for TF32, and split-K
  // partial sums stay fp32.
  KIMI_CUBLAS_CHECK(cublasSetMathMode(
      blas_, static_cast<cublasMath_t>(CUBLAS_DEFAULT_MATH |
                                       CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
}

CudaEngine::~CudaEngine() {
  clear_graphs();
  for (cudaEvent_t e : mark_events_) cudaEventDestroy(e);
  if (blas_) cublasDestroy(blas_);
  if (stream_) cudaStreamDestroy(stream_);
}

void CudaEngine::clear_graphs() {
  for (auto& [b, g] : graphs_) cudaGraphExecDestroy(g);
  graphs_.clear();
}

int64_t CudaEngine::free_device_bytes() const {
  size_t free = 0, total = 0;
  KIMI_CUDA_CHECK(cudaMemGetInfo(&free, &total));
  return static_cast<int64_t>(free);
}

std::string CudaEngine::device_name() const {
  int dev = 0;
  cudaDeviceProp p{};
  KIMI_CUDA_CHECK(cudaGetDevice(&dev));
  KIMI_CUDA_CHECK(cudaGetDeviceProperties(&p, dev));
  return p.name;
}

void CudaEngine::init_random(uint64_t seed) {
  for (size_t i = 0; i < layout_.entries.size(); ++i) {
    const WeightEntry& e = layout_.entries[i];
    init_tensor(w<void>(e.offset), e.dtype == WDType::kF32, e.numel(), static_cast<int>(e.init),
                static_cast<float>(e.a), static_cast<float>(e.b), seed, i, stream_);
  }
  KIMI_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaEngine::load_hf(const std::string& dir) {
  KIMI_CUDA_CHECK(cudaMemsetAsync(arena_.get(), 0, layout_.total_bytes, stream_));
  constexpr int64_t kChunk = int64_t{1} << 26;  // floats staged per copy (256 MiB)
  DeviceBuffer staging(kChunk * 4);
  load_hf_checkpoint(dir, layout_, [&](const WeightEntry& e, const float* data, int64_t n) {
    for (int64_t at = 0; at < n; at += kChunk) {
      const int64_t m = std::min(kChunk, n - at);
      KIMI_CUDA_CHECK(
          cudaMemcpyAsync(staging.get(), data + at, m * 4, cudaMemcpyHostToDevice, stream_));
      const int64_t elem = e.dtype == WDType::kF32 ? 4 : 2;
      convert_f32(w<char>(e.offset) + at * elem, e.dtype == WDType::kF32, staging.get<float>(), m,
                  stream_);
      KIMI_CUDA_CHECK(cudaStreamSynchronize(stream_));  // `data` is freed after the callback
    }
  });
}

std::vector<float> CudaEngine::read_weight(const WeightEntry& e) const {
  std::vector<float> out(e.numel());
  if (e.dtype == WDType::kF32) {
    KIMI_CUDA_CHECK(cudaMemcpy(out.data(), w<void>(e.offset), e.bytes(), cudaMemcpyDeviceToHost));
    return out;
  }
  std::vector<uint16_t> raw(e.numel());
  KIMI_CUDA_CHECK(cudaMemcpy(raw.data(), w<void>(e.offset), e.bytes(), cudaMemcpyDeviceToHost));
  for (size_t i = 0; i < raw.size(); ++i) {
    const uint32_t bits = static_cast<uint32_t>(raw[i]) << 16;  // bf16 = the top half of an f32
    std::memcpy(&out[i], &bits, 4);
  }
  return out;
}

int CudaEngine::splits_for(int batch) const {
  return static_cast<int>(mla_attend_splits(sms_, mla_splits_per_sm(batch, forced_splits_per_sm_),
                                            batch, caches_.max_tokens));
}

int64_t CudaEngine::workspace_bytes(int64_t slots) const {
  const models::KimiLinearConfig& c = layout_.config;
  const int64_t d = c.hidden_size, HK = c.kda_num_heads * c.kda_head_dim;
  const int64_t Hm = c.num_attention_heads, D = c.kv_lora_rank + c.qk_rope_head_dim;
  const int64_t S = slots * std::max<int64_t>(c.num_experts_per_token, 1);
  const int64_t h = c.moe_intermediate_size, E = std::max<int64_t>(c.num_experts, 1);
  const int64_t cols = std::max(
      {layout_.kda_rows, layout_.mla_rows, 2 * layout_.mlp_hidden, 2 * layout_.shared_hidden});
  const int64_t split_rows = int64_t(mla_max_splits_per_sm(forced_splits_per_sm_)) * sms_ + slots;
  int64_t moe_layers = 0;
  for (const LayerOffsets& o : layout_.layers) moe_layers += o.is_moe;
  Carver k;
  k.take<float>(slots * d);                               // h
  k.take<bf16>(slots * d);                                // x
  k.take<float>(slots * d);                               // x in fp32 (the router's input)
  k.take<float>(slots * cols);                            // proj
  k.take<float>(slots * HK), k.take<float>(slots * HK);   // f, z
  k.take<bf16>(slots * std::max(HK, Hm * c.v_head_dim));  // attn
  k.take<float>(slots * Hm * D);                          // qa
  k.take<float>(split_rows * Hm * c.kv_lora_rank);        // part_o
  k.take<float>(split_rows * Hm * 2);                     // part_ml
  k.take<float>(slots * Hm * c.kv_lora_rank);             // o_lat
  k.take<float>(slots * E);                               // scores
  k.take<int>(std::max<int64_t>(moe_layers, 1) * S);      // ids
  k.take<float>(S);                                       // weights
  k.take<int>(1), k.take<int>(E), k.take<int>(E + 1), k.take<int>(S);  // plan
  k.take<float>(S * 2 * h);                                            // gu
  k.take<bf16>(std::max({S * h, slots * layout_.mlp_hidden, slots * layout_.shared_hidden}));
  k.take<float>(S * d);                    // y
  k.take<float>(slots * c.vocab_size);     // logits
  k.take<int>(slots), k.take<int>(slots);  // tokens, slots
  k.take<unsigned>(1);                     // ticket
  k.take<float>(slots * HK), k.take<float>(slots * c.kda_num_heads * kKdaMaxSplit);
  k.take<unsigned>(slots * c.kda_num_heads);  // the split KDA update's
  return k.at;
}

int64_t CudaEngine::max_slots(int64_t max_tokens) const {
  const CacheLayout one = make_cache_layout(layout_.config, 1, max_tokens);
  const int64_t held = kda_state_.bytes() + kda_tails_.bytes() + mla_rows_.bytes() +
                       lengths_.bytes() + work_.bytes() + pwork_.bytes() + pattn_.bytes();
  const int64_t avail = free_device_bytes() + held - kMargin;
  const int64_t fixed = workspace_bytes(0);
  const int64_t per = one.bytes_per_slot() + (workspace_bytes(64) - fixed + 63) / 64 + 4;
  return avail > fixed ? (avail - fixed) / per : 0;
}

void CudaEngine::allocate_slots(int64_t slots, int64_t max_tokens) {
  clear_graphs();
  release_prefill();  // its buffers are sized again by the next prefill
  kda_state_.reset(), kda_tails_.reset(), mla_rows_.reset(), lengths_.reset(), work_.reset();
  const CacheLayout cl = make_cache_layout(layout_.config, slots, max_tokens);
  const int64_t need = cl.kda_bytes() + cl.mla_bytes() + workspace_bytes(slots) + slots * 4;
  const int64_t free = free_device_bytes();
  if (need + kMargin > free)
    throw UserError(
        fmt::format("decode engine: caches and buffers for {} sequences of {} tokens "
                    "need {:.2f} GiB, the device has {:.2f} GiB free",
                    slots, max_tokens, gib(need), gib(free)));
  caches_ = cl;
  kda_state_ = DeviceBuffer(cl.kda_layers * slots * cl.state_elems * 4);
  kda_tails_ = DeviceBuffer(cl.kda_layers * slots * cl.conv_elems * 4);
  mla_rows_ = DeviceBuffer(cl.mla_bytes());
  lengths_ = DeviceBuffer(slots * 4);
  work_ = DeviceBuffer(workspace_bytes(slots));
  const models::KimiLinearConfig& c = layout_.config;
  const int64_t d = c.hidden_size, HK = c.kda_num_heads * c.kda_head_dim;
  const int64_t Hm = c.num_attention_heads, D = c.kv_lora_rank + c.qk_rope_head_dim;
  const int64_t S = slots * std::max<int64_t>(c.num_experts_per_token, 1);
  const int64_t h = c.moe_intermediate_size, E = std::max<int64_t>(c.num_experts, 1);
  proj_cols_ = std::max(
      {layout_.kda_rows, layout_.mla_rows, 2 * layout_.mlp_hidden, 2 * layout_.shared_hidden});
  max_splits_rows_ = int64_t(mla_max_splits_per_sm(forced_splits_per_sm_)) * sms_ + slots;
  int64_t moe_layers = 0;
  for (const LayerOffsets& o : layout_.layers) moe_layers += o.is_moe;
  Carver k{work_.get<char>()};  // the same order as workspace_bytes
  h_ = k.take<float>(slots * d);
  x_ = k.take<bf16>(slots * d);
  xf_ = k.take<float>(slots * d);
  proj_ = k.take<float>(slots * proj_cols_);
  fbuf_ = k.take<float>(slots * HK), zbuf_ = k.take<float>(slots * HK);
  attn_ = k.take<bf16>(slots * std::max(HK, Hm * c.v_head_dim));
  qa_ = k.take<float>(slots * Hm * D);
  part_o_ = k.take<float>(max_splits_rows_ * Hm * c.kv_lora_rank);
  part_ml_ = k.take<float>(max_splits_rows_ * Hm * 2);
  olat_ = k.take<float>(slots * Hm * c.kv_lora_rank);
  scores_ = k.take<float>(slots * E);
  ids_ = k.take<int>(std::max<int64_t>(moe_layers, 1) * S);
  wts_ = k.take<float>(S);
  plan_.n_active = k.take<int>(1), plan_.active = k.take<int>(E);
  plan_.offsets = k.take<int>(E + 1), plan_.sorted = k.take<int>(S);
  gu_ = k.take<float>(S * 2 * h);
  act_ = k.take<bf16>(std::max({S * h, slots * layout_.mlp_hidden, slots * layout_.shared_hidden}));
  y_ = k.take<float>(S * d);
  logits_ = k.take<float>(slots * c.vocab_size);
  tokens_ = k.take<int>(slots), slots_ = k.take<int>(slots);
  ticket_ = k.take<unsigned>(1);
  kda_opart_ = k.take<float>(slots * HK);
  kda_ss_ = k.take<float>(slots * c.kda_num_heads * kKdaMaxSplit);
  kda_tickets_ = k.take<unsigned>(slots * c.kda_num_heads);
  reset();
}

void CudaEngine::reset() {
  if (caches_.slots == 0) throw UserError("decode engine: allocate_slots() first");
  // An all-MLA model has no KDA buffers (and a pure-KDA one no MLA rows): nothing to clear.
  for (const DeviceBuffer* b : {&kda_state_, &kda_tails_, &mla_rows_, &lengths_, &work_})
    if (b->bytes() > 0) KIMI_CUDA_CHECK(cudaMemsetAsync(b->get(), 0, b->bytes(), stream_));
  KIMI_CUDA_CHECK(cudaStreamSynchronize(stream_));
  host_len_.assign(caches_.slots, 0);
}

void CudaEngine::fill_synthetic(int64_t n, int64_t length, uint64_t seed) {
  const CacheLayout& cl = caches_;
  if (n < 1 || n > cl.slots || length < 0 || length >= cl.max_tokens)
    throw UserError(
        fmt::format("decode engine: fill_synthetic of {} slots at {} tokens (have {} "
                    "slots of {})",
                    n, length, cl.slots, cl.max_tokens));
  for (int64_t i = 0; i < cl.kda_layers; ++i) {
    fill_uniform(kda_state_.get<float>() + i * cl.slots * cl.state_elems, true, n * cl.state_elems,
                 0.05f, seed + 2 * i, stream_);
    fill_uniform(kda_tails_.get<float>() + i * cl.slots * cl.conv_elems, true, n * cl.conv_elems,
                 0.5f, seed + 2 * i + 1, stream_);
  }
  // Slots [0, n) of a layer are one range; rows past `length` are filled too (never read).
  for (int64_t i = 0; i < cl.mla_layers; ++i)
    fill_uniform(mla_rows_.get<bf16>() + i * cl.slots * cl.max_tokens * cl.row_elems, false,
                 n * cl.max_tokens * cl.row_elems, 1.0f, seed + 1000 + i, stream_);
  set_lengths(lengths_.get<int>(), static_cast<int>(n), static_cast<int>(length), stream_);
  KIMI_CUDA_CHECK(cudaStreamSynchronize(stream_));
  for (int64_t s = 0; s < n; ++s) host_len_[s] = length;
}

int64_t CudaEngine::length(int64_t slot) const {
  if (slot < 0 || slot >= static_cast<int64_t>(host_len_.size()))
    throw UserError(fmt::format("decode engine: no slot {}", slot));
  return host_len_[slot];
}

std::vector<float> CudaEngine::read_slot(int64_t slot, bool kda) const {
  const CacheLayout& cl = caches_;
  const int64_t len = length(slot);
  std::vector<float> out;
  if (kda) {
    for (int64_t i = 0; i < cl.kda_layers; ++i) {
      const size_t at = out.size();
      out.resize(at + cl.state_elems + cl.conv_elems);
      KIMI_CUDA_CHECK(cudaMemcpy(out.data() + at,
                                 kda_state_.get<float>() + (i * cl.slots + slot) * cl.state_elems,
                                 cl.state_elems * 4, cudaMemcpyDeviceToHost));
      KIMI_CUDA_CHECK(cudaMemcpy(out.data() + at + cl.state_elems,
                                 kda_tails_.get<float>() + (i * cl.slots + slot) * cl.conv_elems,
                                 cl.conv_elems * 4, cudaMemcpyDeviceToHost));
    }
    return out;
  }
  std::vector<uint16_t> raw(len * cl.row_elems);
  for (int64_t i = 0; i < cl.mla_layers; ++i) {
    KIMI_CUDA_CHECK(cudaMemcpy(
        raw.data(), mla_rows_.get<bf16>() + (i * cl.slots + slot) * cl.max_tokens * cl.row_elems,
        raw.size() * 2, cudaMemcpyDeviceToHost));
    for (uint16_t r : raw) {
      const uint32_t bits = static_cast<uint32_t>(r) << 16;
      float f;
      std::memcpy(&f, &bits, 4);
      out.push_back(f);
    }
  }
  return out;
}

void CudaEngine::step(const std::vector<int32_t>& slots, const std::vector<int32_t>& tokens,
                      std::vector<float>* logits) {
  const int64_t n = static_cast<int64_t>(slots.size());
  if (n < 1 || n != static_cast<int64_t>(tokens.size()) || n > caches_.slots)
    throw UserError(
        fmt::format("decode engine: a step of {} slots and {} tokens ({} slots "
                    "allocated)",
                    n, tokens.size(), caches_.slots));
  std::set<int32_t> seen;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t s = slots[i];
    if (s < 0 || s >= caches_.slots || !seen.insert(s).second)
      throw UserError(fmt::format("decode engine: slot {} is out of range or repeated", s));
    if (host_len_[s] + 1 > caches_.max_tokens)
      throw UserError(
          fmt::format("decode engine: slot {} is full ({} tokens)", s, caches_.max_tokens));
    if (tokens[i] < 0 || tokens[i] >= layout_.config.vocab_size)
      throw UserError(fmt::format("decode engine: token {} out of range [0, {})", tokens[i],
                                  layout_.config.vocab_size));
  }
  KIMI_CUDA_CHECK(cudaMemcpyAsync(slots_, slots.data(), n * 4, cudaMemcpyHostToDevice, stream_));
  KIMI_CUDA_CHECK(cudaMemcpyAsync(tokens_, tokens.data(), n * 4, cudaMemcpyHostToDevice, stream_));
  run_step(static_cast<int>(n));
  const int64_t V = layout_.config.vocab_size;
  if (logits) {
    logits->resize(n * V);
    KIMI_CUDA_CHECK(
        cudaMemcpyAsync(logits->data(), logits_, n * V * 4, cudaMemcpyDeviceToHost, stream_));
  }
  KIMI_CUDA_CHECK(cudaStreamSynchronize(stream_));
  for (int32_t s : slots) ++host_len_[s];
  last_batch_ = static_cast<int>(n);
}

int64_t CudaEngine::distinct_experts_last_step() {
  const models::KimiLinearConfig& c = layout_.config;
  const int64_t K = c.num_experts_per_token, S = caches_.slots * K;
  int64_t total = 0, moe = 0;
  for (const LayerOffsets& o : layout_.layers) {
    if (!o.is_moe) continue;
    std::vector<int> ids(last_batch_ * K);
    KIMI_CUDA_CHECK(cudaMemcpy(ids.data(), ids_ + moe * S, ids.size() * 4, cudaMemcpyDeviceToHost));
    total += static_cast<int64_t>(std::set<int>(ids.begin(), ids.end()).size());
    ++moe;
  }
  return total;
}

}  // namespace kimi::inference::engine::cuda
