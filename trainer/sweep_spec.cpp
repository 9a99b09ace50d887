// The sweep file (trainer/sweep.h): decoded once, strictly, into SweepSpec, then expanded into
// points and validated with load_config. Besides trainer/config*.cpp this is the one reader of
// YAML::Node (STYLE.md item 12); the grid's values leave it as override text.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "core/tensor/error.h"
#include "trainer/sweep.h"

namespace kimi {
namespace {

namespace fs = std::filesystem;

std::string where(const std::string& file, const YAML::Node& node) {
  return fmt::format("{}:{}", file, node.Mark().line + 1);
}

YAML::Node parse_sweep_file(const std::string& path) {
  if (fs::is_directory(path)) throw UserError(fmt::format("sweep file '{}' is a directory", path));
  try {
    return YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw UserError(fmt::format("cannot read sweep file '{}'", path));
  } catch (const YAML::ParserException& e) {
    throw UserError(fmt::format("YAML syntax error in '{}' at line {}, column {}: {}", path,
                                e.mark.line + 1, e.mark.column + 1, e.msg));
  }
}

std::string scalar(const YAML::Node& node, const std::string& key, const std::string& file) {
  if (!node.IsScalar())
    throw UserError(
        fmt::format("{}: {} must be a single value ({})", file, key, where(file, node)));
  return node.Scalar();
}

// A number as it reads best in a directory name: 1.0e-3 -> 0.001, 5e-5 -> 5e-05, 300 -> 300.
std::string label_of_scalar(const std::string& text) {
  const bool integer = !text.empty() &&
                       text.find_first_not_of("+-0123456789") == std::string::npos &&
                       text.find_first_of("0123456789") != std::string::npos;
  if (integer) return text[0] == '+' ? text.substr(1) : text;
  if (!text.empty() && text.find_first_not_of("+-0123456789.eE") == std::string::npos) {
    char* end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    if (end && *end == '\0') return fmt::format("{}", v);
  }
  return text;
}

// Letters, digits and . _ + - stay; anything else (/, spaces, commas, '=') becomes '_'.
std::string filesystem_safe(std::string text) {
  for (char& c : text) {
    const bool ok =
        std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '+' || c == '-';
    if (!ok) c = '_';
  }
  return text;
}

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

void check_not_reserved(const std::string& key, const std::string& what) {
  if (key == "name" || key == "out_dir")
    throw UserError(
        fmt::format("{} sets '{}', which the sweep sets per point (the run directory "
                    "is <out_dir>/<sweep name>/<point name>)",
                    what, key));
}

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

// `seeds: [0, 1]` is the last grid axis, train.seed, so the seeds of one setting sit together.
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

// `rows: {label: [key=value, ...], ...}`: the first grid axis, `row`, in file order. A row may
// list no overrides (the base config as it is: a reference row).
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

// `when: [{match: {grid key: value, ...}, overrides: [key=value, ...]}, ...]`. Every matched
// key must be a grid key and every value one of its values, so a typo cannot match nothing.
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
}  // namespace

std::string SweepSpec::dir() const { return (fs::path(out_dir) / name).string(); }

SweepSpec load_sweep_spec(const std::string& path) {
  const YAML::Node root = parse_sweep_file(path);
  if (!root.IsMap()) throw UserError(fmt::format("sweep file '{}': expected a mapping", path));
  SweepSpec spec;
  spec.file = path;
  spec.name = fs::path(path).stem().string();
  static const std::set<std::string> kKeys = {"base", "name",  "out_dir", "overrides",
                                              "grid", "seeds", "when",    "rows"};
  std::optional<YAML::Node> seeds, when, rows;  // a default YAML::Node counts as defined
  std::set<std::string> seen;
  for (const auto& item : root) {
    const std::string key = scalar(item.first, "a key", path);
    const YAML::Node& v = item.second;
    if (!kKeys.count(key))
      throw UserError(
          fmt::format("{}: unknown sweep key '{}' ({}); expected base, name, out_dir, "
                      "overrides, grid, seeds, when, rows",
                      path, key, where(path, item.first)));
    if (!seen.insert(key).second)
      throw UserError(
          fmt::format("{}: '{}' appears twice ({})", path, key, where(path, item.first)));
    if (key == "base") {
      const std::string base = scalar(v, "base", path);
      const fs::path p =
          fs::path(base).is_absolute() ? fs::path(base) : fs::path(path).parent_path() / base;
      if (!fs::is_regular_file(p))
        throw UserError(
            fmt::format("{}: base config '{}' not found (looked at {}; relative to the "
                        "sweep file)",
                        path, base, p.string()));
      spec.base = p.lexically_normal().string();
    } else if (key == "name") {
      spec.name = scalar(v, "name", path);
    } else if (key == "out_dir") {
      spec.out_dir = scalar(v, "out_dir", path);
    } else if (key == "overrides") {
      if (v.IsScalar() && !v.Scalar().empty())
        spec.overrides.push_back(v.Scalar());
      else if (v.IsSequence())
        for (const auto& o : v) spec.overrides.push_back(scalar(o, "overrides items", path));
      else if (!v.IsNull() && !v.IsScalar())
        throw UserError(
            fmt::format("{}: overrides must be a list of key=value ({})", path, where(path, v)));
    } else if (key == "seeds") {
      seeds = v;
    } else if (key == "when") {
      when = v;
    } else if (key == "rows") {
      rows = v;
    } else {
      spec.grid = read_grid(v, path);
    }
  }
  if (rows) {
    for (const auto& axis : spec.grid)
      if (axis.key == kRowKey)
        throw UserError(fmt::format("{}: rows and grid.{} are both set; keep rows", path, kRowKey));
    spec.grid.insert(spec.grid.begin(), read_rows(*rows, path));
  }
  if (seeds) add_seed_axis(spec, *seeds, path);
  if (when) spec.cases = read_cases(*when, spec.grid, path);
  if (spec.name.empty() || spec.name != filesystem_safe(spec.name) || spec.name == "." ||
      spec.name == "..")
    throw UserError(
        fmt::format("{}: name '{}' must be a plain directory name (letters, digits, . _ + -)", path,
                    spec.name));
  if (spec.out_dir.empty()) throw UserError(fmt::format("{}: out_dir must not be empty", path));
  for (const auto& o : spec.overrides)
    check_not_reserved(o.substr(0, o.find('=')), path + ": overrides");
  return spec;
}

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

nlohmann::json spec_json(const SweepSpec& spec, const std::vector<SweepPoint>& points) {
  nlohmann::json grid = nlohmann::json::array();
  for (const auto& a : spec.grid) {
    grid.push_back({{"key", a.key}, {"values", a.values}});
    if (a.key == kRowKey) grid.back()["overrides"] = a.row_overrides;
  }
  nlohmann::json pts = nlohmann::json::array();
  for (const auto& p : points)
    pts.push_back({{"index", p.index},
                   {"name", p.name},
                   {"group", p.group},
                   {"values", p.values},
                   {"overrides", p.overrides},
                   {"config", flatten_dotted(to_json(p.config))}});
  return {{"sweep_file", spec.file},
          {"base", spec.base},
          {"name", spec.name},
          {"out_dir", spec.out_dir},
          {"overrides", spec.overrides},
          {"grid", grid},
          {"points", pts}};
}

namespace {

std::string grid_text(const nlohmann::json& grid) {
  std::vector<std::string> parts;
  for (const auto& a : grid)
    parts.push_back(fmt::format("{}: [{}]", a.value("key", ""),
                                fmt::join(a.value("values", std::vector<std::string>{}), ", ")));
  return parts.empty() ? "(none)" : fmt::format("{}", fmt::join(parts, "; "));
}

}  // namespace

std::string spec_difference(const nlohmann::json& stored, const nlohmann::json& current) {
  const auto empty = nlohmann::json::array();
  const auto& g0 = stored.contains("grid") ? stored["grid"] : empty;
  const auto& g1 = current.contains("grid") ? current["grid"] : empty;
  if (g0 != g1) return fmt::format("grid {} -> {}", grid_text(g0), grid_text(g1));
  const auto o0 = stored.value("overrides", std::vector<std::string>{});
  const auto o1 = current.value("overrides", std::vector<std::string>{});
  if (o0 != o1)
    return fmt::format("overrides [{}] -> [{}]", fmt::join(o0, ", "), fmt::join(o1, ", "));
  const auto& p0 = stored.contains("points") ? stored["points"] : empty;
  const auto& p1 = current.contains("points") ? current["points"] : empty;
  if (p0.size() != p1.size()) return fmt::format("{} points -> {}", p0.size(), p1.size());
  for (size_t i = 0; i < p1.size(); ++i) {
    const std::string name = p1[i].value("name", "");
    if (p0[i].value("name", "") != name)
      return fmt::format("point {} is named '{}', was '{}'", i, name, p0[i].value("name", ""));
    const auto& c0 = p0[i].contains("config") ? p0[i]["config"] : nlohmann::json::object();
    const auto& c1 = p1[i].contains("config") ? p1[i]["config"] : nlohmann::json::object();
    for (const auto& [key, value] : c1.items())
      if (c0.contains(key) && c0[key] != value)
        return fmt::format("point {} ({}): {} {} -> {} (the base config changed?)", i, name, key,
                           c0[key].dump(), value.dump());
  }
  return "";
}

}  // namespace kimi
