// Writes the libFuzzer seed corpus of the safetensors reader into the folder given as argv[1]
// (tests/fuzz/corpus/safetensors/ in the repository; ctest safetensors_fuzz_corpus_current fails
// when the committed files differ from what this program writes). Seeds: every hand-made
// broken file of tests/sanitize/safetensors_cases.h (10,000-deep nesting among them), plus
// valid files (one per dtype, unicode names, many tensors, one from our writer) and their
// truncations, so mutations start from both sides of every check.
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "core/io/safetensors.h"
#include "tests/sanitize/safetensors_cases.h"

namespace fs = std::filesystem;
using kimi::io::testing::make_file;
using kimi::io::testing::nested;
using kimi::io::testing::one_tensor;

namespace {

// Valid files and near-misses that safetensors_cases.h does not cover.
std::vector<std::pair<std::string, std::string>> extra_seeds() {
  const std::string valid = kimi::io::testing::valid_file();
  const std::string f32x4 = R"("dtype": "F32", "shape": [4], "data_offsets": [0, 16])";
  std::string many = "{";
  std::string many_data;
  for (int i = 0; i < 40; ++i) {
    many += (i ? ", " : "") + std::string("\"layer.") + std::to_string(i) +
            R"(.w": {"dtype": "I32", "shape": [1], "data_offsets": [)" + std::to_string(4 * i) +
            ", " + std::to_string(4 * i + 4) + "]}";
    many_data += std::string(4, static_cast<char>(i));
  }
  many += "}";
  std::vector<std::pair<std::string, std::string>> seeds;
  // One tiny valid file per dtype the reader supports (name: valid_<dtype>).
  for (const auto& [dtype, size] : std::vector<std::pair<std::string, int>>{
           {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}}) {
    const std::string n = std::to_string(3 * size);
    std::string lower = dtype;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    seeds.emplace_back("valid_" + lower,
                       make_file(R"({"x": {"dtype": ")" + dtype +
                                     R"(", "shape": [3], "data_offsets": [0, )" + n + "]}}",
                                 std::string(3 * size, '\x3c')));
  }
  std::vector<std::pair<std::string, std::string>> more = {
      {"valid_small", one_tensor("{" + f32x4 + "}")},
      {"valid_every_dtype", valid},
      {"valid_empty_header", make_file("{}")},
      {"valid_scalar", make_file(R"({"s": {"dtype": "F64", "shape": [], "data_offsets": [0, 8]}})",
                                 std::string(8, '\x3f'))},
      {"valid_many_tensors", make_file(many, many_data)},
      {"valid_unicode_names",
       make_file(
           R"({"\u00e9t\u00e9": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
           " \"\xe5\x90\x8d\xe5\x89\x8d\": {\"dtype\": \"F32\", \"shape\": [1], "
           "\"data_offsets\": [4, 8]}, \"\xf0\x9f\x98\x80.w\": {\"dtype\": \"F16\", "
           R"("shape": [2], "data_offsets": [8, 12]}, "tab\there\u0000": {"dtype": "I64",)"
           R"( "shape": [0], "data_offsets": [12, 12]}, "__metadata__": {"\u2603": "\u00ff"}})",
           std::string(12, '\x42'))},
      {"valid_trailing_bytes", one_tensor("{" + f32x4 + "}") + "trailing"},
      {"duplicate_names",
       make_file("{\"t\": {" + f32x4 + "}, \"t\": {" + f32x4 + "}}", std::string(16, '\x01'))},
      {"truncated_in_header", valid.substr(0, 60)},
      {"truncated_in_data", valid.substr(0, valid.size() - 5)},
      {"truncated_header_size", valid.substr(0, 7)},
      {"offsets_as_floats",
       one_tensor(R"({"dtype": "F32", "shape": [4], "data_offsets": [0.0, 16.0]})")},
      {"offsets_exponent",
       one_tensor(R"({"dtype": "F32", "shape": [4], "data_offsets": [0, 1.6e1]})")},
      {"offsets_near_2_63",
       one_tensor(
           R"({"dtype": "F32", "shape": [4], "data_offsets": [9223372036854775800, 9223372036854775816]})")},
      {"shape_near_2_63",
       one_tensor(R"({"dtype": "I64", "shape": [1152921504606846976], "data_offsets": [0, 16]})")},
      {"dtype_bool", one_tensor(R"({"dtype": "BOOL", "shape": [16], "data_offsets": [0, 16]})")},
      {"dtype_f8", one_tensor(R"({"dtype": "F8_E4M3", "shape": [16], "data_offsets": [0, 16]})")},
      {"nested_exactly_8_in_metadata", make_file(R"({"__metadata__": {"k": )" + nested(6) + "}}")},
      {"nested_9_objects", make_file(R"({"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":1}}}}}}}}})")},
      {"brackets_inside_strings",
       make_file("{\"__metadata__\": {\"note\": \"" + std::string(64, '[') + "\\\"" +
                 std::string(64, '{') + "\"}}")},
      {"bom_before_header", make_file("\xef\xbb\xbf{}")},
      {"nul_in_header", make_file(std::string("{\"t\":\0 1}", 9))},
      // LongOffsetsQuotedBriefly of safetensors_cases.h, at 3 KB instead of 100 KB (the corpus
      // stays small; the sanitize test runs the long one).
      {"long_string_in_offsets", one_tensor(R"({"dtype": "F32", "shape": [4], "data_offsets": [")" +
                                            std::string(3000, 'x') + "\"]}")},
  };
  seeds.insert(seeds.end(), more.begin(), more.end());
  return seeds;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: make_safetensors_corpus OUT_DIR\n";
    return 2;
  }
  const fs::path dir = argv[1];
  fs::create_directories(dir);
  std::vector<std::pair<std::string, std::string>> seeds = extra_seeds();
  for (const auto& c : kimi::io::testing::bad_cases()) {
    if (c.label != "LongOffsetsQuotedBriefly") seeds.emplace_back(c.label, c.bytes);
  }
  // Our own writer's layout (padding, order by element size).
  const std::vector<double> d = {1.5, -2.0, 3.25};
  const std::vector<uint16_t> h = {0x3c00, 0xc000};
  kimi::io::write_safetensors((dir / "writer.tmp").string(),
                              {{"a.f64", kimi::DType::kF64, {3}, d.data()},
                               {"c.bf16", kimi::DType::kBF16, {1, 2}, h.data()},
                               {"e.empty", kimi::DType::kF32, {0, 5}, nullptr}},
                              {{"format", "pt"}});
  fs::rename(dir / "writer.tmp", dir / "valid_from_writer");
  for (const auto& [name, bytes] : seeds) kimi::io::testing::write_bytes(dir / name, bytes);
  std::cout << seeds.size() + 1 << " seeds in " << dir.string() << "\n";
  return 0;
}
