// The grid, seeds, rows and when sections of a sweep file (trainer/sweep_spec_internal.h), each
// checked as it is read so that a typo is an error naming its line, never an axis or a case that
// silently matches nothing.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <set>

#include "core/tensor/error.h"
#include "trainer/sweep.h"
#include "trainer/sweep_spec_internal.h"

namespace kimi::sweep_detail {
namespace {

// One grid value -> (override text, name label). Scalars stay as written; a list of scalars
// (a per-layer model.mixer) is `[a, b]` in the override and `a+b` in names.
std::pair<std::string, std::string> grid_value(const YAML::Node& v, const std::string& key,
                                               const std::string& file) {
  if (v.IsScalar()) return {v.Scalar(), filesystem_safe(label_of_scalar(v.Scalar()))};
  if (v.IsSequence() && v.size() > 0) {
    std::vector<std::string> items, labels;
    for (const auto& item : v) {
      items.push_back(scalar(item, "grid." + key + " list items", file));
      labels.push_back(label_of_scalar(items.back()));
    }
    return {fmt::format("[{}]", fmt::join(items, ", ")),
            filesystem_safe(fmt::format("{}", fmt::join(labels, "+")))};
  }
  throw UserError(fmt::format("{}: grid.{}: each value must be a scalar or a list of scalars ({})",
                              file, key, where(file, v)));
}

}  // namespace

std::vector<SweepAxis> read_grid(const YAML::Node& grid, const std::string& file) {
  std::vector<SweepAxis> axes;
  if (grid.IsNull()) return axes;
  if (!grid.IsMap())
    throw UserError(fmt::format("{}: grid must be a mapping of config key -> list of values ({})",
                                file, where(file, grid)));
  std::set<std::string> seen;
  for (const auto& item : grid) {
    SweepAxis axis;
    axis.key = scalar(item.first, "a grid key", file);
    check_not_reserved(axis.key, fmt::format("{}: grid", file));
    if (!seen.insert(axis.key).second)
      throw UserError(fmt::format("{}: grid key '{}' appears twice ({})", file, axis.key,
                                  where(file, item.first)));
    if (!item.second.IsSequence() || item.second.size() == 0)
      throw UserError(
          fmt::format("{}: grid.{} must be a non-empty list of values, e.g. [1, 2] ({})", file,
                      axis.key, where(file, item.second)));
    for (const auto& v : item.second) {
      auto [text, label] = grid_value(v, axis.key, file);
      axis.values.push_back(text);
      axis.labels.push_back(label);
    }
    axes.push_back(std::move(axis));
  }
  return axes;
}

void add_seed_axis(SweepSpec& spec, const YAML::Node& seeds, const std::string& file) {
  for (const auto& axis : spec.grid)
    if (axis.key == kSeedKey)
      throw UserError(
          fmt::format("{}: seeds and grid.{} are both set; keep one of them", file, kSeedKey));
  if (!seeds.IsSequence() || seeds.size() == 0)
    throw UserError(fmt::format("{}: seeds must be a non-empty list of integers, e.g. [0, 1] ({})",
                                file, where(file, seeds)));
  SweepAxis axis;
  axis.key = kSeedKey;
  std::set<std::string> seen;
  for (const auto& v : seeds) {
    const std::string text = scalar(v, "seeds items", file);
    const bool integer = !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
    if (!integer)
      throw UserError(fmt::format("{}: seeds: '{}' is not a non-negative integer ({})", file, text,
                                  where(file, v)));
    if (!seen.insert(label_of_scalar(text)).second)
      throw UserError(fmt::format("{}: seeds lists {} twice ({})", file, text, where(file, v)));
    axis.values.push_back(text);
    axis.labels.push_back(label_of_scalar(text));
  }
  spec.grid.push_back(std::move(axis));
}

SweepAxis read_rows(const YAML::Node& rows, const std::string& file) {
  if (!rows.IsMap() || rows.size() == 0)
    throw UserError(
        fmt::format("{}: rows must map row names to lists of key=value, e.g. no_gate: "
                    "[model.output_gate=none] ({})",
                    file, where(file, rows)));
  SweepAxis axis;
  axis.key = kRowKey;
  for (const auto& item : rows) {
    const std::string label = scalar(item.first, "a row name", file);
    if (label.empty() || label != filesystem_safe(label))
      throw UserError(fmt::format("{}: row name '{}' must be letters, digits, . _ + - ({})", file,
                                  label, where(file, item.first)));
    if (std::find(axis.labels.begin(), axis.labels.end(), label) != axis.labels.end())
      throw UserError(
          fmt::format("{}: row '{}' appears twice ({})", file, label, where(file, item.first)));
    const YAML::Node& ov = item.second;
    if (!ov.IsSequence() && !ov.IsNull())
      throw UserError(fmt::format("{}: rows.{} must be a list of key=value ({})", file, label,
                                  where(file, ov)));
    std::vector<std::string> overrides;
    for (const auto& o : ov) {
      overrides.push_back(scalar(o, "rows." + label + " items", file));
      if (overrides.back().find('=') == std::string::npos)
        throw UserError(fmt::format("{}: rows.{}: '{}' is not key=value ({})", file, label,
                                    overrides.back(), where(file, o)));
      check_not_reserved(overrides.back().substr(0, overrides.back().find('=')),
                         file + ": rows." + label);
    }
    axis.values.push_back(label);
    axis.labels.push_back(label);
    axis.row_overrides.push_back(std::move(overrides));
  }
  return axis;
}

std::vector<SweepCase> read_cases(const YAML::Node& when, const std::vector<SweepAxis>& grid,
                                  const std::string& file) {
  if (!when.IsSequence())
    throw UserError(fmt::format(
        "{}: when must be a list of {{match: {{key: value}}, overrides: [key=value]}} ({})", file,
        where(file, when)));
  std::vector<SweepCase> cases;
  for (const auto& item : when) {
    if (!item.IsMap() || !item["match"] || !item["overrides"] || item.size() != 2)
      throw UserError(fmt::format("{}: each when entry needs exactly match and overrides ({})",
                                  file, where(file, item)));
    SweepCase c;
    const YAML::Node match = item["match"];
    if (!match.IsMap() || match.size() == 0)
      throw UserError(fmt::format("{}: when.match must map grid keys to values ({})", file,
                                  where(file, match)));
    for (const auto& m : match) {
      const std::string key = scalar(m.first, "a when.match key", file);
      const auto axis =
          std::find_if(grid.begin(), grid.end(), [&](const SweepAxis& a) { return a.key == key; });
      if (axis == grid.end())
        throw UserError(fmt::format("{}: when.match key '{}' is not a grid key ({})", file, key,
                                    where(file, m.first)));
      const std::string label = grid_value(m.second, key, file).second;
      if (std::find(axis->labels.begin(), axis->labels.end(), label) == axis->labels.end())
        throw UserError(fmt::format("{}: when.match {}: {} is not one of the grid's values ({})",
                                    file, key, label, where(file, m.second)));
      c.match.emplace_back(key, label);
    }
    const YAML::Node ov = item["overrides"];
    if (!ov.IsSequence())
      throw UserError(fmt::format("{}: when.overrides must be a list of key=value ({})", file,
                                  where(file, ov)));
    for (const auto& o : ov) {
      c.overrides.push_back(scalar(o, "when.overrides items", file));
      check_not_reserved(c.overrides.back().substr(0, c.overrides.back().find('=')),
                         file + ": when.overrides");
    }
    cases.push_back(std::move(c));
  }
  return cases;
}

}  // namespace kimi::sweep_detail
