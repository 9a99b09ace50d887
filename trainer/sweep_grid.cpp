// The points of a sweep (trainer/sweep.h): the grid's cartesian product with each point's
// overrides, name and directory, then every point's config through load_config.
#include <algorithm>
#include <filesystem>
#include <map>

#include "core/tensor/error.h"
#include "trainer/sweep.h"

namespace kimi {
namespace {

namespace fs = std::filesystem;

// The short key of each axis in names: the last dotted part, unless two axes share it.
std::vector<std::string> short_keys(const std::vector<SweepAxis>& grid) {
  std::map<std::string, int> count;
  auto last = [](const std::string& k) { return k.substr(k.rfind('.') + 1); };
  for (const auto& a : grid) ++count[last(a.key)];
  std::vector<std::string> out;
  for (const auto& a : grid) out.push_back(count[last(a.key)] > 1 ? a.key : last(a.key));
  return out;
}

std::string yaml_quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

}  // namespace

std::vector<SweepPoint> expand_grid(const SweepSpec& spec) {
  const std::vector<std::string> shorts = short_keys(spec.grid);
  size_t total = 1;
  for (const auto& axis : spec.grid) total *= axis.values.size();
  std::vector<SweepPoint> points;
  std::map<std::string, int> names;
  for (size_t i = 0; i < total; ++i) {
    SweepPoint p;
    p.index = static_cast<int>(i);
    p.overrides = spec.overrides;
    std::vector<std::string> parts, group_parts;
    std::vector<std::pair<std::string, std::string>> labels;  // key -> label, for `when`
    // Mixed radix, last axis fastest: index = ((i0 * n1) + i1) * n2 + i2 ...
    size_t rest = i, stride = total;
    for (size_t a = 0; a < spec.grid.size(); ++a) {
      const auto& axis = spec.grid[a];
      stride /= axis.values.size();
      const size_t k = rest / stride;
      rest %= stride;
      p.values.emplace_back(axis.key, axis.values[k]);
      if (axis.key == kRowKey)
        p.overrides.insert(p.overrides.end(), axis.row_overrides[k].begin(),
                           axis.row_overrides[k].end());
      else
        p.overrides.push_back(axis.key + "=" + axis.values[k]);
      parts.push_back(shorts[a] + "=" + axis.labels[k]);
      if (axis.key != kSeedKey) group_parts.push_back(parts.back());
      labels.emplace_back(axis.key, axis.labels[k]);
    }
    for (const auto& c : spec.cases) {
      const bool hit = std::all_of(c.match.begin(), c.match.end(), [&](const auto& m) {
        return std::find(labels.begin(), labels.end(), m) != labels.end();
      });
      if (hit) p.overrides.insert(p.overrides.end(), c.overrides.begin(), c.overrides.end());
    }
    p.name = parts.empty() ? "run" : fmt::format("{}", fmt::join(parts, ","));
    p.group = group_parts.empty() ? "run" : fmt::format("{}", fmt::join(group_parts, ","));
    if (p.name.size() > 200)  // file names stop at 255 bytes
      throw UserError(
          fmt::format("{}: the run name of point {} is {} characters long; shorten the "
                      "grid's values",
                      spec.file, p.index, p.name.size()));
    if (auto [it, fresh] = names.emplace(p.name, p.index); !fresh)
      throw UserError(
          fmt::format("{}: grid points {} and {} both get the run name '{}'; is a value "
                      "listed twice?",
                      spec.file, it->second, p.index, p.name));
    p.dir = (fs::path(spec.dir()) / p.name).string();
    p.overrides.push_back("name=" + yaml_quoted(p.name));
    p.overrides.push_back("out_dir=" + yaml_quoted(spec.dir()));
    points.push_back(std::move(p));
  }
  return points;
}

void validate_points(const SweepSpec& spec, std::vector<SweepPoint>& points) {
  for (auto& p : points) {
    try {
      p.config = load_config(spec.base, p.overrides);
    } catch (const UserError& e) {
      throw UserError(
          fmt::format("{}: sweep point {} ({}): {}", spec.file, p.index, p.name, e.what()));
    }
  }
}

}  // namespace kimi
