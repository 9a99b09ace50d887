// Gradient-check cases of the token-mixer ops (delta_rule, linear_recurrence, causal_attention,
// rope), registered into the registry of tests/op_gradcheck_test.cpp: float64 central
// differences for every input (q, k, v, g, beta, h0) of both forms, on tiny odd shapes
// (T not a multiple of the chunk, K != V).
#include "core/ops/mixer_ops.h"
#include "tests/gradcheck.h"

namespace {

using kimi::GateKind;
using kimi::RecurrenceForm;
using kimi::Tensor;
using kimi::testing::add_gradcheck;
using kimi::testing::rand_t;
using Ins = std::vector<Tensor>;
using Outs = std::vector<Tensor>;

constexpr int64_t B = 1, T = 5, H = 2, K = 3, V = 4;

kimi::Shape gate_shape(GateKind gate) {
  return gate == GateKind::kPerChannel ? kimi::Shape{B, T, H, K} : kimi::Shape{B, T, H};
}

const char* gate_name(GateKind g) {
  return g == GateKind::kPerChannel ? "per_channel" : (g == GateKind::kScalar ? "scalar" : "none");
}

// Inputs q, k, v, [g], [beta], h0 with g in log space (< 0) and beta in (0, 1).
Ins recurrence_inputs(std::mt19937_64& rng, GateKind gate, bool with_beta) {
  Ins in = {rand_t(rng, {B, T, H, K}), rand_t(rng, {B, T, H, K}, -0.6, 0.6),
            rand_t(rng, {B, T, H, V})};
  if (gate != GateKind::kNone) in.push_back(rand_t(rng, gate_shape(gate), -0.7, -0.05));
  if (with_beta) in.push_back(rand_t(rng, {B, T, H}, 0.1, 0.9));
  in.push_back(rand_t(rng, {B, H, K, V}));
  return in;
}

// Chunk 2 crosses chunk boundaries at T = 5; chunk 64 is the one size the CUDA chunk kernels
// run (the GPU replays those cases at tf32 / bf16, where CUDA refuses chunk 2).
void add_recurrence_cases() {
  struct Form {
    RecurrenceForm form;
    int64_t chunk;
    const char* name;
  };
  for (Form f :
       {Form{RecurrenceForm::kRecurrent, 2, "recurrent"}, Form{RecurrenceForm::kChunk, 2, "chunk2"},
        Form{RecurrenceForm::kChunk, 64, "chunk64"}}) {
    const RecurrenceForm form = f.form;
    const std::string fname = f.name;
    for (GateKind gate : {GateKind::kNone, GateKind::kScalar, GateKind::kPerChannel}) {
      kimi::RecurrenceOptions opt{gate, -1.0, form, f.chunk};
      auto fn = [opt, gate](const Ins& in) {
        size_t i = 3;
        Tensor g = gate == GateKind::kNone ? Tensor() : in[i++];
        Tensor beta = in[i++];
        auto r = kimi::delta_rule(in[0], in[1], in[2], g, beta, in[i], opt);
        return Outs{r.o, r.ht};
      };
      add_gradcheck("delta_rule", fname + "_" + gate_name(gate), fn,
                    [gate](std::mt19937_64& rng) { return recurrence_inputs(rng, gate, true); });
      if (gate == GateKind::kNone) continue;
      kimi::RecurrenceOptions lopt{gate, 0.7, form, f.chunk};
      auto lfn = [lopt](const Ins& in) {
        auto r = kimi::linear_recurrence(in[0], in[1], in[2], in[3], in[4], lopt);
        return Outs{r.o, r.ht};
      };
      add_gradcheck("linear_recurrence", fname + "_" + gate_name(gate), lfn,
                    [gate](std::mt19937_64& rng) { return recurrence_inputs(rng, gate, false); });
    }
  }
}

KIMI_GRADCHECK_CASES(mixer_cases) {
  add_recurrence_cases();
  auto attn = [](const Ins& in) { return Outs{kimi::causal_attention(in[0], in[1], in[2])}; };
  add_gradcheck("causal_attention", "mha_T5", attn, [](std::mt19937_64& rng) {
    return Ins{rand_t(rng, {2, 5, 2, 3}), rand_t(rng, {2, 5, 2, 3}), rand_t(rng, {2, 5, 2, 4})};
  });
  add_gradcheck("causal_attention", "gqa_Tq3_Tk6", attn, [](std::mt19937_64& rng) {
    return Ins{rand_t(rng, {1, 3, 4, 3}), rand_t(rng, {1, 6, 2, 3}), rand_t(rng, {1, 6, 2, 5})};
  });
  add_gradcheck(
      "rope", "pos7_D6", [](const Ins& in) { return Outs{kimi::rope(in[0], 7, 100.0)}; },
      [](std::mt19937_64& rng) {
        return Ins{rand_t(rng, {2, 4, 3, 6})};
      });
}

}  // namespace
