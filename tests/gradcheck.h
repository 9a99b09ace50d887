// Finite-difference gradient checks (header-only, tests only) and the registry of per-op cases.
// gradcheck: in float64, the analytic gradient of L = sum_k sum(out_k * up_k) (random upstream
// up_k) wrt each input that requires grad, against central differences (L(x+e) - L(x-e)) / 2e;
// error per input = max|analytic - numeric| / max(max|numeric|, max|analytic|, 1e-6), the
// whole-tensor ratio of flash-linear-attention's get_err_ratio. Then a float32 run of the same
// op must match the float64 forward. Cases register from any translation unit (see the macro).
#pragma once

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/autograd/autograd.h"
#include "core/ops/ops.h"
#include "core/tensor/tensor.h"

namespace kimi::testing {

// A function of tensors returning one or more tensors (non-float outputs are ignored).
using OpFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

struct GradcheckOptions {
  double eps = 1e-6;      // finite-difference step (float64)
  double tol = 1e-6;      // on each input's error ratio
  double f32_tol = 1e-4;  // float32 forward against float64, same ratio
  bool check_f32 = true;
  uint64_t seed = 1234;  // inputs and upstream gradients
};

struct GradcheckResult {
  bool ok = true;
  std::vector<double> input_err;  // per input; -1 where it does not require grad
  double f32_err = 0;
  std::string report;  // one line per check
};

namespace detail {

// Address of element `flat` (row-major logical order) of an F64 tensor, any strides.
inline double* f64_elem(const Tensor& t, int64_t flat) {
  double* p = static_cast<double*>(t.storage()->data) + t.offset();
  for (int64_t d = t.dim() - 1; d >= 0; --d) {
    const int64_t n = t.size(d);
    p += (flat % n) * t.strides()[d];
    flat /= n;
  }
  return p;
}

// max|a - b| / max(max|a|, max|b|, floor)
inline double err_ratio(const std::vector<double>& a, const std::vector<double>& b,
                        double floor = 1e-6) {
  double diff = 0, scale = floor;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(a[i] - b[i]));
    scale = std::max({scale, std::abs(a[i]), std::abs(b[i])});
  }
  return std::isfinite(diff) ? diff / scale : INFINITY;
}

// L = sum_k sum(out_k * up_k) over the float outputs.
inline double loss_of(const std::vector<Tensor>& outs, const std::vector<std::vector<double>>& up) {
  double l = 0;
  for (size_t k = 0; k < outs.size(); ++k) {
    if (!is_floating(outs[k].dtype())) continue;
    std::vector<double> v = outs[k].to_vector<double>();
    for (size_t i = 0; i < v.size(); ++i) l += v[i] * up[k][i];
  }
  return l;
}

// d L / d inputs[i] by central differences, perturbing the input's storage in place.
inline std::vector<double> numeric_grad(const OpFn& fn, const std::vector<Tensor>& inputs, size_t i,
                                        const std::vector<std::vector<double>>& up, double eps) {
  NoGradGuard no_grad;
  std::vector<double> g(inputs[i].numel());
  for (int64_t k = 0; k < inputs[i].numel(); ++k) {
    double* p = f64_elem(inputs[i], k);
    const double v = *p;
    *p = v + eps;
    const double lp = loss_of(fn(inputs), up);
    *p = v - eps;
    const double lm = loss_of(fn(inputs), up);
    *p = v;
    g[k] = (lp - lm) / (2 * eps);
  }
  return g;
}

// The float32 forward against the float64 one (inputs converted, integer inputs unchanged).
inline double f32_forward_err(const OpFn& fn, const std::vector<Tensor>& inputs) {
  NoGradGuard no_grad;
  std::vector<Tensor> in32;
  for (const Tensor& t : inputs)
    in32.push_back(t.defined() && t.dtype() == DType::kF64 ? t.detach().to(DType::kF32) : t);
  std::vector<Tensor> o64 = fn(inputs), o32 = fn(in32);
  double worst = 0;
  for (size_t k = 0; k < o64.size(); ++k) {
    if (!is_floating(o64[k].dtype())) continue;
    if (o32[k].dtype() != DType::kF32 || o32[k].shape() != o64[k].shape()) return INFINITY;
    worst = std::max(worst, err_ratio(o32[k].to_vector<double>(), o64[k].to_vector<double>()));
  }
  return worst;
}

}  // namespace detail

inline GradcheckResult gradcheck(const OpFn& fn, const std::vector<Tensor>& inputs,
                                 const GradcheckOptions& opt = {}) {
  GradcheckResult res;
  std::mt19937_64 rng(opt.seed ^ 0x9e3779b97f4a7c15ull);
  std::uniform_real_distribution<double> uni(-1.0, 1.0);
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) t.impl()->grad.reset();
  std::vector<Tensor> outs = fn(inputs);
  std::vector<std::vector<double>> up(outs.size());
  std::vector<Tensor> roots, root_grads;
  for (size_t k = 0; k < outs.size(); ++k) {
    if (!is_floating(outs[k].dtype())) continue;
    for (int64_t i = 0; i < outs[k].numel(); ++i) up[k].push_back(uni(rng));
    if (outs[k].dtype() != DType::kF64) {
      res.ok = false;
      res.report += fmt::format("output {} is {}, want F64 from F64 inputs\n", k, outs[k].str());
    }
    if (!outs[k].requires_grad()) continue;
    roots.push_back(outs[k]);
    root_grads.push_back(Tensor::from_vector(up[k], outs[k].shape()).to(outs[k].dtype()));
  }
  if (roots.empty()) {
    res.ok = false;
    res.report += "no output requires grad\n";
    return res;
  }
  run_backward(roots, root_grads);
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    res.input_err.push_back(-1);
    if (!x.defined() || !x.requires_grad()) continue;
    std::vector<double> numeric = detail::numeric_grad(fn, inputs, i, up, opt.eps);
    std::vector<double> analytic(numeric.size(), 0.0);
    if (x.grad().defined()) {
      if (x.grad().shape() != x.shape()) {
        res.ok = false;
        res.report += fmt::format("input {}: gradient shape {} for {}\n", i,
                                  shape_str(x.grad().shape()), shape_str(x.shape()));
        continue;
      }
      analytic = x.grad().to_vector<double>();
    }
    const double e = detail::err_ratio(analytic, numeric);
    res.input_err.back() = e;
    const bool good = e <= opt.tol;
    res.ok = res.ok && good;
    res.report += fmt::format("input {} {}: grad err {:.3g} (tol {:.1g}){}\n", i, x.str(), e,
                              opt.tol, good ? "" : "  <-- FAIL");
  }
  if (opt.check_f32) {
    res.f32_err = detail::f32_forward_err(fn, inputs);
    const bool good = res.f32_err <= opt.f32_tol;
    res.ok = res.ok && good;
    res.report += fmt::format("f32 forward vs f64: err {:.3g} (tol {:.1g}){}\n", res.f32_err,
                              opt.f32_tol, good ? "" : "  <-- FAIL");
  }
  return res;
}

inline GradcheckResult gradcheck(const OpFn& fn, const std::vector<Tensor>& inputs, double eps,
                                 double tol) {
  GradcheckOptions opt;
  opt.eps = eps;
  opt.tol = tol;
  return gradcheck(fn, inputs, opt);
}

// --- input builders -----------------------------------------------------------------------

// Uniform in [lo, hi), F64, requires grad unless told otherwise.
inline Tensor rand_t(std::mt19937_64& rng, const Shape& shape, double lo = -1, double hi = 1,
                     bool grad = true) {
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(shape_numel(shape));
  for (double& x : v) x = u(rng);
  Tensor t = Tensor::from_vector(v, shape);
  if (grad) t.set_requires_grad(true);
  return t;
}

// Same, but a non-contiguous leaf: the last two dims are stored transposed.
inline Tensor rand_noncontig(std::mt19937_64& rng, const Shape& shape, double lo = -1,
                             double hi = 1, bool grad = true) {
  Shape s = shape;
  std::swap(s[s.size() - 1], s[s.size() - 2]);
  Tensor t = rand_t(rng, s, lo, hi, false).transpose(-1, -2).detach();
  if (grad) t.set_requires_grad(true);
  return t;
}

// Integers uniform in [lo, hi] (I32 or I64).
inline Tensor rand_int(std::mt19937_64& rng, const Shape& shape, int64_t lo, int64_t hi,
                       DType dtype = DType::kI64) {
  std::uniform_int_distribution<int64_t> u(lo, hi);
  std::vector<int64_t> v(shape_numel(shape));
  for (int64_t& x : v) x = u(rng);
  Tensor t = Tensor::from_vector(v, shape);
  return dtype == DType::kI64 ? t : t.to(dtype);
}

// --- the case registry ----------------------------------------------------------------------

using InputsFn = std::function<std::vector<Tensor>(std::mt19937_64&)>;

struct GradCase {
  std::string op;             // a name from kimi::kOpNames
  std::string label;          // what this case covers (letters, digits, '_')
  std::function<void()> run;  // gtest assertions inside
  // Set by add_gradcheck (empty for hand-written cases): other backends replay the same op on
  // the same inputs and compare with the CPU (tests/cuda/op_parity_test.cpp).
  OpFn fn;
  InputsFn make;
  GradcheckOptions opt;
};

inline std::vector<GradCase>& grad_cases() {
  static std::vector<GradCase> cases;  // function-local: safe from any TU's static init
  return cases;
}

inline void add_case(std::string op, std::string label, std::function<void()> run) {
  grad_cases().push_back({std::move(op), std::move(label), std::move(run)});
}

// The usual case: fresh inputs from `make` (seeded), then gradcheck with `opt`.
inline void add_gradcheck(std::string op, std::string label, OpFn fn, InputsFn make,
                          GradcheckOptions opt = {}) {
  add_case(std::move(op), std::move(label), [fn, make, opt] {
    std::mt19937_64 rng(opt.seed);
    GradcheckResult r = gradcheck(fn, make(rng), opt);
    EXPECT_TRUE(r.ok) << r.report;
  });
  grad_cases().back().fn = fn;
  grad_cases().back().make = make;
  grad_cases().back().opt = opt;
}

struct GradCaseRegistrar {
  explicit GradCaseRegistrar(void (*add)()) { add(); }
};

}  // namespace kimi::testing

// KIMI_GRADCHECK_CASES(my_cases) { kimi::testing::add_gradcheck(...); ... }
// registers cases at static-initialisation time, from any test source file.
#define KIMI_GRADCHECK_CASES(id)                                       \
  static void id();                                                    \
  static const ::kimi::testing::GradCaseRegistrar id##_registrar(&id); \
  static void id()
