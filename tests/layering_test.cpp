// The layering of the source tree, checked on every #include "..." of core/, models/, tasks/,
// trainer/, inference/ and tools/cli/: a file may include its own folder and any lower layer,
// never a higher one, and never a sibling of its own level (core/cpu and core/cuda do not include
// each other; neither do models and tasks, trainer and inference, nor core/nn, core/optim and
// core/io). The order
// (CMakeLists.txt builds one library per layer or group along it):
//   0 core/kernels   1 core/tensor   2 core/backend   3 core/cpu, core/cuda   4 core/autograd
//   5 core/ops   6 core/nn, core/optim, core/io, core/dist   7 models, tasks   8 trainer, inference
//   9 tools/cli
// A deliberate break is listed in kExceptions with its reason; an exception that no longer
// matches any include fails too, so the list cannot go stale.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace {

namespace fs = std::filesystem;

struct Layer {
  const char* dir;  // relative to the repository root
  int level;
};

// Longest prefix wins, so nested folders could be given their own level.
constexpr Layer kLayers[] = {
    {"core/kernels", 0},
    {"core/tensor", 1},
    {"core/backend", 2},
    {"core/cpu", 3},
    {"core/cuda", 3},
    {"core/autograd", 4},
    {"core/ops", 5},
    {"core/nn", 6},
    {"core/optim", 6},
    {"core/io", 6},
    {"core/dist", 6},
    {"models", 7},
    {"tasks", 7},
    {"trainer", 8},
    {"inference", 8},
    {"tools/cli", 9},
    // The NCCL transport implements core/dist's interface on the CUDA runtime: above both.
    {"core/cuda/dist", 7},
};

struct Exception {
  const char* file;      // the including file, relative to the repository root
  const char* included;  // exactly as written in the #include
  const char* reason;
};

// Keep this short; each entry needs a reason that says why the dependency is the right one.
constexpr Exception kExceptions[] = {
    {"core/optim/optimizer.h", "core/nn/module.h",
     "optimizers take the parameter list type nn::NamedTensors (Module::named_parameters()); "
     "core/nn never includes core/optim, so the two stay acyclic"},
    {"core/autograd/autograd.cpp", "core/ops/ops.h",
     "the engine accumulates gradients and reduces broadcasts with the add and sum ops (one "
     "definition of that math, on every device); ops record into the tape. The tape and the ops "
     "are one unit of kimi_core, kept in two folders; the tape's header includes no op"},
};

const Layer* layer_of(const std::string& path) {
  const Layer* best = nullptr;
  size_t best_len = 0;
  for (const Layer& l : kLayers) {
    const std::string dir = l.dir;
    const bool inside = path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                        path[dir.size()] == '/';
    if (inside && dir.size() > best_len) best = &l, best_len = dir.size();
  }
  return best;
}

// The quoted include of a line, or "" (angle-bracket includes are third-party or system).
std::string quoted_include(const std::string& line) {
  size_t i = line.find_first_not_of(" \t");
  if (i == std::string::npos || line[i] != '#') return "";
  i = line.find_first_not_of(" \t", i + 1);
  if (i == std::string::npos || line.compare(i, 7, "include") != 0) return "";
  const size_t open = line.find('"', i + 7);
  if (open == std::string::npos) return "";
  const size_t close = line.find('"', open + 1);
  return close == std::string::npos ? "" : line.substr(open + 1, close - open - 1);
}

bool is_source(const fs::path& p) {
  const std::string e = p.extension().string();
  return e == ".h" || e == ".cpp" || e == ".cu" || e == ".cuh";
}

struct Scan {
  std::vector<std::string> offences, unlayered;
  std::set<std::pair<std::string, std::string>> exceptions_used;
  int files = 0, includes = 0;
};

Scan scan_tree() {
  const fs::path root = KIMI_SOURCE_DIR;
  Scan s;
  for (const char* top : {"core", "models", "tasks", "trainer", "inference", "tools/cli"}) {
    if (!fs::exists(root / top)) continue;
    for (const auto& entry : fs::recursive_directory_iterator(root / top)) {
      if (!entry.is_regular_file() || !is_source(entry.path())) continue;
      const std::string rel = entry.path().lexically_relative(root).generic_string();
      const Layer* from = layer_of(rel);
      if (!from) {
        s.unlayered.push_back(rel);
        continue;
      }
      ++s.files;
      std::ifstream in(entry.path());
      std::string line;
      for (int n = 1; std::getline(in, line); ++n) {
        const std::string inc = quoted_include(line);
        if (inc.empty()) continue;
        ++s.includes;
        // A bare or relative name ("x.cuh", "../cpu/x.h") is resolved against the file's folder.
        std::string target = inc;
        if (!layer_of(target)) {
          const fs::path local = (entry.path().parent_path() / inc).lexically_normal();
          if (!fs::exists(local)) continue;  // not ours (a generated or third-party header)
          target = local.lexically_relative(root).generic_string();
        }
        const Layer* to = layer_of(target);
        if (!to || to == from || to->level < from->level) continue;
        bool excused = false;
        for (const Exception& e : kExceptions)
          if (rel == e.file && inc == e.included) {
            s.exceptions_used.insert({e.file, e.included});
            excused = true;
          }
        if (excused) continue;
        char buf[512];
        std::snprintf(buf, sizeof buf, "%s:%d: %s (layer %d) includes \"%s\" of %s (layer %d)%s",
                      rel.c_str(), n, from->dir, from->level, inc.c_str(), to->dir, to->level,
                      to->level == from->level ? " (same level, another folder)" : "");
        s.offences.push_back(buf);
      }
    }
  }
  return s;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const std::string& x : v) out += "  " + x + "\n";
  return out;
}

TEST(Layering, NoIncludePointsUpTheLayerOrder) {
  const Scan s = scan_tree();
  // Guard against passing vacuously (a wrong KIMI_SOURCE_DIR walks nothing).
  ASSERT_GT(s.files, 50) << "walked " << s.files << " files under " << KIMI_SOURCE_DIR;
  ASSERT_GT(s.includes, 200);
  for (const std::string& o : s.offences) std::printf("[layering] %s\n", o.c_str());
  EXPECT_TRUE(s.offences.empty()) << s.offences.size() << " include(s) break the layer order:\n"
                                  << join(s.offences)
                                  << "move the code down a layer, or list the include in "
                                     "kExceptions (tests/layering_test.cpp) with a reason";
}

TEST(Layering, EveryCoreFileBelongsToALayer) {
  const Scan s = scan_tree();
  std::vector<std::string> core;
  for (const std::string& f : s.unlayered)
    if (f.rfind("core/", 0) == 0) core.push_back(f);
  EXPECT_TRUE(core.empty()) << "files under core/ outside every layer (add the folder to "
                               "kLayers in tests/layering_test.cpp):\n"
                            << join(core);
}

TEST(Layering, EveryExceptionIsStillNeeded) {
  const Scan s = scan_tree();
  for (const Exception& e : kExceptions)
    EXPECT_TRUE(s.exceptions_used.count({e.file, e.included}))
        << "stale exception: " << e.file << " no longer includes \"" << e.included
        << "\"; remove it from kExceptions";
}

}  // namespace
