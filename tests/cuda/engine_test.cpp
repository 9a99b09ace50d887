// The decode engine on the GPU against references (kimi_cuda_engine_test; the prefill and batch
// subjects are engine_prefill_test.cpp and engine_batch_test.cpp): kimi_tiny's reference logits
// through the bf16 engine (token-by-token decode of both sequences batched, and chunked prefill +
// decode), batched generation (generate --engine) against one-by-one and the f32 model's greedy
// ids, and the whole engine (fused KDA step, MLA latent decode, device MoE routing, grouped
// expert GEMV) against the f32 reference model (models/kimi_linear.*) with the same
// bf16-rounded weights on a config of odd sizes (no dimension a multiple of 8: the kernels'
// scalar paths); the refusals. Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <numeric>
#include <string>
#include <utility>

#include "core/autograd/autograd.h"
#include "core/io/safetensors.h"
#include "core/ops/ops.h"
#include "inference/engine/generate.h"
#include "tests/cuda/engine_test_util.h"

namespace kimi::inference::engine {
namespace {

using etest::decode_all;
using etest::engine_or_skip;
using etest::EnvGuard;
using etest::f32_model_with_bf16_weights;
using etest::fmt_err;
using etest::median_row_err;
using etest::odd_config;

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

// B = 2: the GEMV (gemv_split unless KIMI_ENGINE_GEMV=v1|old); 9, 17, 64: the tensor-core
// products (cuBLAS, expert_mma) unless KIMI_ENGINE_GEMV=old.
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
