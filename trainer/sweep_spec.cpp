// The sweep file (trainer/sweep.h): decoded once, strictly, into SweepSpec; its grid, seeds, rows
// and when sections are read by sweep_spec_sections.cpp. Besides trainer/config*.cpp these two
// files are the only readers of YAML::Node (STYLE.md item 12); the grid's values leave them as
// override text, which sweep_grid.cpp expands into points and sweep_spec_json.cpp stores.
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <set>

#include "core/tensor/error.h"
#include "trainer/sweep.h"
#include "trainer/sweep_spec_internal.h"

namespace kimi {

namespace fs = std::filesystem;

namespace sweep_detail {

std::string where(const std::string& file, const YAML::Node& node) {
  return fmt::format("{}:{}", file, node.Mark().line + 1);
}

std::string scalar(const YAML::Node& node, const std::string& key, const std::string& file) {
  if (!node.IsScalar())
    throw UserError(
        fmt::format("{}: {} must be a single value ({})", file, key, where(file, node)));
  return node.Scalar();
}

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

std::string filesystem_safe(std::string text) {
  for (char& c : text) {
    const bool ok =
        std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '+' || c == '-';
    if (!ok) c = '_';
  }
  return text;
}

void check_not_reserved(const std::string& key, const std::string& what) {
  if (key == "name" || key == "out_dir")
    throw UserError(
        fmt::format("{} sets '{}', which the sweep sets per point (the run directory "
                    "is <out_dir>/<sweep name>/<point name>)",
                    what, key));
}

}  // namespace sweep_detail

namespace {

using sweep_detail::add_seed_axis;
using sweep_detail::check_not_reserved;
using sweep_detail::filesystem_safe;
using sweep_detail::read_cases;
using sweep_detail::read_grid;
using sweep_detail::read_rows;
using sweep_detail::scalar;
using sweep_detail::where;

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

}  // namespace kimi
