// The decode engine's host side (suite EngineLayout): the weight arena holds every parameter of
// the reference model with its shape; the caches per sequence are the simulator's bytes; HF
// loading names the file and the tensor on every fault; bench-infer's flags refuse bad values.
// The CUDA half runs on the GPU (tests/cuda/engine_test.cpp).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include "core/io/safetensors.h"
#include "core/tensor/error.h"
#include "inference/engine/bench_infer.h"
#include "inference/engine/cache_layout.h"
#include "inference/engine/decode_engine.h"
#include "inference/engine/hf_loader.h"
#include "inference/engine/weight_layout.h"
#include "inference/measured_csv.h"
#include "inference/simulator.h"
#include "models/kimi_linear.h"
#include "tests/golden.h"

namespace kimi::inference::engine {
namespace {

namespace fs = std::filesystem;

std::string tiny_dir() { return test::golden_path("kimi_tiny"); }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

TEST(EngineLayout, HoldsEveryParameterOfTheReferenceModel) {
  for (const models::KimiLinearConfig& c :
       {models::load_kimi_linear_config(tiny_dir() + "/config.json"), models::kimi_linear_48b()}) {
    const WeightLayout l = make_weight_layout(c);
    if (c.hidden_size > 1000) {  // the 48B: counted, not built
      const models::ParameterCount p = models::parameter_count(c);
      int64_t n = 0;
      for (const WeightEntry& e : l.entries) n += e.numel();
      // The layout also holds KDA's g_b bias (HF has none): H*K more per KDA layer.
      EXPECT_EQ(n, p.total + static_cast<int64_t>(c.kda_layers.size()) * c.kda_num_heads *
                                 c.kda_head_dim);
      EXPECT_GT(l.total_bytes, int64_t{90} << 30);
      continue;
    }
    models::KimiLinearModel m(c);
    std::map<std::string, Shape> params;
    for (auto& [name, t] : m.named_parameters()) params[name] = t.shape();
    EXPECT_EQ(params.size(), l.entries.size());
    for (const WeightEntry& e : l.entries) {
      const std::string ours = models::hf_to_kimi_name(e.name);
      ASSERT_TRUE(params.count(ours)) << e.name;
      EXPECT_EQ(params[ours], Shape(e.shape.begin(), e.shape.end())) << e.name;
      EXPECT_EQ(e.offset % 2, 0) << e.name;
      EXPECT_LE(e.offset + e.bytes(), l.total_bytes);
    }
  }
}

TEST(EngineLayout, FusedProjectionsAndExpertsAreContiguous) {
  const WeightLayout l = make_weight_layout(models::kimi_linear_48b());
  const models::KimiLinearConfig& c = l.config;
  const LayerOffsets& kda = l.layers[0];
  ASSERT_FALSE(kda.is_mla);
  const WeightEntry* v = l.find("model.layers.0.self_attn.v_proj.weight");
  const WeightEntry* b = l.find("model.layers.0.self_attn.b_proj.weight");
  ASSERT_TRUE(v && b);
  EXPECT_EQ(v->offset, kda.kda_in + 2 * c.kda_num_heads * c.kda_head_dim * c.hidden_size * 2);
  EXPECT_EQ(b->offset + b->bytes(), kda.kda_in + l.kda_rows * c.hidden_size * 2);
  const LayerOffsets& moe = l.layers[1];
  const WeightEntry* w2 = l.find("model.layers.1.block_sparse_moe.experts.7.w2.weight");
  ASSERT_TRUE(w2);
  EXPECT_EQ(w2->offset,
            moe.experts + 7 * moe.expert_stride + 2 * c.moe_intermediate_size * c.hidden_size * 2);
  EXPECT_TRUE(l.layers[3].is_mla);
}

TEST(EngineLayout, CacheBytesEqualTheSimulators) {
  const models::KimiLinearConfig h = models::kimi_linear_48b();
  const Dtypes dt;  // fp32 state, bf16 latent: the engine's
  for (ModelKind kind : {ModelKind::kHybrid, ModelKind::kAllMla}) {
    const models::KimiLinearConfig c = model_config(h, kind);
    for (int64_t T : {int64_t{1}, int64_t{4096}, int64_t{1} << 20}) {
      const CacheLayout cl = make_cache_layout(c, 3, T);
      EXPECT_EQ(cl.bytes_per_slot(), cache_bytes_per_seq(c, T, dt)) << model_name(kind) << T;
      EXPECT_EQ(cl.kda_bytes() + cl.mla_bytes(), 3 * cl.bytes_per_slot());
    }
  }
  EXPECT_EQ(make_cache_layout(h, 1, 10).kda_layers, 20);
  EXPECT_EQ(make_cache_layout(h, 1, 10).mla_layers, 7);
  EXPECT_NE(error_of([&] { make_cache_layout(h, 0, 10); }), "");
}

TEST(EngineLayout, ActiveBytesCountChosenExpertsOnce) {
  const WeightLayout l = make_weight_layout(models::kimi_linear_48b());
  const models::KimiLinearConfig& c = l.config;
  const int64_t expert = 3 * c.moe_intermediate_size * c.hidden_size * 2;
  EXPECT_EQ(active_weight_bytes(l, 10, 1) - active_weight_bytes(l, 9, 1), expert);
  // Batch 1 with top-8 in 26 MoE layers: about 3B parameters (the "A3B").
  const double gparams = active_weight_bytes(l, 8 * 26, 1) / 2e9;
  EXPECT_GT(gparams, 2.5);
  EXPECT_LT(gparams, 3.5);
}

TEST(EngineLayout, RefusesWhatTheKernelsDoNotRun) {
  models::KimiLinearConfig c = models::kimi_linear_48b();
  c.q_lora_rank = 64;
  EXPECT_NE(error_of([&] { make_weight_layout(c); }).find("q_lora_rank"), std::string::npos);
  c = models::kimi_linear_48b();
  c.num_expert_group = 8, c.topk_group = 2;
  EXPECT_NE(error_of([&] { make_weight_layout(c); }).find("grouped"), std::string::npos);
}

// A checkpoint folder made from kimi_tiny with one change.
class HfErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    KIMI_SKIP_WITHOUT_GOLDEN("kimi_tiny/model.safetensors");
    dir_ = fs::temp_directory_path() / ("kimi_engine_hf_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    fs::copy_file(tiny_dir() + "/config.json", dir_ / "config.json");
    layout_ = make_weight_layout(models::load_kimi_linear_config(tiny_dir() + "/config.json"));
  }
  void TearDown() override { fs::remove_all(dir_); }
  // kimi_tiny's tensors, `edit` applied, written as model.safetensors.
  void write(const std::function<void(std::map<std::string, std::vector<float>>&,
                                      std::map<std::string, std::vector<int64_t>>&)>& edit) {
    const io::SafetensorsFile f = io::SafetensorsFile::open(tiny_dir() + "/model.safetensors");
    std::map<std::string, std::vector<float>> data;
    std::map<std::string, std::vector<int64_t>> shapes;
    for (const std::string& n : f.names()) data[n] = f.read_f32(n), shapes[n] = f.info(n).shape;
    edit(data, shapes);
    std::vector<io::TensorToWrite> out;
    for (auto& [n, v] : data) out.push_back({n, DType::kF32, shapes[n], v.data()});
    io::write_safetensors((dir_ / "model.safetensors").string(), out);
  }
  std::string load() {
    return error_of([&] {
      load_hf_checkpoint(dir_.string(), layout_, [](const WeightEntry&, const float*, int64_t) {});
    });
  }
  fs::path dir_;
  WeightLayout layout_;
};

TEST_F(HfErrors, TheTinyCheckpointLoads) {
  int64_t n = 0;
  load_hf_checkpoint(tiny_dir(), layout_, [&](const WeightEntry& e, const float*, int64_t k) {
    EXPECT_EQ(k, e.numel()) << e.name;
    ++n;
  });
  EXPECT_GT(n, 50);
}

TEST_F(HfErrors, ShapeMismatchNamesFileAndTensor) {
  write([](auto& d, auto& s) {
    const std::string n = "model.layers.0.self_attn.q_proj.weight";
    d[n].resize(d[n].size() - s[n][1]);
    s[n][0] -= 1;
  });
  const std::string e = load();
  EXPECT_NE(e.find("model.safetensors"), std::string::npos) << e;
  EXPECT_NE(e.find("model.layers.0.self_attn.q_proj.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("shape"), std::string::npos) << e;
}

TEST_F(HfErrors, MissingTensorIsNamed) {
  write([](auto& d, auto& s) {
    d.erase("model.norm.weight");
    s.erase("model.norm.weight");
  });
  const std::string e = load();
  EXPECT_NE(e.find("no tensor 'model.norm.weight'"), std::string::npos) << e;
}

TEST_F(HfErrors, UnexpectedTensorAndMissingShardAreNamed) {
  write([](auto& d, auto& s) {
    d["model.layers.9.mlp.up_proj.weight"] = {1.f};
    s["model.layers.9.mlp.up_proj.weight"] = {1};
  });
  EXPECT_NE(load().find("unexpected tensor 'model.layers.9.mlp.up_proj.weight'"),
            std::string::npos);
  fs::remove(dir_ / "model.safetensors");
  std::ofstream(dir_ / "model.safetensors.index.json")
      << R"({"weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}})";
  const std::string e = load();
  EXPECT_NE(e.find("model-00001-of-00002.safetensors"), std::string::npos) << e;
}

TEST(BenchInferArgs, RefusesBadValues) {
  EXPECT_NE(error_of([] { parse_bench_models({"gdn"}); }).find("--models"), std::string::npos);
  EXPECT_EQ(parse_bench_models({"hybrid", "mla", "all-mla"}).size(), 2u);
  EXPECT_NE(error_of([] { parse_bench_batches({"0"}); }).find("--batch"), std::string::npos);
  EXPECT_NE(error_of([] { parse_bench_batches({"4x"}); }).find("--batch"), std::string::npos);
  EXPECT_EQ(parse_bench_batches({"16", "1", "16"}), (std::vector<int64_t>{1, 16}));
  BenchInferArgs a;
  a.hf_dir = "x", a.preset = "kimi-linear-48b";
  EXPECT_NE(error_of([&] { run_bench_infer(a, [](const std::string&) {}); }), "");
}

TEST(BenchInferArgs, CsvIsReadBySimulateMeasured) {
  BenchResult r;
  r.device = "test", r.source = "preset", r.copy_bytes_per_s = 4e12;
  BenchRow row;
  row.model = ModelKind::kAllMla, row.context = 4096, row.batch = 2, row.tpot_ms = 3.5;
  row.tokens_per_s = 571.4, row.floor_ms = 2.0, row.max_batch = 9, row.mla_splits_per_sm = 1;
  r.rows.push_back(row);
  row.batch = 4, row.prefill_ms = 250.0;  // the same context prefilled: a prefill column
  row.mla_splits_per_sm = 0;              // not recorded: an empty cell
  r.rows.push_back(row);
  const std::string csv = bench_csv(r);
  const std::vector<Measured> m = parse_measured_csv(csv, "bench_infer.csv");
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].model, ModelKind::kAllMla);
  EXPECT_EQ(m[0].context, 4096);
  EXPECT_DOUBLE_EQ(*m[0].tpot_ms, 3.5);
  EXPECT_FALSE(m[0].prefill_ms.has_value());  // not measured: an empty cell
  EXPECT_DOUBLE_EQ(*m[1].prefill_ms, 250.0);
  EXPECT_EQ(m[0].mla_splits_per_sm, 1);  // the split rule the row ran (mla_splits.h)
  EXPECT_FALSE(m[1].mla_splits_per_sm.has_value());
  EXPECT_NE(csv.find(",prefill_ms,prefill_tokens_per_s,mla_splits_per_sm\n"), std::string::npos);
  EXPECT_NE(csv.find(",1,250.0000,16384.0,\n"), std::string::npos) << csv;
  const std::string table = bench_table(r);
  EXPECT_NE(table.find("prefill ms"), std::string::npos);
  EXPECT_NE(table.find("250.00"), std::string::npos) << table;
  EXPECT_NEAR(floor_ms(2'000'000'000, 2'000'000'000, 4e12), 1.0, 1e-12);
}

TEST(BenchInferArgs, PrefillFlags) {
  EXPECT_EQ(parse_prefill_max("128K"), 131072);
  EXPECT_EQ(parse_prefill_max("0"), 0);
  EXPECT_NE(error_of([] { parse_prefill_max("lots"); }).find("--prefill-max"), std::string::npos);
  EXPECT_NE(error_of([] { parse_prefill_max("-4"); }).find("--prefill-max"), std::string::npos);
  EXPECT_EQ(parse_prefill_chunk("16K"), 16384);
  EXPECT_EQ(parse_prefill_chunk("37"), 37);
  EXPECT_NE(error_of([] { parse_prefill_chunk("128K"); }).find("--prefill-chunk"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_prefill_chunk("0"); }).find("--prefill-chunk"), std::string::npos);
  const std::vector<int32_t> p = bench_prompt(1000, 53, 7);
  ASSERT_EQ(p.size(), 1000u);
  EXPECT_EQ(p, bench_prompt(1000, 53, 7));
  EXPECT_EQ(*std::min_element(p.begin(), p.end()), 0);
  EXPECT_EQ(*std::max_element(p.begin(), p.end()), 52);
  BenchInferArgs a;
  a.prefill_chunk = 0;
  EXPECT_NE(error_of([&] { run_bench_infer(a, [](const std::string&) {}); }).find("prefill chunk"),
            std::string::npos);
}

TEST(BenchInferArgs, WithoutCudaTheEngineSaysSoInOneLine) {
  if (engine_available()) GTEST_SKIP() << "built with the CUDA engine";
  const std::string e =
      error_of([] { make_decode_engine(make_weight_layout(models::kimi_linear_48b())); });
  EXPECT_NE(e.find("without CUDA"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos);
}

}  // namespace
}  // namespace kimi::inference::engine
