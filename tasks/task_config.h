// The task's configuration (the keys under task.*) and the eval sets' (eval.*), owned by the task
// layer: trainer/config* decodes YAML into them and validates them; tasks/ builds generators
// and eval sets from them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kimi {

struct MqarConfig {
  std::string form = "kimi";  // kimi: `k v ... <sep> q ...`; zoology: zoology's multiquery_ar
  int64_t num_kv_pairs = 0;   // 0 = seq_len / tokens_per_pair at each length
  // The paper does not say how the pair count grows with the length; 8 is zoology's T512_kv64
  // ratio (128 pairs at 1024). Used only when num_kv_pairs is 0.
  int64_t tokens_per_pair = 8;
  int64_t num_queries = 0;  // kimi form only; 0 = num_kv_pairs (each key queried once)
  double power_a = 0.01;    // query gap distribution p(g) ~ g^(a-1): zoology, kimi + spread
  // Kimi form only, to split what the two forms differ in (notes/attention_mqar.md):
  // block = the queries right after <sep> (the tech report's layout); spread = each query at its
  // own slot after <sep>, on even offsets with zoology's power-law gaps.
  std::string query_layout = "block";
  // What fills the slots after <sep> that hold no query: pad (0) or random tokens from
  // [2, vocab), as zoology's random_non_queries. After a query block it is never seen by a query.
  std::string filler = "pad";
  // Kimi form: the <sep> (token 1) between the pairs and the queries; false = the queries start
  // right after the last value, as in zoology (whose queries then sit at even positions).
  bool sep = true;
  // Kimi form: filler slots between the pairs (and <sep>) and the first query slot; 1 moves every
  // query one position on (to the other parity: with <sep>, queries sit at odd positions).
  int64_t query_offset = 0;
};

struct PalindromeConfig {
  int64_t length = 0;      // n tokens to reverse; 0 = as many as fit: (seq_len - 1) / 2
  bool score_sep = false;  // also score x_n at <sep> (the paper's table leaves it unscored)
};

struct StackConfig {
  int64_t num_stacks = 64;  // paper: 64 independent stacks
  double push_prob = 0.5;   // else pop from a random non-empty stack (push when all empty)
  // Deepest a stack may grow (the paper leaves it open): a push drawn for a full stack goes to
  // another non-full stack, or becomes a pop when every stack is full. 0 = unbounded.
  int64_t max_depth = 0;
};

struct LmConfig {
  std::string path;  // a text file; bytes are tokens (vocab 256)
  // A directory written by `kimi-lab data prepare` (token shards + manifest.json); used instead
  // of path. Its manifest gives the vocabulary; eval rows come from its validation split.
  std::string data;
  double eval_fraction = 0.1;  // the file's tail held out for eval windows
};

struct TaskConfig {
  std::string name = "mqar";  // palindrome | mqar | stack | lm
  // 0 = the task's default: mqar 8192 (zoology), palindrome 128, stack 128, lm 256.
  int64_t vocab_size = 0;
  MqarConfig mqar;
  PalindromeConfig palindrome;
  StackConfig stack;
  LmConfig lm;
  bool mixed_lengths = false;           // train on a length drawn from train_seq_lens per step
  std::vector<int64_t> train_seq_lens;  // used when mixed_lengths is true
};

// The fixed eval sets (tasks/eval_set.h make_eval_sets: one per length) and the eval batch.
struct EvalConfig {
  std::vector<int64_t> seq_lens;  // empty = [train.seq_len] (resolved at load)
  int64_t num_examples = 256;
  int64_t batch_size = 64;
  int64_t seed = 1234;
};

}  // namespace kimi
