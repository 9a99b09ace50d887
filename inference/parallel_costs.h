// Decode of the Kimi-Linear hybrid and its all-MLA twin spread over the GPUs of one host, predicted
// (issue 14): tensor parallel over the KDA / MLA heads, the dense and shared-expert FFNs and the
// LM head's vocabulary, expert parallel over the routed experts (layer_costs.h, decode_step with
// gpus > 1, says what splits). Each GPU runs its share of the roofline step, then the ranks meet
// in two all-reduces of the hidden state per layer (after the mixer, after the FFN) and one
// all-gather of the logits. Nothing here is measured: only one-GPU machines are lent so far.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "inference/simulator.h"

namespace kimi::inference {

// The links between the GPUs, as one all-reduce sees them: a fixed cost per collective and the
// bus bandwidth of a ring (a ring all-reduce moves 2 (N-1)/N of the buffer over each link).
struct Interconnect {
  double bus_bandwidth = 0;  // bytes per second
  double latency_s = 0;      // per collective, however small
  std::vector<std::string> sources;
};
// NVLink 4 of an H100 / H200 SXM host (the profiles' GPUs); --link-gbs / --link-us replace them.
Interconnect nvlink4();

// A ring all-reduce / all-gather of `bytes` over `gpus` GPUs; 0 for one GPU.
double all_reduce_seconds(double bytes, int gpus, const Interconnect& link);
double all_gather_seconds(double bytes, int gpus, const Interconnect& link);

// The GPU counts a config can be split over: every count must divide the KDA heads, the MLA
// heads and the routed experts. UserError naming --gpus and the count otherwise.
void check_gpu_count(const models::KimiLinearConfig& c, int gpus);

// What one GPU holds, and the cache bytes a sequence puts on it: KDA state and conv tails split
// by heads, the MLA latent whole on every GPU.
int64_t cache_bytes_per_seq_per_gpu(const models::KimiLinearConfig& c, int64_t context,
                                    const Dtypes& dt, int gpus);
int64_t max_batch_per_host(const models::KimiLinearConfig& c, const GpuProfile& g, int64_t context,
                           const Dtypes& dt, int gpus);

struct ParallelPrediction {
  ModelKind model = ModelKind::kHybrid;
  int gpus = 1;
  int64_t context = 0, batch = 0, max_batch = 0;
  bool fits = false;
  double weights_per_gpu = 0, cache_per_seq_per_gpu = 0;  // bytes
  double compute_ms = 0;  // one GPU's share of the step (the roofline)
  double comm_ms = 0;     // the collectives of one step
  double tpot_ms = 0, tokens_per_s = 0;
};

ParallelPrediction predict_parallel(const models::KimiLinearConfig& hybrid, ModelKind m,
                                    const GpuProfile& g, const Interconnect& link, int64_t context,
                                    int64_t batch, int gpus, const Dtypes& dt);

// Both models x gpus x contexts x batches ("max": the largest batch that fits the host at that
// GPU count), by model, context, batch spec, GPUs; a row that repeats one (a "max" of 1) is left
// out.
std::vector<ParallelPrediction> simulate_parallel(const models::KimiLinearConfig& hybrid,
                                                  const GpuProfile& g, const Interconnect& link,
                                                  const std::vector<int>& gpus,
                                                  const std::vector<int64_t>& contexts,
                                                  const std::vector<BatchSpec>& batches,
                                                  const Dtypes& dt);

std::string parallel_table(const std::vector<ParallelPrediction>& rows);
std::string parallel_csv(const std::vector<ParallelPrediction>& rows);

}  // namespace kimi::inference
