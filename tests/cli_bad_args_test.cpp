// The built kimi-lab binary, run as a user would, over bad arguments for every subcommand (zero,
// negative, huge, wrong kind, missing file, unknown flag): each must exit with status 2 and
// exactly one line on stderr, never a signal, and write no run directory; the list of
// subcommands after an unknown one, and --help still exiting 0. The fixture and run_cli are in
// cli_fixture.h; the working eval, run and generate paths are in cli_eval_test.cpp,
// cli_run_test.cpp and cli_generate_test.cpp.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tests/cli_fixture.h"

namespace kimi {
namespace {

namespace fs = std::filesystem;
using cli_test::CliBadArgs;
using cli_test::CliResult;
using cli_test::show;

// Each row: the arguments and a part of the one error line (naming the flag, key, file or
// slice). Placeholders as in expand().
struct BadArgs {
  std::vector<std::string> args;
  std::string names;
};

const std::vector<BadArgs>& bad_args_table() {
  static const std::vector<BadArgs> table = {
      // no subcommand, unknown subcommand, unknown top-level flag, bad log level
      {{}, "a subcommand is required"},
      {{"x"}, "unknown subcommand 'x'"},
      {{"trian", "{Q}"}, "unknown subcommand 'trian'"},
      {{"--bogus"}, "--bogus"},
      {{"--log-level", "loud", "version"}, "--log-level"},
      {{"version", "--bogus"}, "--bogus"},
      // run: files
      {{"run"}, "config file"},
      {{"run", "{TMP}/missing.yaml"}, "missing.yaml"},
      {{"run", "{TMP}"}, "is a directory"},
      {{"run", "{TMP}/empty.yaml"}, "empty.yaml"},
      {{"run", "{TMP}/no_keys.yaml"}, "no_keys.yaml"},
      {{"run", "{TMP}/good.safetensors"}, "good.safetensors"},
      {{"run", "--resume", "{TMP}/nope"}, "nope"},
      // run: zero, negative, huge, wrong kind, non-finite
      {{"run", "{Q}", "train.steps=0"}, "train.steps"},
      {{"run", "{Q}", "train.steps=-1"}, "train.steps"},
      {{"run", "{Q}", "train.steps=2.5"}, "train.steps"},
      {{"run", "{Q}", "train.steps=1e3.5"}, "train.steps"},
      {{"run", "{Q}", "train.steps=1e30"}, "train.steps"},
      {{"run", "{Q}", "train.steps=99999999999999999999"}, "train.steps"},
      {{"run", "{Q}", "train.steps=abc"}, "train.steps"},
      {{"run", "{Q}", "train.lr=.inf"}, "train.lr"},
      {{"run", "{Q}", "train.lr=-.inf"}, "train.lr"},
      {{"run", "{Q}", "train.lr=.nan"}, "train.lr"},
      {{"run", "{Q}", "train.grad_clip=.inf"}, "train.grad_clip"},
      {{"run", "{Q}", "model.init_std=.nan"}, "model.init_std"},
      {{"run", "{Q}", "train.lr=0"}, "train.lr"},
      {{"run", "{Q}", "train.batch_size=0"}, "train.batch_size"},
      {{"run", "{Q}", "train.seq_len=-5"}, "train.seq_len"},
      {{"run", "{Q}", "train.seq_len=99999999999"}, "train.seq_len"},
      {{"run", "{Q}", "model.d_model=0"}, "model.d_model"},
      {{"run", "{Q}", "model.d_model=1000000000"}, "model.d_model"},
      {{"run", "{Q}", "model.n_layers=1e6", "model.d_model=4096"}, "model.n_layers"},
      {{"run", "{Q}", "task.vocab_size=1e10"}, "task.vocab_size"},
      {{"run", "{Q}", "eval.num_examples=0"}, "eval.num_examples"},
      {{"run", "{Q}", "eval.seq_lens=[0]"}, "eval.seq_lens"},
      {{"run", "{Q}", "model.mixer=attention", "model.rope=true", "model.head_dim=33"},
       "model.head_dim"},
      {{"run", "{Q}", "model.mixer=fancy"}, "model.mixer"},
      {{"run", "{Q}", "bogus.key=1"}, "bogus.key"},
      {{"run", "{Q}", "train.lr"}, "train.lr"},
      {{"run", "{Q}", "train.device=tpu"}, "train.device"},
      // run: flags
      {{"run", "{Q}", "--stop-at", "0"}, "--stop-at"},
      {{"run", "{Q}", "--stop-at", "-1"}, "--stop-at"},
      {{"run", "{Q}", "--stop-at", "abc"}, "--stop-at"},
      {{"run", "{Q}", "--stop-at", "99999999999999999999"}, "--stop-at"},
      {{"run", "{Q}", "--device", "tpu"}, "--device"},
      {{"run", "{Q}", "--profile-step", "0"}, "--profile-step"},
      {{"run", "{Q}", "--profile-step", "abc"}, "--profile-step"},
      {{"run", "{Q}", "train.steps=3", "--profile-step", "4"},
       "--profile-step 4: this run trains steps 1..3"},
      {{"run", "{Q}", "--stop-at", "2", "--profile-step", "3"},
       "--profile-step 3: this run trains steps 1..2"},
      {{"run", "{Q}", "--ranks", "2", "--profile-step", "1"}, "--profile-step times one process"},
      {{"run", "{Q}", "--bogus"}, "--bogus"},
      // sweep
      {{"sweep"}, "sweep_file"},
      {{"sweep", "{TMP}/missing.yaml"}, "missing.yaml"},
      {{"sweep", "{SRC}/experiments/sweep_quick.yaml", "--only", "-1", "--dry-run"}, "--only"},
      {{"sweep", "{SRC}/experiments/sweep_quick.yaml", "--only", "abc", "--dry-run"}, "--only"},
      {{"sweep", "{SRC}/experiments/sweep_quick.yaml", "--only", "99", "--dry-run"}, "99"},
      {{"sweep", "{SRC}/experiments/sweep_quick.yaml", "--bogus"}, "--bogus"},
      {{"sweep", "{SRC}/experiments/sweep_quick.yaml", "--shard", "2/2", "--dry-run"},
       "--shard 2/2"},
      {{"sweep", "{SRC}/experiments/sweep_quick.yaml", "--shard", "x", "--dry-run"}, "--shard x"},
      {{"sweep", "{SRC}/experiments/sweep_quick.yaml", "--summarize", "--only", "0"},
       "--summarize"},
      // eval: the run, the mode, lengths, batch size, checkpoint, device
      {{"eval"}, "run_dir"},
      {{"eval", "{TMP}/nope", "--seq-lens", "128"}, "nope"},
      {{"eval", "{TMP}", "--seq-lens", "128"}, "not a run directory"},
      {{"eval", "{RUN}"}, "--seq-lens"},
      {{"eval", "{RUN}", "--data", "{TMP}/good.safetensors", "--seq-lens", "128"}, "--seq-lens"},
      {{"eval", "{RUN}", "--seq-lens", "0"}, "--seq-lens"},
      {{"eval", "{RUN}", "--seq-lens", "-5"}, "--seq-lens"},
      {{"eval", "{RUN}", "--seq-lens", "abc"}, "--seq-lens"},
      {{"eval", "{RUN}", "--seq-lens", "99999999999"}, "--seq-lens"},
      {{"eval", "{RUN}", "--seq-lens", "8"}, "--seq-lens 8"},
      {{"eval", "{RUN}", "--seq-lens", "128", "--batch-size", "0"}, "--batch-size"},
      {{"eval", "{RUN}", "--seq-lens", "128", "--batch-size", "-1"}, "--batch-size"},
      {{"eval", "{RUN}", "--seq-lens", "128", "--batch-size", "abc"}, "--batch-size"},
      {{"eval", "{RUN}", "--seq-lens", "128", "--batch-size", "99999999999999999999"},
       "--batch-size"},
      {{"eval", "{RUN}", "--seq-lens", "128", "--ckpt", "999"}, "--ckpt 999"},
      {{"eval", "{RUN}", "--seq-lens", "128", "--ckpt", "99999999999999999999999"}, "--ckpt"},
      {{"eval", "{RUN}", "--seq-lens", "128", "--ckpt", "{TMP}/nope.safetensors"}, "--ckpt"},
      {{"eval", "{RUN}", "--seq-lens", "128", "--ckpt", "{TMP}/good.safetensors"},
       "good.safetensors"},
      {{"eval", "{RUN}", "--seq-lens", "128", "--device", "tpu"}, "--device"},
      {{"eval", "{RUN}", "--seq-lens", "128", "--bogus"}, "--bogus"},
      // eval --data: files made elsewhere
      {{"eval", "{RUN}", "--data", "{TMP}/missing.safetensors"}, "missing.safetensors"},
      {{"eval", "{RUN}", "--data", "{TMP}/empty.yaml"}, "empty.yaml"},
      {{"eval", "{RUN}", "--data", "{TMP}/big_id.safetensors"}, "slice 'big': token id 4294967301"},
      {{"eval", "{RUN}", "--data", "{TMP}/bad_label.safetensors"}, "slice 'lab': label 300"},
      {{"eval", "{RUN}", "--data", "{TMP}/no_rows.safetensors"}, "slice 'empty': no rows"},
      {{"eval", "{RUN}", "--data", "{TMP}/t_zero.safetensors"}, "slice 'short': no positions"},
      {{"eval", "{RUN}", "--data", "{TMP}/no_labels.safetensors"},
       "slice 'unscored': no scored labels"},
      {{"eval", "{RUN}", "--data", "{TMP}/good.safetensors", "--batch-size", "0"}, "--batch-size"},
      // simulate --model
      {{"simulate", "--preset", "kimi-linear-48b", "--model", "fast"},
       "--model fast: unknown time model (known: roofline, engine)"},
      {{"simulate", "--preset", "kimi-linear-48b", "--gpu", "h100", "--model", "engine"},
       "no engine profile for GPU 'h100'"},
      // plot
      {{"plot"}, "runs"},
      {{"plot", "{TMP}/nope"}, "nope"},
      {{"plot", "{RUN}", "--bogus"}, "--bogus"},
      // verify
      {{"verify"}, "file"},
      {{"verify", "{TMP}/missing.safetensors"}, "missing.safetensors"},
      {{"verify", "{TMP}/empty.yaml"}, "empty.yaml"},
      {{"verify", "{GOLD}/linear_ops_small.safetensors", "--dtype", "f16"}, "--dtype"},
      {{"verify", "{GOLD}/linear_ops_small.safetensors", "--device", "tpu"}, "--device"},
      // bench
      {{"bench-infer", "--batch", "0"}, "--batch"},
      {{"bench-infer", "--batch", "4x"}, "--batch"},
      {{"bench-infer", "--models", "gdn"}, "--models"},
      {{"bench-infer", "--contexts", "0"}, "--contexts"},
      {{"bench-infer", "--reps", "0"}, "--reps"},
      {{"bench-infer", "--warmup", "-1"}, "--warmup"},
      {{"bench-infer", "--seed", "-1"}, "--seed"},
      {{"bench-infer", "--prefill-max", "lots"}, "--prefill-max"},
      {{"bench-infer", "--prefill-chunk", "0"}, "--prefill-chunk"},
      {{"bench-infer", "--prefill-chunk", "128K"}, "--prefill-chunk"},
      {{"bench", "--reps", "0"}, "--reps"},
      {{"bench", "--reps", "-1"}, "--reps"},
      {{"bench", "--reps", "abc"}, "--reps"},
      {{"bench", "--reps", "99999999999999999999"}, "--reps"},
      {{"bench", "--mixers", "fancy"}, "--mixers"},
      {{"bench", "--seq-lens", "0"}, "--seq-lens"},
      {{"bench", "--seq-lens", "-4"}, "--seq-lens"},
      {{"bench", "--heads", "0"}, "--heads"},
      {{"bench", "--head-dim", "-1"}, "--head-dim"},
      {{"bench", "--batch", "0"}, "--batch"},
      {{"bench", "--device", "tpu"}, "--device"},
      // inspect
      {{"inspect"}, "file"},
      {{"inspect", "{TMP}/missing.safetensors"}, "missing.safetensors"},
      {{"inspect", "{TMP}"}, "{TMP}"},
      {{"inspect", "{TMP}/empty.yaml"}, "empty.yaml"},
      // generate and model-info
      {{"generate"}, "MODEL_DIR"},
      {{"generate", "{TMP}/nope", "--prompt-ids", "1"}, "nope"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "abc"}, "--prompt-ids"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "99999999"}, "--prompt-ids"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "-1"}, "--prompt-ids"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "1", "--max-new-tokens", "-1"},
       "--max-new-tokens"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "1", "--max-new-tokens", "999999999999"},
       "--max-new-tokens"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "1", "--temperature", "0"},
       "--temperature"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "1", "--temperature", ".nan"},
       "--temperature"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "1", "--dtype", "f16"}, "--dtype"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "1", "--device", "tpu"}, "--device"},
      {{"generate", "--prompt-ids", "1"}, "MODEL_DIR"},
      {{"generate", "{GOLD}/kimi_tiny"}, "--prompt-ids"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "1,,2"}, "--prompt-ids"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "1", "--prompt-ids", "2x"}, "--prompt-ids"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "1", "--prompt-ids", "5,128"},
       "--prompt-ids"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "1", "--stop-id", "-3"}, "--stop-id"},
      {{"generate", "{GOLD}/kimi_tiny", "--prompt-ids", "1", "--stop-id", "128"}, "--stop-id"},
      // generate --engine: what the engine cannot do, refused before any device is touched
      {{"generate", "--preset", "kimi-linear-48b", "--prompt-ids", "1"}, "--preset"},
      {{"generate", "--engine", "--preset", "nope", "--prompt-ids", "1"}, "--preset"},
      {{"generate", "{GOLD}/kimi_tiny", "--engine", "--preset", "kimi-linear-48b", "--prompt-ids",
        "1"},
       "--preset"},
      {{"generate", "{GOLD}/kimi_tiny", "--engine", "--device", "cpu", "--prompt-ids", "1"},
       "--device"},
      {{"generate", "{GOLD}/kimi_tiny", "--engine", "--dtype", "f64", "--prompt-ids", "1"},
       "--dtype"},
      {{"generate", "{GOLD}/kimi_tiny", "--engine", "--prompt-ids", "1", "--prompt-ids", "a"},
       "--prompt-ids"},
      {{"generate", "{GOLD}/kimi_tiny", "--engine", "--prompt-ids", "1", "--temperature", "-1"},
       "--temperature"},
      {{"model-info"}, "MODEL_DIR"},
      {{"model-info", "--preset", "nope"}, "--preset"},
      {{"model-info", "{TMP}/nope"}, "nope"},
  };
  return table;
}

TEST_F(CliBadArgs, EveryBadArgumentIsOneLineAndExitTwo) {
  for (const BadArgs& row : bad_args_table()) {
    const std::vector<std::string> args = expand(row.args);
    const CliResult r = cli(row.args);
    const std::string what = show(args) + "\nstderr: " + r.err;
    EXPECT_EQ(r.signal, 0) << "killed by signal " << r.signal << ": " << what;
    EXPECT_EQ(r.exit_code, 2) << what;
    EXPECT_EQ(r.stderr_lines(), 1) << what;
    EXPECT_NE(r.err.find(expand({row.names})[0]), std::string::npos)
        << "the line should name '" << row.names << "': " << what;
  }
  // Nothing was trained or written by a refused run or sweep.
  EXPECT_FALSE(fs::exists(tmp_ / "work" / "runs")) << "a refused command wrote a run directory";
}

TEST_F(CliBadArgs, UnknownSubcommandListsTheSubcommands) {
  const CliResult r = cli({"x"});
  for (const char* name : {"run", "sweep", "eval", "verify", "generate"})
    EXPECT_NE(r.err.find(name), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("unknown subcommand 'x'; try kimi-lab --help"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("A subcommand is required"), std::string::npos) << r.err;
}

TEST_F(CliBadArgs, HelpStillExitsZero) {
  for (const char* sub : {"run", "eval", "sweep", "bench"}) {
    const CliResult r = cli({sub, "--help"});
    EXPECT_EQ(r.exit_code, 0) << sub << r.err;
  }
  EXPECT_NE(cli({"run", "--help"}).out.find("--no-estimate"), std::string::npos);
}

}  // namespace
}  // namespace kimi
