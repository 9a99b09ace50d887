// Tidy run outputs (STYLE.md item 13): CSV tables with fixed columns, kept in memory and
// rewritten whole and atomically on flush, so a killed run leaves a complete file and a resumed
// run drops the rows logged after its checkpoint. Columns of metrics.csv and eval.csv below.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <variant>
#include <vector>

namespace kimi {

using CsvValue = std::variant<int64_t, double, std::string>;

// step,loss,lr,grad_norm,tokens_per_s,ms_per_step,wall_s,tokens,flops,moe_max_load: one row per
// log step (tokens and flops cumulative: trainer/lm_metrics.h; moe_max_load: the busiest
// expert's load over the mean, models::moe_max_load; empty if dense).
const std::vector<std::string>& metrics_columns();
// step,task,seq_len,num_kv_pairs,num_examples,loss,accuracy,exact_match,perplexity,
// bits_per_byte: one row per eval slice (bits_per_byte empty for synthetic tasks).
const std::vector<std::string>& eval_columns();

class CsvTable {
 public:
  CsvTable(std::string path, std::vector<std::string> columns);

  // The table at path (none yet = empty) keeping rows whose first column, the step, is
  // <= keep_through_step. UserError if the file's header is not `columns`.
  static CsvTable resume(std::string path, std::vector<std::string> columns,
                         int64_t keep_through_step);

  // One value per column (KIMI_CHECK). Doubles print with 7 significant digits.
  void add_row(const std::vector<CsvValue>& values);
  // Rewrites the whole file atomically (header + every row).
  void flush() const;
  std::string to_csv() const;

  const std::string& path() const { return path_; }
  const std::vector<std::string>& columns() const { return columns_; }
  const std::vector<std::vector<std::string>>& rows() const { return rows_; }

 private:
  std::string path_;
  std::vector<std::string> columns_;
  std::vector<std::vector<std::string>> rows_;  // formatted cells
};

// Pretty-printed JSON, written atomically (summary.json, checkpoints' metadata, ...).
void write_json_atomic(const std::string& path, const nlohmann::json& value);

}  // namespace kimi
