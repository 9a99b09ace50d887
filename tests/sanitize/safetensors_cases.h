// Hand-made broken safetensors files shared by tests/safetensors_test.cpp and the ASan + UBSan
// fuzz target tests/sanitize/safetensors_fuzz_test.cpp. Each case names the problem that the
// reader's one-line kimi::UserError must mention (besides the file's path).
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace kimi::io::testing {

// 8-byte little-endian header size (the real one unless overridden), header, data.
inline std::string make_file(const std::string& header, const std::string& data = "",
                             std::optional<uint64_t> size = std::nullopt) {
  const uint64_t n = size.value_or(header.size());
  std::string out;
  for (int i = 0; i < 8; ++i) out += static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

// A header with one tensor "t" whose entry is `entry`, and 16 data bytes.
inline std::string one_tensor(const std::string& entry) {
  return make_file("{\"t\": " + entry + "}", std::string(16, '\x01'));
}

struct BadCase {
  std::string label;   // a gtest-friendly name
  std::string bytes;   // the whole file
  std::string expect;  // a substring of the error message
};

// n nested arrays around a 1: [[[...[1]...]]] (issue 15: 10,000 levels overflowed the stack).
inline std::string nested(int n) { return std::string(n, '[') + "1" + std::string(n, ']'); }

inline std::vector<BadCase> bad_cases() {
  const std::string f32x4 = R"("dtype": "F32", "shape": [4])";
  const std::string too_deep = "header JSON nested deeper than 8 levels";
  return {
      {"EmptyFile", "", "file is empty (0 bytes)"},
      {"ShorterThan8Bytes", "abcde", "file is 5 bytes, too short for the 8-byte header size"},
      {"HeaderSizeBeyondFile", make_file("{}", "", 1000),
       "header size 1000 goes beyond the end of the file"},
      {"HeaderSizeAbsurd", make_file("{}", "", uint64_t{1} << 62), "is absurd"},
      {"HeaderSizeZero", make_file(""), "header is not valid JSON"},
      {"InvalidJson", make_file(R"({"t": {"dtype": )"), "header is not valid JSON"},
      {"InvalidUtf8", make_file("{\"\xff\xfe\": 1}"), "header is not valid JSON"},
      {"HeaderNotObject", make_file("[1, 2]"), "header is not a JSON object (got array)"},
      {"EntryNotObject", one_tensor("5"), "tensor 't': entry is not a JSON object"},
      {"MissingDtype", one_tensor(R"({"shape": [4], "data_offsets": [0, 16]})"),
       "tensor 't': missing 'dtype'"},
      {"MissingShape", one_tensor(R"({"dtype": "F32", "data_offsets": [0, 16]})"),
       "tensor 't': missing 'shape'"},
      {"MissingDataOffsets", one_tensor(R"({"dtype": "F32", "shape": [4]})"),
       "tensor 't': missing 'data_offsets'"},
      {"DtypeNotString", one_tensor(R"({"dtype": 7, "shape": [4], "data_offsets": [0, 16]})"),
       "'dtype' is not a string"},
      {"UnknownDtype", one_tensor(R"({"dtype": "U8", "shape": [16], "data_offsets": [0, 16]})"),
       "unsupported dtype 'U8'"},
      {"ShapeNotArray", one_tensor(R"({"dtype": "F32", "shape": "4", "data_offsets": [0, 16]})"),
       "'shape' is not an array"},
      {"DimNotInteger", one_tensor(R"({"dtype": "F32", "shape": [4.0], "data_offsets": [0, 16]})"),
       "dimension 0 is not a non-negative integer"},
      {"DimNegative", one_tensor(R"({"dtype": "F32", "shape": [2, -2], "data_offsets": [0, 16]})"),
       "dimension 1 is negative (-2)"},
      {"DimsOverflow",
       one_tensor(
           R"({"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 16]})"),
       "overflows the element count"},
      {"DimAbsurdBesideZero",
       one_tensor(
           R"({"dtype": "F32", "shape": [0, 18446744073709551615], "data_offsets": [0, 0]})"),
       "overflows the element count"},
      {"BytesOverflow",
       one_tensor(R"({"dtype": "F64", "shape": [4611686018427387904], "data_offsets": [0, 16]})"),
       "x F64 overflows the byte count"},
      {"RankAbsurd",
       one_tensor(
           R"({"dtype": "F32", "shape": [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,4], "data_offsets": [0, 16]})"),
       "rank 33 is absurd"},
      {"OffsetsNotArray", one_tensor("{" + f32x4 + R"(, "data_offsets": 16})"),
       "'data_offsets' is not an array of two non-negative integers"},
      {"OffsetsWrongLength", one_tensor("{" + f32x4 + R"(, "data_offsets": [0, 16, 32]})"),
       "'data_offsets' is not an array of two non-negative integers"},
      {"OffsetsNegative", one_tensor("{" + f32x4 + R"(, "data_offsets": [-16, 0]})"),
       "'data_offsets' is not an array of two non-negative integers"},
      {"OffsetsNotIntegers", one_tensor("{" + f32x4 + R"(, "data_offsets": ["0", "16"]})"),
       "'data_offsets' is not an array of two non-negative integers"},
      {"BeginAfterEnd", one_tensor(R"({"dtype": "F32", "shape": [0], "data_offsets": [16, 0]})"),
       "data_offsets begin 16 > end 0"},
      {"EndBeyondData", one_tensor(R"({"dtype": "F32", "shape": [8], "data_offsets": [0, 32]})"),
       "data_offsets end 32 is beyond the data area (16 bytes)"},
      {"EndFarBeyondData",
       one_tensor(
           R"({"dtype": "F32", "shape": [0], "data_offsets": [18446744073709551615, 18446744073709551615]})"),
       "is beyond the data area (16 bytes)"},
      {"ShapeTimesDtypeMismatch",
       one_tensor(R"({"dtype": "F32", "shape": [3], "data_offsets": [0, 16]})"),
       "shape [3] x F32 (4 bytes each) does not match data_offsets [0, 16) (16 bytes)"},
      {"OverlappingTensors",
       make_file(
           R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
           std::string(16, '\0')),
       "tensors 'a' [0, 8) and 'b' [4, 12) overlap"},
      {"NestedOverlap",
       make_file(
           R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
           std::string(16, '\0')),
       "tensors 'a' [0, 16) and 'b' [4, 8) overlap"},
      {"ShapeNested10000Deep",
       one_tensor(R"({"dtype": "F32", "shape": )" + nested(10000) +
                  R"(, "data_offsets": [0, 16]})"),
       too_deep},
      {"OffsetsNested10000Deep",
       one_tensor("{" + f32x4 + R"(, "data_offsets": )" + nested(10000) + "}"), too_deep},
      {"ShapeNestedJustTooDeep",  // 2 levels of header + 7 = 9
       one_tensor(R"({"dtype": "F32", "shape": )" + nested(7) + R"(, "data_offsets": [0, 16]})"),
       too_deep},
      {"UnclosedBrackets", make_file(std::string(10000, '[')), too_deep},
      {"ShapeNestedWithinLimit",  // 2 + 6 = 8 levels parse; the message quotes the value briefly
       one_tensor(R"({"dtype": "F32", "shape": )" + nested(6) + R"(, "data_offsets": [0, 16]})"),
       "dimension 0 is not a non-negative integer (got array [[[[[1]]]]])"},
      {"LongOffsetsQuotedBriefly",
       one_tensor("{" + f32x4 + R"(, "data_offsets": [")" + std::string(100000, 'x') + "\"]}"),
       "(got [\"xxxxxxxxxx"},
      {"MetadataNotObject", make_file(R"({"__metadata__": ["a"]})"),
       "'__metadata__' is not a JSON object (got array)"},
      {"MetadataValueNotString", make_file(R"({"__metadata__": {"lr": 0.1}})"),
       "metadata value 'lr' is not a string (got number)"},
  };
}

// A valid file: two tensors, an empty tensor, a scalar and metadata, header padded with spaces.
inline std::string valid_file() {
  std::string header = R"({"__metadata__": {"format": "pt", "note": "x"},)"
                       R"( "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},)"
                       R"( "ids": {"dtype": "I64", "shape": [1], "data_offsets": [16, 24]},)"
                       R"( "h": {"dtype": "F16", "shape": [2], "data_offsets": [24, 28]},)"
                       R"( "b": {"dtype": "BF16", "shape": [], "data_offsets": [28, 30]},)"
                       R"( "e": {"dtype": "F64", "shape": [3, 0], "data_offsets": [30, 30]},)"
                       R"( "i": {"dtype": "I32", "shape": [2], "data_offsets": [30, 38]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string data;
  for (int i = 0; i < 38; ++i) data += static_cast<char>(i * 37 + 11);
  return make_file(header, data);
}

inline void write_bytes(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A fresh folder under the system temp dir (removed by the caller).
inline std::filesystem::path make_temp_dir(const std::string& tag) {
  std::random_device rd;
  auto dir = std::filesystem::temp_directory_path() /
             ("kimi_" + tag + "_" + std::to_string(rd()) + std::to_string(rd()));
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace kimi::io::testing
