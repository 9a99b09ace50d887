// Sweep files with `rows:` (trainer/sweep.h): named override sets as the first grid axis, for
// settings that differ in several keys at once (the paper's Table 1), matched by `when` like any
// grid key, and refused in one line when malformed.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/tensor/error.h"
#include "trainer/sweep.h"

namespace kimi {
namespace {

namespace fs = std::filesystem;

std::string write_sweep(const std::string& name, const std::string& body) {
  const fs::path dir = fs::temp_directory_path() / "kimi_sweep_rows_test";
  fs::create_directories(dir);
  const fs::path file = dir / (name + ".yaml");
  std::ofstream(file) << body;
  return file.string();
}

std::string load_error(const std::string& body) {
  try {
    load_sweep_spec(write_sweep("bad", body));
    return "";
  } catch (const UserError& e) {
    return e.what();
  }
}

TEST(SweepRows, RowsAreTheFirstAxisAndBringTheirOwnOverrides) {
  const std::string file = write_sweep("rows", R"(
name: rows
overrides: [train.steps=3]
grid: {train.lr: [1.0e-3, 2.0e-3]}
rows:
  ref: []
  no_gate: [model.output_gate=none, train.steps=4]
seeds: [0]
when:
  - match: {row: no_gate, train.lr: 2.0e-3}
    overrides: [train.steps=5]
)");
  const SweepSpec spec = load_sweep_spec(file);
  std::vector<SweepPoint> points = expand_grid(spec);
  ASSERT_EQ(points.size(), 4u);
  EXPECT_EQ(points[0].name, "row=ref,lr=0.001,seed=0");
  EXPECT_EQ(points[3].name, "row=no_gate,lr=0.002,seed=0");
  EXPECT_EQ(points[3].group, "row=no_gate,lr=0.002");
  validate_points(spec, points);
  EXPECT_EQ(points[0].config.model.output_gate, "auto");
  EXPECT_EQ(points[0].config.train.steps, 3);
  EXPECT_EQ(points[2].config.model.output_gate, "none");
  EXPECT_EQ(points[2].config.train.steps, 4);
  EXPECT_EQ(points[3].config.train.steps, 5) << "the when case comes after the row";
  for (const auto& o : points[2].overrides) EXPECT_EQ(o.rfind("row=", 0), std::string::npos) << o;
  // The row overrides are part of the stored spec: editing one is a change of the sweep.
  const auto stored = spec_json(spec, points);
  SweepSpec edited = spec;
  edited.grid[0].row_overrides[1] = {"model.output_gate=swish", "train.steps=4"};
  std::vector<SweepPoint> edited_points = expand_grid(edited);
  validate_points(edited, edited_points);
  EXPECT_NE(spec_difference(stored, spec_json(edited, edited_points)), "");
}

TEST(SweepRows, MalformedRowsAreOneLineNamingTheRow) {
  EXPECT_NE(load_error("rows: [a, b]\n").find("rows must map row names to lists of key=value"),
            std::string::npos);
  EXPECT_NE(load_error("rows: {a: [model.mlp]}\n").find("rows.a: 'model.mlp' is not key=value"),
            std::string::npos);
  EXPECT_NE(load_error("rows: {'a/b': []}\n").find("row name 'a/b' must be letters"),
            std::string::npos);
  EXPECT_NE(load_error("rows: {a: [name=x]}\n").find("sets 'name', which the sweep sets"),
            std::string::npos);
  EXPECT_NE(load_error("rows: {a: []}\ngrid: {row: [1]}\n").find("rows and grid.row are both set"),
            std::string::npos);
  EXPECT_NE(load_error("rows: {a: []}\nwhen: [{match: {row: b}, overrides: [train.steps=2]}]\n")
                .find("when.match row: b is not one of the grid's values"),
            std::string::npos);
}

}  // namespace
}  // namespace kimi
