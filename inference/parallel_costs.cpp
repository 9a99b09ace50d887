// The multi-GPU decode prediction: one GPU's roofline share plus the collectives between them.
#include "inference/parallel_costs.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/tensor/error.h"
#include "inference/sim_args.h"

namespace kimi::inference {

using models::KimiLinearConfig;

Interconnect nvlink4() {
  Interconnect l;
  l.bus_bandwidth = 360e9;
  l.latency_s = 10e-6;
  l.sources = {
      "link: 360 GB/s bus bandwidth (NVLink 4: 450 GB/s each way per GPU; NCCL's ring reaches "
      "~80% of it on large buffers) - assumed, not measured here (--link-gbs)",
      "link: 10 us per collective (NCCL all-reduce of a few KB inside one host, without NVLS) "
      "- assumed, not measured here (--link-us)"};
  return l;
}

double all_reduce_seconds(double bytes, int gpus, const Interconnect& link) {
  if (gpus <= 1) return 0;
  const double n = static_cast<double>(gpus);
  return link.latency_s + 2.0 * (n - 1.0) / n * bytes / link.bus_bandwidth;
}

double all_gather_seconds(double bytes, int gpus, const Interconnect& link) {
  if (gpus <= 1) return 0;
  const double n = static_cast<double>(gpus);
  return link.latency_s + (n - 1.0) / n * bytes / link.bus_bandwidth;
}

void check_gpu_count(const KimiLinearConfig& c, int gpus) {
  if (gpus < 1) throw UserError(fmt::format("--gpus {}: must be at least 1", gpus));
  for (const auto& [what, count] : {std::pair<const char*, int64_t>{"KDA heads", c.kda_num_heads},
                                    {"MLA heads", c.num_attention_heads},
                                    {"routed experts", c.num_experts}})
    if (count > 0 && count % gpus != 0)
      throw UserError(fmt::format("--gpus {}: the model's {} {} do not split evenly over {} GPUs",
                                  gpus, count, what, gpus));
}

int64_t cache_bytes_per_seq_per_gpu(const KimiLinearConfig& c, int64_t context, const Dtypes& dt,
                                    int gpus) {
  const models::CacheSizes s = models::cache_sizes(c, dt.state, dt.latent);
  return s.num_kda * (s.kda_state_per_layer + s.kda_conv_per_layer) / gpus +
         s.num_mla * s.mla_per_token_per_layer * context;
}

int64_t max_batch_per_host(const KimiLinearConfig& c, const GpuProfile& g, int64_t context,
                           const Dtypes& dt, int gpus) {
  const double free = g.memory_bytes - g.reserve_bytes - resident_weight_bytes(c, dt, gpus);
  if (free <= 0) return 0;
  const int64_t per_seq =
      cache_bytes_per_seq_per_gpu(c, context, dt, gpus) + workspace_bytes_per_seq(c, dt);
  return static_cast<int64_t>(std::floor(free / static_cast<double>(per_seq)));
}

ParallelPrediction predict_parallel(const KimiLinearConfig& hybrid, ModelKind m,
                                    const GpuProfile& g, const Interconnect& link, int64_t context,
                                    int64_t batch, int gpus, const Dtypes& dt) {
  const KimiLinearConfig c = model_config(hybrid, m);
  check_gpu_count(c, gpus);
  if (context <= 0 || batch <= 0)
    throw UserError(fmt::format("context {} and batch {}: must be positive", context, batch));
  ParallelPrediction p;
  p.model = m, p.gpus = gpus, p.context = context, p.batch = batch;
  p.max_batch = max_batch_per_host(c, g, context, dt, gpus);
  p.fits = batch <= p.max_batch;
  p.weights_per_gpu = resident_weight_bytes(c, dt, gpus);
  p.cache_per_seq_per_gpu = static_cast<double>(cache_bytes_per_seq_per_gpu(c, context, dt, gpus));
  p.compute_ms = 1e3 * step_seconds(decode_step(c, batch, context, dt, gpus), g, Phase::kDecode);
  // Every layer sums its mixer's and its FFN's partial outputs (bf16 hidden states); the LM
  // head's vocabulary slices are gathered once.
  const double hidden = static_cast<double>(batch * c.hidden_size * dt.weight);
  const double logits = static_cast<double>(batch * c.vocab_size * dt.logits);
  p.comm_ms = 1e3 * (2.0 * static_cast<double>(c.num_hidden_layers) *
                         all_reduce_seconds(hidden, gpus, link) +
                     all_gather_seconds(logits, gpus, link));
  p.tpot_ms = p.compute_ms + p.comm_ms;
  p.tokens_per_s = 1e3 * static_cast<double>(batch) / p.tpot_ms;
  return p;
}

std::vector<ParallelPrediction> simulate_parallel(const KimiLinearConfig& hybrid,
                                                  const GpuProfile& g, const Interconnect& link,
                                                  const std::vector<int>& gpus,
                                                  const std::vector<int64_t>& contexts,
                                                  const std::vector<BatchSpec>& batches,
                                                  const Dtypes& dt) {
  std::vector<ParallelPrediction> out;
  for (ModelKind m : {ModelKind::kHybrid, ModelKind::kAllMla}) {
    const KimiLinearConfig c = model_config(hybrid, m);
    for (int n : gpus) check_gpu_count(c, n);
    for (int64_t context : contexts)
      for (const BatchSpec& b : batches)
        for (int n : gpus) {
          const int64_t batch =
              b.max ? std::max<int64_t>(1, max_batch_per_host(c, g, context, dt, n)) : b.n;
          const bool seen = std::any_of(out.begin(), out.end(), [&](const ParallelPrediction& r) {
            return r.model == m && r.gpus == n && r.context == context && r.batch == batch;
          });
          if (!seen) out.push_back(predict_parallel(hybrid, m, g, link, context, batch, n, dt));
        }
  }
  return out;
}

namespace {

// The same model, context and batch on one GPU, when the rows hold it.
const ParallelPrediction* one_gpu(const std::vector<ParallelPrediction>& rows,
                                  const ParallelPrediction& r) {
  for (const ParallelPrediction& o : rows)
    if (o.gpus == 1 && o.model == r.model && o.context == r.context && o.batch == r.batch)
      return &o;
  return nullptr;
}

}  // namespace

std::string parallel_table(const std::vector<ParallelPrediction>& rows) {
  std::string s =
      fmt::format("{:<8} {:>5} {:>8} {:>6} {:>7} {:>9} {:>10} {:>9} {:>8} {:>8} {:>10} {:>8}\n",
                  "model", "GPUs", "context", "batch", "max", "wt GB/GPU", "cache/seq", "share ms",
                  "comm ms", "TPOT ms", "tokens/s", "vs 1");
  for (const ParallelPrediction& r : rows) {
    const ParallelPrediction* base = one_gpu(rows, r);
    const std::string speedup =
        base && r.gpus > 1 && base->fits ? fmt::format("{:.2f}x", base->tpot_ms / r.tpot_ms) : "-";
    s += fmt::format(
        "{:<8} {:>5} {:>8} {:>6} {:>7} {:>9.2f} {:>10.3f} {:>9.3f} {:>8.3f} {:>8.3f} {:>10.1f} "
        "{:>8}{}\n",
        model_name(r.model), r.gpus, context_label(r.context), r.batch, r.max_batch,
        r.weights_per_gpu / 1e9, r.cache_per_seq_per_gpu / 1e9, r.compute_ms, r.comm_ms, r.tpot_ms,
        r.tokens_per_s, speedup, r.fits ? "" : "  (does not fit)");
  }
  return s;
}

std::string parallel_csv(const std::vector<ParallelPrediction>& rows) {
  std::string s =
      "model,gpus,context,batch,max_batch,fits,weight_bytes_per_gpu,cache_bytes_per_seq_per_gpu,"
      "share_ms,comm_ms,tpot_ms,tokens_per_s\n";
  for (const ParallelPrediction& r : rows)
    s += fmt::format("{},{},{},{},{},{},{:.0f},{:.0f},{:.4f},{:.4f},{:.4f},{:.2f}\n",
                     model_name(r.model), r.gpus, r.context, r.batch, r.max_batch, r.fits ? 1 : 0,
                     r.weights_per_gpu, r.cache_per_seq_per_gpu, r.compute_ms, r.comm_ms, r.tpot_ms,
                     r.tokens_per_s);
  return s;
}

}  // namespace kimi::inference
