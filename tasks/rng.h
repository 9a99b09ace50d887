// The task generators draw from kimi::Rng (core/tensor/rng.h: xoshiro256** seeded by splitmix64,
// portable draws), the same generator that initialises parameters.
#pragma once

#include "core/tensor/rng.h"

namespace kimi::tasks {

using kimi::mix_seed;
using kimi::Rng;
using kimi::splitmix64;

}  // namespace kimi::tasks
