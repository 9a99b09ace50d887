// Kernel parity cases of kimi_cuda_tests against stored references and invariants: FLA's golden
// tensors (linear_ops_small.safetensors), decoding step by step against one forward, and the
// device-memory helpers (strided copies, conversions, the caching allocator).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "core/io/safetensors.h"
#include "tests/cuda/recurrence_parity.h"

namespace kimi::cuda_test {

// Decoding: T single steps with the state updated in place equal one recurrent forward
// (K = 128: the vectorised decode kernel, V = 96 leaves part of a block idle; K = 48: the
// recurrent kernel with T = 1).
void decode_case(Report& rep, const RecurrenceDims& d, const std::string& name);
void decode_cases(Report& rep) {
  decode_case(rep, {3, 6, 4, 128, 128, GateKind::kPerChannel, 1.0 / std::sqrt(128.0), 64}, "kda");
  decode_case(rep, {2, 5, 3, 128, 96, GateKind::kScalar, 1.0 / std::sqrt(128.0), 64}, "gdn V96");
  decode_case(rep, {2, 5, 3, 48, 40, GateKind::kPerChannel, 1.0 / std::sqrt(48.0), 64},
              "kda K48 V40");
}

void decode_case(Report& rep, const RecurrenceDims& d, const std::string& name) {
  const Problem p = as_type<float>(random_problem(d, true, 11));
  const Result ref = cpu_reference(p, false);
  RecurrenceDims d1 = d;
  d1.T = 1;
  Dev<float> state(p.h0);
  std::vector<double> o(ref.o.size());
  for (int64_t t = 0; t < d.T; ++t) {
    auto slice = [&](const std::vector<double>& x, int64_t per_tok) {
      std::vector<double> s;
      for (int64_t b = 0; b < d.B; ++b)
        for (int64_t i = 0; i < d.H * per_tok; ++i)
          s.push_back(x[(b * d.T + t) * d.H * per_tok + i]);
      return s;
    };
    const int64_t gw = d.gate == GateKind::kPerChannel ? d.K : 1;
    Dev<float> q(slice(p.q, d.K)), k(slice(p.k, d.K)), v(slice(p.v, d.V)), g(slice(p.g, gw)),
        beta(slice(p.beta, 1)), ot(d.B * d.H * d.V);
    kc::delta_rule_decode_step<float>(d1, q.ptr(), k.ptr(), v.ptr(), g.ptr(), beta.ptr(),
                                      state.ptr(), ot.ptr(), kc::stream());
    const std::vector<double> oh = ot.download();
    for (int64_t b = 0; b < d.B; ++b)
      for (int64_t i = 0; i < d.H * d.V; ++i)
        o[(b * d.T + t) * d.H * d.V + i] = oh[b * d.H * d.V + i];
  }
  const std::string tag = name + " decode in place f32";
  rep.check(tag, "o", rel_err(o, ref.o), kTolOut);
  rep.check(tag, "ht", rel_err(state.download(), ref.ht), kTolOut);
}

// The golden tensors of flash-linear-attention (B=2 T=100 H=2 K=32 V=48).
void golden_cases(Report& rep, const std::string& dir) {
  const std::string path = dir + "/linear_ops_small.safetensors";
  if (!std::filesystem::exists(path)) {
    std::printf("SKIP golden: %s not found\n", path.c_str());
    return;
  }
  auto f = kimi::io::SafetensorsFile::open(path);
  struct G {
    const char* prefix;
    GateKind gate;
  };
  for (G c : {G{"kda.", GateKind::kPerChannel}, G{"gdn.", GateKind::kScalar},
              G{"deltanet.", GateKind::kNone}, G{"simple_gla.", GateKind::kScalar}}) {
    const bool delta = std::string(c.prefix) != "simple_gla.";
    const std::string pre = c.prefix;
    auto get = [&](const char* name) { return f.read_f64(pre + name); };
    const auto shape = f.info(pre + "q").shape;
    const auto vshape = f.info(pre + "v").shape;
    RecurrenceDims d{shape[0],
                     shape[1],
                     shape[2],
                     shape[3],
                     vshape[3],
                     c.gate,
                     1.0 / std::sqrt(double(shape[3])),
                     64};
    Problem p;
    p.d = d;
    p.delta = delta;
    p.q = get("q");
    p.k = get("k");
    p.v = get("v");
    if (delta) p.beta = get("beta");
    if (c.gate != GateKind::kNone) p.g = get("g");
    p.h0 = get("h0");
    p.do_ = get("do");
    p.dht = get("dht");
    Result ref;
    ref.o = get("o");
    ref.ht = get("ht");
    ref.dq = get("dq");
    ref.dk = get("dk");
    ref.dv = get("dv");
    if (delta) ref.dbeta = get("dbeta");
    ref.dh0 = get("dh0");
    if (c.gate != GateKind::kNone) ref.dg = get("dg");
    const std::string tag = "golden " + pre.substr(0, pre.size() - 1) + " ";
    compare(rep, tag + "recurrent f32", cuda_run<float>(p, Form::kRecurrent, true), ref, kTolOut,
            kTolGrad);
    compare(rep, tag + "chunk f32 (tf32)", cuda_run<float>(p, Form::kChunk, true), ref, kTolTf32,
            kTolTf32);
    if (!delta) {  // bf16: against the oracle on the bf16-rounded golden inputs
      const Problem pb = as_type<__nv_bfloat16>(p);
      compare(rep, tag + "chunk bf16", cuda_run<__nv_bfloat16>(pb, Form::kChunk, true),
              cpu_reference(pb, true), kTolBf16, kTolBf16);
    }
  }
}

// The caching allocator reuses blocks; strided copies convert and permute correctly.
void memory_cases(Report& rep) {
  const auto before = kc::allocator_stats();
  for (int i = 0; i < 1000; ++i) {
    kc::Buffer a(1000 + i % 7), b(1 << 20);
  }
  const auto after = kc::allocator_stats();
  rep.check_true("allocator: 2000 allocs, <= 3 cudaMalloc",
                 after.cuda_mallocs - before.cuda_mallocs <= 3);
  rep.check_true("allocator: size classes",
                 kc::size_class(1) == 512 && kc::size_class(513) == 640 &&
                     kc::size_class(1024) == 1024 && kc::size_class(1025) == 1280);
  // [3,5,7] f32, viewed as its [7,5,3] transpose, copied to contiguous bf16 then back to f32.
  const int A = 3, B = 5, C = 7;
  std::vector<double> h(A * B * C);
  for (size_t i = 0; i < h.size(); ++i) h[i] = std::sin(0.37 * i) * 10;
  Dev<float> src(h), back(h.size());
  Dev<__nv_bfloat16> mid(h.size());
  kc::StridedView vs;
  vs.data = src.ptr();
  vs.type = kc::ElemType::kF32;
  vs.ndim = 3;
  vs.shape[0] = C;
  vs.shape[1] = B;
  vs.shape[2] = A;
  vs.strides[0] = 1;
  vs.strides[1] = C;
  vs.strides[2] = B * C;
  kc::StridedView vm = vs;
  vm.data = mid.ptr();
  vm.type = kc::ElemType::kBF16;
  vm.strides[0] = B * A;
  vm.strides[1] = A;
  vm.strides[2] = 1;
  kc::copy_strided(vm, vs);
  kc::StridedView vb = vm;
  vb.data = back.ptr();
  vb.type = kc::ElemType::kF32;
  kc::copy_strided(vb, vm);
  std::vector<double> want(h.size());
  for (int c = 0; c < C; ++c)
    for (int b = 0; b < B; ++b)
      for (int a = 0; a < A; ++a) want[(c * B + b) * A + a] = round_bf16(h[(a * B + b) * C + c]);
  rep.check("copy_strided: permute + f32->bf16->f32", "x", rel_err(back.download(), want), 0.0);
  kc::fill_strided(vb, -2.5);
  bool all = true;
  for (double x : back.download()) all = all && x == -2.5;
  rep.check_true("fill_strided", all);
}

}  // namespace kimi::cuda_test
