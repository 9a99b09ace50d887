// `kimi-lab version`: the version and what this binary was built with.
#include <fmt/format.h>

#include "core/tensor/device_memory.h"
#include "tools/cli/commands.h"

namespace kimi::cli {

void register_version(CLI::App& app) {
  auto* cmd = app.add_subcommand("version", "Print the version and the enabled backends");
  cmd->callback([] {
    const char* cuda = !cuda_built() ? "off" : cuda_available() ? "on" : "built, no device";
    fmt::print("kimi-lab {} (cpu: Eigen; cuda: {})\n", KIMI_LAB_VERSION, cuda);
  });
}

}  // namespace kimi::cli
