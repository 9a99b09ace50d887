// MLA with DeepSeek-V2's decoupled RoPE (suite MlaRope): the layer against a float64 reference
// written out here with plain loops from the DeepSeek-V2 equations (no golden file covers MLA
// with RoPE: Kimi Linear's MLA is NoPE), whole sequence and prefill + decode through the latent
// cache; and the rotation must matter (the NoPE layer with the same weights differs). Decode
// against the whole sequence and float64 gradients of the layer: tests/layers_decode_test.cpp
// (case mla_rope).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/autograd/autograd.h"
#include "core/ops/ops.h"
#include "models/mla_layer.h"
#include "tests/golden.h"

namespace kimi::models {
namespace {

using Vec = std::vector<double>;

// y [rows, out] = x [rows, in] W^T, W [out, in]
Vec matmul_t(const Vec& x, const Tensor& w, int64_t rows) {
  const int64_t out = w.size(0), in = w.size(1);
  const Vec wv = w.to_vector<double>();
  Vec y(rows * out, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) y[r * out + o] += x[r * in + i] * wv[o * in + i];
  return y;
}

Vec rmsnorm(const Vec& x, const Tensor& w, int64_t rows, double eps) {
  const int64_t n = w.numel();
  const Vec wv = w.to_vector<double>();
  Vec y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += x[r * n + i] * x[r * n + i];
    const double inv = 1 / std::sqrt(ss / n + eps);
    for (int64_t i = 0; i < n; ++i) y[r * n + i] = x[r * n + i] * inv * wv[i];
  }
  return y;
}

// Rotate-half RoPE of v[0..D) at position t (HF Llama's pairing, i with i + D/2).
void rotate(double* v, int64_t D, int64_t t, double theta) {
  for (int64_t i = 0; i < D / 2; ++i) {
    const double a = t * std::pow(theta, -2.0 * i / D);
    const double x0 = v[i], x1 = v[i + D / 2];
    v[i] = x0 * std::cos(a) - x1 * std::sin(a);
    v[i + D / 2] = x1 * std::cos(a) + x0 * std::sin(a);
  }
}

// DeepSeek-V2 MLA: q_t,h = [q_nope; R_t q_rope], k_t,h = [W_uk,h c_t; R_t k_rope_t] (k_rope
// shared by the heads), v_t,h = W_uv,h c_t, causal softmax with scale 1/sqrt(nope + rope).
Vec reference(MlaLayer& m, const MixerOptions& o, const Tensor& x) {
  const int64_t B = x.size(0), T = x.size(1), d = o.d_model, H = o.num_heads;
  const int64_t nope = o.head_dim, rope = o.qk_rope_dim, vd = o.v_head_dim, rank = o.kv_lora_rank;
  const int64_t qk = nope + rope, rows = B * T;
  const Vec xv = x.to_vector<double>();
  Vec q = o.q_lora_rank == 0 ? matmul_t(xv, m.q_proj->weight, rows)
                             : matmul_t(rmsnorm(matmul_t(xv, m.q_a_proj->weight, rows),
                                                m.q_a_layernorm->weight, rows, o.mla_norm_eps),
                                        m.q_b_proj->weight, rows);
  const Vec ckv = matmul_t(xv, m.kv_a_proj_with_mqa->weight, rows);  // [rows, rank + rope]
  Vec latent(rows * rank), kpe(rows * rope);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < rank; ++i) latent[r * rank + i] = ckv[r * (rank + rope) + i];
    for (int64_t i = 0; i < rope; ++i) kpe[r * rope + i] = ckv[r * (rank + rope) + rank + i];
  }
  latent = rmsnorm(latent, m.kv_a_layernorm->weight, rows, o.mla_norm_eps);
  const Vec kv = matmul_t(latent, m.kv_b_proj->weight, rows);  // [rows, H (nope + vd)]
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      const int64_t r = b * T + t;
      rotate(&kpe[r * rope], rope, t, o.rope_theta);
      for (int64_t h = 0; h < H; ++h) rotate(&q[(r * H + h) * qk + nope], rope, t, o.rope_theta);
    }
  const double scale = 1 / std::sqrt(static_cast<double>(qk));
  Vec att(rows * H * vd, 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T; ++t) {
        const double* qv = &q[((b * T + t) * H + h) * qk];
        Vec s(t + 1);
        double mx = -INFINITY, z = 0;
        for (int64_t j = 0; j <= t; ++j) {
          const double* kn = &kv[((b * T + j) * H + h) * (nope + vd)];
          double dot = 0;
          for (int64_t i = 0; i < nope; ++i) dot += qv[i] * kn[i];
          for (int64_t i = 0; i < rope; ++i) dot += qv[nope + i] * kpe[(b * T + j) * rope + i];
          s[j] = dot * scale, mx = std::max(mx, s[j]);
        }
        for (double& v : s) z += (v = std::exp(v - mx));
        for (int64_t j = 0; j <= t; ++j)
          for (int64_t i = 0; i < vd; ++i)
            att[((b * T + t) * H + h) * vd + i] +=
                s[j] / z * kv[((b * T + j) * H + h) * (nope + vd) + nope + i];
      }
  (void)d;
  return matmul_t(att, m.o_proj->weight, rows);
}

MixerOptions rope_options(int64_t q_lora_rank) {
  MixerOptions o;
  o.kind = "mla", o.d_model = 20, o.num_heads = 3, o.head_dim = 6, o.v_head_dim = 5;
  o.kv_lora_rank = 7, o.q_lora_rank = q_lora_rank, o.qk_rope_dim = 4, o.rope = true;
  o.rope_theta = 50.0;  // a small base: the rotation angles differ visibly over 11 positions
  o.dtype = DType::kF64, o.init_std = 0.3;
  return o;
}

class MlaRope : public ::testing::TestWithParam<int64_t> {};

TEST_P(MlaRope, MatchesTheFloat64Reference) {
  NoGradGuard no_grad;
  const MixerOptions o = rope_options(GetParam());
  Rng rng(21);
  MlaLayer m(o, rng);
  m.kv_a_layernorm->weight.copy_(nn::randn({o.kv_lora_rank}, rng, 1.0, DType::kF64));
  Tensor x = nn::randn({2, 11, o.d_model}, rng, 1.0, DType::kF64);
  const Vec want = reference(m, o, x);
  const double whole = test::rel_err(m.forward(x).to_vector<double>(), want);
  EXPECT_LT(whole, 1e-12);
  // Prefill 4, then one token at a time through the latent cache (absorbed form).
  auto state = m.new_state(2);
  std::vector<Tensor> pieces = {m.forward(x.narrow(1, 0, 4), state.get())};
  for (int64_t t = 4; t < 11; ++t) pieces.push_back(m.forward(x.narrow(1, t, 1), state.get()));
  const double decode = test::rel_err(concat(pieces, 1).to_vector<double>(), want);
  EXPECT_LT(decode, 1e-12);
  // The same weights without the rotation: a layer that ignored rope would pass as NoPE.
  MixerOptions nope = o;
  nope.rope = false;
  Rng rng2(21);
  MlaLayer plain(nope, rng2);
  plain.load_state_dict([&] {
    std::map<std::string, Tensor> s;
    for (auto& [k, v] : m.named_parameters()) s[k] = v;
    return s;
  }());
  EXPECT_GT(test::rel_err(plain.forward(x).to_vector<double>(), want), 1e-3);
  std::cout << fmt::format("[MlaRope] q_lora_rank {}: whole {:.1e}, prefill+decode {:.1e}\n",
                           o.q_lora_rank, whole, decode);
}

INSTANTIATE_TEST_SUITE_P(Mla, MlaRope, ::testing::Values(0, 9),
                         [](const ::testing::TestParamInfo<int64_t>& i) {
                           return i.param == 0 ? std::string("full_rank_q")
                                               : std::string("low_rank_q");
                         });

TEST(MlaRope, OddOrMissingSliceIsRefused) {
  Rng rng(1);
  MixerOptions o = rope_options(0);
  o.qk_rope_dim = 0;
  EXPECT_THROW(MlaLayer(o, rng), UserError);
  o.qk_rope_dim = 3;
  EXPECT_THROW(MlaLayer(o, rng), UserError);
}

}  // namespace
}  // namespace kimi::models
