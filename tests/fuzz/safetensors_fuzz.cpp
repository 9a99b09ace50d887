// libFuzzer target for the safetensors reader (core/io/safetensors*.cpp), built with clang++
// -fsanitize=fuzzer,address,undefined when KIMI_LAB_FUZZ=ON (README "Tests"). Each input
// is a whole file: it goes into an in-memory file (memfd, so no disk traffic) that the reader
// opens by its /proc path. Any input must give a clean one-line kimi::UserError or a file whose
// tensors all lie inside the data area (tests/sanitize/safetensors_check.h); otherwise abort().
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "tests/sanitize/safetensors_check.h"

namespace {

// One memfd for the whole run, rewritten for each input.
struct MemFile {
  int fd = memfd_create("kimi_safetensors_fuzz", 0);
  std::string path = "/proc/self/fd/" + std::to_string(fd);

  void write_all(const uint8_t* data, size_t size) const {
    if (fd < 0 || ftruncate(fd, 0) != 0) std::abort();
    for (size_t done = 0; done < size;) {
      const ssize_t n = pwrite(fd, data + done, size - done, static_cast<off_t>(done));
      if (n <= 0) std::abort();
      done += static_cast<size_t>(n);
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const MemFile file;
  file.write_all(data, size);
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const kimi::io::testing::OpenOutcome r = kimi::io::testing::check_open(file.path, bytes);
  if (!r.problem.empty()) {
    std::fprintf(stderr, "safetensors fuzz: %s\n", r.problem.c_str());
    std::abort();
  }
  return 0;
}
