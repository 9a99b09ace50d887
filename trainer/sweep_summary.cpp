// summary.csv and summary.jsonl of a sweep (trainer/sweep.h): one row per finished or failed
// run, read back from its run directory (summary.json, eval.csv, metrics.csv), with every config
// key as a dotted column in declaration order (zoology's and W&B's tidy tables; STYLE.md item 13).
// Each row also carries its seed group's mean, standard deviation and count, so a setting is
// read off as the mean over its seeds.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include "core/io/atomic_file.h"
#include "core/tensor/error.h"
#include "models/flops.h"
#include "trainer/metrics_writer.h"
#include "trainer/sweep_internal.h"
#include "trainer/sweep_results.h"

namespace kimi {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;
using sweep_detail::read_text;

using RunRow = SweepRun;

double cell(const std::vector<std::string>& row, size_t i) {
  try {
    return i < row.size() ? std::stod(row[i]) : std::numeric_limits<double>::quiet_NaN();
  } catch (const std::exception&) {
    return std::numeric_limits<double>::quiet_NaN();
  }
}

// eval.csv: step,task,seq_len,num_kv_pairs,num_examples,loss,accuracy,exact_match.
void read_evals(const fs::path& dir, RunRow& row) {
  auto table = CsvTable::resume((dir / "eval.csv").string(), eval_columns(),
                                std::numeric_limits<int64_t>::max());
  int64_t last_step = -1;
  for (const auto& r : table.rows()) last_step = std::max<int64_t>(last_step, std::stoll(r[0]));
  for (const auto& r : table.rows()) {
    const auto len = static_cast<int64_t>(cell(r, 2));
    const double acc = cell(r, 6);
    row.curve[len].emplace_back(std::stoll(r[0]), acc);
    auto it = row.best.find(len);
    if (it == row.best.end() || acc > it->second) row.best[len] = acc;
    if (std::stoll(r[0]) == last_step) row.last[len] = {acc, cell(r, 7)};
  }
}

RunRow read_run(const SweepPoint& p, PointState state) {
  RunRow row;
  row.point = &p;
  row.state = state;
  const fs::path dir(p.dir);
  read_evals(dir, row);
  if (fs::exists(dir / "summary.json") && state != PointState::kFailed) {
    try {
      const auto s = nlohmann::json::parse(read_text(dir / "summary.json"));
      row.steps_done = s.value("steps_done", int64_t{0});
      row.final_loss = s.value("final_loss", 0.0);
      row.wall_s = s.value("wall_s", 0.0);
    } catch (const nlohmann::json::exception& e) {
      throw UserError(fmt::format("{}: unreadable summary.json: {}", p.dir, e.what()));
    }
  } else {
    // A failed run has no summary.json: its last logged metrics row stands in.
    auto m = CsvTable::resume((dir / "metrics.csv").string(), metrics_columns(),
                              std::numeric_limits<int64_t>::max());
    if (!m.rows().empty()) {
      row.steps_done = static_cast<int64_t>(cell(m.rows().back(), 0));
      row.final_loss = cell(m.rows().back(), 1);
      row.wall_s = cell(m.rows().back(), 6);
    }
  }
  if (state == PointState::kFailed) {
    row.error = read_text(dir / "failed.txt");
    while (!row.error.empty() && (row.error.back() == '\n' || row.error.back() == '\r'))
      row.error.pop_back();
  }
  return row;
}

// A config value as one cell: a one-element list reads as its element (model.mixer=[kda] and
// model.mixer=kda are the same config), longer lists as [a,b].
CsvValue config_cell(const nlohmann::json& v) {
  if (v.is_array() && v.size() == 1) return config_cell(v[0]);
  if (v.is_array()) {
    std::vector<std::string> items;
    for (const auto& x : v) items.push_back(x.is_string() ? x.get<std::string>() : x.dump());
    return fmt::format("[{}]", fmt::join(items, ","));
  }
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return std::string(v.get<bool>() ? "true" : "false");
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number()) return v.get<double>();
  return std::string();
}

Json cell_json(const CsvValue& v) {
  if (const auto* i = std::get_if<int64_t>(&v)) return *i;
  if (const auto* d = std::get_if<double>(&v)) return std::isfinite(*d) ? Json(*d) : Json(nullptr);
  return std::get<std::string>(v);
}

// The config keys in declaration order (known_config_keys), then any others.
std::vector<std::string> config_columns(const std::vector<RunRow>& rows) {
  std::set<std::string> present;
  for (const auto& r : rows) {
    const nlohmann::json flat = flatten_dotted(to_json(r.point->config));  // outlives the loop
    for (const auto& [k, v] : flat.items()) present.insert(k);
  }
  std::vector<std::string> out;
  for (const auto& k : known_config_keys())
    if (present.erase(k)) out.push_back(k);
  out.insert(out.end(), present.begin(), present.end());
  return out;
}

}  // namespace

std::vector<SweepRun> read_sweep_runs(const std::vector<SweepPoint>& points) {
  std::vector<SweepRun> rows;
  for (const auto& p : points) {
    const PointState s = point_state(p);
    if (s == PointState::kDone || s == PointState::kStoppedEarly || s == PointState::kFailed)
      rows.push_back(read_run(p, s));
  }
  return rows;
}

SeedStat seed_stat(const std::vector<double>& values) {
  SeedStat st;
  double sum = 0;
  for (double v : values)
    if (std::isfinite(v)) sum += v, ++st.n;
  if (st.n == 0) return st;
  st.mean = sum / st.n;
  if (st.n < 2) return st;
  double ss = 0;
  for (double v : values)
    if (std::isfinite(v)) ss += (v - st.mean) * (v - st.mean);
  st.sd = std::sqrt(ss / (st.n - 1));
  return st;
}

std::map<std::string, std::vector<const SweepRun*>> seed_groups(const std::vector<SweepRun>& runs) {
  std::map<std::string, std::vector<const SweepRun*>> out;
  for (const auto& r : runs) out[r.point->group].push_back(&r);
  return out;
}

namespace {

// A name's group for a sweep.json written before groups were stored: the name without seed=.
std::string group_of_name(const std::string& name) {
  std::vector<std::string> kept;
  size_t start = 0;
  while (start <= name.size()) {
    const size_t end = std::min(name.find(',', start), name.size());
    const std::string part = name.substr(start, end - start);
    if (part.rfind("seed=", 0) != 0 && part.rfind(std::string(kSeedKey) + "=", 0) != 0)
      kept.push_back(part);
    start = end + 1;
  }
  return kept.empty() ? "run" : fmt::format("{}", fmt::join(kept, ","));
}

// One statistic of the group of `r` over the runs of that group, per length.
SeedStat group_stat(const std::vector<const SweepRun*>& group, int64_t len, bool best) {
  std::vector<double> values;
  for (const SweepRun* g : group) {
    if (best && g->best.count(len)) values.push_back(g->best.at(len));
    if (!best && g->last.count(len)) values.push_back(g->last.at(len).first);
  }
  return seed_stat(values);
}

// params, state bytes of the first layer per sequence (fp32: states stay F32 at every
// precision), training FLOPs per token; blanks for a mixer models/flops.h cannot count.
std::vector<CsvValue> fairness_cells(const RunConfig& c) {
  try {
    const auto cost = models::model_cost(c.model, c.task.vocab_size, c.train.seq_len);
    return {cost.params, cost.layers.front().state_bytes(), cost.train_flops_per_token};
  } catch (const UserError&) {
    return {std::string(), std::string(), std::string()};
  }
}

}  // namespace

int64_t selection_length(const SweepRun& run) {
  const int64_t train_len = run.point->config.train.seq_len;
  if (run.best.count(train_len) || run.best.empty()) return train_len;
  return run.best.rbegin()->first;
}

SeedStat selection_stat(const std::vector<const SweepRun*>& group) {
  std::vector<double> values;
  for (const SweepRun* g : group) {
    const auto it = g->best.find(selection_length(*g));
    if (it != g->best.end()) values.push_back(it->second);
  }
  return seed_stat(values);
}

std::set<std::string> best_lr_groups(
    const std::map<std::string, std::vector<const SweepRun*>>& groups) {
  // family (the grid values but lr and seed) -> (best mean so far, its group)
  std::map<std::string, std::pair<double, std::string>> best;
  for (const auto& [name, runs] : groups) {
    const SeedStat st = selection_stat(runs);
    if (st.n == 0) continue;
    std::string family;
    for (const auto& [key, value] : runs.front()->point->values)
      if (key != kSeedKey && key != "train.lr") family += key + "=" + value + ";";
    auto it = best.find(family);
    if (it == best.end() || st.mean > it->second.first) best[family] = {st.mean, name};
  }
  std::set<std::string> out;
  for (const auto& [family, choice] : best) out.insert(choice.second);
  return out;
}

std::vector<SweepPoint> load_sweep_points(const std::string& sweep_dir, size_t* total) {
  const fs::path path = fs::path(sweep_dir) / "sweep.json";
  if (!fs::exists(path))
    throw UserError(fmt::format("{}: not a sweep directory (no sweep.json)", sweep_dir));
  nlohmann::json spec;
  try {
    spec = nlohmann::json::parse(read_text(path));
  } catch (const nlohmann::json::exception& e) {
    throw UserError(fmt::format("{}: unreadable ({})", path.string(), e.what()));
  }
  std::vector<SweepPoint> points;
  const nlohmann::json listed = spec.value("points", nlohmann::json::array());
  if (total) *total = listed.size();
  for (const auto& sp : listed) {
    SweepPoint p;
    p.index = sp.value("index", 0);
    p.name = sp.value("name", "");
    p.group = sp.value("group", group_of_name(p.name));
    p.dir = (fs::path(sweep_dir) / p.name).string();
    const fs::path cfg = fs::path(p.dir) / "config.yaml";
    if (p.name.empty() || !fs::exists(cfg)) continue;
    p.config = load_config(cfg.string(), {});
    if (sp.contains("values")) {
      p.values = sp["values"].get<std::vector<std::pair<std::string, std::string>>>();
    } else {  // a sweep.json written before values were stored: the grid keys' config values
      const nlohmann::json flat = flatten_dotted(to_json(p.config));
      for (const auto& axis : spec.value("grid", nlohmann::json::array())) {
        const std::string key = axis.value("key", "");
        if (flat.contains(key)) p.values.emplace_back(key, flat[key].dump());
      }
    }
    points.push_back(std::move(p));
  }
  return points;
}

std::vector<std::string> write_sweep_summary(const std::string& sweep_dir,
                                             const std::vector<SweepPoint>& points) {
  const std::vector<RunRow> rows = read_sweep_runs(points);
  const auto groups = seed_groups(rows);
  const std::set<std::string> best_groups = best_lr_groups(groups);
  std::set<int64_t> lens;
  for (const auto& r : rows)
    for (const auto& [len, _] : r.best) lens.insert(len);
  const std::vector<std::string> config_keys = config_columns(rows);

  std::vector<std::string> columns = {"run", "status", "steps_done", "final_loss"};
  for (int64_t len : lens) columns.push_back(fmt::format("acc@T{}", len));
  for (int64_t len : lens) columns.push_back(fmt::format("exact@T{}", len));
  for (int64_t len : lens) columns.push_back(fmt::format("best_acc@T{}", len));
  columns.push_back("wall_s");
  // The seed group: runs that differ only in train.seed. mean/sd/n over the group's runs.
  columns.push_back("group");
  columns.push_back("group_runs");
  for (int64_t len : lens)
    for (const char* what : {"best_acc", "acc"})
      for (const char* stat : {"mean", "sd", "n"})
        columns.push_back(fmt::format("{}_{}@T{}", what, stat, len));
  // The lr choice (see best_lr_groups): on the group's mean at its training length.
  columns.push_back("select_acc_mean");
  columns.push_back("best_lr_on_mean");
  // Fairness (models/flops.h): what each mixer spends, counted from the config.
  columns.push_back("params");
  columns.push_back("state_bytes_per_layer");
  columns.push_back("train_flops_per_token");
  columns.insert(columns.end(), config_keys.begin(), config_keys.end());

  CsvTable table((fs::path(sweep_dir) / "summary.csv").string(), columns);
  std::string jsonl;
  std::vector<std::string> dirs;
  const CsvValue blank = std::string();
  for (const auto& r : rows) {
    std::vector<CsvValue> v = {r.point->name, std::string(state_name(r.state)),
                               r.steps_done ? CsvValue(*r.steps_done) : blank,
                               r.final_loss ? CsvValue(*r.final_loss) : blank};
    for (int64_t len : lens)
      v.push_back(r.last.count(len) ? CsvValue(r.last.at(len).first) : blank);
    for (int64_t len : lens)
      v.push_back(r.last.count(len) ? CsvValue(r.last.at(len).second) : blank);
    for (int64_t len : lens) v.push_back(r.best.count(len) ? CsvValue(r.best.at(len)) : blank);
    v.push_back(r.wall_s ? CsvValue(*r.wall_s) : blank);
    const auto& group = groups.at(r.point->group);
    v.push_back(r.point->group);
    v.push_back(static_cast<int64_t>(group.size()));
    for (int64_t len : lens)
      for (bool best : {true, false}) {
        const SeedStat st = group_stat(group, len, best);
        v.push_back(st.n ? CsvValue(st.mean) : blank);
        v.push_back(st.n > 1 ? CsvValue(st.sd) : blank);
        v.push_back(static_cast<int64_t>(st.n));
      }
    const SeedStat sel = selection_stat(group);
    v.push_back(sel.n ? CsvValue(sel.mean) : blank);
    v.push_back(sel.n ? CsvValue(static_cast<int64_t>(best_groups.count(r.point->group))) : blank);
    for (const CsvValue& f : fairness_cells(r.point->config)) v.push_back(f);
    const nlohmann::json flat = flatten_dotted(to_json(r.point->config));
    for (const auto& k : config_keys) v.push_back(flat.contains(k) ? config_cell(flat[k]) : blank);
    table.add_row(v);

    // The same row as JSON (typed; lists stay lists), plus where it lives and why it failed.
    Json obj;
    for (size_t i = 0; i < columns.size(); ++i) {
      const bool is_config = i >= columns.size() - config_keys.size();
      const bool empty_cell =
          std::holds_alternative<std::string>(v[i]) && std::get<std::string>(v[i]).empty();
      if (is_config && flat.contains(columns[i]))
        obj[columns[i]] = Json::parse(flat[columns[i]].dump());
      else
        obj[columns[i]] = empty_cell ? Json(nullptr) : cell_json(v[i]);
    }
    obj["dir"] = r.point->dir;
    if (!r.error.empty()) obj["error"] = r.error;
    jsonl += obj.dump() + "\n";
    dirs.push_back(r.point->dir);
  }
  table.flush();
  io::write_file_atomic((fs::path(sweep_dir) / "summary.jsonl").string(), jsonl);
  return dirs;
}

}  // namespace kimi
