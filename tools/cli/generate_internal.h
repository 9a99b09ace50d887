// Internal to `kimi-lab generate` (generate_command.cpp: flags and checks; generate_with_model.cpp
// and generate_with_engine.cpp: its two decoding paths) and `kimi-lab model-info`
// (model_info_command.cpp), which prints cache sizes the same way.
#pragma once

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace kimi::cli::generate_detail {

inline std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) b /= 1024, ++u;
  return u == 0 ? fmt::format("{:.0f} B", b) : fmt::format("{:.2f} {}", b, units[u]);
}

struct GenerateArgs {
  std::string dir, preset;
  std::vector<std::string> prompt_text;  // one --prompt-ids per prompt, "1,2,3"
  std::vector<std::vector<int64_t>> prompts;
  int64_t max_new = 16, stop_id = -1;
  bool greedy = false, random = false, engine = false;
  bool dtype_given = false, device_given = false;
  double temperature = 1.0;
  uint64_t seed = 0;
  std::string dtype = "f32";
  std::string device = "cpu";
};

inline double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// UserError when a prompt id or --stop-id lies outside [0, vocab).
void check_vocab(const GenerateArgs& a, int64_t vocab);

template <class Ids>
void print_ids(const GenerateArgs& a, size_t i, const Ids& out, bool stopped) {
  if (a.prompts.size() == 1) {
    fmt::print("prompt ids:    {}\n", fmt::join(a.prompts[i], ","));
    fmt::print("generated ids: {}{}\n", fmt::join(out, ","), stopped ? " (stop id)" : "");
  } else {
    fmt::print("prompt {} ids:    {}\n", i + 1, fmt::join(a.prompts[i], ","));
    fmt::print("generated {} ids: {}{}\n", i + 1, fmt::join(out, ","), stopped ? " (stop id)" : "");
  }
}

// The f32 (or f64) model through the op engine, one prompt after the other.
void run_model(const GenerateArgs& a);

// The bf16 decode engine (inference/engine/generate.h): all prompts batched, one slot each.
void run_engine(const GenerateArgs& a);

}  // namespace kimi::cli::generate_detail
