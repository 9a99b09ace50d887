// The sweep report (trainer/report.h): rows = settings without lr and seed (mixer, training
// length, anything else the grid varies), the best lr per row on the mean over seeds, the
// paper's Figure 4 value beside it, the fairness columns from models/flops.h, the task details.
#include "trainer/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <numeric>
#include <set>

#include "core/io/atomic_file.h"
#include "core/tensor/error.h"
#include "models/flops.h"
#include "tasks/task.h"
#include "trainer/sweep_results.h"

namespace kimi {
namespace {

namespace fs = std::filesystem;

// DESIGN.md section 6: Figure 4 read off the plot, accuracy % at 256 / 512 / 1024 / 2048.
// A negative value marks a number read as "~" (approximate).
struct PaperRow {
  const char* task;
  const char* mixer;
  double acc[4];
};
constexpr PaperRow kFigure4[] = {
    {"palindrome", "kda", {100, 100, 100, -42}}, {"palindrome", "gdn", {100, 100, -97, -37}},
    {"palindrome", "mamba2", {100, 0, 0, 0}},    {"mqar", "kda", {100, 100, 100, -48}},
    {"mqar", "gdn", {100, 100, -79, -29}},       {"mqar", "mamba2", {-98, 0, 0, 0}},
    {"stack", "kda", {100, 100, 100, 100}},      {"stack", "gdn", {100, 100, 100, 100}},
    {"stack", "mamba2", {100, 100, 0, 0}},
};

// DESIGN.md section 6, accuracy against steps at length 1024.
std::string paper_steps(const std::string& task, const std::string& mixer) {
  if (mixer == "kda") return "passes ~94% within ~4K steps";
  if (mixer == "gdn" && task == "palindrome") return "needs ~16K steps";
  if (mixer == "gdn" && task == "stack") return "needs ~8K steps";
  if (mixer == "gdn" && task == "mqar") return "~79% at 20K";
  if (mixer == "mamba2") return "stays at 0";
  return "-";
}

const std::vector<std::string> kMixerOrder = {"kda",      "gdn",       "mamba2",
                                              "deltanet", "attention", "mla"};
const std::map<std::string, std::string> kMixerName = {{"kda", "KDA"},
                                                       {"gdn", "GDN"},
                                                       {"mamba2", "Mamba2"},
                                                       {"deltanet", "DeltaNet"},
                                                       {"attention", "Attention"},
                                                       {"mla", "MLA"}};

std::string mixer_label(const RunConfig& c) {
  const auto kinds = layer_mixers(c.model);
  std::vector<std::string> unique;
  for (const auto& k : kinds)
    if (std::find(unique.begin(), unique.end(), k) == unique.end()) unique.push_back(k);
  return fmt::format("{}", fmt::join(unique, "+"));
}

std::string display(const std::string& mixer, const RunConfig& c) {
  std::string name = kMixerName.count(mixer) ? kMixerName.at(mixer) : mixer;
  if (mixer == "attention") name += c.model.rope ? " (RoPE)" : " (NoPE)";
  return name;
}

struct Candidate {
  double lr = 0;
  SeedStat best, last;
  std::vector<const SweepRun*> runs;
  int failed = 0;
};

struct Row {
  std::string mixer, setting;
  int64_t seq_len = 0, eval_len = 0;
  const RunConfig* config = nullptr;
  std::vector<Candidate> candidates;
  int chosen_index = -1;  // the candidate with the best mean (-1: none has a result)
  const Candidate* chosen() const {
    return chosen_index < 0 ? nullptr : &candidates[static_cast<size_t>(chosen_index)];
  }
};

// The keys that tell rows apart beyond mixer and length: whatever else the sweep varies.
const std::set<std::string> kRowIgnored = {
    "name",         "out_dir",       "train.lr",      "train.seed",           "model.mixer",
    "model.hybrid", "train.seq_len", "eval.seq_lens", "train.target_accuracy"};

// The eval slice a run is scored on: its own training length when evaluated there, else its
// only eval length; 0 when neither.
int64_t scored_length(const SweepRun& r, int64_t seq_len) {
  if (r.best.count(seq_len)) return seq_len;
  return r.best.size() == 1 ? r.best.begin()->first : 0;
}

std::vector<Row> build_rows(const std::vector<SweepRun>& runs) {
  const auto groups = seed_groups(runs);
  std::map<std::string, nlohmann::json> flat;  // group -> flattened config
  std::map<std::string, std::set<std::string>> values;
  // key -> mixer -> its values: a key with one value per mixer (attention's RoPE, set by a
  // `when` case) is decided by the mixer, which the row names already, so it is no setting.
  std::map<std::string, std::map<std::string, std::set<std::string>>> per_mixer;
  for (const auto& [g, rs] : groups) {
    flat[g] = flatten_dotted(to_json(rs[0]->point->config));
    const std::string mixer = mixer_label(rs[0]->point->config);
    for (const auto& [k, v] : flat[g].items()) {
      values[k].insert(v.dump());
      per_mixer[k][mixer].insert(v.dump());
    }
  }
  auto set_by_mixer = [&](const std::string& k) {
    return std::all_of(per_mixer[k].begin(), per_mixer[k].end(),
                       [](const auto& m) { return m.second.size() == 1; });
  };
  std::vector<std::string> varying;
  for (const auto& [k, vs] : values)
    if (vs.size() > 1 && !kRowIgnored.count(k) && !set_by_mixer(k)) varying.push_back(k);

  std::map<std::string, Row> rows;
  for (const auto& [g, rs] : groups) {
    const RunConfig& c = rs[0]->point->config;
    std::string setting;
    for (const auto& k : varying)
      if (flat[g].contains(k))
        setting += (setting.empty() ? "" : ", ") + k + "=" + flat[g][k].dump();
    const std::string key = fmt::format("{}|{}|{}", mixer_label(c), c.train.seq_len, setting);
    Row& row = rows[key];
    row.mixer = mixer_label(c);
    row.setting = setting;
    row.seq_len = c.train.seq_len;
    row.config = &c;
    row.eval_len = scored_length(*rs[0], c.train.seq_len);
    Candidate cand;
    cand.lr = c.train.lr;
    cand.runs = rs;
    std::vector<double> best, last;
    for (const SweepRun* r : rs) {
      cand.failed += r->state == PointState::kFailed;
      if (r->best.count(row.eval_len)) best.push_back(r->best.at(row.eval_len));
      if (r->last.count(row.eval_len)) last.push_back(r->last.at(row.eval_len).first);
    }
    cand.best = seed_stat(best);
    cand.last = seed_stat(last);
    row.candidates.push_back(std::move(cand));
  }
  std::vector<Row> out;
  for (auto& [key, row] : rows) out.push_back(std::move(row));
  for (Row& row : out)
    for (size_t i = 0; i < row.candidates.size(); ++i) {
      const Candidate& c = row.candidates[i];
      if (c.best.n > 0 && (!row.chosen() || c.best.mean > row.chosen()->best.mean))
        row.chosen_index = static_cast<int>(i);
    }
  auto rank = [](const std::string& m) {
    const auto it = std::find(kMixerOrder.begin(), kMixerOrder.end(), m);
    return static_cast<size_t>(it - kMixerOrder.begin());
  };
  std::sort(out.begin(), out.end(), [&](const Row& a, const Row& b) {
    return std::make_tuple(a.setting, rank(a.mixer), a.mixer, a.seq_len) <
           std::make_tuple(b.setting, rank(b.mixer), b.mixer, b.seq_len);
  });
  return out;
}

std::string pct(double v) { return std::isfinite(v) ? fmt::format("{:.1f}", 100 * v) : "-"; }

std::string acc_text(const SeedStat& s, bool latex) {
  if (s.n == 0) return "-";
  const std::string pm = latex ? " $\\pm$ " : " ± ";
  if (s.n == 1) return pct(s.mean) + " (1 seed)";
  return fmt::format("{}{}{} (n={})", pct(s.mean), pm, pct(s.sd), s.n);
}

std::string bytes_text(int64_t b) {
  if (b >= (1 << 20)) return fmt::format("{:.1f} MiB", static_cast<double>(b) / (1 << 20));
  if (b >= (1 << 10)) return fmt::format("{:.1f} KiB", static_cast<double>(b) / (1 << 10));
  return fmt::format("{} B", b);
}

std::string count_text(double v) {
  if (v >= 1e9) return fmt::format("{:.2f} G", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.2f} M", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.1f} K", v / 1e3);
  return fmt::format("{:.0f}", v);
}

std::string lr_text(double lr) { return fmt::format("{:g}", lr); }

struct Fairness {
  std::string params, state, flops;
};

Fairness fairness(const Row& row) {
  const RunConfig& c = *row.config;
  try {
    const auto cost = models::model_cost(c.model, c.task.vocab_size, row.seq_len);
    const auto& layer = cost.layers.front();
    return {count_text(static_cast<double>(cost.params)), bytes_text(layer.state_bytes()),
            count_text(cost.train_flops_per_token)};
  } catch (const UserError&) {
    return {"-", "-", "-"};
  }
}

struct Curve {
  std::string to94 = "never", final_acc = "-";
};

// The mean over the chosen lr's seeds of accuracy against steps; a run stopped early holds its
// last value. Steps where some seed has no eval yet are left out.
Curve mean_curve(const Candidate& c, int64_t len) {
  std::set<int64_t> steps;
  for (const SweepRun* r : c.runs)
    if (r->curve.count(len))
      for (const auto& pt : r->curve.at(len)) steps.insert(pt.first);
  Curve out;
  for (int64_t step : steps) {
    std::vector<double> accs;
    for (const SweepRun* r : c.runs) {
      if (!r->curve.count(len) || r->curve.at(len).empty()) continue;
      const auto& pts = r->curve.at(len);
      const auto it =
          std::find_if(pts.begin(), pts.end(), [&](const auto& pt) { return pt.first == step; });
      if (it != pts.end())
        accs.push_back(it->second);
      else if (r->state == PointState::kStoppedEarly && step > pts.back().first)
        accs.push_back(pts.back().second);
    }
    if (accs.size() < c.runs.size()) continue;  // a seed without an eval here yet
    const double mean = seed_stat(accs).mean;
    if (out.to94 == "never" && mean >= 0.94) out.to94 = fmt::format("{}", step);
    out.final_acc = fmt::format("{} (step {})", pct(mean), step);
  }
  return out;
}

// How deep the stacks are when popped (64 rows a length): with many stacks and push probability
// 0.5 nearly every pop empties its stack, and the task is recall of the last push to an id.
std::string stack_depth_line(const tasks::Task& task, int64_t num_stacks,
                             const std::set<int64_t>& lengths) {
  std::vector<std::string> per_len;
  for (int64_t len : lengths) {
    const std::vector<int64_t> d = tasks::stack_pop_depths(task.sample(64, len, 0), num_stacks);
    if (d.empty()) continue;
    const double ones = static_cast<double>(std::count(d.begin(), d.end(), 1));
    const double mean = static_cast<double>(std::accumulate(d.begin(), d.end(), int64_t{0}));
    per_len.push_back(fmt::format("T={}: {:.0f}% at depth 1, mean depth {:.2f}", len,
                                  100.0 * ones / static_cast<double>(d.size()),
                                  mean / static_cast<double>(d.size())));
  }
  if (per_len.empty()) return "";
  return fmt::format(
      "- stack depth read by a pop (depth 1: the answer is the last element pushed to that "
      "stack, a recall): {}\n",
      fmt::join(per_len, "; "));
}

std::string task_details(const RunConfig& c, const std::set<int64_t>& lengths) {
  const TaskConfig& t = c.task;
  std::string out = fmt::format("- task `{}`, vocabulary {}\n", t.name, t.vocab_size);
  if (t.name == "mqar")
    out += fmt::format(
        "- MQAR form `{}`; pairs per row: {} ; queries per row: {}\n", t.mqar.form,
        t.mqar.num_kv_pairs > 0
            ? fmt::format("{} at every length", t.mqar.num_kv_pairs)
            : fmt::format("seq_len / {} (task.mqar.tokens_per_pair)", t.mqar.tokens_per_pair),
        t.mqar.num_queries > 0 ? fmt::format("{}", t.mqar.num_queries) : "one per pair");
  if (t.name == "palindrome")
    out += fmt::format(
        "- palindrome length: {}; `<sep>` scored: {}\n",
        t.palindrome.length > 0 ? fmt::format("{}", t.palindrome.length) : "(seq_len - 1) / 2",
        t.palindrome.score_sep ? "yes" : "no");
  if (t.name == "stack")
    out += fmt::format(
        "- {} stacks, push probability {}, maximum depth {}; scored: the id of each pop\n",
        t.stack.num_stacks, t.stack.push_prob,
        t.stack.max_depth > 0 ? fmt::format("{}", t.stack.max_depth) : "unbounded");
  try {
    const auto task = tasks::make_task(t);
    std::vector<std::string> per_len;
    for (int64_t len : lengths) {
      const tasks::Batch b = task->sample(8, len, 0);
      int64_t scored = 0;
      for (int32_t y : b.labels) scored += y != tasks::kIgnoreLabel;
      std::string s = fmt::format("T={}: {:.0f} scored positions a row", len,
                                  static_cast<double>(scored) / 8.0);
      if (t.name == "mqar") s += fmt::format(" ({} pairs)", task->num_kv_pairs(len));
      per_len.push_back(s);
    }
    out += fmt::format("- {}\n", fmt::join(per_len, "; "));
    if (t.name == "stack") out += stack_depth_line(*task, t.stack.num_stacks, lengths);
  } catch (const std::exception&) {
    // A task that cannot be built here (an lm file moved) just goes without these counts.
  }
  out += fmt::format(
      "- model: {} layers, d_model {}, {} heads x {}, MLP {}, short conv {}; trained {} steps at "
      "batch {}, AdamW (weight decay {}, betas {} / {}), warmup {}, {} schedule, precision {}\n",
      c.model.n_layers, c.model.d_model, c.model.num_heads, c.model.head_dim,
      c.model.mlp ? "yes" : "no", c.model.short_conv ? "yes" : "no", c.train.steps,
      c.train.batch_size, c.train.weight_decay, c.train.beta1, c.train.beta2, c.train.warmup_steps,
      c.train.schedule, c.train.precision);
  return out;
}

std::string latex_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '_' || ch == '%' || ch == '&' || ch == '#') out += '\\';
    out += ch;
  }
  return out;
}

}  // namespace

std::optional<PaperValue> paper_figure4(const std::string& task, const std::string& mixer,
                                        int64_t seq_len) {
  const int64_t lens[4] = {256, 512, 1024, 2048};
  for (const auto& row : kFigure4) {
    if (task != row.task || mixer != row.mixer) continue;
    for (int i = 0; i < 4; ++i)
      if (lens[i] == seq_len) return PaperValue{std::abs(row.acc[i]), row.acc[i] < 0};
  }
  return std::nullopt;
}

SweepReportText make_sweep_report(const std::string& sweep_dir) {
  size_t total_points = 0;
  const std::vector<SweepPoint> points = load_sweep_points(sweep_dir, &total_points);
  const std::vector<SweepRun> runs = read_sweep_runs(points);
  if (runs.empty())
    throw UserError(fmt::format("{}: no point has finished yet; nothing to report", sweep_dir));
  const std::vector<Row> rows = build_rows(runs);
  const RunConfig& first = runs.front().point->config;
  const std::string task = first.task.name;
  std::set<int64_t> lengths, seeds;
  std::set<double> lrs;
  for (const auto& r : runs) {
    lengths.insert(r.point->config.train.seq_len);
    seeds.insert(r.point->config.train.seed);
    lrs.insert(r.point->config.train.lr);
  }
  std::vector<std::string> lr_list;
  for (double lr : lrs) lr_list.push_back(lr_text(lr));
  const bool has_setting =
      std::any_of(rows.begin(), rows.end(), [](const Row& r) { return !r.setting.empty(); });

  std::string md =
      fmt::format("# {}: results against the paper\n\n", fs::path(sweep_dir).filename().string());
  md += fmt::format(
      "{} of the sweep's {} points have finished or failed. Accuracy: token accuracy (%) at the "
      "training "
      "length, the best over the run's evals, **mean ± sd over {} seed(s)** ({}); the lr of each "
      "row (grid: {}) is the one with the best mean, as the paper reports the best lr per point. "
      "No number below is one seed's maximum. Paper: the tech report's Figure 4 as read off the "
      "plot (DESIGN.md section 6; `~` = approximate).\n\n",
      runs.size(), total_points, seeds.size(), fmt::join(seeds, ", "), fmt::join(lr_list, ", "));
  md += "## Task and training details (the paper leaves these unstated)\n\n";
  md += task_details(first, lengths) + "\n";

  md += "## Best accuracy against training length\n\n";
  md += std::string(has_setting ? "| setting " : "") +
        "| mixer | T | best lr | accuracy % | paper % | difference | lrs tried | params | "
        "state / layer (fp32) | train FLOPs / token |\n";
  md += std::string(has_setting ? "|---" : "") + "|---|---|---|---|---|---|---|---|---|---|\n";
  std::string tex =
      "% kimi-lab report: best accuracy (%) at the training length, mean $\\pm$ sd over seeds\n"
      "\\begin{tabular}{llrrrrrrr}\n\\toprule\n"
      "Mixer & $T$ & lr & Accuracy (\\%) & Paper (\\%) & $\\Delta$ & Params & State/layer & "
      "FLOPs/token \\\\\n\\midrule\n";
  std::vector<std::string> differences;
  for (const Row& row : rows) {
    const auto paper = paper_figure4(task, row.mixer, row.seq_len);
    const Fairness f = fairness(row);
    const Candidate* c = row.chosen();
    std::string diff = "-", paper_text = "-";
    if (paper)
      paper_text = (paper->approximate ? "~" : "") + fmt::format("{:.0f}", paper->accuracy);
    if (paper && c) {
      const double d = 100 * c->best.mean - paper->accuracy;
      diff = fmt::format("{:+.1f}", d);
      if (std::abs(d) > 10)
        differences.push_back(fmt::format("{}{} at T={}: {} against the paper's {} ({})",
                                          display(row.mixer, *row.config),
                                          row.setting.empty() ? "" : " (" + row.setting + ")",
                                          row.seq_len, pct(c->best.mean), paper_text, diff));
    }
    std::string tried;
    for (const Candidate& k : row.candidates)
      tried += (tried.empty() ? "" : ", ") +
               fmt::format("{}: {}{}", lr_text(k.lr), pct(k.best.mean),
                           k.failed ? fmt::format(" ({} failed)", k.failed) : "");
    const std::string name = display(row.mixer, *row.config);
    md += (has_setting ? "| " + row.setting + " " : std::string()) +
          fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", name, row.seq_len,
                      c ? lr_text(c->lr) : "-", c ? acc_text(c->best, false) : "-", paper_text,
                      diff, tried, f.params, f.state, f.flops);
    tex += fmt::format("{} & {} & {} & {} & {} & {} & {} & {} & {} \\\\\n", latex_escape(name),
                       row.seq_len, c ? lr_text(c->lr) : "--", c ? acc_text(c->best, true) : "--",
                       latex_escape(paper_text == "-" ? "--" : paper_text),
                       diff == "-" ? "--" : diff, f.params, latex_escape(f.state), f.flops);
  }
  tex += "\\bottomrule\n\\end{tabular}\n";

  // Accuracy against steps at 1024 (the paper's second row of plots).
  std::string steps;
  for (const Row& row : rows) {
    if (row.seq_len != 1024 || !row.chosen()) continue;
    const Curve curve = mean_curve(*row.chosen(), row.eval_len);
    steps += (has_setting ? "| " + row.setting + " " : std::string()) +
             fmt::format("| {} | {} | {} | {} | {} |\n", display(row.mixer, *row.config),
                         lr_text(row.chosen()->lr), curve.to94, curve.final_acc,
                         paper_steps(task, row.mixer));
  }
  if (!steps.empty()) {
    md += "\n## Accuracy against steps at T=1024 (mean over seeds, best lr)\n\n";
    md += std::string(has_setting ? "| setting " : "") +
          "| mixer | lr | first step at >= 94% | last eval % | paper |\n" +
          (has_setting ? "|---" : "") + "|---|---|---|---|---|\n";
    md += steps;
  }
  md += "\n## Where the result differs from the paper (more than 10 points)\n\n";
  if (differences.empty()) md += "None.\n";
  for (const auto& d : differences) md += "- " + d + "\n";
  md +=
      "\nColumns: params = the whole model; state / layer = the recurrent state (and short-conv "
      "tails) one layer carries per sequence, or attention's KV cache at T, in fp32; train FLOPs "
      "= 3 x forward, counted from the config (models/flops.h).\n";
  return {md, tex};
}

SweepReportText write_sweep_report(const std::string& sweep_dir, const std::string& paper) {
  if (paper != "figure4" && paper != "table1")
    throw UserError(fmt::format("--paper {}: unknown; the report knows figure4 and table1", paper));
  SweepReportText r =
      paper == "table1" ? make_table1_report(sweep_dir) : make_sweep_report(sweep_dir);
  io::write_file_atomic((fs::path(sweep_dir) / "report.md").string(), r.markdown);
  io::write_file_atomic((fs::path(sweep_dir) / "report.tex").string(), r.latex);
  return r;
}

}  // namespace kimi
