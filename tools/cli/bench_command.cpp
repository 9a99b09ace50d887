// `kimi-lab bench`: forward and forward+backward throughput of every mixer op (recurrent and
// chunked forms) at a few (T, H, D). Medians of repeated runs after a warm-up.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/nn/module.h"
#include "core/ops/mixer_ops.h"
#include "core/ops/ops.h"
#include "core/tensor/device_memory.h"
#include "tools/cli/bench_args.h"
#include "tools/cli/bench_cuda.h"
#include "tools/cli/commands.h"
#include "trainer/metrics_writer.h"

namespace kimi::cli {

namespace {

struct BenchShape {
  int64_t B, T, H, D;
};

struct MixerInputs {
  Tensor q, k, v, g, beta;
};

MixerInputs make_inputs(const std::string& mixer, const BenchShape& s, Rng& rng) {
  MixerInputs in;
  in.q = nn::randn({s.B, s.T, s.H, s.D}, rng);
  in.k = l2_norm(nn::randn({s.B, s.T, s.H, s.D}, rng));
  in.v = nn::randn({s.B, s.T, s.H, s.D}, rng);
  if (mixer == "kda") in.g = mul_scalar(sigmoid(nn::randn({s.B, s.T, s.H, s.D}, rng)), -0.1);
  if (mixer == "gdn" || mixer == "mamba2")
    in.g = mul_scalar(sigmoid(nn::randn({s.B, s.T, s.H}, rng)), -0.1);
  in.beta = sigmoid(nn::randn({s.B, s.T, s.H}, rng));
  return in;
}

Tensor run_mixer(const std::string& mixer, const std::string& form, const MixerInputs& in) {
  if (mixer == "attention") return causal_attention(in.q, in.k, in.v);
  RecurrenceOptions opt;
  opt.form = recurrence_form_from_name(form);
  if (mixer == "mamba2") {
    opt.gate = GateKind::kScalar;
    opt.scale = 1.0;
    return linear_recurrence(in.q, in.k, in.v, in.g, Tensor(), opt).o;
  }
  opt.gate = mixer == "kda" ? GateKind::kPerChannel
                            : (mixer == "gdn" ? GateKind::kScalar : GateKind::kNone);
  return delta_rule(in.q, in.k, in.v, in.g, in.beta, Tensor(), opt).o;
}

template <class F>
double median_seconds(int reps, F&& f) {
  f();  // warm-up
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  if (t.empty()) return std::numeric_limits<double>::quiet_NaN();  // reps < 1: no figure
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

void register_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "bench",
      "Throughput of each mixer op (forward, forward+backward; recurrent and chunk\n"
      "forms) in tokens/s, median of --reps runs after a warm-up. With --device cuda:\n"
      "bf16 at the reference shapes (H=16, D=128, B*T=65,536, T=2048,8192,32768),\n"
      "CUDA-event timings, TFLOP/s and GB/s against the bf16 GEMM and copy ceilings\n"
      "measured in the same run, and KDA decode steps at B=1,64,256. The ratio to\n"
      "flash-linear-attention / PyTorch: tools/peer_bench.py (times both in one run).");
  struct Args {
    std::string device = "cpu";
    std::vector<std::string> mixers = {"kda", "gdn", "deltanet", "mamba2", "attention"};
    std::vector<int64_t> seq_lens = {256, 1024};
    int64_t batch = 1, heads = 2, head_dim = 128;
    int reps = 3;
    int64_t tokens = 65536;
    bool no_decode = false, decode_only = false;
    std::string json;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--device", a->device, "cpu or cuda")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--mixers", a->mixers, "which mixers")->delimiter(',')->capture_default_str();
  cmd->add_option("--seq-lens", a->seq_lens, "sequence lengths T")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--batch", a->batch, "batch size B")->capture_default_str();
  cmd->add_option("--heads", a->heads, "heads H")->capture_default_str();
  cmd->add_option("--head-dim", a->head_dim, "head dim D (= K = V)")->capture_default_str();
  cmd->add_option("--reps", a->reps, "timed repetitions")->capture_default_str();
  cmd->add_option("--tokens", a->tokens, "cuda: tokens per call, B = tokens / T")
      ->capture_default_str();
  cmd->add_flag("--no-decode", a->no_decode, "cuda: skip the decode-step table");
  cmd->add_flag("--decode-only", a->decode_only, "cuda: only the decode-step table");
  cmd->add_option("--json", a->json,
                  "also write every figure (and the shapes) to this JSON file, atomically;\n"
                  "tools/peer_bench.py reads it to put FLA / PyTorch beside it");
  cmd->callback([a, cmd] {
    check_bench_args(a->mixers, a->reps);
    check_bench_sizes(a->seq_lens, a->batch, a->heads, a->head_dim, a->tokens);
    if (a->device == "cuda") {
      if (!cuda_available())
        throw UserError(
            cuda_built() ? "bench --device cuda: no CUDA device is available"
                         : "bench --device cuda: this kimi-lab was built without its CUDA backend");
      CudaBenchArgs c;  // the reference shapes unless the flags say otherwise
      if (cmd->get_option("--mixers")->count()) c.mixers = a->mixers;
      if (cmd->get_option("--seq-lens")->count()) c.seq_lens = a->seq_lens;
      if (cmd->get_option("--heads")->count()) c.heads = a->heads;
      if (cmd->get_option("--head-dim")->count()) c.head_dim = a->head_dim;
      if (cmd->get_option("--reps")->count()) c.reps = a->reps;
      c.tokens = a->tokens;
      c.decode = !a->no_decode;
      if (a->decode_only) c.mixers.clear();
      c.json_path = a->json;
      run_cuda_bench(c);
      return;
    }
    fmt::print("device cpu, float32, B={} H={} D={}; tokens/s (median of {})\n", a->batch, a->heads,
               a->head_dim, a->reps);
    fmt::print("{:<10} {:<10} {:>6} {:>14} {:>14}\n", "mixer", "form", "T", "fwd tok/s",
               "fwd+bwd tok/s");
    nlohmann::json rows = nlohmann::json::array();
    Rng rng(0);
    for (int64_t T : a->seq_lens) {
      BenchShape s{a->batch, T, a->heads, a->head_dim};
      for (const std::string& m : a->mixers) {
        MixerInputs in = make_inputs(m, s, rng);
        std::vector<std::string> forms = m == "attention"
                                             ? std::vector<std::string>{"tiled"}
                                             : std::vector<std::string>{"recurrent", "chunk"};
        for (const std::string& form : forms) {
          double fwd = median_seconds(a->reps, [&] {
            NoGradGuard ng;
            run_mixer(m, form, in);
          });
          double both = median_seconds(a->reps, [&] {
            std::vector<Tensor> leaves = {in.q.detach(), in.k.detach(), in.v.detach()};
            for (auto& t : leaves) t.set_requires_grad(true);
            MixerInputs li = in;
            li.q = leaves[0], li.k = leaves[1], li.v = leaves[2];
            sum(run_mixer(m, form, li)).backward();
          });
          const double tokens = static_cast<double>(s.B * s.T);
          fmt::print("{:<10} {:<10} {:>6} {:>14.0f} {:>14.0f}\n", m, form, T, tokens / fwd,
                     tokens / both);
          rows.push_back({{"mixer", m},
                          {"form", form},
                          {"B", s.B},
                          {"T", T},
                          {"H", s.H},
                          {"D", s.D},
                          {"fwd_ms", fwd * 1e3},
                          {"fwd_bwd_ms", both * 1e3}});
        }
      }
    }
    if (!a->json.empty()) {
      write_json_atomic(a->json, {{"tool", "kimi-lab bench"},
                                  {"device", "cpu"},
                                  {"dtype", "f32"},
                                  {"reps", a->reps},
                                  {"mixers", rows}});
    }
  });
}

}  // namespace kimi::cli
