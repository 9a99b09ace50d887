// `kimi-lab data prepare`: turns a text corpus into a tokenizer and llm.c token shards for the
// LM task (task.lm.data). The work is tasks/lm_prepare.cpp; this file is the flags.
#include <spdlog/spdlog.h>

#include "tasks/lm_prepare.h"
#include "tools/cli/commands.h"

namespace kimi::cli {

void register_data(CLI::App& app) {
  auto* data = app.add_subcommand("data", "Prepare real-text data for language modelling.");
  data->require_subcommand(1);
  auto* cmd = data->add_subcommand(
      "prepare",
      "Tokenize a text corpus into train/validation token shards (llm.c format: 256 int32\n"
      "header, magic 20240520, version 1 = uint16 / 2 = uint32 tokens) with manifest.json.\n"
      "Each file is one document; documents are packed into one stream per split, each after\n"
      "the end-of-text token. Rerunning with the same arguments and sources does nothing.\n"
      "Example: kimi-lab data prepare --out data/lm_linux_doc   (then: kimi-lab run\n"
      "experiments/lm_linux_doc.yaml)");
  auto o = std::make_shared<tasks::PrepareOptions>();
  cmd->add_option("--source", o->sources,
                  "text files or directories (searched recursively for .txt .rst .md .text);\n"
                  "default: the kernel documentation of Debian's linux-doc package\n"
                  "(/usr/share/doc/linux-doc-*/html/_sources)");
  cmd->add_option("--tokenizer", o->tokenizer,
                  "bpe: SentencePiece BPE with byte fallback, trained on the train split;\n"
                  "byte: the 256 bytes + end-of-text (vocab 257)")
      ->capture_default_str();
  cmd->add_option("--vocab-size", o->vocab_size,
                  "BPE vocabulary size, an upper bound (256 byte pieces included)")
      ->capture_default_str();
  cmd->add_option("--out", o->out_dir, "output directory (manifest.json, shards, tokenizer.model)")
      ->capture_default_str();
  cmd->add_option("--val-fraction", o->val_fraction,
                  "fraction of documents held out for validation (chosen by a hash of the path)")
      ->capture_default_str();
  cmd->add_option("--shard-tokens", o->shard_tokens, "tokens per shard file at most")
      ->capture_default_str();
  cmd->add_option("--threads", o->threads, "threads for BPE training")->capture_default_str();
  cmd->callback([o] {
    const tasks::PrepareResult r = tasks::prepare_lm_data(*o);
    fmt::print("{}: {} train tokens, {} validation tokens{}\n", r.manifest, r.train_tokens,
               r.val_tokens, r.up_to_date ? " (already up to date)" : "");
  });
}

}  // namespace kimi::cli
