// The one list of differentiable ops (an X-macro, as ggml's enum ggml_op). The gradient-check
// test walks it and fails for any op that has no finite-difference case; backends are checked
// against the CPU over the same list.
#pragma once

#define KIMI_OPS(X)                                                                                \
  /* views */ X(reshape) X(permute) X(narrow) X(expand) X(contiguous)                              \
      X(to_dtype) /* binary, broadcasting */ X(add) X(sub) X(mul) X(div)                           \
          X(maximum) /* scalar */ X(add_scalar) X(mul_scalar) X(pow_scalar) /* unary */ X(neg)     \
              X(exp) X(log) X(sqrt) X(rsqrt) X(sigmoid) X(silu) X(softplus) X(tanh) X(relu)        \
                  X(abs) /* reductions */ X(sum) X(mean) X(max) X(cumsum) /* products */ X(matmul) \
                      X(linear) /* softmax family */ X(softmax) X(log_softmax)                     \
                          X(cross_entropy) /* norms */ X(rms_norm) X(l2_norm) /* sequence */ X(    \
                              causal_conv1d) X(embedding) /* joins and selection */ X(concat)      \
                              X(stack) X(split) X(where)                                           \
                                  X(masked_fill) /* token mixers */ X(delta_rule)                  \
                                      X(linear_recurrence) X(causal_attention)                     \
                                          X(rope) /* mixture of experts */ X(grouped_matmul)       \
                                              X(gather_rows)

namespace kimi {

enum class Op {
#define KIMI_OP_ENUM(name) k_##name,
  KIMI_OPS(KIMI_OP_ENUM)
#undef KIMI_OP_ENUM
};

inline constexpr const char* kOpNames[] = {
#define KIMI_OP_NAME(name) #name,
    KIMI_OPS(KIMI_OP_NAME)
#undef KIMI_OP_NAME
};

inline constexpr int kNumOps = sizeof(kOpNames) / sizeof(kOpNames[0]);

}  // namespace kimi
