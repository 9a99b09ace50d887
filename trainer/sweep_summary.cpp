// summary.csv and summary.jsonl of a sweep (trainer/sweep.h): one row per finished or failed
// run, read back from its run directory (summary.json, eval.csv, metrics.csv), with every config
// key as a dotted column in declaration order (zoology's and W&B's tidy tables; STYLE.md item 13).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include "core/io/atomic_file.h"
#include "core/tensor/error.h"
#include "trainer/metrics_writer.h"
#include "trainer/sweep.h"

namespace kimi {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

struct RunRow {
  const SweepPoint* point = nullptr;
  PointState state = PointState::kPending;
  std::optional<int64_t> steps_done;
  std::optional<double> final_loss, wall_s;
  std::map<int64_t, std::pair<double, double>> last;  // seq_len -> (accuracy, exact_match)
  std::map<int64_t, double> best;                     // seq_len -> best accuracy over steps
  std::string error;                                  // failed runs: failed.txt
};

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

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

std::vector<std::string> write_sweep_summary(const std::string& sweep_dir,
                                             const std::vector<SweepPoint>& points) {
  std::vector<RunRow> rows;
  for (const auto& p : points) {
    const PointState s = point_state(p);
    if (s == PointState::kDone || s == PointState::kStoppedEarly || s == PointState::kFailed)
      rows.push_back(read_run(p, s));
  }
  std::set<int64_t> lens;
  for (const auto& r : rows)
    for (const auto& [len, _] : r.best) lens.insert(len);
  const std::vector<std::string> config_keys = config_columns(rows);

  std::vector<std::string> columns = {"run", "status", "steps_done", "final_loss"};
  for (int64_t len : lens) columns.push_back(fmt::format("acc@T{}", len));
  for (int64_t len : lens) columns.push_back(fmt::format("exact@T{}", len));
  for (int64_t len : lens) columns.push_back(fmt::format("best_acc@T{}", len));
  columns.push_back("wall_s");
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
