// Golden-file verification for the mixer ops and layers (see golden_verify.h).
#include "models/golden_verify.h"

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/io/safetensors.h"
#include "core/io/tensor_io.h"
#include "core/ops/mixer_ops.h"
#include "core/ops/ops.h"
#include "models/mixer.h"
#include "models/model_config.h"

namespace kimi::models {

namespace {

constexpr double kOutTol = 1e-5, kGradTol = 1e-4;

using TensorMap = std::map<std::string, Tensor>;

const Tensor& need(const TensorMap& m, const std::string& file, const std::string& prefix,
                   const std::string& name) {
  auto it = m.find(name);
  if (it == m.end())
    throw UserError(
        fmt::format("{}: prefix '{}' has no tensor '{}.{}'", file, prefix, prefix, name));
  return it->second;
}

Tensor opt_tensor(const TensorMap& m, const std::string& name) {
  auto it = m.find(name);
  return it == m.end() ? Tensor() : it->second;
}

Tensor leaf(const Tensor& t, DType dt) {
  if (!t.defined()) return t;
  Tensor c = t.to(dt).clone();
  c.set_requires_grad(true);
  return c;
}

Device x_device(const TensorMap& m, const std::string& file, const std::string& prefix) {
  return need(m, file, prefix, "x").device();
}

void add_row(VerifyReport* rep, const std::string& prefix, const std::string& form,
             const std::string& name, const Tensor& got, const Tensor& ref, double tol) {
  double e = got.defined() ? rel_err(got, ref) : INFINITY;
  rep->rows.push_back({prefix, form, name, e, tol, std::isfinite(e) && e <= tol});
}

// kda / gdn / deltanet / simple_gla: both forms, outputs, final state and every gradient.
void verify_recurrence(const TensorMap& m, const std::string& file, const std::string& prefix,
                       DType dt, VerifyReport* rep) {
  const bool delta = prefix != "simple_gla";
  GateKind gate = prefix == "kda" ? GateKind::kPerChannel
                                  : (prefix == "deltanet" ? GateKind::kNone : GateKind::kScalar);
  for (RecurrenceForm form : {RecurrenceForm::kRecurrent, RecurrenceForm::kChunk}) {
    const std::string fname = form == RecurrenceForm::kChunk ? "chunk" : "recurrent";
    Tensor q = leaf(need(m, file, prefix, "q"), dt), k = leaf(need(m, file, prefix, "k"), dt),
           v = leaf(need(m, file, prefix, "v"), dt);
    Tensor g = gate == GateKind::kNone ? Tensor() : leaf(need(m, file, prefix, "g"), dt);
    Tensor beta = delta ? leaf(need(m, file, prefix, "beta"), dt) : Tensor();
    Tensor h0 = leaf(opt_tensor(m, "h0"), dt);
    RecurrenceOptions opt{gate, -1.0, form, 64};
    if (!delta) opt.scale = -1.0;
    RecurrenceResult r =
        delta ? delta_rule(q, k, v, g, beta, h0, opt) : linear_recurrence(q, k, v, g, h0, opt);
    Tensor loss = sum(r.o * need(m, file, prefix, "do").to(dt));
    if (m.count("dht")) loss = loss + sum(r.ht * need(m, file, prefix, "dht").to(dt));
    loss.backward();
    add_row(rep, prefix, fname, "o", r.o, need(m, file, prefix, "o"), kOutTol);
    if (m.count("ht")) add_row(rep, prefix, fname, "ht", r.ht, m.at("ht"), kOutTol);
    const std::vector<std::pair<std::string, Tensor>> grads = {
        {"dq", q}, {"dk", k}, {"dv", v}, {"dg", g}, {"dbeta", beta}, {"dh0", h0}};
    for (const auto& [name, t] : grads)
      if (t.defined() && m.count(name))
        add_row(rep, prefix, fname, name, t.grad(), m.at(name), kGradTol);
  }
}

void verify_attention(const TensorMap& m, const std::string& file, DType dt, VerifyReport* rep) {
  Tensor q = leaf(need(m, file, "attention", "q"), dt),
         k = leaf(need(m, file, "attention", "k"), dt),
         v = leaf(need(m, file, "attention", "v"), dt);
  Tensor o = causal_attention(q, k, v);
  sum(o * need(m, file, "attention", "do").to(dt)).backward();
  add_row(rep, "attention", "tiled", "o", o, need(m, file, "attention", "o"), kOutTol);
  add_row(rep, "attention", "tiled", "dq", q.grad(), need(m, file, "attention", "dq"), kGradTol);
  add_row(rep, "attention", "tiled", "dk", k.grad(), need(m, file, "attention", "dk"), kGradTol);
  add_row(rep, "attention", "tiled", "dv", v.grad(), need(m, file, "attention", "dv"), kGradTol);
}

// The layer's options from the JSON config FLA's layer was built with, through the model
// config (mixer_options; output_gate "auto" gives GDN's swish and KDA's sigmoid, as in FLA).
MixerOptions layer_options(const std::string& kind, const std::string& meta_json, DType dt) {
  nlohmann::json j = nlohmann::json::parse(meta_json);
  const nlohmann::json& c = j.at("config");
  ModelConfig m;
  m.d_model = c.at("hidden_size").get<int64_t>();
  m.num_heads = c.value("num_heads", m.num_heads);
  m.head_dim = c.value("head_dim", m.head_dim);
  if (kind == "gdn") m.expand_v = c.value("expand_v", 2.0);
  m.mamba2.d_state = c.value("state_size", m.mamba2.d_state);
  m.mamba2.expand = c.value("expand", m.mamba2.expand);
  m.chunk_size = c.value("chunk_size", m.chunk_size);
  MixerOptions o = mixer_options(m, kind);
  o.n_groups = c.value("n_groups", o.n_groups);  // Mamba2's groups are not a model.* key
  o.dtype = dt;
  return o;
}

void verify_layer(const TensorMap& m, const std::string& file, const std::string& prefix,
                  const std::string& meta, DType dt, VerifyReport* rep) {
  const std::string kind = prefix.substr(0, prefix.size() - std::string("_layer").size());
  MixerOptions base = layer_options(kind, meta, dt);
  std::vector<RecurrenceForm> forms = {RecurrenceForm::kRecurrent, RecurrenceForm::kChunk};
  TensorMap params;
  for (const auto& [name, t] : m)
    if (name.rfind("param.", 0) == 0) params[name.substr(6)] = t;
  for (RecurrenceForm form : forms) {
    MixerOptions o = base;
    o.form = form;
    Rng rng(0);
    std::unique_ptr<Mixer> layer = make_mixer(o, rng);
    layer->load_state_dict(params, /*strict=*/true);
    layer->to(x_device(m, file, prefix));
    Tensor x = leaf(need(m, file, prefix, "x"), dt);
    Tensor y = layer->forward(x);
    sum(y * need(m, file, prefix, "dy").to(dt)).backward();
    const std::string fname = form == RecurrenceForm::kChunk ? "chunk" : "recurrent";
    add_row(rep, prefix, fname, "y", y, need(m, file, prefix, "y"), kOutTol);
    add_row(rep, prefix, fname, "dx", x.grad(), need(m, file, prefix, "dx"), kGradTol);
    for (const auto& [name, p] : layer->named_parameters())
      if (m.count("grad." + name))
        add_row(rep, prefix, fname, "grad." + name, p.grad(), m.at("grad." + name), kGradTol);
  }
}

}  // namespace

bool VerifyReport::all_pass() const {
  if (rows.empty()) return false;
  for (const auto& r : rows)
    if (!r.pass) return false;
  return true;
}

double rel_err(const Tensor& x, const Tensor& ref) {
  KIMI_CHECK(x.numel() == ref.numel(), "rel_err: {} vs {}", shape_str(x.shape()),
             shape_str(ref.shape()));
  std::vector<double> a = x.to(Device::kCPU).to_vector<double>(),
                      b = ref.to(Device::kCPU).to_vector<double>();
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  if (std::isnan(num)) return NAN;
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

VerifyReport verify_golden_file(const std::string& path, DType dt, Device device) {
  KIMI_CHECK(device == Device::kCPU || dt == DType::kF32,
             "verify: the CUDA backend computes in f32, not {}", dtype_name(dt));
  io::SafetensorsFile file = io::SafetensorsFile::open(path);
  std::map<std::string, TensorMap> groups;
  for (auto& [name, t] : io::load_tensors(path)) {
    auto dot = name.find('.');
    if (dot == std::string::npos) continue;
    groups[name.substr(0, dot)][name.substr(dot + 1)] = t.to(device);
  }
  static const std::set<std::string> kOps = {"kda", "gdn", "deltanet", "simple_gla"};
  static const std::set<std::string> kLayers = {"kda_layer", "gdn_layer", "mamba2_layer"};
  VerifyReport rep;
  for (const auto& [prefix, m] : groups) {
    if (kOps.count(prefix)) {
      verify_recurrence(m, path, prefix, dt, &rep);
    } else if (prefix == "attention") {
      verify_attention(m, path, dt, &rep);
    } else if (kLayers.count(prefix)) {
      auto it = file.metadata().find(prefix);
      if (it == file.metadata().end())
        throw UserError(
            fmt::format("{}: no '{}' entry (the layer config) in the metadata", path, prefix));
      verify_layer(m, path, prefix, it->second, dt, &rep);
    } else {
      rep.skipped.push_back(prefix);
    }
  }
  return rep;
}

}  // namespace kimi::models
