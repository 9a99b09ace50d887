// What a run holds while it trains (its config, directory and lock, task, eval sets, model,
// optimizer, rank) and open_session(), which makes it from a RunRequest: a new run directory,
// or a resumed one after every check that must pass before anything in it is written.
// Internal to trainer/: trainer.cpp and train_loop.cpp train over it.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/dist/communicator.h"
#include "core/optim/optimizer.h"
#include "models/language_model.h"
#include "tasks/eval_set.h"
#include "tasks/task.h"
#include "trainer/config.h"
#include "trainer/dir_lock.h"
#include "trainer/trainer.h"

namespace kimi {

struct Session {
  RunConfig cfg;
  std::string dir;
  DirLock lock;  // held for the whole run: a second process on this directory is refused
  std::string run_id;
  std::vector<std::string> removed_temp_files;
  bool resumed_from_scratch = false;  // --resume found no checkpoint (copied without them)
  Device device = Device::kCPU;
  std::unique_ptr<tasks::Task> task;
  std::vector<tasks::EvalSet> eval_sets;
  tasks::SequenceFilter filter;
  std::unique_ptr<models::LanguageModel> model;
  std::unique_ptr<optim::Optimizer> opt;  // AdamW; Zero1AdamW in a data-parallel run
  // Set in a data-parallel run (WORLD_SIZE > 1). Only rank 0 (root) writes the run directory.
  dist::Communicator* comm = nullptr;
  bool root = true;
  int64_t start_step = 0;
  std::string last_checkpoint;
  std::optional<double> checkpoint_loss;  // the loss stored with the checkpoint resumed from
};

// Resolves the config (with the request's overrides), checks and locks the run directory (new:
// fresh or --out; resumed: not finished, overrides allowed on resume, checkpoint loaded), then
// builds the task, eval sets, model on its device and optimizer. One UserError line on bad input,
// before the directory is written.
Session open_session(const RunRequest& req, dist::Communicator* comm);

}  // namespace kimi
