// `kimi-lab report SWEEP_DIR --paper table1` (trainer/report.h): per Table 1 row the training
// and validation perplexity (mean ± sd over seeds), the paper's beside them (DESIGN.md section
// 7), each row's rank in both, Spearman's rho between the orderings, and the tokens and FLOPs
// each row trained on, under a header that says the model is a scaled-down one.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <tuple>

#include "core/tensor/error.h"
#include "models/flops.h"
#include "trainer/metrics_writer.h"
#include "trainer/rank_stats.h"
#include "trainer/report.h"
#include "trainer/sweep_results.h"
#include "trainer/table1.h"

namespace kimi {
namespace {

namespace fs = std::filesystem;

double cell(const std::vector<std::string>& row, size_t i) {
  try {
    return i < row.size() && !row[i].empty() ? std::stod(row[i])
                                             : std::numeric_limits<double>::quiet_NaN();
  } catch (const std::exception&) {
    return std::numeric_limits<double>::quiet_NaN();
  }
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? std::numeric_limits<double>::quiet_NaN() : s / static_cast<double>(v.size());
}

// Training perplexity: exp of the mean logged loss over the last 10% of the run's steps (one
// logged step is a single noisy batch; the paper's train PPL is not one batch either).
double train_ppl(const fs::path& dir) {
  const auto t = CsvTable::resume((dir / "metrics.csv").string(), metrics_columns(),
                                  std::numeric_limits<int64_t>::max());
  if (t.rows().empty()) return std::numeric_limits<double>::quiet_NaN();
  const double last = cell(t.rows().back(), 0);
  std::vector<double> losses;
  for (const auto& r : t.rows())
    if (cell(r, 0) >= 0.9 * last && std::isfinite(cell(r, 1))) losses.push_back(cell(r, 1));
  return std::exp(mean_of(losses));
}

// Validation perplexity: exp of the validation loss at the last eval (the mean over its slices).
double val_ppl(const fs::path& dir) {
  const auto t = CsvTable::resume((dir / "eval.csv").string(), eval_columns(),
                                  std::numeric_limits<int64_t>::max());
  double last = -1;
  for (const auto& r : t.rows()) last = std::max(last, cell(r, 0));
  std::vector<double> losses;
  for (const auto& r : t.rows())
    if (cell(r, 0) == last && std::isfinite(cell(r, 5))) losses.push_back(cell(r, 5));
  return std::exp(mean_of(losses));
}

struct Group {
  Table1Row row;
  const RunConfig* config = nullptr;
  std::vector<double> train, val;
  int failed = 0;
  SeedStat train_stat, val_stat;
  double ours_rank_val = 0, ours_rank_train = 0, paper_rank_val = 0, paper_rank_train = 0;
  bool ranked = false;
};

std::vector<Group> read_groups(const std::vector<SweepRun>& runs) {
  std::map<std::string, Group> by_group;
  std::map<std::string, int> per_key;
  for (const auto& [name, rs] : seed_groups(runs)) {
    Group& g = by_group[name];
    g.config = &rs.front()->point->config;
    g.row = table1_row(*g.config);
    ++per_key[g.row.key];
    for (const SweepRun* r : rs) {
      if (r->state == PointState::kFailed) {
        ++g.failed;
        continue;
      }
      g.train.push_back(train_ppl(r->point->dir));
      g.val.push_back(val_ppl(r->point->dir));
    }
    g.train_stat = seed_stat(g.train);
    g.val_stat = seed_stat(g.val);
  }
  std::vector<Group> out;
  for (auto& [name, g] : by_group) {
    // Two groups on one row (a sweep that also varies lr): told apart by name, ranked by neither.
    if (per_key[g.row.key] > 1) g.row.label += " [" + name + "]", g.row.paper.reset();
    out.push_back(std::move(g));
  }
  std::stable_sort(out.begin(), out.end(), [](const Group& a, const Group& b) {
    return std::make_tuple(a.row.order, a.row.key) < std::make_tuple(b.row.order, b.row.key);
  });
  return out;
}

// Ranks (1 = lowest perplexity) among the rows that have both our result and the paper's.
void rank_rows(std::vector<Group>& groups, double* rho_val, double* rho_train, size_t* n) {
  std::vector<Group*> ranked;
  for (auto& g : groups)
    if (g.row.paper && g.val_stat.n > 0 && g.train_stat.n > 0) ranked.push_back(&g);
  std::vector<double> ov, ot, pv, pt;
  for (const Group* g : ranked) {
    ov.push_back(g->val_stat.mean), ot.push_back(g->train_stat.mean);
    pv.push_back(g->row.paper->val_ppl), pt.push_back(g->row.paper->train_ppl);
  }
  const auto rov = average_ranks(ov), rot = average_ranks(ot), rpv = average_ranks(pv),
             rpt = average_ranks(pt);
  for (size_t i = 0; i < ranked.size(); ++i) {
    ranked[i]->ranked = true;
    ranked[i]->ours_rank_val = rov[i], ranked[i]->paper_rank_val = rpv[i];
    ranked[i]->ours_rank_train = rot[i], ranked[i]->paper_rank_train = rpt[i];
  }
  *rho_val = spearman_rho(ov, pv);
  *rho_train = spearman_rho(ot, pt);
  *n = ranked.size();
}

std::string ppl_text(const SeedStat& s, bool latex) {
  if (s.n == 0) return latex ? "--" : "-";
  if (s.n == 1) return fmt::format("{:.2f}", s.mean);
  return fmt::format("{:.2f}{}{:.2f} (n={})", s.mean, latex ? " $\\pm$ " : " ± ", s.sd, s.n);
}

std::string latex_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '_' || ch == '%' || ch == '&' || ch == '#') out += '\\';
    out += ch;
  }
  return out;
}

std::string rank_text(double r) {
  return r == std::floor(r) ? fmt::format("{:.0f}", r) : fmt::format("{:.1f}", r);
}

std::string si(double v) {
  if (v >= 1e15) return fmt::format("{:.2f}P", v / 1e15);
  if (v >= 1e12) return fmt::format("{:.2f}T", v / 1e12);
  if (v >= 1e9) return fmt::format("{:.2f}G", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.2f}M", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.1f}K", v / 1e3);
  return fmt::format("{:.0f}", v);
}

// Two-sided 5% critical values of Spearman's rho for n = 5..10 (Zar 1972, table B.20).
double rho_critical(size_t n) {
  constexpr double kCrit[] = {1.0, 0.886, 0.786, 0.738, 0.700, 0.648};
  return n >= 5 && n <= 10 ? kCrit[n - 5] : std::numeric_limits<double>::quiet_NaN();
}

std::string agreement(double rho, size_t n, const char* what) {
  if (!std::isfinite(rho))
    return fmt::format("- {}: too few rows with both results to compare orderings ({}).\n", what,
                       n);
  const char* words = rho >= 0.7   ? "agrees well with"
                      : rho >= 0.4 ? "agrees partly with"
                      : rho > -0.4 ? "shows no clear relation to"
                                   : "runs against";
  std::string s =
      fmt::format("- {}: Spearman's rho = {:.2f} over {} rows: our ordering {} the paper's", what,
                  rho, n, words);
  const double crit = rho_critical(n);
  if (std::isfinite(crit))
    s += fmt::format(" ({} the 5% two-sided critical value {:.3f} for n = {})",
                     std::abs(rho) >= crit ? "beyond" : "within", crit, n);
  return s + ".\n";
}

const Group* reference(const std::vector<Group>& groups) {
  for (const auto& g : groups)
    if (g.row.key == "3:1") return &g;
  return groups.empty() ? nullptr : &groups.front();
}

std::string header(const std::string& sweep_dir, const Group& ref, size_t runs, size_t points) {
  const RunConfig& c = *ref.config;
  const auto cost = models::model_cost(c.model, resolved_vocab(c), c.train.seq_len);
  const int64_t embeddings = cost.embedding_params * (c.model.tie_embeddings ? 1 : 2);
  std::string md = fmt::format("# {}: the paper's Table 1, scaled down\n\n",
                               fs::path(sweep_dir).filename().string());
  md += fmt::format(
      "**A scaled-down replication, not the paper's setting**: {} layers, d_model {}, {} heads x "
      "{}, about {} parameters ({} without embeddings), trained on {} tokens per row at the 3:1 "
      "row's FLOPs (seq_len {}, {} tokens a step). The paper's Table 1 models have 16 layers and "
      "16 heads (DESIGN.md section 7) and their own data, tokenizer and token budget: compare the "
      "orderings, not the perplexities.\n\n",
      c.model.n_layers, c.model.d_model, c.model.num_heads, c.model.head_dim,
      si(static_cast<double>(cost.params)), si(static_cast<double>(cost.params - embeddings)),
      si(static_cast<double>(train_tokens(c))), c.train.seq_len,
      si(static_cast<double>(c.train.batch_size * c.train.grad_accum * c.train.seq_len)));
  md += fmt::format(
      "{} of the sweep's {} points have finished or failed. Train PPL = exp(mean training loss "
      "over the last "
      "10% of steps, metrics.csv); val PPL = exp(validation loss at the last eval, eval.csv); "
      "mean ± sd over seeds. Ranks: 1 = lowest perplexity, among the rows the paper reports "
      "(ties share the mean rank).\n\n",
      runs, points);
  return md;
}

}  // namespace

SweepReportText make_table1_report(const std::string& sweep_dir) {
  size_t total_points = 0;
  const std::vector<SweepPoint> points = load_sweep_points(sweep_dir, &total_points);
  const std::vector<SweepRun> runs = read_sweep_runs(points);
  if (runs.empty())
    throw UserError(fmt::format("{}: no point has finished yet; nothing to report", sweep_dir));
  std::vector<Group> groups = read_groups(runs);
  double rho_val = 0, rho_train = 0;
  size_t n = 0;
  rank_rows(groups, &rho_val, &rho_train, &n);
  const Group& ref = *reference(groups);
  const double ref_flops = train_flops(*ref.config);

  std::string md = header(sweep_dir, ref, runs.size(), total_points);
  md +=
      "| row | train PPL | val PPL | paper train | paper val | rank val (ours / paper) | rank "
      "train (ours / paper) | steps | tokens | train FLOPs / token | train FLOPs | FLOPs vs 3:1 "
      "|\n|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  std::string tex =
      "% kimi-lab report --paper table1: a scaled-down replication of the paper's Table 1\n"
      "\\begin{tabular}{lrrrrrrrr}\n\\toprule\n"
      "Row & Train PPL & Val PPL & Paper train & Paper val & Rank val & Paper rank val & Tokens & "
      "FLOPs \\\\\n\\midrule\n";
  for (const Group& g : groups) {
    const RunConfig& c = *g.config;
    const double flops = train_flops(c);
    const std::string pt = g.row.paper ? fmt::format("{:.2f}", g.row.paper->train_ppl) : "-";
    const std::string pv = g.row.paper ? fmt::format("{:.2f}", g.row.paper->val_ppl) : "-";
    const std::string rv =
        g.ranked ? fmt::format("{} / {}", rank_text(g.ours_rank_val), rank_text(g.paper_rank_val))
                 : "-";
    const std::string rt = g.ranked ? fmt::format("{} / {}", rank_text(g.ours_rank_train),
                                                  rank_text(g.paper_rank_train))
                                    : "-";
    const std::string label =
        g.row.label + (g.failed ? fmt::format(" ({} failed)", g.failed) : std::string());
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:+.2f}% |\n",
                      label, ppl_text(g.train_stat, false), ppl_text(g.val_stat, false), pt, pv, rv,
                      rt, c.train.steps, si(static_cast<double>(train_tokens(c))),
                      si(train_flops_per_token(c)), si(flops), 100 * (flops / ref_flops - 1));
    tex +=
        fmt::format("{} & {} & {} & {} & {} & {} & {} & {} & {} \\\\\n", latex_escape(label),
                    ppl_text(g.train_stat, true), ppl_text(g.val_stat, true), pt == "-" ? "--" : pt,
                    pv == "-" ? "--" : pv, g.ranked ? rank_text(g.ours_rank_val) : "--",
                    g.ranked ? rank_text(g.paper_rank_val) : "--",
                    si(static_cast<double>(train_tokens(c))), si(flops));
  }
  tex += "\\bottomrule\n\\end{tabular}\n";
  md += "\n## Ordering against the paper's\n\n";
  md += agreement(rho_val, n, "validation perplexity");
  md += agreement(rho_train, n, "training perplexity");
  std::vector<double> sds, means, paper;
  for (const Group& g : groups)
    if (g.ranked) {
      means.push_back(g.val_stat.mean), paper.push_back(g.row.paper->val_ppl);
      if (g.val_stat.n > 1) sds.push_back(g.val_stat.sd);
    }
  if (!means.empty()) {
    const auto [lo, hi] = std::minmax_element(means.begin(), means.end());
    const auto [plo, phi] = std::minmax_element(paper.begin(), paper.end());
    md += fmt::format(
        "- Spread of our validation PPL over those rows: {:.2f} to {:.2f} ({:.1f}%; the "
        "paper's: {:.2f} to {:.2f}, {:.1f}%)",
        *lo, *hi, 100 * (*hi / *lo - 1), *plo, *phi, 100 * (*phi / *plo - 1));
    md += sds.empty() ? "; one seed per row, so the seed-to-seed noise is unknown and close "
                        "ranks may swap with another seed.\n"
                      : fmt::format(
                            "; the seed-to-seed sd is {:.3f} on average, so rows closer "
                            "than about that are not ordered by this run.\n",
                            mean_of(sds));
  }
  md +=
      "\nColumns: steps and tokens = what each row trained on (train.steps x batch x grad_accum "
      "x seq_len); train FLOPs = tokens x the per-token count of models/flops.h (3 x forward, "
      "matmuls, convs and the mixers' cores); the sweep sets each row's steps so these match the "
      "3:1 row (experiments/paper/table1_ablation.yaml says how). The paper reports RoPE against "
      "NoPE only in its long-context table (54.5 vs 51.8 average), so that row has no paper PPL "
      "and no rank.\n";
  return {md, tex};
}

}  // namespace kimi
