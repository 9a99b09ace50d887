// Internal to trainer/sweep_spec*.cpp: the helpers with which load_sweep_spec (sweep_spec.cpp)
// and the readers of its grid, seeds, rows and when sections (sweep_spec_sections.cpp) turn
// YAML::Node into checked text, each error naming the file and line.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

#include "trainer/sweep.h"

namespace kimi::sweep_detail {

std::string where(const std::string& file, const YAML::Node& node);  // "file:line"

// The node's text; UserError naming `key` when it is not a single value.
std::string scalar(const YAML::Node& node, const std::string& key, const std::string& file);

// A number as it reads best in a directory name: 1.0e-3 -> 0.001, 5e-5 -> 5e-05, 300 -> 300.
std::string label_of_scalar(const std::string& text);

// Letters, digits and . _ + - stay; anything else (/, spaces, commas, '=') becomes '_'.
std::string filesystem_safe(std::string text);

// UserError when `key` is name or out_dir, which the sweep sets per point.
void check_not_reserved(const std::string& key, const std::string& what);

std::vector<SweepAxis> read_grid(const YAML::Node& grid, const std::string& file);

// `seeds: [0, 1]` is the last grid axis, train.seed, so the seeds of one setting sit together.
void add_seed_axis(SweepSpec& spec, const YAML::Node& seeds, const std::string& file);

// `rows: {label: [key=value, ...], ...}`: the first grid axis, `row`, in file order. A row may
// list no overrides (the base config as it is: a reference row).
SweepAxis read_rows(const YAML::Node& rows, const std::string& file);

// `when: [{match: {grid key: value, ...}, overrides: [key=value, ...]}, ...]`. Every matched
// key must be a grid key and every value one of its values, so a typo cannot match nothing.
std::vector<SweepCase> read_cases(const YAML::Node& when, const std::vector<SweepAxis>& grid,
                                  const std::string& file);

}  // namespace kimi::sweep_detail
