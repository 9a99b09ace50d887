// Checkpoint files (trainer/checkpoint.h): a NaN or an infinity in the weights or the optimizer
// state is refused on save (the earlier file stays) and on load (naming the file and the
// tensor), and the metadata key 'step' must be wholly an integer within bounds.
#include "trainer/checkpoint.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <limits>

#include "core/io/safetensors.h"
#include "core/io/tensor_io.h"

namespace kimi {
namespace {

namespace fs = std::filesystem;

struct Tiny : nn::Module {
  explicit Tiny(float w1) {
    w = register_parameter("w", Tensor::from_vector(std::vector<float>{0.5f, w1}, {2}));
  }
  Tensor w;
};

std::string fresh_file(const std::string& name) {
  fs::path d = fs::temp_directory_path() / "kimi_checkpoint_test";
  fs::create_directories(d);
  fs::remove(d / name);
  return (d / name).string();
}

optim::AdamW adamw(const nn::Module& m) { return optim::AdamW(m.named_parameters(), {}); }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

TEST(Checkpoint, SaveRefusesNonFiniteWeightsAndKeepsThePreviousFile) {
  const std::string path = fresh_file("save_inf.safetensors");
  Tiny good(1.0f), bad(std::numeric_limits<float>::infinity());
  save_checkpoint(path, good, adamw(good), 3);
  const std::string msg = error_of([&] { save_checkpoint(path, bad, adamw(bad), 4); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("model.w"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  Tiny back(0.0f);
  EXPECT_EQ(load_checkpoint(path, back, nullptr), 3);
  EXPECT_EQ(back.w.to_vector<float>(), (std::vector<float>{0.5f, 1.0f}));
  const std::string other = fresh_file("save_inf_new.safetensors");
  EXPECT_THROW(save_checkpoint(other, bad, adamw(bad), 1), UserError);
  EXPECT_FALSE(fs::exists(other));
}

// Rewrites `path` with `name` set to `value` everywhere and the given step metadata.
void rewrite(const std::string& path, const std::string& name, float value,
             const std::string& step) {
  auto all = io::load_tensors(path);
  if (!name.empty()) {
    std::vector<float> v = all.at(name).to_vector<float>();
    for (float& x : v) x = value;
    all[name] = Tensor::from_vector(v, all.at(name).shape());
  }
  io::save_tensors(path, all, {{"step", step}, {"format", "kimi-lab checkpoint v1"}});
}

TEST(Checkpoint, LoadRefusesNonFiniteWeightsOrOptimizerState) {
  Tiny good(1.0f);
  auto opt = adamw(good);
  std::vector<std::string> names = {"model.w"};
  for (auto& [name, t] : opt.state_dict())
    if (is_floating(t.dtype())) names.push_back(name);
  ASSERT_GE(names.size(), 2u);  // the weights and at least one moment
  for (const std::string& name : names) {
    for (float v :
         {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::infinity()}) {
      const std::string path = fresh_file("load_bad.safetensors");
      save_checkpoint(path, good, opt, 2);
      rewrite(path, name, v, "2");
      Tiny into(7.0f);
      auto into_opt = adamw(into);
      const std::string msg = error_of([&] { load_checkpoint(path, into, &into_opt); });
      EXPECT_NE(msg.find(path), std::string::npos) << name << ": " << msg;
      EXPECT_NE(msg.find("'" + name + "'"), std::string::npos) << name << ": " << msg;
      EXPECT_EQ(into.w.to_vector<float>(), (std::vector<float>{0.5f, 7.0f}));  // untouched
    }
  }
}

TEST(Checkpoint, StepMetadataMustBeAnIntegerWithinBounds) {
  Tiny good(1.0f);
  const std::string path = fresh_file("step.safetensors");
  save_checkpoint(path, good, adamw(good), 5);
  Tiny into(0.0f);
  EXPECT_EQ(load_checkpoint(path, into, nullptr, 10), 5);
  for (const char* bad : {"1x0", "999", "-1", "", " 5", "5 ", "+5", "1e1", "0x5"}) {
    rewrite(path, "", 0, bad);
    const std::string msg = error_of([&] { load_checkpoint(path, into, nullptr, 10); });
    EXPECT_NE(msg.find(path), std::string::npos) << bad << ": " << msg;
    EXPECT_NE(msg.find("'step'"), std::string::npos) << bad << ": " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  rewrite(path, "", 0, "10");  // the last step itself is a valid checkpoint
  EXPECT_EQ(load_checkpoint(path, into, nullptr, 10), 10);
  rewrite(path, "", 0, "999");  // no bound given (kimi-lab eval)
  EXPECT_EQ(load_checkpoint(path, into, nullptr), 999);
}

}  // namespace
}  // namespace kimi
