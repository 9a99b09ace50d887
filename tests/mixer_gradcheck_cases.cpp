// Gradient-check cases of the token-mixer ops (delta_rule, linear_recurrence, causal_attention,
// rope), registered into the same registry as tests/op_gradcheck_test.cpp. Owned by the mixer
// engineer (core/ops/mixer_ops.cpp): until a case is added here for each of the four names,
// OpList.EveryOpHasAGradientCheck fails for them, as it should.
//
// How to add one (inputs are F64; those that require grad are checked, integer ones pass through):
//   kimi::testing::add_gradcheck("rope", "2x5x3x4", fn, make_inputs, opt);
// where fn: (const std::vector<Tensor>&) -> std::vector<Tensor> (every float output is checked
// against a random upstream gradient), make_inputs: (std::mt19937_64&) -> std::vector<Tensor>
// (rand_t / rand_noncontig / rand_int from tests/gradcheck.h), opt: GradcheckOptions (tol, ...).
// Use kimi::testing::add_case(op, label, body) for a check that is not a finite difference.
#include "tests/gradcheck.h"

namespace {

KIMI_GRADCHECK_CASES(mixer_cases) {
  // Cases for delta_rule, linear_recurrence, causal_attention and rope go here.
}

}  // namespace
