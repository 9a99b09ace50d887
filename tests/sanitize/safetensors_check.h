// The property every safetensors input must have, shared by the ASan + UBSan mini-fuzz
// (tests/sanitize/safetensors_fuzz_test.cpp) and the libFuzzer target (tests/fuzz/): opening
// the file either fails with a one-line kimi::UserError naming the file, or succeeds with every
// tensor's bytes being exactly the file's bytes at its data_offsets (so no pointer can lie
// outside the mapping) and every read giving product(shape) values.
#pragma once

#include <cstdint>
#include <cstring>
#include <exception>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/io/safetensors.h"
#include "core/tensor/error.h"

namespace kimi::io::testing {

struct OpenOutcome {
  bool opened = false;  // false: refused with a proper kimi::UserError
  std::string problem;  // empty unless the property above is broken
};

// Opens `path`, whose content is `bytes`, and reads every tensor.
inline OpenOutcome check_open(const std::string& path, std::string_view bytes) {
  OpenOutcome out;
  try {
    const SafetensorsFile f = SafetensorsFile::open(path);
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);  // little-endian host (x86-64 / aarch64)
    // The reader accepted the header, so it is valid JSON nested at most 8 levels: safe to parse
    // again here, independently of the reader.
    const auto header = nlohmann::json::parse(bytes.data() + 8, bytes.data() + 8 + n);
    for (const std::string& name : f.names()) {
      const TensorInfo& t = f.info(name);
      const auto& offsets = header.at(name).at("data_offsets");
      const uint64_t begin = offsets.at(0).get<uint64_t>(), end = offsets.at(1).get<uint64_t>();
      const std::string where = "tensor '" + name + "': ";
      if (t.nbytes != end - begin) return {true, where + "nbytes differs from data_offsets"};
      if (8 + n + end > bytes.size()) return {true, where + "data_offsets beyond the file"};
      if (t.nbytes && std::memcmp(t.data, bytes.data() + 8 + n + begin, t.nbytes) != 0)
        return {true, where + "data does not point at the bytes of data_offsets"};
      const size_t count = f.read_f64(name).size();
      if (f.read_f32(name).size() != count) return {true, where + "read_f32 / read_f64 differ"};
      if (count * dtype_size(t.dtype) != t.nbytes)
        return {true, where + "element count x dtype size != nbytes"};
      if ((t.dtype == DType::kI32 || t.dtype == DType::kI64) && f.read_i64(name).size() != count)
        return {true, where + "read_i64 / read_f64 differ"};
    }
    out.opened = true;
  } catch (const kimi::UserError& e) {
    const std::string msg = e.what();
    if (msg.rfind(path + ": ", 0) != 0) out.problem = "error does not start with the path: " + msg;
    if (msg.find('\n') != std::string::npos) out.problem = "error is not one line: " + msg;
  } catch (const std::exception& e) {
    out.problem = std::string("not a kimi::UserError: ") + e.what();
  }
  return out;
}

}  // namespace kimi::io::testing
