// Tests of core/io/safetensors (reader, atomic writer) and the bf16 / f16 conversions:
// round trips for every dtype, the golden files, and every hardening case of
// tests/sanitize/safetensors_cases.h (also run under ASan + UBSan by kimi_safetensors_asan).
#include "core/io/safetensors.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/tensor/dtype.h"
#include "core/tensor/error.h"
#include "tests/sanitize/safetensors_cases.h"

namespace kimi::io {
namespace {

namespace fs = std::filesystem;
using testing::bad_cases;
using testing::BadCase;
using testing::make_temp_dir;
using testing::write_bytes;

class TempDir {
 public:
  TempDir() : dir_(make_temp_dir("st_test")) {}
  ~TempDir() { fs::remove_all(dir_); }
  std::string file(const std::string& name) const { return (dir_ / name).string(); }
  std::vector<std::string> list() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  fs::path dir_;
};

// Runs fn and returns the kimi::UserError message (fails the test if none is thrown).
template <typename Fn>
std::string user_error(Fn fn) {
  try {
    fn();
  } catch (const kimi::UserError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected kimi::UserError";
  return "";
}

TEST(Safetensors, ReadsGoldenLinearOps) {
  // tests/golden ships with the repository: a missing file fails, it does not skip.
  ASSERT_TRUE(fs::exists(KIMI_GOLDEN_DIR "/linear_ops_small.safetensors"))
      << "golden file absent: " << KIMI_GOLDEN_DIR "/linear_ops_small.safetensors";
  const SafetensorsFile f = SafetensorsFile::open(KIMI_GOLDEN_DIR "/linear_ops_small.safetensors");
  EXPECT_EQ(f.info("kda.q").shape, (std::vector<int64_t>{2, 100, 2, 32}));
  EXPECT_EQ(f.info("kda.v").shape, (std::vector<int64_t>{2, 100, 2, 48}));
  EXPECT_EQ(f.info("kda.g").shape, (std::vector<int64_t>{2, 100, 2, 32}));
  EXPECT_EQ(f.info("gdn.g").shape, (std::vector<int64_t>{2, 100, 2}));
  EXPECT_EQ(f.info("kda.h0").shape, (std::vector<int64_t>{2, 2, 32, 48}));
  EXPECT_EQ(f.info("kda.q").dtype, DType::kF32);
  EXPECT_FALSE(f.metadata().empty());
  // README: g is log-space decay (<= 0), beta in (0, 1).
  for (float g : f.read_f32("kda.g")) ASSERT_LE(g, 0.0f);
  for (double b : f.read_f64("gdn.beta")) ASSERT_TRUE(b > 0.0 && b < 1.0);
  EXPECT_EQ(f.read_f32("kda.q").size(), 2u * 100 * 2 * 32);
  const std::vector<std::string> names = f.names();
  for (size_t i = 1; i < names.size(); ++i)
    EXPECT_LE(f.info(names[i - 1]).data, f.info(names[i]).data) << "names() not in file order";
}

TEST(Safetensors, ReadsGoldenIntegerTensors) {
  const std::string path = KIMI_GOLDEN_DIR "/kimi_tiny/reference.safetensors";
  ASSERT_TRUE(fs::exists(path)) << "golden file absent: " << path;
  const SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.info("input_ids").dtype, DType::kI64);
  EXPECT_EQ(f.info("input_ids").shape, (std::vector<int64_t>{2, 80}));
  for (int64_t id : f.read_i64("input_ids")) ASSERT_TRUE(id >= 0 && id < 128);
  EXPECT_EQ(f.info("logits").shape, (std::vector<int64_t>{2, 80, 128}));
}

TEST(Safetensors, RoundTripsEveryDtypeAndMetadata) {
  TempDir tmp;
  const std::vector<float> f32 = {1.5f, -2.25f, 3.0f, 0.0f, -0.0f, 1e-30f};
  const std::vector<double> f64 = {1.0 / 3.0, -1e300};
  const std::vector<uint16_t> bf16 = {float_to_bf16(1.0f), float_to_bf16(-3.5f),
                                      float_to_bf16(0.15625f)};
  const std::vector<uint16_t> f16 = {float_to_f16(0.5f), float_to_f16(-65504.0f)};
  const std::vector<int32_t> i32 = {7, -8, 2147483647};
  const std::vector<int64_t> i64 = {int64_t{1} << 40, -1};
  const std::map<std::string, std::string> meta = {
      {"format", "pt"}, {"config", "{\"a\": [1, 2]}\n"}, {"empty", ""}};
  const std::string path = tmp.file("all.safetensors");
  write_safetensors(path,
                    {{"x.f16", DType::kF16, {2}, f16.data()},
                     {"x.f32", DType::kF32, {2, 3}, f32.data()},
                     {"x.bf16", DType::kBF16, {3}, bf16.data()},
                     {"x.i32", DType::kI32, {3, 1}, i32.data()},
                     {"x.f64", DType::kF64, {2}, f64.data()},
                     {"x.i64", DType::kI64, {2}, i64.data()},
                     {"x.empty", DType::kF32, {4, 0, 2}, nullptr},
                     {"x.scalar", DType::kF64, {}, f64.data()}},
                    meta);
  const SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.metadata(), meta);
  EXPECT_EQ(f.names().size(), 8u);
  EXPECT_EQ(f.read_f32("x.f32"), f32);
  EXPECT_EQ(f.info("x.f32").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f.read_f64("x.f64"), f64);
  EXPECT_EQ(f.read_f32("x.bf16"), (std::vector<float>{1.0f, -3.5f, 0.15625f}));
  EXPECT_EQ(f.read_f64("x.f16"), (std::vector<double>{0.5, -65504.0}));
  EXPECT_EQ(f.read_i64("x.i32"), (std::vector<int64_t>{7, -8, 2147483647}));
  EXPECT_EQ(f.read_f64("x.i32"), (std::vector<double>{7, -8, 2147483647}));
  EXPECT_EQ(f.read_i64("x.i64"), i64);
  EXPECT_EQ(f.info("x.empty").nbytes, 0u);
  EXPECT_EQ(f.info("x.empty").shape, (std::vector<int64_t>{4, 0, 2}));
  EXPECT_TRUE(f.read_f32("x.empty").empty());
  EXPECT_EQ(f.read_f64("x.scalar"), (std::vector<double>{1.0 / 3.0}));
  EXPECT_TRUE(f.info("x.scalar").shape.empty());
  EXPECT_TRUE(f.contains("x.i64"));
  EXPECT_FALSE(f.contains("x.nope"));
  EXPECT_EQ(f.path(), path);
  // Layout: header a multiple of 8, every tensor aligned to its element size, no gaps.
  for (const auto& name : f.names()) {
    const TensorInfo& t = f.info(name);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % dtype_size(t.dtype), 0u) << name;
  }
}

TEST(Safetensors, MoveKeepsTensorsValid) {
  TempDir tmp;
  const std::vector<float> v = {1, 2, 3};
  write_safetensors(tmp.file("m.safetensors"), {{"v", DType::kF32, {3}, v.data()}});
  SafetensorsFile a = SafetensorsFile::open(tmp.file("m.safetensors"));
  SafetensorsFile b = std::move(a);
  EXPECT_EQ(b.read_f32("v"), v);
  SafetensorsFile c = SafetensorsFile::open(tmp.file("m.safetensors"));
  c = std::move(b);
  EXPECT_EQ(c.read_f32("v"), v);
  // metadata() of a temporary is a copy, so this reference does not dangle.
  const auto& meta = SafetensorsFile::open(tmp.file("m.safetensors")).metadata();
  EXPECT_TRUE(meta.empty());
}

TEST(Safetensors, AtomicWriteReplacesWholeAndLeavesNoTempFile) {
  TempDir tmp;
  const std::string path = tmp.file("ckpt.safetensors");
  const std::vector<double> big(10000, 1.0);
  write_safetensors(path, {{"big", DType::kF64, {10000}, big.data()}}, {{"step", "1"}});
  const auto big_size = fs::file_size(path);
  const std::vector<int32_t> small = {5};
  write_safetensors(path, {{"small", DType::kI32, {1}, small.data()}}, {{"step", "2"}});
  EXPECT_LT(fs::file_size(path), big_size);
  EXPECT_EQ(tmp.list(), std::vector<std::string>{"ckpt.safetensors"});
  const SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.names(), std::vector<std::string>{"small"});
  EXPECT_EQ(f.metadata().at("step"), "2");
  EXPECT_EQ(f.read_i64("small"), std::vector<int64_t>{5});
}

TEST(Safetensors, WriteErrorsNameTheFile) {
  TempDir tmp;
  const float x = 1;
  const std::string missing_dir = tmp.file("no/such/dir/out.safetensors");
  std::string msg = user_error([&] {
    write_safetensors(missing_dir, {{"x", DType::kF32, {1}, &x}});
  });
  EXPECT_NE(msg.find(missing_dir), std::string::npos) << msg;
  msg = user_error([&] {
    write_safetensors(tmp.file("d.safetensors"),
                      {{"x", DType::kF32, {1}, &x}, {"x", DType::kF32, {1}, &x}});
  });
  EXPECT_NE(msg.find("duplicate tensor name 'x'"), std::string::npos) << msg;
  msg = user_error([&] {
    write_safetensors(tmp.file("n.safetensors"), {{"x", DType::kF32, {-1}, &x}});
  });
  EXPECT_NE(msg.find("negative dimension"), std::string::npos) << msg;
  EXPECT_EQ(tmp.list(), std::vector<std::string>{});
}

TEST(Safetensors, ReadsHandMadeValidFile) {
  TempDir tmp;
  const std::string path = tmp.file("valid.safetensors");
  write_bytes(path, testing::valid_file());
  const SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.names(), (std::vector<std::string>{"w", "ids", "h", "b", "e", "i"}));
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.info("e").nbytes, 0u);
  EXPECT_EQ(f.read_f64("b").size(), 1u);
  EXPECT_EQ(f.read_i64("i").size(), 2u);
  // A header that is just "{}" is a valid file without tensors.
  write_bytes(path, testing::make_file("{}  "));
  EXPECT_TRUE(SafetensorsFile::open(path).names().empty());
}

TEST(Safetensors, LookupErrorsNameFileAndTensor) {
  TempDir tmp;
  const std::string path = tmp.file("v.safetensors");
  write_bytes(path, testing::valid_file());
  const SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(user_error([&] { f.info("nope"); }), path + ": no tensor 'nope'");
  EXPECT_EQ(user_error([&] { f.read_i64("w"); }),
            path + ": tensor 'w' is F32, not an integer dtype (I32, I64)");
}

TEST(Safetensors, MissingFileIsAUserError) {
  TempDir tmp;
  const std::string path = tmp.file("absent.safetensors");
  EXPECT_EQ(user_error([&] { SafetensorsFile::open(path); }),
            path + ": cannot open file: No such file or directory");
  const std::string dir = tmp.file("");
  EXPECT_NE(user_error([&] { SafetensorsFile::open(dir); }).find("not a regular file"),
            std::string::npos);
}

}  // namespace
namespace testing {
// gtest prints the case by its label (the default would dump the struct's bytes).
void PrintTo(const BadCase& c, std::ostream* os) { *os << c.label; }
}  // namespace testing
namespace {

class SafetensorsBadFile : public ::testing::TestWithParam<BadCase> {};

TEST_P(SafetensorsBadFile, RejectsWithOneClearLine) {
  TempDir tmp;
  const BadCase& c = GetParam();
  const std::string path = tmp.file(c.label + ".safetensors");
  write_bytes(path, c.bytes);
  const std::string msg = user_error([&] { SafetensorsFile::open(path); });
  EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
  EXPECT_NE(msg.find(c.expect), std::string::npos)
      << "message: " << msg << "\nexpected: " << c.expect;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  EXPECT_LT(msg.size(), path.size() + 400) << "quotes too much of the header";
}

// Issue 15 at full size: a million nested arrays (2 MB of header) overflowed the default 8 MB
// stack in Release builds (10,000 levels did so on smaller stacks and under ASan).
TEST(Safetensors, MillionLevelNestingIsOneClearLine) {
  TempDir tmp;
  const std::string path = tmp.file("deep.safetensors");
  write_bytes(path, testing::one_tensor(R"({"dtype": "F32", "shape": [4], "data_offsets": )" +
                                        testing::nested(1'000'000) + "}"));
  EXPECT_EQ(user_error([&] { SafetensorsFile::open(path); }),
            path + ": header JSON nested deeper than 8 levels");
}

// The nesting cap counts brackets outside strings only: brackets in names, metadata and
// escaped quotes do not reject a valid file.
TEST(Safetensors, BracketsInStringsDoNotCountAsNesting) {
  TempDir tmp;
  const std::string deep(50, '[');
  const std::string path = tmp.file("brackets.safetensors");
  write_bytes(path, testing::make_file(R"({"__metadata__": {"note": "\"{)" + deep +
                                           R"("},)"
                                           R"( "t)" +
                                           deep +
                                           R"(": {"dtype": "F32", "shape": [1],)"
                                           R"( "data_offsets": [0, 4]}})",
                                       std::string(4, '\0')));
  const SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.metadata().at("note"), "\"{" + deep);
  EXPECT_EQ(f.info("t" + deep).shape, std::vector<int64_t>{1});
}

INSTANTIATE_TEST_SUITE_P(Hardening, SafetensorsBadFile, ::testing::ValuesIn(bad_cases()),
                         [](const ::testing::TestParamInfo<BadCase>& i) { return i.param.label; });

TEST(Safetensors, Bf16Conversion) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(float_to_bf16(-2.0f), 0xc000);
  EXPECT_EQ(float_to_bf16(1.0f + 1.0f / 256), 0x3f80);  // tie -> even
  EXPECT_EQ(float_to_bf16(1.0f + 3.0f / 256), 0x3f82);  // tie -> even (up)
  EXPECT_EQ(float_to_bf16(1.0f + 1.5f / 256), 0x3f81);  // nearest
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::nanf("")))));
  EXPECT_EQ(bf16_to_float(float_to_bf16(INFINITY)), INFINITY);
  for (uint32_t h = 0; h < 0x10000; ++h) {  // every bf16 survives float and back
    const float f = bf16_to_float(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_bf16(f), h) << std::hex << h;
  }
}

TEST(Safetensors, F16Conversion) {
  EXPECT_EQ(f16_to_float(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_float(0xc000), -2.0f);
  EXPECT_EQ(f16_to_float(0x7bff), 65504.0f);
  EXPECT_EQ(f16_to_float(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(f16_to_float(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(f16_to_float(0x0400), std::ldexp(1.0f, -14));  // smallest normal
  EXPECT_EQ(f16_to_float(0x7c00), INFINITY);
  EXPECT_EQ(f16_to_float(0xfc00), -INFINITY);
  EXPECT_TRUE(std::isnan(f16_to_float(0x7e00)));
  EXPECT_TRUE(std::signbit(f16_to_float(0x8000)));
  EXPECT_EQ(float_to_f16(65519.0f), 0x7bff);
  EXPECT_EQ(float_to_f16(65520.0f), 0x7c00);  // rounds to infinity
  EXPECT_EQ(float_to_f16(1e10f), 0x7c00);
  EXPECT_EQ(float_to_f16(std::ldexp(1.0f, -25)), 0x0000);         // tie -> even (zero)
  EXPECT_EQ(float_to_f16(std::ldexp(3.0f, -26)), 0x0001);         // 0.75 ulp -> 1 ulp
  EXPECT_EQ(float_to_f16(std::ldexp(3.0f, -25)), 0x0002);         // 1.5 ulp tie -> even
  EXPECT_EQ(float_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie -> even
  EXPECT_EQ(float_to_f16(1.0f + std::ldexp(3.0f, -11)), 0x3c02);  // tie -> even (up)
  EXPECT_EQ(float_to_f16(std::ldexp(1023.5f, -24)), 0x0400);      // subnormal rounds to normal
  EXPECT_TRUE(std::isnan(f16_to_float(float_to_f16(std::nanf("")))));
  for (uint32_t h = 0; h < 0x10000; ++h) {  // every f16 survives float and back
    const float f = f16_to_float(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_f16(f), h) << std::hex << h;
  }
}

}  // namespace
}  // namespace kimi::io
