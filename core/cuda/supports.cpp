#include "core/cuda/supports.h"

namespace kimi {

std::string cuda_supports(const OpQuery& q) {
  (void)q;
  return "";
}

}  // namespace kimi
