// `kimi-lab run --ranks N` / `--gpus N`: a data-parallel run on this host (its CPU, or one GPU a
// rank), as torchrun would start it.
#pragma once

#include <string>
#include <vector>

namespace kimi::cli {

// Starts `argv` (this binary's `run` without --ranks) N times with RANK, LOCAL_RANK,
// WORLD_SIZE, MASTER_ADDR=127.0.0.1 and MASTER_PORT (a free port) set, waits for all of them,
// and throws UserError (one line naming the ranks) if any failed. A `backend` ("nccl" for
// --gpus) is passed as KIMI_DIST_BACKEND, which makes even one rank a data-parallel run.
void run_ranks(const std::vector<std::string>& argv, int ranks, const std::string& backend = "");

}  // namespace kimi::cli
