// The finite-difference cases of the ops in core/backend/op_list.h (small odd shapes, broadcasting,
// non-contiguous inputs, axis variants). tests/op_gradcheck_test.cpp runs them on the CPU;
// tests/cuda/op_parity_test.cpp runs the same inputs on the GPU against the CPU. The mixer ops'
// cases live in tests/mixer_gradcheck_cases.cpp.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "core/backend/op_list.h"
#include "core/ops/moe_ops.h"
#include "tests/gradcheck.h"

namespace {

using namespace kimi;
using namespace kimi::testing;
using Ins = std::vector<Tensor>;
using Outs = std::vector<Tensor>;

OpFn f1(std::function<Tensor(const Tensor&)> f) {
  return [f](const Ins& in) { return Outs{f(in[0])}; };
}
OpFn f2(std::function<Tensor(const Tensor&, const Tensor&)> f) {
  return [f](const Ins& in) { return Outs{f(in[0], in[1])}; };
}
// Random F64 inputs of these shapes in [lo, hi), all requiring grad.
InputsFn shapes(std::vector<Shape> ss, double lo = -1, double hi = 1) {
  return [=](std::mt19937_64& rng) {
    Ins in;
    for (const Shape& s : ss) in.push_back(rand_t(rng, s, lo, hi));
    return in;
  };
}
// One non-contiguous input (last two dims stored transposed).
InputsFn noncontig(Shape s, double lo = -1, double hi = 1) {
  return [=](std::mt19937_64& rng) { return Ins{rand_noncontig(rng, s, lo, hi)}; };
}

KIMI_GRADCHECK_CASES(view_cases) {
  add_gradcheck("reshape", "3x4x5_to_5x12", f1([](const Tensor& x) {
                  return x.reshape({5, -1});
                }),
                shapes({{3, 4, 5}}));
  add_gradcheck("reshape", "noncontig_copy", f1([](const Tensor& x) { return x.reshape({20}); }),
                noncontig({4, 5}));
  add_gradcheck("permute", "2x3x4", f1([](const Tensor& x) {
                  return x.permute({2, 0, 1});
                }),
                shapes({{2, 3, 4}}));
  add_gradcheck("narrow", "dim1", f1([](const Tensor& x) { return x.narrow(1, 2, 3); }),
                shapes({{5, 6}}));
  add_gradcheck("narrow", "neg_dim_noncontig",
                f1([](const Tensor& x) { return x.narrow(-2, 1, 2); }), noncontig({4, 3}));
  add_gradcheck("expand", "3x1_to_2x3x4", f1([](const Tensor& x) {
                  return x.expand({2, 3, 4});
                }),
                shapes({{3, 1}}));
  add_gradcheck("contiguous", "noncontig", f1([](const Tensor& x) { return x.contiguous(); }),
                noncontig({3, 5}));
  // F64 -> F32 -> F64 rounds at f32 precision, so finite differences cannot see the gradient at
  // f64 precision: check instead that the gradient passes through as the identity.
  add_case("to_dtype", "identity_gradient", [] {
    std::mt19937_64 rng(7);
    Tensor x = rand_t(rng, {3, 4});
    Tensor y = x.to(DType::kF32);
    ASSERT_EQ(y.dtype(), DType::kF32);
    Tensor up = rand_t(rng, {3, 4}, -1, 1, false).to(DType::kF32);
    y.backward(up);
    ASSERT_TRUE(x.grad().defined());
    EXPECT_EQ(x.grad().dtype(), DType::kF64);
    EXPECT_EQ(x.grad().to_vector<double>(), up.to_vector<double>());
    EXPECT_EQ(y.to_vector<float>(), x.to_vector<float>());
  });
}

KIMI_GRADCHECK_CASES(binary_cases) {
  for (const char* op : {"add", "sub", "mul", "div", "maximum"}) {
    const std::string name = op;
    OpFn fn = name == "add"   ? f2(kimi::add)
              : name == "sub" ? f2(kimi::sub)
              : name == "mul" ? f2(kimi::mul)
              : name == "div" ? f2(kimi::div)
                              : f2(kimi::maximum);
    const double lo = name == "div" ? 0.5 : -1;  // b stays away from 0 for div
    add_gradcheck(name, "same_3x5", fn, shapes({{3, 5}, {3, 5}}, lo, 2));
    add_gradcheck(name, "bcast_2x3x5_by_5", fn, shapes({{2, 3, 5}, {5}}, lo, 2));
    add_gradcheck(name, "bcast_3x1_by_1x4", fn, shapes({{3, 1}, {1, 4}}, lo, 2));
    add_gradcheck(name, "noncontig_a", fn, [lo](std::mt19937_64& rng) {
      return Ins{rand_noncontig(rng, {4, 3}, lo, 2), rand_t(rng, {4, 3}, lo, 2)};
    });
  }
  add_gradcheck("add_scalar", "3x4", f1([](const Tensor& x) { return add_scalar(x, 0.7); }),
                shapes({{3, 4}}));
  add_gradcheck("mul_scalar", "noncontig", f1([](const Tensor& x) { return mul_scalar(x, -1.3); }),
                noncontig({3, 4}));
  add_gradcheck("pow_scalar", "frac_power", f1([](const Tensor& x) { return pow_scalar(x, 2.5); }),
                shapes({{3, 4}}, 0.5, 2));
  add_gradcheck("pow_scalar", "cube_negative", f1([](const Tensor& x) { return pow_scalar(x, 3); }),
                shapes({{5}}, -2, 2));
}

KIMI_GRADCHECK_CASES(unary_cases) {
  struct U {
    const char* name;
    Tensor (*f)(const Tensor&);
    double lo, hi;
  };
  const U us[] = {{"neg", kimi::neg, -1, 1},      {"exp", kimi::exp, -2, 2},
                  {"log", kimi::log, 0.3, 3},     {"sqrt", kimi::sqrt, 0.3, 3},
                  {"rsqrt", kimi::rsqrt, 0.3, 3}, {"sigmoid", kimi::sigmoid, -4, 4},
                  {"silu", kimi::silu, -4, 4},    {"softplus", kimi::softplus, -5, 25},
                  {"tanh", kimi::tanh, -2, 2},    {"relu", kimi::relu, -1, 1},
                  {"abs", kimi::abs, -1, 1}};
  for (const U& u : us) {
    add_gradcheck(u.name, "3x5", f1(u.f), shapes({{3, 5}}, u.lo, u.hi));
    add_gradcheck(u.name, "noncontig_4x3", f1(u.f), noncontig({4, 3}, u.lo, u.hi));
  }
}

KIMI_GRADCHECK_CASES(reduce_cases) {
  add_gradcheck("sum", "all", f1([](const Tensor& x) { return sum(x); }), shapes({{3, 4, 5}}));
  add_gradcheck("sum", "dim1", f1([](const Tensor& x) { return sum(x, {1}); }),
                shapes({{3, 4, 5}}));
  add_gradcheck("sum", "dims02_keepdim", f1([](const Tensor& x) {
                  return sum(x, {0, 2}, true);
                }),
                shapes({{3, 4, 5}}));
  add_gradcheck("sum", "neg_dim_noncontig", f1([](const Tensor& x) { return sum(x, {-1}); }),
                noncontig({4, 3}));
  add_gradcheck("mean", "all", f1([](const Tensor& x) { return mean(x); }), shapes({{3, 5}}));
  add_gradcheck("mean", "dims01_keepdim", f1([](const Tensor& x) {
                  return mean(x, {0, 1}, true);
                }),
                shapes({{2, 3, 5}}));
  add_gradcheck("mean", "neg_dim_noncontig", f1([](const Tensor& x) { return mean(x, {-2}); }),
                noncontig({4, 3}));
  add_gradcheck("max", "dim1", f1([](const Tensor& x) { return max(x, 1); }), shapes({{3, 5, 2}}));
  add_gradcheck("max", "last_keepdim", f1([](const Tensor& x) { return max(x, -1, true); }),
                shapes({{3, 5}}));
  add_gradcheck("max", "noncontig", f1([](const Tensor& x) { return max(x, 0); }),
                noncontig({4, 3}));
  add_gradcheck("cumsum", "dim0", f1([](const Tensor& x) { return cumsum(x, 0); }),
                shapes({{5, 3}}));
  add_gradcheck("cumsum", "last_noncontig", f1([](const Tensor& x) { return cumsum(x, -1); }),
                noncontig({3, 4}));
}

KIMI_GRADCHECK_CASES(product_cases) {
  add_gradcheck("matmul", "2d", f2(kimi::matmul), shapes({{3, 4}, {4, 5}}));
  add_gradcheck("matmul", "batched_shared_b", f2(kimi::matmul), shapes({{2, 3, 4}, {4, 5}}));
  add_gradcheck("matmul", "batched", f2(kimi::matmul), shapes({{2, 3, 4}, {2, 4, 5}}));
  add_gradcheck("matmul", "noncontig", f2(kimi::matmul), [](std::mt19937_64& rng) {
    return Ins{rand_noncontig(rng, {3, 4}), rand_noncontig(rng, {4, 5})};
  });
  auto lin3 = [](const Ins& in) { return Outs{linear(in[0], in[1], in[2])}; };
  add_gradcheck("linear", "bias_3d", lin3, shapes({{2, 3, 4}, {5, 4}, {5}}));
  add_gradcheck("linear", "no_bias",
                f2([](const Tensor& x, const Tensor& w) { return linear(x, w); }),
                shapes({{3, 4}, {5, 4}}));
  add_gradcheck("linear", "noncontig_w", lin3, [](std::mt19937_64& rng) {
    return Ins{rand_t(rng, {3, 4}), rand_noncontig(rng, {5, 4}), rand_t(rng, {5})};
  });
}

KIMI_GRADCHECK_CASES(softmax_cases) {
  add_gradcheck("softmax", "3x7", f1(kimi::softmax), shapes({{3, 7}}));
  add_gradcheck("softmax", "noncontig_2x5x3", f1(kimi::softmax), noncontig({2, 5, 3}));
  add_gradcheck("softmax", "large_logits", f1(kimi::softmax), shapes({{2, 6}}, -60, 60));
  add_gradcheck("log_softmax", "3x7", f1(kimi::log_softmax), shapes({{3, 7}}));
  add_gradcheck("log_softmax", "noncontig_large", f1(kimi::log_softmax),
                noncontig({4, 5}, -60, 60));
  auto ce = [](int64_t ignore) {
    return [ignore](const Ins& in) { return Outs{cross_entropy(in[0], in[1], ignore)}; };
  };
  add_gradcheck("cross_entropy", "i64_ignore_rows", ce(-100), [](std::mt19937_64& rng) {
    return Ins{rand_t(rng, {6, 5}, -3, 3),
               Tensor::from_vector(std::vector<int64_t>{1, -100, 4, 0, -100, 2}, {6})};
  });
  add_gradcheck("cross_entropy", "i32_noncontig", ce(-100), [](std::mt19937_64& rng) {
    return Ins{rand_noncontig(rng, {4, 7}, -3, 3), rand_int(rng, {4}, 0, 6, DType::kI32)};
  });
  add_gradcheck("cross_entropy", "custom_ignore_index", ce(3), [](std::mt19937_64& rng) {
    return Ins{rand_t(rng, {5, 4}), Tensor::from_vector(std::vector<int64_t>{3, 0, 3, 2, 1}, {5})};
  });
  add_gradcheck("cross_entropy", "all_ignored_is_zero", ce(-100), [](std::mt19937_64& rng) {
    return Ins{rand_t(rng, {3, 4}),
               Tensor::from_vector(std::vector<int64_t>{-100, -100, -100}, {3})};
  });
}

KIMI_GRADCHECK_CASES(norm_cases) {
  auto rms = [](const Ins& in) { return Outs{rms_norm(in[0], in[1], 1e-5)}; };
  add_gradcheck("rms_norm", "weight_3x8", rms, shapes({{3, 8}, {8}}));
  add_gradcheck("rms_norm", "no_weight_noncontig",
                f1([](const Tensor& x) { return rms_norm(x, Tensor(), 1e-6); }),
                noncontig({2, 5, 3}));
  add_gradcheck("rms_norm", "weight_noncontig_x", rms, [](std::mt19937_64& rng) {
    return Ins{rand_noncontig(rng, {2, 4, 5}), rand_t(rng, {5}, 0.5, 1.5)};
  });
  add_gradcheck("l2_norm", "4x6", f1([](const Tensor& x) { return l2_norm(x); }), shapes({{4, 6}}));
  add_gradcheck("l2_norm", "noncontig_eps", f1([](const Tensor& x) { return l2_norm(x, 1e-3); }),
                noncontig({2, 3, 5}));
}

KIMI_GRADCHECK_CASES(sequence_cases) {
  auto conv = [](const Ins& in) {
    return Outs{causal_conv1d(in[0], in[1], in.size() > 2 ? in[2] : Tensor(),
                              in.size() > 3 ? in[3] : Tensor())};
  };
  add_gradcheck("causal_conv1d", "bias_2x5x3_w4", conv, shapes({{2, 5, 3}, {3, 4}, {3}}));
  add_gradcheck("causal_conv1d", "no_bias_T2_lt_W", conv, shapes({{2, 2, 3}, {3, 4}}));
  add_gradcheck("causal_conv1d", "prefix", conv, shapes({{2, 5, 3}, {3, 4}, {3}, {2, 3, 3}}));
  add_gradcheck("causal_conv1d", "width1", conv, shapes({{1, 4, 2}, {2, 1}, {2}}));
  add_gradcheck("causal_conv1d", "noncontig_x", conv, [](std::mt19937_64& rng) {
    return Ins{rand_noncontig(rng, {2, 5, 3}), rand_t(rng, {3, 3}), rand_t(rng, {3})};
  });
  auto emb = [](const Ins& in) { return Outs{embedding(in[0], in[1])}; };
  add_gradcheck("embedding", "i64_repeats_2x3", emb, [](std::mt19937_64& rng) {
    return Ins{rand_t(rng, {7, 4}),
               Tensor::from_vector(std::vector<int64_t>{1, 6, 1, 0, 1, 3}, {2, 3})};
  });
  add_gradcheck("embedding", "i32_noncontig_w", emb, [](std::mt19937_64& rng) {
    return Ins{rand_noncontig(rng, {5, 3}), rand_int(rng, {4}, 0, 4, DType::kI32)};
  });
}

KIMI_GRADCHECK_CASES(join_cases) {
  auto cat = [](int64_t dim) { return [dim](const Ins& in) { return Outs{concat(in, dim)}; }; };
  add_gradcheck("concat", "dim1_sizes_2_1_3", cat(1), shapes({{3, 2}, {3, 1}, {3, 3}}));
  add_gradcheck("concat", "dim0_noncontig", cat(0), [](std::mt19937_64& rng) {
    return Ins{rand_noncontig(rng, {2, 3}), rand_t(rng, {4, 3})};
  });
  add_gradcheck("concat", "neg_dim", cat(-1), shapes({{2, 2, 1}, {2, 2, 3}}));
  auto stk = [](int64_t dim) { return [dim](const Ins& in) { return Outs{stack(in, dim)}; }; };
  add_gradcheck("stack", "dim0", stk(0), shapes({{3, 2}, {3, 2}, {3, 2}}));
  add_gradcheck("stack", "dim_last_noncontig", stk(-1), [](std::mt19937_64& rng) {
    return Ins{rand_noncontig(rng, {2, 3}), rand_t(rng, {2, 3})};
  });
  add_gradcheck(
      "split", "three_pieces",
      [](const Ins& in) {
        return split(in[0], {2, 3, 1}, 1);
      },
      shapes({{3, 6}}));
  add_gradcheck(
      "split", "one_piece_used",
      [](const Ins& in) {
        return Outs{split(in[0], {1, 2}, 0)[1]};
      },
      noncontig({3, 4}));
  auto wh = [](const Ins& in) { return Outs{where(in[0], in[1], in[2])}; };
  add_gradcheck("where", "i32_cond_bcast", wh, [](std::mt19937_64& rng) {
    return Ins{rand_int(rng, {3, 1}, 0, 1, DType::kI32), rand_t(rng, {3, 4}), rand_t(rng, {4})};
  });
  add_gradcheck("where", "f64_cond_same_shape", wh, [](std::mt19937_64& rng) {
    Tensor c = Tensor::from_vector(std::vector<double>{0, 1.5, 0, -2, 0, 1}, {2, 3});
    return Ins{c, rand_noncontig(rng, {2, 3}), rand_t(rng, {2, 3})};
  });
  auto mf = [](const Ins& in) { return Outs{masked_fill(in[0], in[1], -7.5)}; };
  add_gradcheck("masked_fill", "bcast_i64_mask", mf, [](std::mt19937_64& rng) {
    return Ins{rand_t(rng, {3, 4}), Tensor::from_vector(std::vector<int64_t>{1, 0, 0, 1}, {1, 4})};
  });
  add_gradcheck("masked_fill", "noncontig_x", mf, [](std::mt19937_64& rng) {
    return Ins{rand_noncontig(rng, {4, 3}), rand_int(rng, {4, 3}, 0, 1)};
  });
}

// The MoE ops: rows grouped by expert with an empty group and a group of one row; gathers that
// repeat and skip rows, so the backward must add and leave zeros.
KIMI_GRADCHECK_CASES(moe_cases) {
  auto gmm = [](const Ins& in) { return Outs{grouped_matmul(in[0], in[1], in[2])}; };
  for (const bool noncontig_x : {false, true}) {
    add_gradcheck("grouped_matmul", noncontig_x ? "noncontig_x" : "3_experts_one_empty", gmm,
                  [noncontig_x](std::mt19937_64& rng) {
                    Tensor x = noncontig_x ? rand_noncontig(rng, {7, 5}) : rand_t(rng, {7, 5});
                    return Ins{x, rand_t(rng, {4, 6, 5}),
                               Tensor::from_vector(std::vector<int64_t>{0, 2, 2, 6, 7}, {5})};
                  });
  }
  auto gather = [](const Ins& in) { return Outs{gather_rows(in[0], in[1])}; };
  add_gradcheck("gather_rows", "repeats_i32", gather, [](std::mt19937_64& rng) {
    return Ins{rand_t(rng, {5, 3}),
               Tensor::from_vector(std::vector<int32_t>{3, 0, 3, 1, 0, 3}, {6})};
  });
  add_gradcheck("gather_rows", "i64_noncontig", gather, [](std::mt19937_64& rng) {
    return Ins{rand_noncontig(rng, {4, 6}), Tensor::from_vector(std::vector<int64_t>{2, 1}, {2})};
  });
}

}  // namespace
