// The mixer registry: kind name -> factory (see the comment at the top of models/mixer.h).
#include <map>
#include <mutex>

#include "models/attention_layer.h"
#include "models/deltanet_layer.h"
#include "models/gdn_layer.h"
#include "models/kda_layer.h"
#include "models/mamba2_layer.h"
#include "models/mixer.h"
#include "models/mla_layer.h"

namespace kimi::models {
namespace {

template <class Layer>
std::unique_ptr<Mixer> make(const MixerOptions& opt, Rng& rng) {
  return std::make_unique<Layer>(opt, rng);
}

struct Registry {
  std::mutex mu;
  std::map<std::string, MixerFactory> factories = {
      {"kda", make<KdaLayer>},
      {"gdn", make<GdnLayer>},
      {"deltanet", make<DeltaNetLayer>},
      {"mamba2", make<Mamba2Layer>},
      {"attention", make<AttentionLayer>},
      {"mla", make<MlaLayer>},
  };
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

void register_mixer(const std::string& kind, MixerFactory factory) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.factories[kind] = std::move(factory);
}

std::vector<std::string> mixer_kinds() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::vector<std::string> kinds;
  for (const auto& [name, f] : r.factories) kinds.push_back(name);
  return kinds;
}

std::unique_ptr<Mixer> make_mixer(const MixerOptions& opt, Rng& rng) {
  MixerFactory factory;
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    auto it = r.factories.find(opt.kind);
    if (it != r.factories.end()) factory = it->second;
  }
  if (!factory) {
    std::string known;
    for (const std::string& k : mixer_kinds()) known += (known.empty() ? "" : ", ") + k;
    throw UserError(fmt::format("unknown mixer '{}' (known: {})", opt.kind, known));
  }
  return factory(opt, rng);
}

}  // namespace kimi::models
