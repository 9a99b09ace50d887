// CPU-vs-CUDA parity for every op (kimi_cuda_op_parity): replays each finite-difference case of
// tests/op_gradcheck_cases.cpp and tests/mixer_gradcheck_cases.cpp on the GPU. The reference
// is the CPU op in float64 on the case's own inputs; the GPU gets the same values in F32, with
// the same strides (non-contiguous stays non-contiguous) and integer inputs unchanged. Forward
// outputs and the gradient of every input under the same random upstream gradients must agree
// to max|gpu - ref| / max|ref| <= 1e-4 (forward) and 1e-3 (gradients), fp32 compute.
// Exit 0 with a SKIP line when no GPU is present.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>

#include "core/autograd/autograd.h"
#include "core/backend/op_list.h"
#include "core/backend/precision.h"
#include "core/tensor/device_memory.h"
#include "tests/cuda/parity_util.h"
#include "tests/gradcheck.h"

namespace {

using namespace kimi;
using namespace kimi::testing;

// The same logical tensor on the GPU: float storage converted to F32 and copied whole, then
// viewed with the original offset and strides.
Tensor to_gpu_like(const Tensor& t) {
  if (!t.defined()) return t;
  const size_t elems = t.storage()->nbytes / dtype_size(t.dtype());
  Tensor flat = Tensor::from_blob(t.storage()->data, {static_cast<int64_t>(elems)}, t.dtype(),
                                  std::shared_ptr<void>());
  DType dt = t.dtype() == DType::kF64 ? DType::kF32 : t.dtype();
  Tensor dev = flat.to(dt).to(Device::kCUDA);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = dev.storage();
  impl->offset = t.offset();
  impl->shape = t.shape();
  impl->strides = t.strides();
  impl->dtype = dt;
  Tensor out(impl);
  if (t.requires_grad()) out.set_requires_grad(true);
  return out;
}

struct Run {
  std::vector<Tensor> outs, grads;
};

Run forward_backward(const OpFn& fn, const std::vector<Tensor>& inputs, uint64_t seed) {
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) t.impl()->grad.reset();
  Run r;
  r.outs = fn(inputs);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uni(-1.0, 1.0);
  std::vector<Tensor> roots, ups;
  for (const Tensor& o : r.outs) {
    if (!is_floating(o.dtype()) || !o.requires_grad()) continue;
    std::vector<double> up(o.numel());
    for (double& u : up) u = uni(rng);
    roots.push_back(o);
    ups.push_back(Tensor::from_vector(up, o.shape()).to(o.dtype()).to(o.device()));
  }
  if (!roots.empty()) run_backward(roots, ups);
  for (const Tensor& t : inputs)
    r.grads.push_back(t.defined() && t.requires_grad() ? t.grad() : Tensor());
  return r;
}

class OpParity : public ::testing::TestWithParam<size_t> {};

void check_case(const GradCase& c, double out_tol, double grad_tol) {
  std::mt19937_64 rng(c.opt.seed);
  std::vector<Tensor> cpu_in = c.make(rng);
  std::vector<Tensor> gpu_in;
  for (const Tensor& t : cpu_in) gpu_in.push_back(to_gpu_like(t));
  Run ref = forward_backward(c.fn, cpu_in, c.opt.seed + 1);
  Run got = forward_backward(c.fn, gpu_in, c.opt.seed + 1);
  ASSERT_EQ(ref.outs.size(), got.outs.size());
  for (size_t k = 0; k < ref.outs.size(); ++k) {
    ASSERT_EQ(got.outs[k].device(), Device::kCUDA) << "output " << k << " left the GPU";
    ASSERT_EQ(got.outs[k].shape(), ref.outs[k].shape()) << "output " << k;
    const double e = rel_max(got.outs[k], ref.outs[k]);
    EXPECT_LE(e, std::max(out_tol, c.opt.f32_tol)) << "output " << k;
  }
  for (size_t i = 0; i < ref.grads.size(); ++i) {
    if (!ref.grads[i].defined()) continue;
    ASSERT_TRUE(got.grads[i].defined()) << "no GPU gradient for input " << i;
    EXPECT_EQ(got.grads[i].device(), Device::kCUDA) << "input " << i;
    const double e = rel_max(got.grads[i], ref.grads[i]);
    EXPECT_LE(e, grad_tol) << "gradient of input " << i;
  }
}

TEST_P(OpParity, MatchesCpu) {
  const GradCase& c = grad_cases().at(GetParam());
  if (!c.fn) GTEST_SKIP() << "hand-written case (no replayable inputs)";
  check_case(c, 1e-4, 1e-3);
}

// Tensor-core precisions: the delta rule's chunk form runs the chunk kernels (fp32 runs the
// recurrent ones), attention and the GEMMs their TF32 / bf16 paths.
TEST_P(OpParity, MatchesCpuAtTf32AndBf16) {
  const GradCase& c = grad_cases().at(GetParam());
  if (!c.fn) GTEST_SKIP() << "hand-written case (no replayable inputs)";
  if (c.op != "delta_rule" && c.op != "causal_attention" && c.op != "matmul" && c.op != "linear")
    GTEST_SKIP() << "no tensor-core path";
  if (c.label.rfind("chunk2", 0) == 0)
    GTEST_SKIP() << "CUDA runs chunk 64 only (refused: ChunkSizeOtherThan64IsRefused); see chunk64";
  {
    ComputePrecisionGuard tf32(ComputePrecision::kTF32);
    check_case(c, 5e-3, 1e-2);
  }
  ComputePrecisionGuard bf16(ComputePrecision::kBF16);
  check_case(c, 3e-2, 6e-2);
}

std::string case_name(size_t i) {
  const GradCase& c = grad_cases().at(i);
  return c.op + "_" + c.label;
}

INSTANTIATE_TEST_SUITE_P(Cuda, OpParity, ::testing::Range<size_t>(0, grad_cases().size()),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return case_name(info.param);
                         });

// model.chunk_size means the same on both devices: a size the CUDA chunk kernels do not run is a
// clear error before any kernel, not a silent chunk of 64.
TEST(OpParityLimits, ChunkSizeOtherThan64IsRefused) {
  const GradCase* chunk2 = nullptr;
  for (const GradCase& c : grad_cases())
    if (c.op == "delta_rule" && c.label == "chunk2_per_channel") chunk2 = &c;
  ASSERT_NE(chunk2, nullptr);
  std::mt19937_64 rng(1);
  std::vector<Tensor> in = chunk2->make(rng);
  for (Tensor& t : in) t = t.to(DType::kF32).to(Device::kCUDA);
  ComputePrecisionGuard bf16(ComputePrecision::kBF16);
  try {
    chunk2->fn(in);
    FAIL() << "chunk 2 ran on CUDA";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("chunk_size 64 only"), std::string::npos) << e.what();
  }
}

// Every op in the list has at least one replayable case, so none escapes the GPU check.
TEST(OpParityCoverage, EveryListedOpIsReplayed) {
  for (const char* op : kOpNames) {
    bool found = false;
    for (const GradCase& c : grad_cases()) found = found || (c.op == op && c.fn);
    if (std::string(op) == "to_dtype") continue;  // a hand-written case; covered by the tensor test
    EXPECT_TRUE(found) << op << " has no replayable case";
  }
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (!kimi::cuda_available()) {
    std::printf("SKIP: no CUDA device; the op parity tests need a GPU\n");
    return 0;
  }
  return RUN_ALL_TESTS();
}
