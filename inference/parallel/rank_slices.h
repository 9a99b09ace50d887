// Copying a rank's share of a layer's weights into a smaller copy of the layer (tensor and expert
// parallel inference, inference/parallel). The local layer is the same class built for 1/w of the
// heads (or hidden units); each of its parameters is then either the full one (same shape: a
// shared low-rank first factor, a norm, MLA's latent projections, the router) or the full one's
// r-th contiguous slice along the one dim where the two shapes differ. Every such dim of the
// Kimi-Linear layers is head-major (or, in a SwiGLU, elementwise in the hidden unit), so the
// contiguous slice is exactly rank r's heads.
#pragma once

#include "core/nn/module.h"

namespace kimi::inference {

// Copies into every parameter of `local` its slice of the same-named parameter of `full`. An
// Error when a name is missing or the shapes differ other than by a factor `world` in one dim.
void load_rank_slices(nn::Module& local, const nn::Module& full, int rank, int world);

// Total bytes of a module's parameters.
int64_t parameter_bytes(const nn::Module& m);

}  // namespace kimi::inference
