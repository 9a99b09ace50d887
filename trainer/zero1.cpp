#include "trainer/zero1.h"

#include <vector>

#include "core/tensor/error.h"

namespace kimi {

Zero1AdamW::Zero1AdamW(nn::NamedTensors params, optim::AdamWOptions opt, dist::Communicator& comm,
                       optim::DecayFilter decay)
    : Optimizer(std::move(params)), comm_(comm) {
  std::map<std::string, bool> decays;
  for (const auto& [name, p] : params_) {
    KIMI_CHECK(p.dtype() == DType::kF32 && p.is_contiguous(),
               "Zero1AdamW: '{}' is {} (F32 contiguous only)", name, p.str());
    KIMI_CHECK(p.device() == Device::kCPU || comm.takes_device_buffers(),
               "Zero1AdamW: '{}' is {}, and this communicator takes host buffers only (the "
               "NCCL one takes device buffers)",
               name, p.str());
    const auto r = dist::shard_range(size_t(p.numel()), comm.world_size(), comm.rank());
    ranges_.push_back(r);
    shards_.emplace_back(name, p.detach().flatten().narrow(0, int64_t(r.begin), int64_t(r.size())));
    // The shards are 1-d: the filter must see the parameter's own shape (norms, biases).
    decays[name] = decay(name, p);
  }
  inner_ = std::make_unique<optim::AdamW>(
      shards_, opt, [decays](const std::string& name, const Tensor&) { return decays.at(name); });
}

void Zero1AdamW::step(double lr) {
  ++steps_;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor g = params_[i].second.grad();
    Tensor& s = shards_[i].second;
    s.set_grad(g.defined() ? g.detach()
                                 .contiguous()
                                 .flatten()
                                 .narrow(0, int64_t(ranges_[i].begin), int64_t(ranges_[i].size()))
                                 .contiguous()
                           : Tensor());
  }
  inner_->step(lr);
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i].second;
    const Tensor& shard = shards_[i].second;
    if (shard.device() != Device::kCPU) {  // NCCL reads the shard where it is (inside p)
      comm_.all_gather(static_cast<const float*>(shard.raw_data()), size_t(p.numel()),
                       p.data<float>());
    } else {  // a host communicator may write p before it has read the shard: a copy
      const std::vector<float> mine = shard.to_vector<float>();
      comm_.all_gather(mine.data(), size_t(p.numel()), p.data<float>());
    }
  }
}

std::map<std::string, Tensor> Zero1AdamW::state_dict() const {
  std::map<std::string, Tensor> shard = inner_->state_dict(), full;
  for (const auto& [name, p] : params_)
    for (const char* kind : {"optim.m.", "optim.v."}) {
      const std::string key = kind + name;
      Tensor t = Tensor::zeros(p.shape());
      const auto it = shard.find(key);
      if (it != shard.end() && it->second.defined() && it->second.numel() > 0) {
        const std::vector<float> mine = it->second.to_vector<float>();
        comm_.all_gather(mine.data(), size_t(p.numel()), t.data<float>());
      } else {
        // A rank with an empty slice (more ranks than elements) still takes part.
        comm_.all_gather(nullptr, size_t(p.numel()), t.data<float>());
      }
      full[key] = t;
    }
  full["optim.step"] = shard.at("optim.step");
  return full;
}

void Zero1AdamW::load_state_dict(const std::map<std::string, Tensor>& state) {
  std::map<std::string, Tensor> shard;
  for (size_t i = 0; i < params_.size(); ++i)
    for (const char* kind : {"optim.m.", "optim.v."}) {
      const std::string key = kind + params_[i].first;
      const auto it = state.find(key);
      if (it == state.end()) throw UserError(fmt::format("optimizer state is missing '{}'", key));
      if (it->second.shape() != params_[i].second.shape())
        throw UserError(fmt::format("optimizer state '{}': expected shape {}, got {}", key,
                                    shape_str(params_[i].second.shape()),
                                    shape_str(it->second.shape())));
      shard[key] = it->second.contiguous().flatten().narrow(0, int64_t(ranges_[i].begin),
                                                            int64_t(ranges_[i].size()));
    }
  const auto st = state.find("optim.step");
  if (st == state.end()) throw UserError("optimizer state is missing 'optim.step'");
  shard["optim.step"] = st->second;
  inner_->load_state_dict(shard);
  steps_ = inner_->steps();
}

}  // namespace kimi
