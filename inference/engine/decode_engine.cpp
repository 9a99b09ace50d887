// The engine registry (decode_engine.h).
#include "inference/engine/decode_engine.h"

#include "core/tensor/error.h"

namespace kimi::inference::engine {
namespace {

EngineFactory& factory() {
  static EngineFactory f;
  return f;
}

}  // namespace

void register_engine_factory(EngineFactory f) { factory() = std::move(f); }

bool engine_available() { return static_cast<bool>(factory()); }

std::unique_ptr<DecodeEngine> make_decode_engine(const WeightLayout& layout) {
  if (!factory())
    throw UserError(
        "decode engine: this kimi-lab was built without CUDA (configure with -DKIMI_LAB_CUDA=ON)");
  return factory()(layout);
}

}  // namespace kimi::inference::engine
