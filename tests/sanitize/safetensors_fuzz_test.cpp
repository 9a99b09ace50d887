// core/io/safetensors*.cpp under ASan + UBSan (target kimi_safetensors_asan, ctest
// safetensors_asan): every hand-made broken file of safetensors_cases.h, then a deterministic
// mini-fuzz of seeded byte mutations / truncations of valid files. Every outcome must be a clean
// kimi::UserError or a file whose tensors all lie inside the data area.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "core/io/safetensors.h"
#include "core/tensor/error.h"
#include "tests/sanitize/safetensors_cases.h"
#include "tests/sanitize/safetensors_check.h"

namespace kimi::io {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path dir = testing::make_temp_dir("st_fuzz");
  ~TempDir() { fs::remove_all(dir); }
};

// Opens `path` (a copy of `bytes`) and reads every tensor (tests/sanitize/safetensors_check.h).
// Returns true on success, false on a clean kimi::UserError; anything else fails the test.
bool open_and_read_all(const std::string& path, const std::string& bytes) {
  const testing::OpenOutcome r = testing::check_open(path, bytes);
  EXPECT_EQ(r.problem, "");
  return r.opened;
}

TEST(SafetensorsAsan, HardeningCases) {
  TempDir tmp;
  for (const testing::BadCase& c : testing::bad_cases()) {
    const std::string path = (tmp.dir / (c.label + ".safetensors")).string();
    testing::write_bytes(path, c.bytes);
    try {
      SafetensorsFile::open(path);
      ADD_FAILURE() << c.label << ": no error";
    } catch (const kimi::UserError& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
      EXPECT_NE(msg.find(c.expect), std::string::npos) << c.label << ": " << msg;
    }
  }
  try {
    SafetensorsFile::open((tmp.dir / "absent.safetensors").string());
    ADD_FAILURE() << "absent file opened";
  } catch (const kimi::UserError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot open file"), std::string::npos) << e.what();
  }
}

// A second valid seed, written by our own writer (metadata, every dtype, an empty tensor).
std::string writer_seed(const fs::path& dir) {
  const std::vector<double> d = {1.5, -2.0, 3.25};
  const std::vector<int32_t> i = {1, -2, 3, 4};
  const std::vector<uint16_t> h = {0x3c00, 0xc000};
  const std::string path = (dir / "seed.safetensors").string();
  write_safetensors(path,
                    {{"a.f64", DType::kF64, {3}, d.data()},
                     {"b.i32", DType::kI32, {2, 2}, i.data()},
                     {"c.f16", DType::kF16, {2}, h.data()},
                     {"d.bf16", DType::kBF16, {1, 2}, h.data()},
                     {"e.empty", DType::kF32, {0, 5}, nullptr},
                     {"f.i64", DType::kI64, {1}, d.data()}},
                    {{"format", "pt"}, {"about", "fuzz seed"}});
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// One random mutation: flips, digit swaps inside the header, byte insertions / deletions,
// truncations, header-size rewrites.
std::string mutate(std::string s, std::mt19937_64& rng) {
  auto pick = [&](size_t n) { return n ? static_cast<size_t>(rng() % n) : 0; };
  const size_t header_end =
      std::min(s.size(), size_t{8} + static_cast<uint8_t>(s[0]) + 256 * static_cast<uint8_t>(s[1]));
  const int rounds = 1 + static_cast<int>(rng() % 3);
  for (int r = 0; r < rounds && !s.empty(); ++r) {
    switch (rng() % 6) {
      case 0: s[pick(s.size())] ^= static_cast<char>(1u << (rng() % 8)); break;
      case 1: s[pick(std::min(s.size(), header_end))] = "0123456789-[]{},\":. e"[rng() % 21]; break;
      case 2: {  // change a digit in the header: keeps the JSON valid, breaks the semantics
        for (int tries = 0; tries < 50; ++tries) {
          const size_t p = 8 + pick(header_end > 8 ? header_end - 8 : 1);
          if (p < s.size() && s[p] >= '0' && s[p] <= '9') {
            s[p] = static_cast<char>('0' + rng() % 10);
            break;
          }
        }
        break;
      }
      case 3: s.resize(pick(s.size() + 1)); break;
      case 4:
        s.insert(s.begin() + static_cast<std::ptrdiff_t>(pick(s.size() + 1)),
                 static_cast<char>(rng()));
        break;
      case 5: s[pick(8)] = static_cast<char>(rng()); break;
    }
  }
  return s;
}

TEST(SafetensorsAsan, SeededMutationFuzz) {
  TempDir tmp;
  const std::vector<std::string> seeds = {testing::valid_file(), writer_seed(tmp.dir)};
  const std::string path = (tmp.dir / "fuzz.safetensors").string();
  for (const std::string& seed : seeds) {
    testing::write_bytes(path, seed);
    ASSERT_TRUE(open_and_read_all(path, seed)) << "seed file must be valid";
  }
  std::mt19937_64 rng(20240611);
  int ok = 0, rejected = 0;
  constexpr int kIterations = 30000;
  for (int it = 0; it < kIterations; ++it) {
    const std::string bytes = mutate(seeds[it % seeds.size()], rng);
    fs::remove(path);  // a fresh file: ext4 flushes a file rewritten through truncation on close
    testing::write_bytes(path, bytes);
    (open_and_read_all(path, bytes) ? ok : rejected)++;
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << "iteration " << it << " (seed 20240611)";
      break;
    }
  }
  // Both outcomes must occur, or the fuzz is not exercising anything.
  EXPECT_GT(ok, kIterations / 50);
  EXPECT_GT(rejected, kIterations / 4);
  std::printf("[fuzz] %d mutated files: %d opened and read, %d rejected cleanly\n", kIterations, ok,
              rejected);
}

}  // namespace
}  // namespace kimi::io
