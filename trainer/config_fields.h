// Internal to trainer/config*.cpp: the one list of config keys. Decoding, the known-key list,
// to_yaml and to_json all walk it, so a field added here is everywhere at once. Keys of one
// section must stay contiguous (to_yaml opens each section once).
#pragma once

#include "trainer/config.h"

namespace kimi::config_detail {

// C is RunConfig or const RunConfig; v(key, field) is called for every leaf in order.
template <class C, class V>
void visit_fields(C& c, V&& v) {
  v("name", c.name);
  v("out_dir", c.out_dir);
  v("task.name", c.task.name);
  v("task.vocab_size", c.task.vocab_size);
  v("task.mixed_lengths", c.task.mixed_lengths);
  v("task.train_seq_lens", c.task.train_seq_lens);
  v("task.mqar.form", c.task.mqar.form);
  v("task.mqar.num_kv_pairs", c.task.mqar.num_kv_pairs);
  v("task.mqar.tokens_per_pair", c.task.mqar.tokens_per_pair);
  v("task.mqar.num_queries", c.task.mqar.num_queries);
  v("task.mqar.power_a", c.task.mqar.power_a);
  v("task.mqar.query_layout", c.task.mqar.query_layout);
  v("task.mqar.filler", c.task.mqar.filler);
  v("task.mqar.sep", c.task.mqar.sep);
  v("task.mqar.query_offset", c.task.mqar.query_offset);
  v("task.palindrome.length", c.task.palindrome.length);
  v("task.palindrome.score_sep", c.task.palindrome.score_sep);
  v("task.stack.num_stacks", c.task.stack.num_stacks);
  v("task.stack.push_prob", c.task.stack.push_prob);
  v("task.stack.max_depth", c.task.stack.max_depth);
  v("task.lm.path", c.task.lm.path);
  v("task.lm.eval_fraction", c.task.lm.eval_fraction);
  v("task.lm.data", c.task.lm.data);
  v("model.d_model", c.model.d_model);
  v("model.n_layers", c.model.n_layers);
  v("model.mixer", c.model.mixer);
  v("model.hybrid", c.model.hybrid);
  v("model.num_heads", c.model.num_heads);
  v("model.head_dim", c.model.head_dim);
  v("model.num_kv_heads", c.model.num_kv_heads);
  v("model.expand_v", c.model.expand_v);
  v("model.short_conv", c.model.short_conv);
  v("model.conv_size", c.model.conv_size);
  v("model.output_gate", c.model.output_gate);
  v("model.rope", c.model.rope);
  v("model.rope_theta", c.model.rope_theta);
  v("model.mlp", c.model.mlp);
  v("model.mlp_hidden", c.model.mlp_hidden);
  v("model.tie_embeddings", c.model.tie_embeddings);
  v("model.norm_eps", c.model.norm_eps);
  v("model.chunk_size", c.model.chunk_size);
  v("model.kv_lora_rank", c.model.kv_lora_rank);
  v("model.q_lora_rank", c.model.q_lora_rank);
  v("model.qk_rope_dim", c.model.qk_rope_dim);
  v("model.init_std", c.model.init_std);
  v("model.dt_min", c.model.dt_min);
  v("model.dt_max", c.model.dt_max);
  v("model.mamba2.d_state", c.model.mamba2.d_state);
  v("model.mamba2.expand", c.model.mamba2.expand);
  v("model.moe.num_experts", c.model.moe.num_experts);
  v("model.moe.top_k", c.model.moe.top_k);
  v("model.moe.expert_hidden", c.model.moe.expert_hidden);
  v("model.moe.num_shared", c.model.moe.num_shared);
  v("model.moe.first_dense", c.model.moe.first_dense);
  v("model.moe.routed_scaling_factor", c.model.moe.routed_scaling_factor);
  v("model.moe.bias_update_rate", c.model.moe.bias_update_rate);
  v("model.moe.aux_loss_coef", c.model.moe.aux_loss_coef);
  v("train.steps", c.train.steps);
  v("train.batch_size", c.train.batch_size);
  v("train.grad_accum", c.train.grad_accum);
  v("train.seq_len", c.train.seq_len);
  v("train.lr", c.train.lr);
  v("train.weight_decay", c.train.weight_decay);
  v("train.beta1", c.train.beta1);
  v("train.beta2", c.train.beta2);
  v("train.eps", c.train.eps);
  v("train.warmup_steps", c.train.warmup_steps);
  v("train.schedule", c.train.schedule);
  v("train.schedule_steps", c.train.schedule_steps);
  v("train.min_lr_ratio", c.train.min_lr_ratio);
  v("train.grad_clip", c.train.grad_clip);
  v("train.seed", c.train.seed);
  v("train.log_every", c.train.log_every);
  v("train.eval_every", c.train.eval_every);
  v("train.checkpoint_every", c.train.checkpoint_every);
  v("train.keep_checkpoints", c.train.keep_checkpoints);
  v("train.target_accuracy", c.train.target_accuracy);
  v("train.device", c.train.device);
  v("train.precision", c.train.precision);
  v("train.threads", c.train.threads);
  v("eval.seq_lens", c.eval.seq_lens);
  v("eval.num_examples", c.eval.num_examples);
  v("eval.batch_size", c.eval.batch_size);
  v("eval.seed", c.eval.seed);
  v("dist.bucket_mb", c.dist.bucket_mb);
}

// Fills defaults that depend on other keys; validates every value. Throws UserError.
void resolve_and_validate(RunConfig& config);

// The known key (or section) closest to an unknown one, for "did you mean" hints; "" if none.
std::string closest_key(const std::string& unknown);

}  // namespace kimi::config_detail
