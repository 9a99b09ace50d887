// sweep.json (trainer/sweep.h): the resolved spec stored in the sweep directory, and the
// comparison that tells a rerun of the same sweep from a changed one.
#include "core/tensor/error.h"
#include "trainer/sweep.h"

namespace kimi {

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
