// `kimi-lab inspect FILE.safetensors`: the metadata and a table of the tensors (name, dtype,
// shape, bytes; with --stats min / max / mean / rms of the floating-point ones).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/io/safetensors.h"
#include "core/tensor/error.h"
#include "tools/cli/commands.h"

namespace kimi::cli {
namespace {

struct InspectOptions {
  std::string path;
  bool full = false;
  bool stats = false;
  size_t width = 200;
};

// One metadata value on one line: control characters become spaces, long values are cut.
std::string shorten(const std::string& v, const InspectOptions& o) {
  if (o.full) return v;
  std::string out;
  for (char c : v.substr(0, o.width)) out += (static_cast<unsigned char>(c) < 0x20) ? ' ' : c;
  if (v.size() > o.width) out += fmt::format(" ... ({} chars in all; --full shows them)", v.size());
  return out;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

std::vector<std::string> stats_of(const io::SafetensorsFile& f, const io::TensorInfo& t) {
  if (!is_floating(t.dtype) || t.nbytes == 0) return {"-", "-", "-", "-"};
  const std::vector<double> v = f.read_f64(t.name);
  double lo = std::numeric_limits<double>::infinity(), hi = -lo, sum = 0, sq = 0;
  size_t nan = 0;
  for (double x : v) {
    if (std::isnan(x)) {
      ++nan;
      continue;
    }
    lo = std::min(lo, x);
    hi = std::max(hi, x);
    sum += x;
    sq += x * x;
  }
  const auto n = static_cast<double>(v.size());
  if (nan) return {fmt::format("{} NaN", nan), "-", "-", "-"};
  return {fmt::format("{:.6g}", lo), fmt::format("{:.6g}", hi), fmt::format("{:.6g}", sum / n),
          fmt::format("{:.6g}", std::sqrt(sq / n))};
}

void run_inspect(const InspectOptions& o) {
  const io::SafetensorsFile f = io::SafetensorsFile::open(o.path);
  const std::vector<std::string> names = f.names();
  size_t total = 0;
  for (const auto& n : names) total += f.info(n).nbytes;
  fmt::print("{}: {} tensors, {} bytes of data\n", o.path, names.size(), total);
  if (!f.metadata().empty()) {
    fmt::print("metadata:\n");
    for (const auto& [k, v] : f.metadata()) fmt::print("  {}: {}\n", k, shorten(v, o));
  }
  std::vector<std::string> header = {"name", "dtype", "shape", "bytes"};
  if (o.stats) header.insert(header.end(), {"min", "max", "mean", "rms"});
  std::vector<std::vector<std::string>> rows = {header};
  for (const auto& n : names) {
    const io::TensorInfo& t = f.info(n);
    std::vector<std::string> row = {n, std::string(dtype_name(t.dtype)), shape_str(t.shape),
                                    std::to_string(t.nbytes)};
    if (o.stats) {
      auto s = stats_of(f, t);
      row.insert(row.end(), s.begin(), s.end());
    }
    rows.push_back(std::move(row));
  }
  std::vector<size_t> w(header.size(), 0);
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) w[i] = std::max(w[i], r[i].size());
  for (const auto& r : rows) {
    std::string line = " ";
    for (size_t i = 0; i < r.size(); ++i) {
      const bool right = i >= 3;  // numbers right-aligned
      line += ' ';
      line += right ? fmt::format("{:>{}}", r[i], w[i]) : fmt::format("{:<{}}", r[i], w[i]);
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    fmt::print("{}\n", line);
  }
}

}  // namespace

void register_inspect(CLI::App& app) {
  auto opts = std::make_shared<InspectOptions>();
  auto* cmd = app.add_subcommand("inspect",
                                 "Print a safetensors file's metadata and a table of its tensors");
  cmd->add_option("file", opts->path, "The .safetensors file to read")->required();
  cmd->add_flag("--full", opts->full, "Print metadata values whole (default: first 200 chars)");
  cmd->add_flag("--stats", opts->stats,
                "Add min, max, mean and rms columns for floating-point tensors");
  cmd->callback([opts] { run_inspect(*opts); });
}

}  // namespace kimi::cli
