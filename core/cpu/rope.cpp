// Rotary position embedding, rotate-half convention (HF Llama's apply_rotary_pos_emb):
//   y_i = x_i cos(a_i) - x_{i+D/2} sin(a_i),  y_{i+D/2} = x_{i+D/2} cos(a_i) + x_i sin(a_i),
//   a_i = pos * theta^(-2i/D). The rotation is orthogonal, so its backward is the inverse.
#include "core/cpu/rope.h"

#include <cmath>
#include <vector>

#include "core/tensor/error.h"

namespace kimi::cpu {

template <class T>
void rope_apply(T* x, int64_t B, int64_t T_, int64_t H, int64_t D, int64_t pos0, double theta,
                bool inverse) {
  KIMI_CHECK(D > 0 && D % 2 == 0, "rope: head dim must be even and positive, got {}", D);
  KIMI_CHECK(theta > 0, "rope: theta must be positive, got {}", theta);
  const int64_t half = D / 2;
  std::vector<double> inv_freq(half);
  for (int64_t i = 0; i < half; ++i) inv_freq[i] = std::pow(theta, -2.0 * double(i) / double(D));
  const double sign = inverse ? -1.0 : 1.0;
#pragma omp parallel for schedule(static) if (B * T_ * H * D >= (int64_t{1} << 16))
  for (int64_t t = 0; t < T_; ++t) {
    // Angles in double whatever T is: positions reach 1e6 and float angles would lose digits.
    std::vector<T> c(half), s(half);
    for (int64_t i = 0; i < half; ++i) {
      const double a = double(pos0 + t) * inv_freq[i];
      c[i] = T(std::cos(a));
      s[i] = T(sign * std::sin(a));
    }
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h) {
        T* row = x + ((b * T_ + t) * H + h) * D;
        for (int64_t i = 0; i < half; ++i) {
          const T x1 = row[i], x2 = row[i + half];
          row[i] = x1 * c[i] - x2 * s[i];
          row[i + half] = x2 * c[i] + x1 * s[i];
        }
      }
  }
}

template void rope_apply<float>(float*, int64_t, int64_t, int64_t, int64_t, int64_t, double, bool);
template void rope_apply<double>(double*, int64_t, int64_t, int64_t, int64_t, int64_t, double,
                                 bool);

}  // namespace kimi::cpu
