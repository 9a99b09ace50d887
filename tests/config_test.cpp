// Tests of trainer/config: strict decoding (every error kind names its key or file), override
// typing, the to_yaml round trip, dotted JSON, and per-layer mixer resolution.
#include "trainer/config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/tensor/error.h"
#include "models/mixer.h"
#include "trainer/config_fields.h"

namespace kimi {
namespace {

class Config : public ::testing::Test {
 protected:
  std::string write(const std::string& text, const std::string& file = "config.yaml") {
    const auto path = dir_ / file;
    std::ofstream(path) << text;
    return path.string();
  }
  // The UserError message of load_config, or "" when it succeeds.
  std::string error_of(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
    try {
      // "" = no file (defaults + overrides): an empty file is itself an error.
      load_config(yaml.empty() ? "" : write(yaml), overrides);
    } catch (const UserError& e) {
      return e.what();
    }
    return "";
  }
  void SetUp() override {
    dir_ =
        std::filesystem::temp_directory_path() /
        ("kimi_config_test_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
         "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

#define EXPECT_HAS(text, part) EXPECT_NE((text).find(part), std::string::npos) << (text)

TEST_F(Config, DefaultsResolve) {
  const RunConfig c = load_config("", {});
  EXPECT_EQ(c.task.name, "mqar");
  EXPECT_EQ(c.task.vocab_size, 8192);
  EXPECT_EQ(c.model.num_kv_heads, c.model.num_heads);
  EXPECT_EQ(c.eval.seq_lens, std::vector<int64_t>{c.train.seq_len});
  EXPECT_EQ(c.name, "mqar_kda");
  EXPECT_DOUBLE_EQ(c.train.beta2, 0.95);
  EXPECT_EQ(load_config("", {"task.name=stack"}).task.vocab_size, 128);
}

TEST_F(Config, ReadsNestedYaml) {
  const RunConfig c = load_config(write(R"(
name: demo
task: {name: palindrome, palindrome: {score_sep: true}}
model:
  d_model: 64
  mixer: [kda, attention]
train:
  lr: 3.0e-4
  seq_len: 128
eval:
  seq_lens: [64, 128]
)"),
                                  {});
  EXPECT_EQ(c.name, "demo");
  EXPECT_EQ(c.task.name, "palindrome");
  EXPECT_TRUE(c.task.palindrome.score_sep);
  EXPECT_EQ(c.model.d_model, 64);
  EXPECT_EQ(c.model.mixer, (std::vector<std::string>{"kda", "attention"}));
  EXPECT_DOUBLE_EQ(c.train.lr, 3e-4);
  EXPECT_EQ(c.eval.seq_lens, (std::vector<int64_t>{64, 128}));
}

TEST_F(Config, OverridesAreTypedAsYaml) {
  const RunConfig c = load_config(
      write("train: {lr: 0.01}\n"),
      {"train.lr=3e-4", "model.mixer=[kda,kda,kda,attention]", "model.n_layers=4",
       "eval.seq_lens=[256, 512]", "model.short_conv=false", "task.lm.path=/tmp/[x].txt"});
  EXPECT_DOUBLE_EQ(c.train.lr, 3e-4);
  EXPECT_EQ(c.model.mixer.size(), 4u);
  EXPECT_EQ(c.model.mixer[3], "attention");
  EXPECT_EQ(c.eval.seq_lens, (std::vector<int64_t>{256, 512}));
  EXPECT_FALSE(c.model.short_conv);
  EXPECT_EQ(c.task.lm.path, "/tmp/[x].txt");  // not YAML: kept as text
  // Later overrides win; an override replaces the file's value.
  EXPECT_EQ(load_config("", {"train.steps=5", "train.steps=7"}).train.steps, 7);
}

TEST_F(Config, UnknownKeysSuggestTheClosest) {
  EXPECT_HAS(error_of("train:\n  lrr: 0.1\n"), "unknown config key 'train.lrr'");
  EXPECT_HAS(error_of("train:\n  lrr: 0.1\n"), "did you mean 'train.lr'");
  EXPECT_HAS(error_of("train:\n  lrr: 0.1\n"), "config.yaml:2");
  EXPECT_HAS(error_of("lr: 0.1\n"), "did you mean 'train.lr'");
  EXPECT_HAS(error_of("modle: {d_model: 3}\n"), "did you mean 'model'");
  EXPECT_HAS(error_of("", {"model.d_modle=3"}), "did you mean 'model.d_model'");
}

TEST_F(Config, WrongTypesNameKeyAndValue) {
  EXPECT_HAS(error_of("train: {lr: abc}\n"), "train.lr: expected a number, got 'abc'");
  EXPECT_HAS(error_of("train: {steps: 1.5}\n"), "train.steps: expected an integer, got '1.5'");
  EXPECT_HAS(error_of("model: {rope: maybe}\n"), "model.rope: expected true or false");
  EXPECT_HAS(error_of("eval: {seq_lens: [64, x]}\n"), "eval.seq_lens: expected a list of integers");
  EXPECT_HAS(error_of("train: 5\n"), "train: expected a section");
  EXPECT_HAS(error_of("", {"train.lr=[1, 2]"}), "train.lr: expected a number, got a list");
  EXPECT_HAS(error_of("", {"train.lr=abc"}), "(override 'train.lr=abc')");
}

TEST_F(Config, OutOfRangeValues) {
  EXPECT_HAS(error_of("train: {lr: -1}\n"), "train.lr must be > 0");
  EXPECT_HAS(error_of("train: {beta2: 1.0}\n"), "train.beta2 must be in [0, 1)");
  EXPECT_HAS(error_of("train: {schedule: cosin}\n"), "train.schedule: expected one of cosine");
  EXPECT_HAS(error_of("model: {mixer: kdaa}\n"), "model.mixer: unknown mixer 'kdaa'");
  EXPECT_HAS(error_of("model: {num_heads: 4, num_kv_heads: 3}\n"), "model.num_kv_heads");
  EXPECT_HAS(error_of("task: {mqar: {num_kv_pairs: 200}}\ntrain: {seq_len: 256}\n"),
             "task.mqar.num_kv_pairs");
  EXPECT_HAS(error_of("task: {name: lm, lm: {path: /nonexistent/t.txt}}\n"), "/nonexistent/t.txt");
}

TEST_F(Config, FileAndOverrideSyntaxErrors) {
  EXPECT_HAS(error_of("", {"train.lr"}), "override 'train.lr': expected key=value");
  EXPECT_HAS(error_of("", {"train={lr: 1}"}), "'train' is a section");
  EXPECT_HAS(error_of("train:\n  lr: [1,\n  steps: 3\n"), "YAML syntax error");
  EXPECT_HAS(error_of("train:\n  lr: 1\n  lr: 2\n"), "duplicate config key 'train.lr'");
  try {
    load_config((dir_ / "missing.yaml").string(), {});
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    EXPECT_HAS(std::string(e.what()), "missing.yaml");
  }
}

TEST_F(Config, NonFiniteNumbersAreRefusedForEveryFloatKey) {
  EXPECT_HAS(error_of("", {"train.lr=.inf"}), "train.lr: expected a finite number, got '.inf'");
  EXPECT_HAS(error_of("train: {lr: .nan}\n"), "train.lr: expected a finite number");
  EXPECT_HAS(error_of("", {"train.lr=-.inf"}), "train.lr: expected a finite number");
  // Every double key, not only lr (1e999 overflows to infinity or fails to parse: both refused).
  int doubles = 0;
  RunConfig defaults;
  config_detail::visit_fields(defaults, [&](const std::string& key, auto& field) {
    if constexpr (std::is_same_v<std::decay_t<decltype(field)>, double>) {
      ++doubles;
      EXPECT_HAS(error_of("", {key + "=.inf"}), key + ": expected a finite number");
      EXPECT_HAS(error_of("", {key + "=.nan"}), key + ": expected a finite number");
      EXPECT_HAS(error_of("", {key + "=1e999"}), key + ": expected a");
    }
  });
  EXPECT_GE(doubles, 10);
}

TEST_F(Config, IntegerKeysTakeWholeNumbersWrittenAsFloats) {
  EXPECT_EQ(load_config("", {"train.steps=1e3"}).train.steps, 1000);
  EXPECT_EQ(load_config("", {"train.steps=2000.0"}).train.steps, 2000);
  EXPECT_EQ(load_config("", {"eval.seq_lens=[1.28e2, 256]"}).eval.seq_lens,
            (std::vector<int64_t>{128, 256}));
  EXPECT_EQ(load_config(write("train: {steps: 5e2}\n"), {}).train.steps, 500);
  EXPECT_EQ(load_config("", {"train.steps=1.5e3"}).train.steps, 1500);
  EXPECT_HAS(error_of("", {"train.steps=2.5"}), "train.steps: expected an integer, got '2.5'");
  EXPECT_HAS(error_of("", {"train.steps=1e3.5"}), "train.steps: expected an integer");
  EXPECT_HAS(error_of("", {"train.steps=1.5e-3"}), "train.steps: expected an integer");
  EXPECT_HAS(error_of("", {"train.steps=1e30"}), "train.steps: expected an integer, got '1e30'");
  EXPECT_HAS(error_of("", {"train.steps=9.3e18"}), "train.steps: expected an integer");
  EXPECT_HAS(error_of("", {"train.steps=.inf"}), "train.steps: expected an integer");
  EXPECT_HAS(error_of("", {"train.seed=1e30"}), "train.seed: expected an integer");
}

TEST_F(Config, EmptyConfigFileIsRefusedNamingIt) {
  for (const char* text : {"", "# only a comment\n", "train:\nmodel:\n", "{}\n"}) {
    const std::string path = write(text, "empty.yaml");
    try {
      load_config(path, {"train.steps=5"});
      ADD_FAILURE() << "accepted an empty config: '" << text << "'";
    } catch (const UserError& e) {
      EXPECT_HAS(std::string(e.what()), path);
      EXPECT_HAS(std::string(e.what()), "sets no keys");
    }
  }
  EXPECT_EQ(load_config(write("train: {steps: 5}\n"), {}).train.steps, 5);
}

TEST_F(Config, OddHeadDimWithRopeIsRefusedAtLoad) {
  EXPECT_HAS(error_of("model: {mixer: attention, rope: true, head_dim: 33}\n"),
             "model.head_dim must be even with model.rope=true");
  EXPECT_EQ(error_of("model: {mixer: attention, rope: true, head_dim: 32}\n"), "");
  EXPECT_EQ(error_of("model: {mixer: attention, rope: false, head_dim: 33}\n"), "");
}

TEST_F(Config, SizesThatCannotBeAllocatedAreRefused) {
  EXPECT_HAS(error_of("", {"train.seq_len=99999999999"}), "train.batch_size x train.seq_len");
  EXPECT_HAS(error_of("", {"eval.seq_lens=[99999999999]"}), "eval.num_examples x eval.seq_lens");
  EXPECT_HAS(error_of("", {"model.d_model=1000000000"}), "more than 1e11");
  EXPECT_HAS(error_of("", {"task.vocab_size=1e10"}), "task.vocab_size must be < 2^31");
  // The paper's configs are far below the limits.
  EXPECT_EQ(error_of("", {"train.seq_len=2048", "model.d_model=2048", "model.n_layers=24"}), "");
}

TEST_F(Config, YamlRoundTrip) {
  const RunConfig a = load_config(write("task: {name: stack, stack: {push_prob: 0.3}}\n"),
                                  {"model.mixer=[kda,mla]", "train.lr=3e-4", "name=my run",
                                   "eval.seq_lens=[64,128]", "task.lm.path=''"});
  const RunConfig b = load_config(write(to_yaml(a), "resolved.yaml"), {});
  EXPECT_EQ(to_yaml(a), to_yaml(b));
  EXPECT_EQ(to_json(a), to_json(b));
  EXPECT_DOUBLE_EQ(b.train.lr, 3e-4);
  EXPECT_DOUBLE_EQ(b.task.stack.push_prob, 0.3);
  EXPECT_EQ(b.name, "my run");
  EXPECT_EQ(b.model.mixer, (std::vector<std::string>{"kda", "mla"}));
}

TEST_F(Config, DottedJsonForSummaries) {
  const auto flat = flatten_dotted(to_json(load_config("", {"train.lr=0.002"})));
  EXPECT_DOUBLE_EQ(flat.at("train.lr").get<double>(), 0.002);
  EXPECT_EQ(flat.at("model.mamba2.d_state").get<int64_t>(), 64);
  EXPECT_TRUE(flat.at("eval.seq_lens").is_array());
  EXPECT_EQ(flat.size(), known_config_keys().size());
}

TEST_F(Config, LayerMixersFromListsAndRatios) {
  ModelConfig m;
  m.n_layers = 3;
  EXPECT_EQ(layer_mixers(m), (std::vector<std::string>{"kda", "kda", "kda"}));
  m.n_layers = 8;
  m.hybrid = "kda:attention=3:1";
  EXPECT_EQ(layer_mixers(m), (std::vector<std::string>{"kda", "kda", "kda", "attention", "kda",
                                                       "kda", "kda", "attention"}));
  m.n_layers = 27;  // Kimi-Linear-48B: MLA at 0-based 3, 7, ..., 23 and 26
  m.hybrid = "kda : mla = 3 : 1";
  const auto layers = layer_mixers(m);
  for (int i = 0; i < 27; ++i) {
    const bool mla = (i % 4 == 3 && i < 24) || i == 26;
    EXPECT_EQ(layers[i], mla ? "mla" : "kda") << i;
  }
  m.hybrid = "kda:mla";
  EXPECT_THROW(layer_mixers(m), UserError);
  m.hybrid = "";
  m.n_layers = 2;
  m.mixer = {"kda", "gdn", "mla"};
  try {
    layer_mixers(m);
    FAIL();
  } catch (const UserError& e) {
    EXPECT_HAS(std::string(e.what()), "model.mixer lists 3 mixers but model.n_layers is 2");
  }
  EXPECT_EQ(error_of("model: {n_layers: 4, hybrid: 'kda:attention=1:1'}\n"), "");
}

TEST_F(Config, RopeWithMlaNeedsItsRopeSlice) {
  EXPECT_FALSE(load_config("", {}).model.rope);  // NoPE by default, as Kimi Linear's MLA
  const std::string refusal = "model.qk_rope_dim must be even and > 0 when model.rope is on";
  // MLA with rope rotates its decoupled qk_rope_dim slice: there must be one, of even size.
  EXPECT_HAS(error_of("model: {mixer: mla, rope: true}\n"), refusal);
  EXPECT_HAS(error_of("model: {n_layers: 2, mixer: [attention, mla]}\n",
                      {"model.rope=true", "model.qk_rope_dim=3"}),
             refusal);
  EXPECT_EQ(error_of("model: {mixer: mla, rope: true, qk_rope_dim: 8}\n"), "");
  EXPECT_EQ(error_of("model: {n_layers: 4, hybrid: 'kda:mla=3:1', rope: true, qk_rope_dim: 16}\n"),
            "");
  // Attention takes RoPE without a slice; MLA without rope runs NoPE.
  EXPECT_EQ(error_of("model: {mixer: attention, rope: true}\n"), "");
  EXPECT_EQ(error_of("model: {n_layers: 4, hybrid: 'attention:mla=3:1'}\n"), "");
  // A layer built around the config refuses a missing slice too.
  ModelConfig m;
  m.rope = true;
  Rng rng(0);
  EXPECT_THROW(models::make_mixer(models::mixer_options(m, "mla"), rng), UserError);
  m.qk_rope_dim = 8;
  EXPECT_NO_THROW(models::make_mixer(models::mixer_options(m, "mla"), rng));
  EXPECT_NO_THROW(models::make_mixer(models::mixer_options(m, "attention"), rng));
}

TEST_F(Config, DecayStepInitRangeIsAKeyOfEveryGatedMixer) {
  EXPECT_HAS(error_of("", {"model.dt_min=5e-5"}), "model.dt_min");
  EXPECT_HAS(error_of("", {"model.dt_min=0.01", "model.dt_max=0.001"}), "model.dt_max");
  EXPECT_EQ(error_of("", {"model.dt_min=1e-4", "model.dt_max=1e-3"}), "");
  EXPECT_HAS(error_of("", {"model.mixer=deltanet", "model.dt_max=0.01"}), "model.dt_max");
  EXPECT_EQ(
      error_of("", {"model.mixer=[mamba2, attention]", "model.n_layers=2", "model.dt_max=0.01"}),
      "");
  // softplus(dt_bias) of every channel lies in the range the config gives (kda: one per head and
  // key channel; gdn, mamba2: one per head), by default FLA's [1e-3, 1e-1].
  for (const auto& [lo, hi] : {std::pair{1e-3, 1e-1}, std::pair{1e-4, 1e-3}}) {
    ModelConfig m;
    m.dt_min = lo, m.dt_max = hi;
    for (const char* kind : {"kda", "gdn", "mamba2"}) {
      Rng rng(7);
      const auto mixer = models::make_mixer(models::mixer_options(m, kind), rng);
      int seen = 0;
      double low = 1e9, high = 0;
      for (const auto& [name, t] : mixer->named_parameters()) {
        if (name != "dt_bias") continue;
        for (double b : t.to_vector<double>()) {
          const double dt = std::log1p(std::exp(b));
          low = std::min(low, dt), high = std::max(high, dt);
          ++seen;
        }
      }
      ASSERT_GT(seen, 1) << kind;
      EXPECT_GE(low, lo * (1 - 1e-5)) << kind;
      EXPECT_LE(high, hi * (1 + 1e-5)) << kind;
      EXPECT_LT(low, high) << kind;  // drawn, not one value
    }
  }
}

TEST_F(Config, MoeKeysAreCheckedByName) {
  EXPECT_EQ(load_config("", {}).model.moe.num_experts, 0);  // dense by default
  EXPECT_EQ(error_of("model: {moe: {num_experts: 4, top_k: 2}}\n"), "");
  EXPECT_HAS(error_of("model: {moe: {num_experts: 4, top_k: 5}}\n"), "model.moe.top_k");
  EXPECT_HAS(error_of("", {"model.moe.num_experts=4", "model.moe.bias_update_rate=-1"}),
             "model.moe.bias_update_rate");
  EXPECT_HAS(error_of("", {"model.moe.num_experts=4", "model.moe.first_dense=2"}),
             "model.moe.first_dense");
  EXPECT_HAS(error_of("", {"model.moe.num_expert=4"}), "model.moe.num_experts");  // suggested
}

TEST_F(Config, ExperimentFilesLoad) {
  const auto dir = std::filesystem::path(KIMI_SOURCE_DIR) / "experiments";
  int loaded = 0;
  for (const char* file : {"quickstart.yaml", "mqar.yaml", "palindrome.yaml", "stack.yaml"}) {
    const auto path = dir / file;
    if (!std::filesystem::exists(path)) continue;
    EXPECT_NO_THROW(load_config(path.string(), {})) << path;
    ++loaded;
  }
  if (loaded == 0) GTEST_SKIP() << "no experiment files in " << dir;
  const RunConfig c = load_config((dir / "mqar.yaml").string(), {"model.mixer=gdn"});
  EXPECT_EQ(c.name, "mqar_gdn");
}

}  // namespace
}  // namespace kimi
