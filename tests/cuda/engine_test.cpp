// The decode engine on the GPU (kimi_cuda_engine_test): kimi_tiny's reference logits through the
// bf16 engine (token-by-token decode of both sequences batched, and chunked prefill + decode),
// batched decode of sequences at different lengths equal to one-by-one decoding, and the whole
// engine (fused KDA step, MLA latent decode, device MoE routing, grouped expert GEMV) against the
// f32 reference model (models/kimi_linear.*) with the same bf16-rounded weights on a config of
// odd sizes (no dimension a multiple of 8: the kernels' scalar paths); the chunked prefill
// against token-by-token decode (logits, the greedy decode after it, the caches); the
// tensor-core batch path against the GEMV and one-by-one decoding; batched generation (generate
// --engine) against one-by-one and the f32 model's greedy ids. Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <numeric>
#include <string>
#include <utility>

#include "core/autograd/autograd.h"
#include "core/io/safetensors.h"
#include "core/ops/ops.h"
#include "core/tensor/dtype.h"
#include "core/tensor/error.h"
#include "inference/engine/decode_engine.h"
#include "inference/engine/generate.h"
#include "models/kimi_linear.h"
#include "tests/golden.h"

namespace kimi::inference::engine {
namespace {

std::unique_ptr<DecodeEngine> engine_or_skip(const WeightLayout& l) {
  try {
    return make_decode_engine(l);
  } catch (const UserError& e) {
    if (std::string(e.what()).find("no CUDA device") != std::string::npos) return nullptr;
    throw;
  }
}

#define ENGINE_OR_SKIP(var, layout)  \
  auto var = engine_or_skip(layout); \
  if (!var) GTEST_SKIP() << "no CUDA device";

std::string fmt_err(double x) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2g", x);
  return b;
}

// Token-by-token decode of ids [B, T] (row-major) in slots 0..B-1 together -> logits [B, T, V].
std::vector<float> decode_all(DecodeEngine& e, const std::vector<int64_t>& ids, int B, int T) {
  const int64_t V = e.layout().config.vocab_size;
  std::vector<float> out(static_cast<size_t>(B) * T * V), step;
  std::vector<int32_t> slots(B), tokens(B);
  std::iota(slots.begin(), slots.end(), 0);
  for (int t = 0; t < T; ++t) {
    for (int b = 0; b < B; ++b) tokens[b] = static_cast<int32_t>(ids[b * T + t]);
    e.step(slots, tokens, &step);
    for (int b = 0; b < B; ++b)
      std::copy(step.begin() + b * V, step.begin() + (b + 1) * V,
                out.begin() + (static_cast<int64_t>(b) * T + t) * V);
  }
  return out;
}

// The reference model with every weight rounded to bf16 (what the engine holds), f32 arithmetic.
std::unique_ptr<models::KimiLinearModel> f32_model_with_bf16_weights(const std::string& dir) {
  auto m = models::KimiLinearModel::from_pretrained(dir, DType::kF32);
  for (Tensor& p : m->parameters()) {
    float* d = p.data<float>();
    for (int64_t i = 0; i < p.numel(); ++i) d[i] = bf16_to_float(float_to_bf16(d[i]));
  }
  return m;
}

// Relative error of each row of V logits; the median of them.
double median_row_err(const std::vector<float>& got, const std::vector<double>& want, int64_t V) {
  std::vector<double> e;
  for (size_t r = 0; r * V < want.size(); ++r) {
    std::vector<double> a(got.begin() + r * V, got.begin() + (r + 1) * V);
    e.push_back(
        test::rel_err(a, std::vector<double>(want.begin() + r * V, want.begin() + (r + 1) * V)));
  }
  std::nth_element(e.begin(), e.begin() + e.size() / 2, e.end());
  return e[e.size() / 2];
}

// Prefill of ids[b, :P] into slot b (chunks of `chunk`), then tokens P .. T-1 decoded for both
// sequences batched: the logits rows P-1 .. T-1 of each sequence, [B, T-P+1, V].
std::vector<float> prefill_then_decode(DecodeEngine& e, const std::vector<int64_t>& ids, int B,
                                       int T, int P, int64_t chunk) {
  const int64_t V = e.layout().config.vocab_size;
  const int R = T - P + 1;
  e.reset();
  e.set_prefill_chunk(chunk);
  std::vector<float> out(static_cast<size_t>(B) * R * V), lg;
  for (int b = 0; b < B; ++b) {
    const std::vector<int32_t> prompt(ids.begin() + b * T, ids.begin() + b * T + P);
    e.prefill(b, prompt, &lg);
    std::copy(lg.begin(), lg.end(), out.begin() + static_cast<int64_t>(b) * R * V);
  }
  std::vector<int32_t> slots(B), tokens(B);
  std::iota(slots.begin(), slots.end(), 0);
  for (int t = P; t < T; ++t) {
    for (int b = 0; b < B; ++b) tokens[b] = static_cast<int32_t>(ids[b * T + t]);
    e.step(slots, tokens, &lg);
    for (int b = 0; b < B; ++b)
      std::copy(lg.begin() + b * V, lg.begin() + (b + 1) * V,
                out.begin() + (static_cast<int64_t>(b) * R + t - P + 1) * V);
  }
  return out;
}

// Rows P-1 .. T-1 of each sequence of all [B, T, V].
template <class X>
std::vector<double> rows_from(const std::vector<X>& all, int B, int T, int P, int64_t V) {
  std::vector<double> out;
  for (int b = 0; b < B; ++b)
    out.insert(out.end(), all.begin() + (static_cast<int64_t>(b) * T + P - 1) * V,
               all.begin() + (static_cast<int64_t>(b) + 1) * T * V);
  return out;
}

// The reference logits (f32 HF composition) cannot be met to 2e-2 in bf16 by any engine:
// kimi_tiny's weights alone, rounded to bf16, move them by 0.10 (rows where the top-2 routing
// flips near a tie move by up to 0.65; tests/kimi_linear_test.cpp measures it on the CPU). So
// the engine is held to (a) that floor, measured here, within 1.5x, and (b) a median row error
// under 2e-2 against the f32 model with the same bf16 weights (its own arithmetic: bf16
// activations, fused kernels). A wrong tensor or kernel gives errors of order 1.
TEST(Engine, TinyLogitsMatchTheReference) {
  KIMI_SKIP_WITHOUT_GOLDEN("kimi_tiny/model.safetensors");
  const std::string dir = test::golden_path("kimi_tiny");
  const WeightLayout l = make_weight_layout(models::load_kimi_linear_config(dir + "/config.json"));
  ENGINE_OR_SKIP(e, l);
  e->load_hf(dir);
  test::GoldenFile ref("kimi_tiny/reference.safetensors");
  const std::vector<int64_t> ids = ref.file().read_i64("input_ids");
  const test::GoldenTensor logits = ref.get("logits");
  const int B = 2, T = 80;
  const int64_t V = l.config.vocab_size;
  e->allocate_slots(B, T);
  const std::vector<float> got = decode_all(*e, ids, B, T);
  auto m = f32_model_with_bf16_weights(dir);
  std::vector<double> rounded;
  {
    NoGradGuard ng;
    rounded = m->forward(Tensor::from_vector(ids, {B, T})).to_vector<double>();
  }
  const double err = test::rel_err(got, logits.data), floor = test::rel_err(rounded, logits.data);
  const double median = median_row_err(got, rounded, V);
  std::printf(
      "engine kimi_tiny, bf16, 2 sequences x 80 tokens decoded: rel err %.3g vs the reference "
      "(bf16 weights alone: %.3g, ratio %.2f); median row err %.3g vs the f32 model with the same "
      "bf16 weights (overall %.3g)\n",
      err, floor, err / floor, median, test::rel_err(got, rounded));
  EXPECT_LT(err, 1.5 * floor);
  EXPECT_LT(median, 2e-2);
  EXPECT_EQ(e->length(0), T);
  // The same sequences through the chunked prefill: the whole sequence in one prefill (its
  // last row), and 37 tokens in chunks of 16 (3 chunks, the last of 5) then 43 decode steps.
  // Against the reference: within 1.5x of the bf16-weight floor (of the whole sequences, or of
  // the rows compared where that is larger); against the f32 model with the same bf16 weights:
  // the median row error under 2e-2, as the decode path.
  for (const auto& [P, chunk] : {std::pair<int, int64_t>{T, 16384}, {37, 16}}) {
    const std::vector<float> got_p = prefill_then_decode(*e, ids, B, T, P, chunk);
    const std::vector<double> ref_p = rows_from(logits.data, B, T, P, V);
    const std::vector<double> rounded_p = rows_from(rounded, B, T, P, V);
    const double err_p = test::rel_err(got_p, ref_p);
    const double median_p = median_row_err(got_p, rounded_p, V);
    std::printf(
        "engine kimi_tiny, prefill of %d tokens (chunks of %lld) + %d decode steps: rel err %.3g "
        "vs the reference over rows %d..%d (bf16 weights alone: %.3g); median row err %.3g vs "
        "the f32 model with the same bf16 weights\n",
        P, static_cast<long long>(chunk), T - P, err_p, P - 1, T - 1,
        test::rel_err(rounded_p, ref_p), median_p);
    // The rows' own floor where it is above the whole sequences' (rows at a routing near-tie).
    EXPECT_LT(err_p, 1.5 * std::max(floor, test::rel_err(rounded_p, ref_p))) << "prefill of " << P;
    EXPECT_LT(median_p, 2e-2) << "prefill of " << P;
    EXPECT_EQ(e->length(1), T);
  }
}

// The f32 model's logits [T, V] for ids (one sequence, one forward pass from an empty cache).
std::vector<double> f32_logits(models::KimiLinearModel& m, const std::vector<int32_t>& ids) {
  NoGradGuard ng;
  const std::vector<int64_t> x(ids.begin(), ids.end());
  models::KimiLinearState st = m.new_state(1);
  return m.forward(Tensor::from_vector(x, {1, static_cast<int64_t>(x.size())}), &st)
      .to_vector<double>();
}

// The top-1 index of row[0, V) and its lead over the runner-up; the row's standard deviation.
struct RowStats {
  int64_t top = 0;
  double gap = 0, sd = 0;
};
RowStats row_stats(const double* row, int64_t V) {
  RowStats r;
  r.top = std::max_element(row, row + V) - row;
  double second = -INFINITY, mean = 0, sq = 0;
  for (int64_t v = 0; v < V; ++v) {
    if (v != r.top) second = std::max(second, row[v]);
    mean += row[v] / V;
  }
  for (int64_t v = 0; v < V; ++v) sq += (row[v] - mean) * (row[v] - mean) / V;
  r.gap = row[r.top] - second, r.sd = std::sqrt(sq);
  return r;
}

// `kimi-lab generate --engine` on kimi_tiny (engine::generate, the loop the CLI runs): two
// prompts of different lengths batched give what each gives alone (greedy, sampled, and with a
// stop id that ends the short one early while the long one goes on in the same slots); and the
// engine's greedy ids are the f32 model's (with the same bf16-rounded weights) wherever the
// f32 model's top-2 gap exceeds 0.5 standard deviations of its logits row; closer calls may flip
// in bf16 and are counted, not failed. (0.2 sd, ~10x the median per-logit error of bf16
// activations, was measured too tight on an H100: a row with a 0.238 sd gap flipped, because
// the error is far from uniform across rows, as the bf16-weight floor's p90 shows.) Each new token
// is checked teacher-forced (the f32 model reads the engine's own sequence), so one flip does not
// end the comparison; the f32 model's own greedy run is also compared up to its first close call.
// (Both slots stay under 32 tokens, so the MLA kernel's split count, the only batch-dependent sum
// order, is 1 batched and alone: logits agree to 1e-5.)
TEST(Engine, TinyGenerateBatchedEqualsAloneAndTheF32Model) {
  KIMI_SKIP_WITHOUT_GOLDEN("kimi_tiny/model.safetensors");
  const std::string dir = test::golden_path("kimi_tiny");
  const WeightLayout l = make_weight_layout(models::load_kimi_linear_config(dir + "/config.json"));
  ENGINE_OR_SKIP(e, l);
  e->load_hf(dir);
  const int64_t V = l.config.vocab_size;
  const std::vector<std::vector<int32_t>> prompts = {{1, 5, 9, 13, 17},
                                                     {7, 3, 100, 42, 8, 66, 21, 90, 11, 2, 55}};
  GenerateOptions o;
  o.max_new = 16, o.sampling.greedy = true, o.keep_logits = true, o.seed = 3;
  const GenerateOutput all = generate(*e, prompts, o);
  for (size_t i = 0; i < prompts.size(); ++i)
    EXPECT_EQ(e->length(static_cast<int64_t>(i)),
              static_cast<int64_t>(prompts[i].size()) + o.max_new - 1);
  auto alone = [&](size_t i, GenerateOptions oi) {
    oi.seed = prompt_seed(oi.seed, static_cast<int64_t>(i));
    return generate(*e, {prompts[i]}, oi);
  };
  for (size_t i = 0; i < prompts.size(); ++i) {
    const GenerateOutput one = alone(i, o);
    EXPECT_EQ(all.ids[i], one.ids[0]) << "greedy, prompt " << i;
    EXPECT_LT(test::rel_err(all.logits[i],
                            std::vector<double>(one.logits[0].begin(), one.logits[0].end())),
              1e-5)
        << "prompt " << i;
  }
  GenerateOptions sampled = o;
  sampled.sampling = {false, 0.9};
  const GenerateOutput all_s = generate(*e, prompts, sampled);
  GenerateOptions stop = o;
  stop.stop_id = all.ids[0][1];  // the short prompt's second new token
  const GenerateOutput all_stop = generate(*e, prompts, stop);
  EXPECT_TRUE(all_stop.stopped[0]);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(all_s.ids[i], alone(i, sampled).ids[0]) << "sampled, prompt " << i;
    EXPECT_EQ(all_stop.ids[i], alone(i, stop).ids[0]) << "stop id, prompt " << i;
  }

  auto m = f32_model_with_bf16_weights(dir);  // the engine's weights; see TinyLogits for why
  int total_checked = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const int64_t P = static_cast<int64_t>(prompts[i].size()), N = o.max_new;
    // Teacher-forced: the f32 logits after prompt + the engine's new tokens but the last.
    std::vector<int32_t> seq = prompts[i];
    seq.insert(seq.end(), all.ids[i].begin(), all.ids[i].end() - 1);
    const std::vector<double> ref = f32_logits(*m, seq);
    const std::vector<double> want(ref.begin() + (P - 1) * V, ref.end());
    const double err = test::rel_err(all.logits[i], want);
    EXPECT_LT(median_row_err(all.logits[i], want, V), 2e-2) << "prompt " << i;
    int checked = 0, close = 0;
    for (int64_t t = 0; t < N; ++t) {
      const RowStats r = row_stats(want.data() + t * V, V);
      if (r.gap <= 0.5 * r.sd) {
        ++close;
        continue;
      }
      ++checked;
      EXPECT_EQ(all.ids[i][t], r.top) << "prompt " << i << " new token " << t << ": f32 gap "
                                      << r.gap << " (sd " << r.sd << ")";
    }
    // The f32 model's own greedy ids, up to its first close call.
    std::vector<int32_t> own = prompts[i];
    int64_t agree = 0;
    bool tie = false;
    for (int64_t t = 0; t < N && !tie; ++t) {
      const std::vector<double> lg = f32_logits(*m, own);
      const RowStats r = row_stats(lg.data() + (own.size() - 1) * V, V);
      tie = r.gap <= 0.5 * r.sd;
      if (!tie) {
        EXPECT_EQ(all.ids[i][t], r.top) << "prompt " << i << ": f32 greedy token " << t;
        agree += all.ids[i][t] == r.top;
      }
      own.push_back(static_cast<int32_t>(r.top));
    }
    std::printf(
        "engine generate kimi_tiny prompt %zu (%lld tokens): %lld new tokens, logits rel err "
        "%.3g vs f32; %d checked, %d close calls; f32 greedy agrees for the first %lld\n",
        i, static_cast<long long>(P), static_cast<long long>(N), err, checked, close,
        static_cast<long long>(agree));
    total_checked += checked;
  }
  // A fair share of the rows of 128 logits have a top-2 gap above 0.5 sd: not a vacuous check.
  EXPECT_GE(total_checked, 6) << "too few clear argmaxes to check";
}

// A hybrid of odd sizes: KDA head_dim 12 (3 heads), MLA rank 20 + rope 6, d 60, 6 experts top-3.
models::KimiLinearConfig odd_config() {
  models::KimiLinearConfig c;
  c.vocab_size = 53, c.hidden_size = 60, c.num_hidden_layers = 4;
  c.num_attention_heads = 3, c.head_dim = 10, c.intermediate_size = 44;
  c.kv_lora_rank = 20, c.q_lora_rank = 0, c.qk_nope_head_dim = 10, c.qk_rope_head_dim = 6;
  c.v_head_dim = 14;
  c.kda_head_dim = 12, c.kda_num_heads = 3, c.short_conv_kernel_size = 4;
  c.kda_layers = {1, 2, 4}, c.full_attn_layers = {3};
  c.num_experts = 6, c.num_experts_per_token = 3, c.num_shared_experts = 1;
  c.moe_intermediate_size = 18, c.first_k_dense_replace = 1;
  c.routed_scaling_factor = 2.446;
  return c;
}

// B sequences of T tokens decoded together against the f32 model with the engine's weights.
void engine_matches_f32_model(const models::KimiLinearConfig& c, int B, int T, const char* name) {
  const WeightLayout l = make_weight_layout(c);
  ENGINE_OR_SKIP(e, l);
  e->init_random(7);
  // The reference model gets the engine's (bf16-rounded) weights, by name.
  models::KimiLinearModel m(c, DType::kF32);
  std::map<std::string, Tensor> params;
  for (auto& [n, t] : m.named_parameters()) params.emplace(n, t);
  for (const WeightEntry& w : l.entries) {
    Tensor& p = params.at(models::hf_to_kimi_name(w.name));
    const std::vector<float> v = e->read_weight(w);
    p.copy_(Tensor::from_vector(v, p.shape()));
  }
  std::vector<int64_t> ids(B * T);
  for (int i = 0; i < B * T; ++i) ids[i] = (i * 17 + 5) % c.vocab_size;
  e->allocate_slots(B, T);
  const std::vector<float> got = decode_all(*e, ids, B, T);
  models::KimiLinearState st = m.new_state(B);
  std::vector<double> want;
  {
    NoGradGuard ng;
    Tensor x = Tensor::from_vector(ids, {B, T});
    Tensor out = m.forward(x, &st);  // [B, T, V]
    want = out.to_vector<double>();
  }
  const double err = test::rel_err(got, want);
  std::printf("engine %s vs f32 model: rel err %.3g\n", name, err);
  EXPECT_LT(err, 2e-2) << name;
}

// B = 2: the GEMV; 9, 17, 64: the tensor-core products (cuBLAS, expert_mma) unless
// KIMI_ENGINE_GEMV=old.
TEST(Engine, OddSizesMatchTheF32ReferenceModel) {
  for (int B : {2, 9, 17, 64}) {
    const std::string hybrid = "odd sizes (hybrid) B " + std::to_string(B);
    const std::string all_mla = "odd sizes (all-MLA) B " + std::to_string(B);
    engine_matches_f32_model(odd_config(), B, 12, hybrid.c_str());
    engine_matches_f32_model(models::all_mla_twin(odd_config()), B, 12, all_mla.c_str());
  }
}

// The odd config with an MLA shape the tensor-core attend kernel takes (16 heads, rank 128,
// rope 16; mla_attend_tc.cu), all-MLA, 70 tokens: two tiles of 64 rows. With
// KIMI_ENGINE_MLA_KERNEL=old the same through the fp32 kernel.
TEST(Engine, TensorCoreMlaShapeMatchesTheF32ReferenceModel) {
  models::KimiLinearConfig c = odd_config();
  c.num_attention_heads = 16, c.kv_lora_rank = 128, c.qk_rope_head_dim = 16;
  engine_matches_f32_model(models::all_mla_twin(c), 2, 70, "MLA 16 heads rank 128 (all-MLA)");
}

// The batch-size switch (KIMI_ENGINE_GEMV unset: tensor-core GEMMs above 8 rows) against the
// GEMV (KIMI_ENGINE_GEMV=old) and against each slot decoded alone (batch 1: the GEMV either
// way), at B = 9, 17, 64 of slots at different lengths, on the odd sizes (scalar loads) and an
// aligned twin (16-byte loads). Only the order of fp32 sums differs (and with it, now and then,
// a bf16 rounding of an activation), so with dense routing (every expert chosen, nothing can
// flip) every row of logits must agree to 5e-3; with top-3 of 6 a near-tie may pick another
// expert and move that slot's later rows, so there the median row must agree to 1e-3 and 90%
// of the rows to 5e-3. A wrong row, slot or accumulate moves rows by O(1).
// Slots 0..B-1 at lengths s % 4, then `steps` tokens each, batched (rows in reverse slot order)
// or alone: logits [steps, B, V], slot order within a step.
void decode_mixed(DecodeEngine& e, int B, int steps, std::vector<float>* out, bool alone) {
  const int64_t V = e.layout().config.vocab_size;
  auto token = [&](int s, int t) { return static_cast<int32_t>((s * 31 + t * 7 + 2) % V); };
  auto prefix = [](int s) { return s % 4; };  // slots at lengths 0..3 when the batch starts
  e.reset();
  std::vector<float> lg;
  for (int s = 0; s < B; ++s)
    for (int t = 0; t < prefix(s); ++t) e.step({s}, {token(s, t)}, nullptr);
  out->assign(static_cast<size_t>(B) * steps * V, 0.f);
  for (int j = 0; j < steps; ++j) {
    if (alone) {
      for (int s = 0; s < B; ++s) {
        e.step({s}, {token(s, prefix(s) + j)}, &lg);
        std::copy(lg.begin(), lg.end(), out->begin() + (static_cast<int64_t>(j) * B + s) * V);
      }
      continue;
    }
    // Rows in reverse slot order: the batch row and the slot differ.
    std::vector<int32_t> slots, toks;
    for (int s = B - 1; s >= 0; --s) slots.push_back(s), toks.push_back(token(s, prefix(s) + j));
    e.step(slots, toks, &lg);
    for (int r = 0; r < B; ++r)
      std::copy(lg.begin() + r * V, lg.begin() + (r + 1) * V,
                out->begin() + (static_cast<int64_t>(j) * B + slots[r]) * V);
  }
}

std::vector<double> row_errs(const std::vector<float>& got, const std::vector<float>& want,
                             int64_t V) {
  std::vector<double> e;
  for (size_t r = 0; r * V < want.size(); ++r)
    e.push_back(
        test::rel_err(std::vector<double>(got.begin() + r * V, got.begin() + (r + 1) * V),
                      std::vector<double>(want.begin() + r * V, want.begin() + (r + 1) * V)));
  std::sort(e.begin(), e.end());
  return e;
}

class EnvGuard {
 public:
  EnvGuard(const char* name, const char* value) : name_(name) {
    const char* old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    if (value)
      setenv(name, value, 1);
    else
      unsetenv(name);
  }
  ~EnvGuard() {
    if (had_)
      setenv(name_, old_.c_str(), 1);
    else
      unsetenv(name_);
  }

 private:
  const char* name_;
  bool had_ = false;
  std::string old_;
};

TEST(Engine, TensorCoreBatchesEqualTheGemvAndOneByOne) {
  for (bool aligned : {false, true})
    for (bool dense : {true, false}) {
      models::KimiLinearConfig c = odd_config();
      if (aligned) {  // every width a multiple of 8
        c.hidden_size = 64, c.intermediate_size = 48, c.moe_intermediate_size = 24;
        c.kda_head_dim = 16, c.kv_lora_rank = 24, c.qk_nope_head_dim = 16, c.qk_rope_head_dim = 8;
        c.v_head_dim = 16, c.head_dim = 16, c.vocab_size = 64;
      }
      if (dense) c.num_experts_per_token = c.num_experts;
      const WeightLayout l = make_weight_layout(c);
      std::unique_ptr<DecodeEngine> fresh, old;
      {
        EnvGuard g("KIMI_ENGINE_GEMV", nullptr);
        fresh = engine_or_skip(l);
      }
      {
        EnvGuard g("KIMI_ENGINE_GEMV", "old");
        old = engine_or_skip(l);
      }
      if (!fresh || !old) GTEST_SKIP() << "no CUDA device";
      fresh->init_random(5), old->init_random(5);
      const int64_t V = c.vocab_size;
      const int steps = 3;
      fresh->allocate_slots(64, 8), old->allocate_slots(64, 8);
      for (int B : {9, 17, 64}) {
        std::vector<float> got, gemv, alone;
        decode_mixed(*fresh, B, steps, &got, false);
        decode_mixed(*old, B, steps, &gemv, false);
        decode_mixed(*fresh, B, steps, &alone, true);
        for (const auto& [name, want] :
             {std::pair<const char*, const std::vector<float>*>{"the GEMV", &gemv},
              {"one by one", &alone}}) {
          const std::vector<double> e = row_errs(got, *want, V);
          const double median = e[e.size() / 2], p90 = e[e.size() * 9 / 10], worst = e.back();
          std::printf("engine %s%s B %d vs %s: row errs median %.2g, 90%% %.2g, max %.2g\n",
                      aligned ? "aligned" : "odd", dense ? " dense routing" : " top-3", B, name,
                      median, p90, worst);
          if (dense) {
            EXPECT_LT(worst, 5e-3) << "B " << B << " vs " << name;
          } else {
            EXPECT_LT(median, 1e-3) << "B " << B << " vs " << name;
            EXPECT_LT(p90, 5e-3) << "B " << B << " vs " << name;
          }
        }
      }
    }
}

// Chunked prefill against token-by-token decode on one engine: slot 0 takes every token by
// step(), slot 1 the same tokens by prefill (after a prefix by steps or by an earlier prefill),
// then both decode greedily together (slot 0's argmax fed to both). Per case: the logits after
// the prompt and after each greedy step (the median row error < 2e-2, every row < 5e-2), and
// the caches after the prompt (every KDA state and conv tail, every MLA latent row; < 2e-2).
// The prefill differs from decode only in arithmetic order and precision (GEMMs, TF32 products
// in the chunk delta rule and the latent attention): ~1e-3. A top-k routing at a near tie can
// still flip between the two, and a flip in the prompt moves the caches and every later row
// of that case by up to ~0.1. So `strict` (dense routing, top_k = all experts: nothing can
// flip) holds every case to the bounds; otherwise (kimi_tiny, the odd config's top-3 of 6) the
// median row error over all cases must be < 2e-2 and at least 3 of the 5 cases must meet every
// bound (a bug in chunking, tails, the state handoff or the causal offset breaks them all).
struct PrefillCase {
  int prefix_steps, prefix_prefill, prompt;
  int64_t chunk;
};

void prefill_matches_decode(DecodeEngine& e, const char* name, bool strict) {
  const int64_t V = e.layout().config.vocab_size;
  const std::vector<PrefillCase> cases = {
      {0, 0, 1, 16},   // one token
      {0, 0, 37, 16},  // 3 chunks, the last of 5
      {0, 0, 70, 32},  // 3 chunks, the last of 6
      {0, 13, 21, 8},  // after a prefix prefilled in 2 chunks: 3 more chunks at L = 13
      {5, 0, 37, 16},  // after 5 decode steps: L = 5
  };
  const int greedy = 6;
  e.allocate_slots(2, 13 + 70 + greedy + 1);
  std::vector<double> row_errs;
  int agree = 0;
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const PrefillCase& pc = cases[ci];
    e.reset();
    const int L = pc.prefix_steps + pc.prefix_prefill, n = L + pc.prompt;
    std::vector<int32_t> ids(n);
    for (int i = 0; i < n; ++i) ids[i] = static_cast<int32_t>((i * 17 + 5 + 3 * ci) % V);
    std::vector<float> want, got;
    for (int i = 0; i < n; ++i) e.step({0}, {ids[i]}, &want);
    e.set_prefill_chunk(pc.chunk);
    for (int i = 0; i < pc.prefix_steps; ++i) e.step({1}, {ids[i]}, nullptr);
    if (pc.prefix_prefill > 0)
      e.prefill(1, std::vector<int32_t>(ids.begin(), ids.begin() + L), nullptr);
    ASSERT_EQ(e.length(1), L);
    e.prefill(1, std::vector<int32_t>(ids.begin() + L, ids.end()), &got);
    ASSERT_EQ(e.length(1), n);
    std::vector<double> errs = {test::rel_err(got, want)};
    const double kda_err = test::rel_err(e.read_slot(1, true), e.read_slot(0, true));
    const double mla_err = test::rel_err(e.read_slot(1, false), e.read_slot(0, false));
    std::vector<float> both;
    for (int s = 0; s < greedy; ++s) {
      const int32_t next =
          static_cast<int32_t>(std::max_element(want.begin(), want.end()) - want.begin());
      e.step({0, 1}, {next, next}, &both);
      want.assign(both.begin(), both.begin() + V);
      got.assign(both.begin() + V, both.end());
      errs.push_back(test::rel_err(got, want));
    }
    const double worst = *std::max_element(errs.begin(), errs.end());
    const bool ok = worst < 5e-2 && kda_err < 2e-2 && mla_err < 2e-2;
    agree += ok;
    std::string list;
    for (double x : errs) list += fmt_err(x) + " ";
    std::printf(
        "engine %s prefill case %zu (L %d, prompt %d, chunks of %lld): row errs vs decode %s; "
        "caches: KDA %.3g, MLA %.3g%s\n",
        name, ci, L, pc.prompt, static_cast<long long>(pc.chunk), list.c_str(), kda_err, mla_err,
        ok ? "" : "  <- beyond the bounds");
    if (strict) {
      EXPECT_LT(worst, 5e-2) << name << " case " << ci << ": logits rows";
      EXPECT_LT(kda_err, 2e-2) << name << " case " << ci << ": KDA states and tails";
      EXPECT_LT(mla_err, 2e-2) << name << " case " << ci << ": MLA latent rows";
    }
    row_errs.insert(row_errs.end(), errs.begin(), errs.end());
  }
  std::sort(row_errs.begin(), row_errs.end());
  const double median = row_errs[row_errs.size() / 2];
  std::printf(
      "engine %s prefill vs decode: %zu rows, median %.3g, max %.3g; %d of %zu cases "
      "within every bound\n",
      name, row_errs.size(), median, row_errs.back(), agree, cases.size());
  EXPECT_LT(median, 2e-2) << name;
  EXPECT_GE(agree, strict ? static_cast<int>(cases.size()) : 3) << name;
}

TEST(Engine, PrefillEqualsTokenByTokenDecodeTiny) {
  KIMI_SKIP_WITHOUT_GOLDEN("kimi_tiny/model.safetensors");
  const std::string dir = test::golden_path("kimi_tiny");
  const WeightLayout l = make_weight_layout(models::load_kimi_linear_config(dir + "/config.json"));
  ENGINE_OR_SKIP(e, l);
  e->load_hf(dir);
  prefill_matches_decode(*e, "kimi_tiny", false);
}

// The odd-size config (hybrid and all-MLA twin) as it is (top-3 of 6 experts), and with dense
// routing (all 6 chosen) where every case must agree.
TEST(Engine, PrefillEqualsTokenByTokenDecodeOddSizes) {
  for (bool dense : {true, false})
    for (bool all_mla : {false, true}) {
      models::KimiLinearConfig c = all_mla ? models::all_mla_twin(odd_config()) : odd_config();
      if (dense) c.num_experts_per_token = c.num_experts;
      const WeightLayout l = make_weight_layout(c);
      ENGINE_OR_SKIP(e, l);
      e->init_random(11);
      const std::string name = std::string(all_mla ? "odd all-MLA" : "odd hybrid") +
                               (dense ? ", dense routing" : ", top-3 of 6");
      prefill_matches_decode(*e, name.c_str(), dense);
    }
}

// Slots at different lengths decoded together give what each gives alone.
TEST(Engine, BatchedDecodeOfDifferentLengthsEqualsOneByOne) {
  const models::KimiLinearConfig c = odd_config();
  const WeightLayout l = make_weight_layout(c);
  ENGINE_OR_SKIP(e, l);
  e->init_random(3);
  const int S = 4, joint = 5;
  const int prefix[S] = {1, 6, 3, 9};
  auto token = [&](int s, int t) {
    return static_cast<int32_t>((s * 31 + t * 7 + 2) % c.vocab_size);
  };
  e->allocate_slots(S, 16);
  const int64_t V = c.vocab_size;
  // Alone: each slot's prefix, then its `joint` tokens, batch 1.
  std::vector<std::vector<float>> alone(S);
  std::vector<float> lg;
  for (int s = 0; s < S; ++s)
    for (int t = 0; t < prefix[s] + joint; ++t) {
      e->step({s}, {token(s, t)}, &lg);
      if (t >= prefix[s]) alone[s].insert(alone[s].end(), lg.begin(), lg.end());
    }
  e->reset();
  for (int s = 0; s < S; ++s)
    for (int t = 0; t < prefix[s]; ++t) e->step({s}, {token(s, t)}, nullptr);
  const std::vector<int32_t> order = {2, 0, 3, 1};  // rows in another order than the slots
  std::vector<std::vector<float>> together(S);
  for (int j = 0; j < joint; ++j) {
    std::vector<int32_t> toks;
    for (int32_t s : order) toks.push_back(token(s, prefix[s] + j));
    e->step(order, toks, &lg);
    for (size_t r = 0; r < order.size(); ++r)
      together[order[r]].insert(together[order[r]].end(), lg.begin() + r * V,
                                lg.begin() + (r + 1) * V);
  }
  for (int s = 0; s < S; ++s) {
    const double err = test::rel_err(together[s], alone[s]);
    // Only the MLA split count depends on the batch (it changes the order of a sum).
    EXPECT_LT(err, 1e-5) << "slot " << s;
    EXPECT_EQ(e->length(s), prefix[s] + joint);
  }
  // The graph-timed path runs and advances the lengths.
  const double ms = e->time_steps_ms(2, 1, 2);
  EXPECT_GT(ms, 0);
  EXPECT_EQ(e->length(0), prefix[0] + joint + 3);
  EXPECT_GT(e->distinct_experts_last_step(), 0);
}

TEST(Engine, RefusesFullSlotsAndBadTokens) {
  const WeightLayout l = make_weight_layout(odd_config());
  ENGINE_OR_SKIP(e, l);
  e->init_random(1);
  e->allocate_slots(1, 2);
  e->step({0}, {1}, nullptr);
  e->step({0}, {1}, nullptr);
  EXPECT_THROW(e->step({0}, {1}, nullptr), UserError);
  e->reset();
  EXPECT_THROW(e->step({0}, {999}, nullptr), UserError);
  EXPECT_THROW(e->step({0, 0}, {1, 1}, nullptr), UserError);
  // The prefill's refusals leave the slot as it was.
  EXPECT_THROW(e->prefill(0, {1, 2, 3}, nullptr), UserError);  // 3 tokens into 2
  EXPECT_THROW(e->prefill(0, {1, 999}, nullptr), UserError);
  EXPECT_THROW(e->prefill(1, {1}, nullptr), UserError);
  EXPECT_THROW(e->prefill(0, {}, nullptr), UserError);
  EXPECT_THROW(e->set_prefill_chunk(0), UserError);
  EXPECT_EQ(e->length(0), 0);
  e->prefill(0, {1, 2}, nullptr);
  EXPECT_EQ(e->length(0), 2);
  EXPECT_THROW(e->step({0}, {1}, nullptr), UserError);  // full
}

}  // namespace
}  // namespace kimi::inference::engine
