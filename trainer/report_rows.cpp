// The rows of the Figure 4 report (trainer/report_internal.h): the sweep's runs grouped by
// setting, mixer and length, every lr a candidate, the one with the best mean over seeds chosen.
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "trainer/report_internal.h"

namespace kimi::report_detail {
namespace {

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

}  // namespace

std::string display(const std::string& mixer, const RunConfig& c) {
  std::string name = kMixerName.count(mixer) ? kMixerName.at(mixer) : mixer;
  if (mixer == "attention") name += c.model.rope ? " (RoPE)" : " (NoPE)";
  return name;
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

}  // namespace kimi::report_detail
