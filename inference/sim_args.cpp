// Parsing of simulate's --contexts and --batch values.
#include "inference/sim_args.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <optional>

#include "core/tensor/error.h"

namespace kimi::inference {
namespace {

// A positive integer with an optional K or M suffix; nullopt when it is not one.
std::optional<int64_t> token_count(const std::string& s) {
  if (s.empty()) return std::nullopt;
  int64_t unit = 1;
  size_t len = s.size();
  if (s.back() == 'K' || s.back() == 'k') unit = 1024, --len;
  if (s.back() == 'M' || s.back() == 'm') unit = 1024 * 1024, --len;
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + len, v);
  if (len == 0 || ec != std::errc() || end != s.data() + len) return std::nullopt;
  if (v > (int64_t{1} << 40) / unit) return std::nullopt;  // beyond any context
  return v * unit;
}

}  // namespace

std::string context_label(int64_t n) {
  if (n >= (1 << 20) && n % (1 << 20) == 0) return fmt::format("{}M", n >> 20);
  if (n >= (1 << 10) && n % (1 << 10) == 0) return fmt::format("{}K", n >> 10);
  return std::to_string(n);
}

std::vector<int64_t> parse_contexts(const std::vector<std::string>& items) {
  if (items.empty()) throw UserError("--contexts: give at least one context length");
  std::vector<int64_t> out;
  for (const std::string& s : items) {
    const std::optional<int64_t> v = token_count(s);
    if (!v)
      throw UserError(
          fmt::format("--contexts: '{}' is not a token count (e.g. 4096, 128K, 1M)", s));
    if (*v <= 0)
      throw UserError(fmt::format("--contexts: {} is not a positive number of tokens", s));
    out.push_back(*v);
  }
  return out;
}

std::vector<BatchSpec> parse_batches(const std::vector<std::string>& items) {
  if (items.empty()) throw UserError("--batch: give a batch size or 'max'");
  std::vector<BatchSpec> out;
  for (const std::string& s : items) {
    if (s == "max") {
      out.push_back({0, true});
      continue;
    }
    int64_t v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size())
      throw UserError(fmt::format("--batch: '{}' is neither a batch size nor 'max'", s));
    if (v <= 0) throw UserError(fmt::format("--batch: {} is not a positive batch size", s));
    out.push_back({v, false});
  }
  return out;
}

std::string model_source(const std::string& model, const std::string& preset) {
  if (!preset.empty()) return "preset " + preset;
  return std::filesystem::is_directory(model) ? model + "/config.json" : model;
}

models::KimiLinearConfig first_layers(const models::KimiLinearConfig& c, int64_t n) {
  if (n == 0 || n == c.num_hidden_layers) return c;
  if (n < 0 || n > c.num_hidden_layers)
    throw UserError(fmt::format("--layers {}: the model has {} layers (give 1..{}, or 0 for all)",
                                n, c.num_hidden_layers, c.num_hidden_layers));
  models::KimiLinearConfig out = c;
  out.num_hidden_layers = n;
  auto keep = [n](std::vector<int64_t>& ids) {  // 1-based layer numbers, as in config.json
    ids.erase(std::remove_if(ids.begin(), ids.end(), [n](int64_t i) { return i > n; }), ids.end());
  };
  keep(out.kda_layers);
  keep(out.full_attn_layers);
  return out;
}

std::string model_source(const std::string& model, const std::string& preset,
                         const models::KimiLinearConfig& full, int64_t layers) {
  const std::string s = model_source(model, preset);
  if (layers == 0 || layers == full.num_hidden_layers) return s;
  return fmt::format("{}, first {} of {} layers", s, layers, full.num_hidden_layers);
}

models::KimiLinearConfig resolve_model(const std::string& model, const std::string& preset) {
  if (model.empty() == preset.empty())
    throw UserError(
        "simulate: give MODEL (a folder with config.json, or the file) or --preset "
        "kimi-linear-48b, one of them");
  if (!preset.empty()) {
    if (preset != "kimi-linear-48b")
      throw UserError(fmt::format("--preset {}: unknown (known: kimi-linear-48b)", preset));
    return models::kimi_linear_48b();
  }
  return models::load_kimi_linear_config(model_source(model, preset));
}

}  // namespace kimi::inference
