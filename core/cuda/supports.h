// What the CUDA kernels can run, asked by the ops before any kernel starts
// (core/backend/backend.h check_supported): "" for yes, else the limit in words.
#pragma once

#include <string>

#include "core/backend/backend.h"

namespace kimi {

std::string cuda_supports(const OpQuery& q);

}  // namespace kimi
