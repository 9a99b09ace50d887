// `kimi-lab bench --device cuda`: each mixer op on the GPU at the reference shapes of
// tests/golden/README.md (bf16 inputs, fp32 states, H=16, D=128, B*T = 65,536), forward and
// forward+backward, timed with CUDA events (median after a warm-up), against the bf16 GEMM and
// copy ceilings measured in the same run; then one decode step of a KDA op and of a whole KDA
// layer of Kimi-Linear-48B's shape at B = 1, 64, 256. No peer figure is typed in here: the
// ratio to flash-linear-attention / PyTorch comes from tools/peer_bench.py, which times the
// peers in the same process run as `--json`.
#include "tools/cli/bench_cuda.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>

#include "core/backend/precision.h"
#include "core/nn/module.h"
#include "core/ops/mixer_ops.h"
#include "core/ops/ops.h"
#include "core/tensor/device_memory.h"
#include "models/mixer.h"
#include "tools/cli/bench_args.h"
#include "trainer/metrics_writer.h"

namespace kimi::cli {

namespace {

template <class F>
double median_ms(int reps, F&& f) {
  f();  // warm-up (and the caching allocator's first cudaMallocs)
  device_synchronize();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) t.push_back(device_time_ms(f));
  if (t.empty()) return std::numeric_limits<double>::quiet_NaN();  // reps < 1: no figure
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Ceilings {
  double bf16_tflops = 0, copy_tbs = 0;
};

// The roofs the table compares against, measured now rather than typed in: a bf16 product of
// 8192^3 through the same GEMM path the mixers use, and a 1 GiB device-to-device copy.
Ceilings measure_ceilings(int reps) {
  Rng rng(2);
  const int64_t n = 8192;
  Tensor a = nn::randn({n, n}, rng).to(DType::kBF16).to(Device::kCUDA);
  Tensor b = nn::randn({n, n}, rng).to(DType::kBF16).to(Device::kCUDA);
  Ceilings c;
  const double gemm_ms = median_ms(reps, [&] {
    NoGradGuard ng;
    matmul(a, b);
  });
  c.bf16_tflops = 2.0 * n * n * n / gemm_ms / 1e9;
  Tensor big = Tensor::zeros({int64_t{1} << 29}, DType::kBF16, Device::kCUDA);  // 1 GiB
  const double copy_ms = median_ms(reps, [&] { big.clone(); });
  c.copy_tbs = 2.0 * 2.0 * static_cast<double>(big.numel()) / copy_ms / 1e9;  // read + write
  return c;
}

// Model FLOPs of the forward per call (backward counted as 2x, attention's as 2.5x).
double forward_flops(const std::string& mixer, int64_t B, int64_t T, int64_t H, int64_t D) {
  const double th = static_cast<double>(B) * T * H, C = 64, K = D, V = D;
  if (mixer == "attention")
    return 2.0 * B * H * static_cast<double>(T) * T * D;  // causal: half of 4 T^2 D
  if (mixer == "mamba2")
    return th * 2 * (C * K + C * V + 2 * K * V);  // A_qk | O intra | O inter, S
  return th * 2 *
         (3 * C * K + 2 * C * V + 3 * K * V);  // A_kk, A_qk, W | U, O intra | V', O inter, S
}

// Bytes the forward must move at least: bf16 q, k, v, gate, beta in and o out.
double forward_bytes(const std::string& mixer, int64_t B, int64_t T, int64_t H, int64_t D) {
  const double th = static_cast<double>(B) * T * H;
  double per = 4.0 * D;  // q, k, v, o
  if (mixer == "kda") per += D + 1;
  if (mixer == "gdn") per += 2;
  if (mixer == "deltanet") per += 1;
  if (mixer == "mamba2") per += 1;
  return th * per * 2;
}

Tensor bf16_cuda(const Tensor& cpu_f32) { return cpu_f32.to(DType::kBF16).to(Device::kCUDA); }

// A bf16 CUDA tensor of `shape` whose values repeat a random block of at most 4M elements made
// by `make` on the CPU (timings do not depend on the values; drawing 134M normals on the host
// for every tensor would take longer than the benchmark).
template <class F>
Tensor tiled_bf16(const Shape& shape, int64_t row, F&& make) {
  const int64_t n = shape_numel(shape), block = std::min<int64_t>(n, int64_t{1} << 22);
  KIMI_CHECK(n % block == 0 && block % row == 0, "bench: {} elements do not tile by {}", n, block);
  Tensor b = bf16_cuda(make(Shape{block / row, row}));
  return b.reshape({1, block}).expand({n / block, block}).contiguous().reshape(shape);
}

struct Inputs {
  Tensor q, k, v, g, beta;
};

// Every mixer's inputs at one shape, drawn once and shared (each mixer picks its own).
struct InputPool {
  Tensor q, k, v, g_channel, g_scalar, beta, up;
};

InputPool make_pool(int64_t B, int64_t T, int64_t H, int64_t D, Rng& rng) {
  auto normal = [&](const Shape& s) { return nn::randn(s, rng); };
  auto unit = [&](const Shape& s) { return l2_norm(nn::randn(s, rng)); };
  auto decay = [&](const Shape& s) { return mul_scalar(sigmoid(nn::randn(s, rng)), -0.1); };
  auto gate = [&](const Shape& s) { return sigmoid(nn::randn(s, rng)); };
  InputPool p;
  p.q = tiled_bf16({B, T, H, D}, D, normal);
  p.k = tiled_bf16({B, T, H, D}, D, unit);
  p.v = tiled_bf16({B, T, H, D}, D, normal);
  p.up = tiled_bf16({B, T, H, D}, D, normal);
  p.g_channel = tiled_bf16({B, T, H, D}, D, decay);
  p.g_scalar = tiled_bf16({B, T, H}, H, decay);
  p.beta = tiled_bf16({B, T, H}, H, gate);
  return p;
}

Inputs pick(const std::string& mixer, const InputPool& p) {
  Inputs in{p.q, p.k, p.v, Tensor(), Tensor()};
  if (mixer == "kda") in.g = p.g_channel;
  if (mixer == "gdn" || mixer == "mamba2") in.g = p.g_scalar;
  if (mixer != "mamba2" && mixer != "attention") in.beta = p.beta;
  return in;
}

Tensor run(const std::string& mixer, const Inputs& in) {
  if (mixer == "attention") return causal_attention(in.q, in.k, in.v);
  RecurrenceOptions opt;
  if (mixer == "mamba2") {
    opt.gate = GateKind::kScalar;
    opt.scale = 1.0;
    return linear_recurrence(in.q, in.k, in.v, in.g, Tensor(), opt).o;
  }
  opt.gate = mixer == "kda" ? GateKind::kPerChannel
                            : (mixer == "gdn" ? GateKind::kScalar : GateKind::kNone);
  return delta_rule(in.q, in.k, in.v, in.g, in.beta, Tensor(), opt).o;
}

nlohmann::json mixer_table(const CudaBenchArgs& a, const Ceilings& roof) {
  fmt::print("mixer ops, bf16 inputs, fp32 states, H={} D={}, B*T={}; CUDA events, median of {}\n",
             a.heads, a.head_dim, a.tokens, a.reps);
  fmt::print("{:<10} {:>6} {:>9} {:>8} {:>8} {:>7} {:>10} {:>8} {:>8}\n", "mixer", "T", "fwd ms",
             "Mtok/s", "TFLOP/s", "GB/s", "fwd+bwd ms", "Mtok/s", "TFLOP/s");
  nlohmann::json rows = nlohmann::json::array();
  Rng rng(0);
  for (int64_t T : a.seq_lens) {
    const int64_t B = std::max<int64_t>(1, a.tokens / T), H = a.heads, D = a.head_dim;
    const InputPool pool = make_pool(B, T, H, D, rng);
    for (const std::string& m : a.mixers) {
      const Inputs in = pick(m, pool);
      const double fwd = median_ms(a.reps, [&] {
        NoGradGuard ng;
        run(m, in);
      });
      const double both = median_ms(a.reps, [&] {
        Inputs li = in;
        for (Tensor* t : {&li.q, &li.k, &li.v}) *t = t->detach().set_requires_grad(true);
        run(m, li).backward(pool.up);
      });
      const double tok = static_cast<double>(B * T), f = forward_flops(m, B, T, H, D);
      fmt::print("{:<10} {:>6} {:>9.3f} {:>8.2f} {:>8.1f} {:>7.0f} {:>10.3f} {:>8.2f} {:>8.1f}\n",
                 m, T, fwd, tok / fwd / 1e3, f / fwd / 1e9,
                 forward_bytes(m, B, T, H, D) / fwd / 1e6, both, tok / both / 1e3,
                 (m == "attention" ? 3.5 : 3.0) * f / both / 1e9);
      std::fflush(stdout);  // rows appear as they are measured, also through a pipe
      rows.push_back({{"mixer", m},
                      {"B", B},
                      {"T", T},
                      {"H", H},
                      {"D", D},
                      {"fwd_ms", fwd},
                      {"fwd_bwd_ms", both}});
    }
  }
  fmt::print(
      "ceilings measured now: {:.0f} TFLOP/s bf16 GEMM 8192^3, {:.2f} TB/s device copy (GB/s = "
      "minimum bf16 traffic / time)\n",
      roof.bf16_tflops, roof.copy_tbs);
  fmt::print("peers (flash-linear-attention, PyTorch SDPA) at these shapes: tools/peer_bench.py\n");
  return rows;
}

// One decode step: the delta-rule op alone (T = 1 from a state) and a whole KDA layer
// (projections, short convs, gates, norm) of Kimi-Linear-48B's shape: d_model 2304, 32 x 128.
nlohmann::json decode_table(const CudaBenchArgs& a) {
  const int64_t H = 32, D = 128, d_model = 2304;
  fmt::print("\nKDA decode step, H={} D={} fp32 state, bf16 q/k/v/g/beta; median of {}\n", H, D,
             a.reps);
  fmt::print("{:>5} {:>12} {:>10} {:>14}\n", "B", "op us", "state TB/s", "KDA layer us");
  nlohmann::json rows = nlohmann::json::array();
  Rng rng(1);
  models::MixerOptions o;
  o.kind = "kda";
  o.d_model = d_model;
  o.num_heads = H;
  o.head_dim = D;
  std::unique_ptr<models::Mixer> layer = models::make_mixer(o, rng);
  layer->to(Device::kCUDA);
  for (int64_t B : {1, 64, 256}) {
    const Inputs in = pick("kda", make_pool(B, 1, H, D, rng));
    Tensor h = Tensor::zeros({B, H, D, D}, DType::kF32, Device::kCUDA);
    RecurrenceOptions opt;
    opt.gate = GateKind::kPerChannel;
    opt.form = RecurrenceForm::kRecurrent;
    const double op_ms = median_ms(a.reps, [&] {
      NoGradGuard ng;
      delta_rule(in.q, in.k, in.v, in.g, in.beta, h, opt);
    });
    auto state = layer->new_state(B);
    Tensor x = nn::randn({B, 1, d_model}, rng).to(Device::kCUDA);
    const double layer_ms = median_ms(a.reps, [&] {
      NoGradGuard ng;
      layer->forward(x, state.get());
    });
    const double state_bytes = 2.0 * B * H * D * D * 4;
    fmt::print("{:>5} {:>12.1f} {:>10.2f} {:>14.1f}\n", B, op_ms * 1e3, state_bytes / op_ms / 1e9,
               layer_ms * 1e3);
    std::fflush(stdout);
    rows.push_back(
        {{"B", B}, {"H", H}, {"D", D}, {"op_us", op_ms * 1e3}, {"layer_us", layer_ms * 1e3}});
  }
  return rows;
}

}  // namespace

void run_cuda_bench(const CudaBenchArgs& a) {
  check_bench_args(a.mixers, a.reps);  // also guards callers other than the command line
  ComputePrecisionGuard bf16(ComputePrecision::kBF16);
  const Ceilings roof = measure_ceilings(a.reps);
  nlohmann::json out = {
      {"tool", "kimi-lab bench"},
      {"device", "cuda"},
      {"dtype", "bf16"},
      {"reps", a.reps},
      {"tokens", a.tokens},
      {"ceilings", {{"bf16_gemm_tflops", roof.bf16_tflops}, {"copy_tbs", roof.copy_tbs}}}};
  out["mixers"] = a.mixers.empty() ? nlohmann::json::array() : mixer_table(a, roof);
  out["decode"] = a.decode ? decode_table(a) : nlohmann::json::array();
  if (!a.json_path.empty()) write_json_atomic(a.json_path, out);
}

}  // namespace kimi::cli
