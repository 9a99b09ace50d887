// What the sweep suites share (sweep_test.cpp, sweep_jobs_test.cpp, sweep_seeds_test.cpp): a
// tiny MQAR base config (12 steps a run), a fixture holding a sweep file and its output folder,
// and readers of the files a sweep writes.
#pragma once

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "core/tensor/error.h"
#include "trainer/sweep.h"

namespace kimi::sweep_test {

namespace fs = std::filesystem;

inline const char* kTinyBase = R"(task: {name: mqar, vocab_size: 32, mqar: {num_kv_pairs: 2}}
model: {d_model: 16, num_heads: 2, head_dim: 8, kv_lora_rank: 8, mamba2: {d_state: 8}, chunk_size: 4}
train: {seq_len: 16, batch_size: 4, steps: 12, warmup_steps: 2, lr: 3.0e-3, log_every: 1,
        eval_every: 6, checkpoint_every: 6, threads: 1, device: cpu}
eval: {seq_lens: [16], num_examples: 8, batch_size: 8}
)";

inline std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_file(const fs::path& path, const std::string& text) {
  std::ofstream(path) << text;
}

// A fresh folder holding base.yaml and sweep.yaml (base + `body`), with out_dir inside it.
struct SweepFixture {
  fs::path root;
  explicit SweepFixture(const std::string& name, const std::string& body) {
    root = fs::temp_directory_path() / ("kimi_sweep_test_" + name);
    fs::remove_all(root);
    fs::create_directories(root);
    write_file(root / "base.yaml", kTinyBase);
    rewrite(body);
    spdlog::set_level(spdlog::level::warn);
  }
  void rewrite(const std::string& body) const {
    write_file(root / "sweep.yaml", fmt::format("base: base.yaml\nname: s\nout_dir: {}\n{}",
                                                (root / "out").string(), body));
  }
  std::string file() const { return (root / "sweep.yaml").string(); }
  fs::path dir() const { return root / "out" / "s"; }
  SweepReport run(std::vector<int> only = {}, bool force = false, int64_t stop_at = 0) const {
    SweepOptions opt;
    opt.only = std::move(only);
    opt.force = force;
    opt.stop_at = stop_at;
    opt.progress = false;
    return run_sweep(file(), opt);
  }
};

inline std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// Splits one CSV line (no quoted cells other than the run name's).
inline std::vector<std::string> cells(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (char c : line) {
    if (c == '"')
      quoted = !quoted;
    else if (c == ',' && !quoted)
      out.emplace_back();
    else
      out.back() += c;
  }
  return out;
}

inline void expect_user_error(const std::function<void()>& fn,
                              const std::vector<std::string>& parts) {
  try {
    fn();
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const auto& part : parts)
      EXPECT_NE(msg.find(part), std::string::npos) << part << " in: " << msg;
  }
}

}  // namespace kimi::sweep_test
