// `kimi-lab run --ranks N`: a data-parallel run on this host's CPU, as torchrun would start it.
#pragma once

#include <string>
#include <vector>

namespace kimi::cli {

// Starts `argv` (this binary's `run` without --ranks) N times with RANK, LOCAL_RANK,
// WORLD_SIZE, MASTER_ADDR=127.0.0.1 and MASTER_PORT (a free port) set, waits for all of them,
// and throws UserError (one line naming the ranks) if any failed.
void run_ranks(const std::vector<std::string>& argv, int ranks);

}  // namespace kimi::cli
