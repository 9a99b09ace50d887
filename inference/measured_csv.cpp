// Strict reader of measurement CSVs; see measured_csv.h for the format.
#include "inference/measured_csv.h"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <tuple>

#include "core/tensor/error.h"

namespace kimi::inference {
namespace {

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t\r") - a + 1);
}

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> cells;
  std::stringstream ss(line);
  std::string cell;
  while (std::getline(ss, cell, ',')) cells.push_back(trim(cell));
  if (!line.empty() && line.back() == ',') cells.push_back("");
  return cells;
}

struct Row {
  const std::vector<std::string>& cells;
  const std::map<std::string, size_t>& col;
  std::string where;  // "FILE line N"

  [[noreturn]] void fail(const std::string& column, const std::string& why) const {
    throw UserError(fmt::format("{}: column '{}': {}", where, column, why));
  }
  const std::string& cell(const std::string& column) const { return cells[col.at(column)]; }
  int64_t positive_int(const std::string& column) const {
    const std::string& s = cell(column);
    int64_t v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size())
      fail(column, fmt::format("'{}' is not an integer", s));
    if (v <= 0) fail(column, fmt::format("{} must be positive", v));
    return v;
  }
  std::optional<double> value(const std::string& column) const {
    if (!col.count(column) || cell(column).empty()) return std::nullopt;
    const std::string& s = cell(column);
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    if (end != s.c_str() + s.size()) fail(column, fmt::format("'{}' is not a number", s));
    if (!std::isfinite(v) || v <= 0) fail(column, fmt::format("{} must be a positive number", s));
    return v;
  }
};

}  // namespace

std::vector<Measured> parse_measured_csv(const std::string& text, const std::string& where) {
  std::stringstream in(text);
  std::string line;
  std::map<std::string, size_t> col;
  std::vector<Measured> out;
  std::set<std::tuple<int, int64_t, int64_t>> seen;
  const char* values[] = {"prefill_ms", "tpot_ms", "tokens_per_s"};
  for (int n = 1; std::getline(in, line); ++n) {
    const std::string t = trim(line);
    if (t.empty() || t[0] == '#') continue;
    const std::string at = fmt::format("{} line {}", where, n);
    if (t.find('"') != std::string::npos)
      throw UserError(at + ": quoted cells are not supported (plain comma-separated values)");
    const std::vector<std::string> cells = split(t);
    if (col.empty()) {
      for (size_t i = 0; i < cells.size(); ++i)
        if (!col.emplace(cells[i], i).second)
          throw UserError(fmt::format("{}: column '{}' appears twice in the header", at, cells[i]));
      for (const char* need : {"model", "context", "batch"})
        if (!col.count(need))
          throw UserError(fmt::format("{}: no column '{}' in the header", at, need));
      if (!col.count(values[0]) && !col.count(values[1]) && !col.count(values[2]))
        throw UserError(at + ": the header has none of prefill_ms, tpot_ms, tokens_per_s");
      continue;
    }
    if (cells.size() != col.size())
      throw UserError(
          fmt::format("{}: {} cells, but the header has {} columns", at, cells.size(), col.size()));
    const Row row{cells, col, at};
    Measured m;
    m.model = parse_model_name(row.cell("model"), at + ": column 'model'");
    m.context = row.positive_int("context");
    m.batch = row.positive_int("batch");
    m.prefill_ms = row.value(values[0]);
    m.tpot_ms = row.value(values[1]);
    m.tokens_per_s = row.value(values[2]);
    if (col.count("mla_splits_per_sm") && !row.cell("mla_splits_per_sm").empty()) {
      const int64_t v = row.positive_int("mla_splits_per_sm");
      if (v > 8) row.fail("mla_splits_per_sm", fmt::format("{} is not in 1..8", v));
      m.mla_splits_per_sm = int(v);
    }
    if (!m.prefill_ms && !m.tpot_ms && !m.tokens_per_s)
      throw UserError(at + ": no measured value (prefill_ms, tpot_ms and tokens_per_s are empty)");
    if (!seen.insert({static_cast<int>(m.model), m.context, m.batch}).second)
      throw UserError(fmt::format("{}: ({}, context {}, batch {}) was already measured above", at,
                                  row.cell("model"), m.context, m.batch));
    out.push_back(m);
  }
  if (col.empty()) throw UserError(where + ": empty (expected a header and rows)");
  if (out.empty()) throw UserError(where + ": a header but no rows");
  return out;
}

std::vector<Measured> read_measured_csv(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UserError(fmt::format("{}: cannot open the measured CSV", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_measured_csv(ss.str(), path);
}

}  // namespace kimi::inference
