// Test helper: loads reference tensors from tests/golden (KIMI_GOLDEN_DIR, set by
// tests/CMakeLists.txt; provenance and layouts in tests/golden/README.md) through
// kimi::io::SafetensorsFile, and measures relative error the way flash-linear-attention's
// get_err_ratio does: ||x - ref|| / ||ref||.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "core/io/safetensors.h"

namespace kimi::test {

// The environment's KIMI_GOLDEN_DIR first: test binaries carried to another machine find the
// files where they were copied.
inline std::string golden_dir() {
  const char* env = std::getenv("KIMI_GOLDEN_DIR");
  return env && *env ? env : KIMI_GOLDEN_DIR;
}
inline std::string golden_path(const std::string& file) { return golden_dir() + "/" + file; }

// The golden files ship with the repository, so a missing one is a failure, never a skip:
// KIMI_REQUIRE_GOLDEN(file) fails the calling test (and returns from it) when the file is absent.
#define KIMI_REQUIRE_GOLDEN(file)                                            \
  do {                                                                       \
    if (!std::filesystem::exists(::kimi::test::golden_path(file)))           \
      GTEST_FAIL() << "golden file " << ::kimi::test::golden_path(file)      \
                   << " not found (tests/golden ships with the repository)"; \
  } while (0)
// The former name, kept for the tests that still use it; it fails like KIMI_REQUIRE_GOLDEN.
#define KIMI_SKIP_WITHOUT_GOLDEN(file) KIMI_REQUIRE_GOLDEN(file)

struct GoldenTensor {
  std::vector<double> data;
  std::vector<int64_t> shape;
};

// One open golden file; tensors converted to double on load.
class GoldenFile {
 public:
  explicit GoldenFile(const std::string& file)
      : f_(kimi::io::SafetensorsFile::open(golden_path(file))) {}
  bool contains(const std::string& name) const { return f_.contains(name); }
  GoldenTensor get(const std::string& name) const {
    return GoldenTensor{f_.read_f64(name), f_.info(name).shape};
  }
  const kimi::io::SafetensorsFile& file() const { return f_; }

 private:
  kimi::io::SafetensorsFile f_;
};

inline GoldenTensor load(const std::string& file, const std::string& name) {
  return GoldenFile(file).get(name);
}

// ||a - b|| / ||b||; NaN anywhere gives NaN (which fails every EXPECT_LT); sizes must agree.
template <class A, class B>
double rel_err(const A& a, const B& b) {
  if (a.size() != b.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double x = double(a[i]), y = double(b[i]);
    num += (x - y) * (x - y);
    den += y * y;
  }
  if (std::isnan(num)) return NAN;
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace kimi::test
