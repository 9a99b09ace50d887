// CsvTable and write_json_atomic (trainer/metrics_writer.h). CSV quoting per RFC 4180 for
// cells holding a comma or a quote; newlines in cells become spaces so a row stays one line.
#include "trainer/metrics_writer.h"

#include <fmt/ranges.h>

#include <fstream>
#include <sstream>

#include "core/io/atomic_file.h"
#include "core/tensor/error.h"

namespace kimi {
namespace {

std::string format_cell(const CsvValue& value) {
  if (const auto* i = std::get_if<int64_t>(&value)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&value)) return fmt::format("{:.7g}", *d);
  std::string s = std::get<std::string>(value);
  for (auto& ch : s) ch = (ch == '\n' || ch == '\r') ? ' ' : ch;
  return s;
}

std::string quoted(const std::string& cell) {
  if (cell.find_first_of(",\"") == std::string::npos) return cell;
  std::string out = "\"";
  for (char ch : cell) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return out + "\"";
}

std::vector<std::string> parse_line(const std::string& line) {
  std::vector<std::string> cells(1);
  bool in_quotes = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char ch = line[i];
    if (in_quotes && ch == '"' && i + 1 < line.size() && line[i + 1] == '"') {
      cells.back() += '"';
      ++i;
    } else if (ch == '"') {
      in_quotes = !in_quotes;
    } else if (ch == ',' && !in_quotes) {
      cells.emplace_back();
    } else {
      cells.back() += ch;
    }
  }
  return cells;
}

void append_line(std::string& out, const std::vector<std::string>& cells) {
  for (size_t i = 0; i < cells.size(); ++i) {
    if (i) out += ',';
    out += quoted(cells[i]);
  }
  out += '\n';
}

}  // namespace

const std::vector<std::string>& metrics_columns() {
  static const std::vector<std::string> columns = {
      "step",        "loss",   "lr",     "grad_norm", "tokens_per_s",
      "ms_per_step", "wall_s", "tokens", "flops",     "moe_max_load"};
  return columns;
}

const std::vector<std::string>& eval_columns() {
  static const std::vector<std::string> columns = {
      "step", "task",     "seq_len",     "num_kv_pairs", "num_examples",
      "loss", "accuracy", "exact_match", "perplexity",   "bits_per_byte"};
  return columns;
}

CsvTable::CsvTable(std::string path, std::vector<std::string> columns)
    : path_(std::move(path)), columns_(std::move(columns)) {
  KIMI_CHECK(!columns_.empty(), "a CSV table needs columns ({})", path_);
}

CsvTable CsvTable::resume(std::string path, std::vector<std::string> columns,
                          int64_t keep_through_step) {
  CsvTable table(std::move(path), std::move(columns));
  std::ifstream in(table.path_);
  std::string line;
  if (!in || !std::getline(in, line)) return table;
  if (parse_line(line) != table.columns_) {
    throw UserError(fmt::format("cannot resume '{}': its header '{}' is not '{}'", table.path_,
                                line, fmt::join(table.columns_, ",")));
  }
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto cells = parse_line(line);
    int64_t step = 0;
    try {
      step = std::stoll(cells[0]);
    } catch (const std::exception&) {
      throw UserError(fmt::format("cannot resume '{}': bad step '{}'", table.path_, cells[0]));
    }
    // Rows past the checkpoint are dropped: the resumed run logs those steps again.
    if (step <= keep_through_step && cells.size() == table.columns_.size()) {
      table.rows_.push_back(std::move(cells));
    }
  }
  return table;
}

void CsvTable::add_row(const std::vector<CsvValue>& values) {
  KIMI_CHECK(values.size() == columns_.size(), "{}: {} values for {} columns", path_, values.size(),
             columns_.size());
  std::vector<std::string> cells;
  cells.reserve(values.size());
  for (const auto& v : values) cells.push_back(format_cell(v));
  rows_.push_back(std::move(cells));
}

std::string CsvTable::to_csv() const {
  std::string out;
  append_line(out, columns_);
  for (const auto& row : rows_) append_line(out, row);
  return out;
}

void CsvTable::flush() const { io::write_file_atomic(path_, to_csv()); }

void write_json_atomic(const std::string& path, const nlohmann::json& value) {
  io::write_file_atomic(path, value.dump(2) + "\n");
}

}  // namespace kimi
