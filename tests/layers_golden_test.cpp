// Whole-layer reference check (suite LayersGolden): KDA, GDN and Mamba2 layers against
// tests/golden/layers_small.safetensors (float64 compositions of FLA's / HF's layer code,
// see golden/README.md): outputs, dx and every parameter gradient of sum(y * dy), in float32 and
// float64, chunked and recurrent forms. Parameters load through Module::load_state_dict (strict),
// so every FLA state_dict name and shape (conv weights [D,1,W]) is checked too.
#include <gtest/gtest.h>

#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "models/mixer.h"
#include "tests/golden.h"

namespace kimi::models {
namespace {

constexpr const char* kFile = "layers_small.safetensors";

MixerOptions options_from_metadata(const io::SafetensorsFile& f, const std::string& layer) {
  const auto& meta = f.metadata();
  auto it = meta.find(layer);
  KIMI_CHECK(it != meta.end(), "{}: no metadata for {}", f.path(), layer);
  const nlohmann::json c = nlohmann::json::parse(it->second).at("config");
  MixerOptions o;
  o.d_model = c.at("hidden_size");
  o.num_heads = c.at("num_heads");
  o.head_dim = c.at("head_dim");
  if (layer == "kda_layer") o.kind = "kda";
  if (layer == "gdn_layer") o.kind = "gdn", o.output_gate = "swish", o.expand_v = c.at("expand_v");
  if (layer == "mamba2_layer") {
    o.kind = "mamba2";
    o.d_state = c.at("state_size");
    o.expand = c.at("expand");
    o.n_groups = c.at("n_groups");
    o.chunk_size = c.at("chunk_size");
  }
  return o;
}

Tensor golden_tensor(const io::SafetensorsFile& f, const std::string& name, DType dtype) {
  return Tensor::from_vector(f.read_f64(name), f.info(name).shape).to(dtype);
}

double err_vs(const io::SafetensorsFile& f, const std::string& name, const Tensor& t) {
  if (!t.defined()) return INFINITY;
  if (t.shape() != f.info(name).shape) return INFINITY;
  return test::rel_err(t.to_vector<double>(), f.read_f64(name));
}

struct RunSpec {
  DType dtype;
  RecurrenceForm form;
  int64_t chunk;  // 0 = the layer's config value
};

// Runs one layer once; returns the worst gradient error and checks every tensor.
void run_layer(const io::SafetensorsFile& f, const std::string& layer, const RunSpec& spec) {
  MixerOptions opt = options_from_metadata(f, layer);
  opt.dtype = spec.dtype;
  opt.form = spec.form;
  if (spec.chunk > 0) opt.chunk_size = spec.chunk;
  Rng rng(1);
  std::unique_ptr<Mixer> m = make_mixer(opt, rng);
  const std::string pp = layer + ".param.";
  std::map<std::string, Tensor> params;
  for (const std::string& n : f.names())
    if (n.rfind(pp, 0) == 0) params[n.substr(pp.size())] = golden_tensor(f, n, spec.dtype);
  m->load_state_dict(params);  // strict: names and shapes as FLA's state_dict

  Tensor x = golden_tensor(f, layer + ".x", spec.dtype);
  x.set_requires_grad(true);
  Tensor y = m->forward(x);
  y.backward(golden_tensor(f, layer + ".dy", spec.dtype));

  const std::string tag =
      fmt::format("{} {} {}{}", layer, dtype_name(spec.dtype),
                  spec.form == RecurrenceForm::kChunk ? "chunk" : "recurrent",
                  spec.form == RecurrenceForm::kChunk ? fmt::format("{}", opt.chunk_size) : "");
  const double ey = err_vs(f, layer + ".y", y), edx = err_vs(f, layer + ".dx", x.grad());
  EXPECT_LT(ey, 1e-5) << tag << " y";
  EXPECT_LT(edx, 1e-4) << tag << " dx";
  double worst = 0;
  std::string worst_name;
  for (auto& [name, p] : m->named_parameters()) {
    const double e = err_vs(f, layer + ".grad." + name, p.grad());
    EXPECT_LT(e, 1e-4) << tag << " grad." << name;
    if (!(e <= worst)) worst = e, worst_name = name;
  }
  std::cout << fmt::format("[LayersGolden] {:<34} y {:.2e}  dx {:.2e}  max grad {:.2e} ({})\n", tag,
                           ey, edx, worst, worst_name);
  ::testing::Test::RecordProperty(tag + " y", fmt::format("{:.3e}", ey));
  ::testing::Test::RecordProperty(tag + " dx", fmt::format("{:.3e}", edx));
  ::testing::Test::RecordProperty(tag + " max_grad", fmt::format("{:.3e}", worst));
}

void run_all(const std::string& layer) {
  const io::SafetensorsFile f = io::SafetensorsFile::open(test::golden_path(kFile));
  for (DType dt : {DType::kF32, DType::kF64}) {
    // Chunk sizes: the config's (or 16), and 24, which leaves a short last chunk of T = 64.
    run_layer(f, layer, {dt, RecurrenceForm::kChunk, layer == "mamba2_layer" ? 0 : 16});
    run_layer(f, layer, {dt, RecurrenceForm::kChunk, 24});
    run_layer(f, layer, {dt, RecurrenceForm::kRecurrent, 0});
  }
}

TEST(LayersGolden, Kda) {
  KIMI_SKIP_WITHOUT_GOLDEN(kFile);
  run_all("kda_layer");
}

TEST(LayersGolden, Gdn) {
  KIMI_SKIP_WITHOUT_GOLDEN(kFile);
  run_all("gdn_layer");
}

TEST(LayersGolden, Mamba2) {
  KIMI_SKIP_WITHOUT_GOLDEN(kFile);
  run_all("mamba2_layer");
}

}  // namespace
}  // namespace kimi::models
