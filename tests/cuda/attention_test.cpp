// CUDA causal attention (core/cuda/attention/attention.h) against the CPU kernels run in float64,
// on random odd shapes (Tq != Tk, T not a multiple of the tiles, GQA, D != Dv, D=192/Dv=128, D=256,
// D not a multiple of 8, decoding Tq=1..16 with key splits), in every precision path, and against
// the golden attention tensors (linear_ops_small.safetensors). Relative error
// ||x - ref|| / ||ref|| per tensor; outputs are poisoned with NaN before each run.
// Tolerances: fp32 (FMA path) 1e-5 outputs / 1e-4 gradients; TF32 5e-3; bf16 2e-2.
// Usage: kimi_cuda_attention_test [--quick] [--bench] [GOLDEN_DIR]
//   --quick  small cases only (for compute-sanitizer)
//   --bench  timings at bf16 H=16 D=128, 65,536 tokens, against PyTorch SDPA on the same H100
// Exit status 0 when every check passes or no GPU is present (then it says it skipped).
#include "core/cuda/attention/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "core/cpu/attention.h"
#include "core/io/safetensors.h"
#include "tests/cuda/cuda_common.h"

namespace {

using namespace kimi::cuda_test;
namespace kc = kimi::cuda;
using kimi::AttentionDims;
using kimi::ComputePrecision;
using bf16 = __nv_bfloat16;

struct Report {
  int checks = 0, fails = 0;
  void check(const std::string& what, const std::string& tensor, double err, double tol) {
    ++checks;
    const bool ok = err <= tol;  // NaN / inf fail
    if (!ok) ++fails;
    std::printf("%-50s %-4s %10.3e  (tol %.0e)  %s\n", what.c_str(), tensor.c_str(), err, tol,
                ok ? "ok" : "FAIL");
    std::fflush(stdout);
  }
};

struct Mode {
  const char* name;
  bool bf16_in;
  ComputePrecision prec;
  double tol_o, tol_g;
};
const Mode kModes[] = {
    {"f32 fp32", false, ComputePrecision::kFP32, 1e-5, 1e-4},
    {"f32 tf32", false, ComputePrecision::kTF32, 5e-3, 5e-3},
    {"f32 bf16", false, ComputePrecision::kBF16, 2e-2, 2e-2},
    {"bf16 bf16", true, ComputePrecision::kBF16, 2e-2, 2e-2},
    {"bf16 fp32", true, ComputePrecision::kFP32, 2e-2, 2e-2},
};

struct Problem {
  AttentionDims d;
  std::vector<double> q, k, v, do_;
};
struct Result {
  std::vector<double> o, lse, dq, dk, dv;
};

Problem random_problem(AttentionDims d, double amp, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  auto draw = [&](int64_t n, double a) {
    std::vector<double> x(n);
    for (auto& e : x) e = a * nd(rng);
    return x;
  };
  Problem p;
  p.d = d;
  p.q = draw(d.B * d.Tq * d.Hq * d.D, amp);
  p.k = draw(d.B * d.Tk * d.Hkv * d.D, 1.0);
  p.v = draw(d.B * d.Tk * d.Hkv * d.Dv, 1.0);
  p.do_ = draw(d.B * d.Tq * d.Hq * d.Dv, 1.0);
  return p;
}

// Inputs as the kernels see them: rounded to fp32, and to bf16 for BF16 inputs.
Problem rounded(Problem p, bool bf16_in) {
  for (auto* x : {&p.q, &p.k, &p.v, &p.do_})
    for (auto& e : *x) e = bf16_in ? round_bf16(e) : double(float(e));
  return p;
}

Result cpu_reference(const Problem& p) {
  const AttentionDims& d = p.d;
  Result r;
  r.o.resize(d.B * d.Tq * d.Hq * d.Dv);
  r.lse.resize(d.B * d.Hq * d.Tq);
  r.dq.resize(p.q.size());
  r.dk.resize(p.k.size());
  r.dv.resize(p.v.size());
  kimi::cpu::causal_attention_fwd<double>(d, p.q.data(), p.k.data(), p.v.data(), r.o.data(),
                                          r.lse.data());
  kimi::cpu::causal_attention_bwd<double>(d, p.q.data(), p.k.data(), p.v.data(), r.o.data(),
                                          r.lse.data(), p.do_.data(), r.dq.data(), r.dk.data(),
                                          r.dv.data());
  return r;
}

template <class T>
Result cuda_run(const Problem& p, ComputePrecision prec, int splits) {
  const AttentionDims& d = p.d;
  Dev<T> q(p.q), k(p.k), v(p.v), do_(p.do_), o(p.do_.size()), dq(p.q.size()), dk(p.k.size()),
      dv(p.v.size());
  Dev<float> lse(size_t(d.B * d.Hq * d.Tq));
  kc::causal_attention_fwd<T>(d, q.ptr(), k.ptr(), v.ptr(), o.ptr(), lse.ptr(), prec, kc::stream(),
                              splits);
  kc::causal_attention_bwd<T>(d, q.ptr(), k.ptr(), v.ptr(), o.ptr(), lse.ptr(), do_.ptr(), dq.ptr(),
                              dk.ptr(), dv.ptr(), prec, kc::stream());
  KIMI_CUDA_CHECK(cudaStreamSynchronize(kc::stream()));
  return {o.download(), lse.download(), dq.download(), dk.download(), dv.download()};
}

void compare(Report& rep, const std::string& tag, const Result& x, const Result& ref, double tol_o,
             double tol_g, bool with_lse = true) {
  rep.check(tag, "o", rel_err(x.o, ref.o), tol_o);
  if (with_lse) rep.check(tag, "lse", rel_err(x.lse, ref.lse), tol_o);
  rep.check(tag, "dq", rel_err(x.dq, ref.dq), tol_g);
  rep.check(tag, "dk", rel_err(x.dk, ref.dk), tol_g);
  rep.check(tag, "dv", rel_err(x.dv, ref.dv), tol_g);
}

Result run_mode(const Problem& p, const Mode& m, int splits) {
  return m.bf16_in ? cuda_run<bf16>(p, m.prec, splits) : cuda_run<float>(p, m.prec, splits);
}

struct Case {
  const char* name;
  AttentionDims d;  // scale filled in below
  double amp;       // q magnitude: larger = peakier softmax (exercises the running max)
  int splits;       // 0 = automatic
  bool quick;       // also in --quick
};

void random_cases(Report& rep, bool quick) {
  const Case cases[] = {
      {"tiny T=1", {1, 1, 1, 1, 1, 16, 16, 0}, 1, 0, true},
      {"B2 T37 H4/2 D32", {2, 37, 37, 4, 2, 32, 32, 0}, 1, 0, true},
      {"T100 D64 Dv48", {1, 100, 100, 2, 2, 64, 48, 0}, 2, 0, true},
      {"cache Tq70 Tk133 H6/2 D128", {2, 70, 133, 6, 2, 128, 128, 0}, 1, 0, false},
      {"cache Tq70 Tk133 3 splits", {2, 70, 133, 6, 2, 128, 128, 0}, 1, 3, false},
      {"MLA D192 Dv128 T65", {1, 65, 65, 2, 1, 192, 128, 0}, 1, 0, true},
      {"D20 Dv36 Tq20 Tk90", {2, 20, 90, 3, 3, 20, 36, 0}, 1, 0, true},
      {"decode Tq5 Tk300 D100 Dv72", {1, 5, 300, 4, 1, 100, 72, 0}, 1, 0, false},
      {"decode Tq1 Tk1000 H4/2 D128", {1, 1, 1000, 4, 2, 128, 128, 0}, 1, 0, true},
      {"decode Tq16 Tk777 D64", {1, 16, 777, 8, 8, 64, 64, 0}, 3, 0, false},
      {"D256 T50", {1, 50, 50, 2, 2, 256, 256, 0}, 1, 0, false},
      {"T300 H2/1 D64 peaky", {1, 300, 300, 2, 1, 64, 64, 0}, 4, 0, false},
      {"GQA4 T129 D128 Dv64", {1, 129, 129, 8, 2, 128, 64, 0}, 1, 0, false},
  };
  uint64_t seed = 7;
  for (const Case& c : cases) {
    if (quick && !c.quick) continue;
    AttentionDims d = c.d;
    d.scale = 1.0 / std::sqrt(double(d.D));
    const Problem base = random_problem(d, c.amp, ++seed);
    for (const Mode& m : kModes) {
      const Problem p = rounded(base, m.bf16_in);
      const std::string tag = std::string(c.name) + " " + m.name;
      try {
        compare(rep, tag, run_mode(p, m, c.splits), cpu_reference(p), m.tol_o, m.tol_g);
      } catch (const std::exception& e) {
        ++rep.fails;
        std::printf("FAIL %s: exception: %s\n", tag.c_str(), e.what());
      }
    }
  }
}

// The golden attention tensors (B=2 T=100 H=2 D=32 Dv=48, float64 attention).
void golden_cases(Report& rep, const std::string& dir) {
  const std::string path = dir + "/linear_ops_small.safetensors";
  if (!std::filesystem::exists(path)) {
    std::printf("SKIP golden: %s not found\n", path.c_str());
    return;
  }
  auto f = kimi::io::SafetensorsFile::open(path);
  auto get = [&](const char* name) { return f.read_f64(std::string("attention.") + name); };
  const auto qs = f.info("attention.q").shape, vs = f.info("attention.v").shape;
  Problem p;
  p.d = {qs[0], qs[1], qs[1], qs[2], qs[2], qs[3], vs[3], 1.0 / std::sqrt(double(qs[3]))};
  p.q = get("q"), p.k = get("k"), p.v = get("v"), p.do_ = get("do");
  Result ref;
  ref.o = get("o"), ref.dq = get("dq"), ref.dk = get("dk"), ref.dv = get("dv");
  for (const Mode& m : kModes) {
    const Problem pr = rounded(p, m.bf16_in);
    compare(rep, std::string("golden attention ") + m.name, run_mode(pr, m, 0), ref,
            m.bf16_in ? 2e-2 : m.tol_o, m.bf16_in ? 2e-2 : m.tol_g, false);
  }
}

// ---- benchmark -------------------------------------------------------------------------------
template <class T>
void fill_random(const Dev<T>& x, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  const size_t chunk = size_t(1) << 22;
  std::vector<T> h(std::min(chunk, x.size()));
  for (auto& e : h) e = Dev<T>::from_double(nd(rng));
  for (size_t off = 0; off < x.size(); off += h.size())
    kc::copy_to_device(x.ptr() + off, h.data(), std::min(h.size(), x.size() - off) * sizeof(T));
}

template <class F>
double median_ms(F&& fn, int warm, int reps) {
  for (int i = 0; i < warm; ++i) fn();
  cudaEvent_t a, b;
  KIMI_CUDA_CHECK(cudaEventCreate(&a));
  KIMI_CUDA_CHECK(cudaEventCreate(&b));
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    KIMI_CUDA_CHECK(cudaEventRecord(a, kc::stream()));
    fn();
    KIMI_CUDA_CHECK(cudaEventRecord(b, kc::stream()));
    KIMI_CUDA_CHECK(cudaEventSynchronize(b));
    float t = 0;
    KIMI_CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  KIMI_CUDA_CHECK(cudaEventDestroy(a));
  KIMI_CUDA_CHECK(cudaEventDestroy(b));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// One configuration: fwd and fwd+bwd medians, causal TFLOP/s (fwd: B H Tq Tk (D + Dv) for the
// masked half; fwd+bwd: 3.5x fwd, FlashAttention's convention), and the SDPA ratio.
template <class T>
void bench_one(const char* label, AttentionDims d, ComputePrecision prec, double sdpa_fwd,
               double sdpa_fb, bool backward, int reps) {
  const int64_t nq = d.B * d.Tq * d.Hq, nk = d.B * d.Tk * d.Hkv;
  Dev<T> q(nq * d.D), k(nk * d.D), v(nk * d.Dv), o(nq * d.Dv), do_(nq * d.Dv);
  Dev<float> lse{size_t(nq)};
  fill_random(q, 1), fill_random(k, 2), fill_random(v, 3), fill_random(do_, 4);
  auto fwd = [&] {
    kc::causal_attention_fwd<T>(d, q.ptr(), k.ptr(), v.ptr(), o.ptr(), lse.ptr(), prec,
                                kc::stream());
  };
  const double tf = median_ms(fwd, 2, reps);
  const double causal = d.Tq == d.Tk ? 0.5 * double(d.Tq) * d.Tk : double(d.Tq) * d.Tk;
  const double flops = d.B * d.Hq * causal * 2.0 * (d.D + d.Dv);
  std::printf("%-34s fwd     %8.3f ms  %6.1f TFLOP/s", label, tf, flops / tf * 1e-9);
  if (sdpa_fwd > 0) std::printf("  SDPA %6.2f ms  x%.2f", sdpa_fwd, sdpa_fwd / tf);
  if (d.Tq < 64)
    std::printf("  K/V read %.0f GB/s", double(nk) * (d.D + d.Dv) * sizeof(T) / (tf * 1e-3) * 1e-9);
  std::printf("\n");
  if (!backward) return;
  Dev<T> dq(nq * d.D), dk(nk * d.D), dv(nk * d.Dv);
  auto fb = [&] {
    fwd();
    kc::causal_attention_bwd<T>(d, q.ptr(), k.ptr(), v.ptr(), o.ptr(), lse.ptr(), do_.ptr(),
                                dq.ptr(), dk.ptr(), dv.ptr(), prec, kc::stream());
  };
  const double tb = median_ms(fb, 1, reps);
  std::printf("%-34s fwd+bwd %8.3f ms  %6.1f TFLOP/s", label, tb, 3.5 * flops / tb * 1e-9);
  if (sdpa_fb > 0) std::printf("  SDPA %6.2f ms  x%.2f", sdpa_fb, sdpa_fb / tb);
  std::printf("\n");
  std::fflush(stdout);
}

void bench() {
  const int64_t Ts[] = {2048, 8192, 32768};
  const double sdpa_f[] = {0.99, 3.9, 14.8}, sdpa_fb[] = {5.1, 15.5, 54};
  std::printf("bench: causal, H=16, D=Dv=128, B*T=65536; x = SDPA time / ours (>1: faster)\n");
  for (int i = 0; i < 3; ++i) {
    const AttentionDims d{65536 / Ts[i], Ts[i], Ts[i], 16, 16, 128, 128, 1.0 / std::sqrt(128.0)};
    const std::string label = "bf16 in, bf16 ops T=" + std::to_string(Ts[i]);
    bench_one<bf16>(label.c_str(), d, ComputePrecision::kBF16, sdpa_f[i], sdpa_fb[i], true, 7);
  }
  const AttentionDims d8{8, 8192, 8192, 16, 16, 128, 128, 1.0 / std::sqrt(128.0)};
  bench_one<float>("f32 in, bf16 ops T=8192", d8, ComputePrecision::kBF16, 3.9, 15.5, true, 5);
  bench_one<float>("f32 in, tf32 ops T=8192", d8, ComputePrecision::kTF32, 0, 0, true, 3);
  const AttentionDims d2{32, 2048, 2048, 16, 16, 128, 128, 1.0 / std::sqrt(128.0)};
  bench_one<float>("f32 in, fp32 FMA T=2048", d2, ComputePrecision::kFP32, 0, 0, false, 1);
  // Decoding against a long cache: 32 q heads over 8 kv heads, D=128 (and MLA's 192/128).
  for (int64_t tq : {1, 16}) {
    const AttentionDims dd{1, tq, 131072, 32, 8, 128, 128, 1.0 / std::sqrt(128.0)};
    const std::string label = "decode bf16 Tq=" + std::to_string(tq) + " Tk=128K H32/8";
    bench_one<bf16>(label.c_str(), dd, ComputePrecision::kBF16, 0, 0, false, 10);
  }
  const AttentionDims dm{1, 1, 131072, 16, 16, 192, 128, 1.0 / std::sqrt(192.0)};
  bench_one<bf16>("decode bf16 Tq=1 Tk=128K D192/128", dm, ComputePrecision::kBF16, 0, 0, false,
                  10);
}

}  // namespace

int main(int argc, char** argv) {
  if (!kc::device_present()) {
    std::printf("SKIP: no CUDA device present; nothing was run\n");
    return 0;
  }
  bool quick = false, do_bench = false;
  std::string golden;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick")
      quick = true;
    else if (a == "--bench")
      do_bench = true;
    else
      golden = a;
  }
  if (golden.empty())
    golden = std::filesystem::exists(".gpu/golden") ? ".gpu/golden" : KIMI_GOLDEN_DIR;
  cudaDeviceProp prop{};
  KIMI_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
  if (do_bench) {
    try {
      bench();
    } catch (const std::exception& e) {
      std::printf("FAIL bench: exception: %s\n", e.what());
      return 1;
    }
    return 0;
  }
  Report rep;
  try {
    golden_cases(rep, golden);
  } catch (const std::exception& e) {
    ++rep.fails;
    std::printf("FAIL golden: exception: %s\n", e.what());
  }
  random_cases(rep, quick);
  std::printf("%d checks, %d failed\n", rep.checks, rep.fails);
  return rep.fails ? 1 : 0;
}
