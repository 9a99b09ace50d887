// `kimi-lab scaling` (trainer/scaling_report.h and the command) on fabricated sweep directories:
// sweep.json plus run directories holding only config.yaml, summary.json, metrics.csv and
// eval.csv, with losses drawn from known curves, so every number in the outputs is known. Then
// the refusals: no finished point, a missing eval.csv, a NaN loss, no FLOPs logged, too few
// envelope points, and bad flags (each one line, exit status 2).
#include "trainer/scaling_report.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/tensor/error.h"
#include "trainer/config.h"

namespace kimi {
namespace {

namespace fs = std::filesystem;

// The all-MLA curve, and the hybrid's: the same loss with 1.5 times less compute.
const PowerLaw kMla{2.0, 0.1, 1.0};
constexpr double kShift = 1.5;
double hybrid_loss(double pf_days) { return kMla.loss_at(kShift * pf_days); }

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Rows of a CSV as column -> text maps.
std::vector<std::map<std::string, std::string>> read_csv(const fs::path& p) {
  std::istringstream in(read_file(p));
  std::string line;
  std::getline(in, line);
  std::vector<std::string> header;
  for (std::stringstream ss(line); std::getline(ss, line, ',');) header.push_back(line);
  std::vector<std::map<std::string, std::string>> rows;
  while (std::getline(in, line)) {
    std::map<std::string, std::string> row;
    std::stringstream ss(line);
    for (const auto& h : header) std::getline(ss, row[h], ',');
    rows.push_back(row);
  }
  return rows;
}

class FakeSweep {
 public:
  explicit FakeSweep(const std::string& name)
      : dir_(fs::temp_directory_path() / ("kimi_scaling_test_" + std::to_string(getpid())) / name) {
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  ~FakeSweep() {
    std::error_code ec;
    fs::remove_all(dir_.parent_path(), ec);
  }
  // One finished point at `pf_days` of compute with final validation loss `loss` (text, so a
  // test can write "nan"). arch: "mla" (all layers) or "hybrid" (3:1 KDA:MLA).
  fs::path add(const std::string& arch, double pf_days, const std::string& loss,
               bool with_eval = true, bool with_flops = true) {
    const std::string name = fmt::format("{}_{}", arch, points_.size());
    const fs::path d = dir_ / name;
    fs::create_directories(d);
    const RunConfig c = load_config(
        "", {"task.name=mqar", "task.vocab_size=128", "model.d_model=16", "model.num_heads=2",
             "model.head_dim=8", "model.n_layers=4", "train.seq_len=64", "train.steps=100",
             "train.device=cpu", "eval.seq_lens=[64]",
             arch == "mla" ? "model.mixer=mla" : "model.hybrid=kda:mla=3:1"});
    std::ofstream(d / "config.yaml") << to_yaml(c);
    std::ofstream(d / "summary.json") << R"({"steps_done": 100, "parameters": 12345})";
    std::ofstream(d / "metrics.csv")
        << "step,loss,lr,grad_norm,tokens_per_s,ms_per_step,wall_s,tokens,flops,moe_max_load\n"
        << "50,3,0.001,1,1000,1,1,3200,1,\n"
        << fmt::format("100,2,0.001,1,1000,1,2,6400,{},\n",
                       with_flops ? fmt::format("{:.17g}", pf_days * kFlopsPerPflopsDay) : "");
    if (with_eval)
      std::ofstream(d / "eval.csv")
          << "step,task,seq_len,num_kv_pairs,num_examples,loss,accuracy,exact_match,perplexity,"
             "bits_per_byte\n"
          << "100,mqar,64,8,16," << loss << ",0.5,0,1,\n";
    points_.push_back({{"index", points_.size()}, {"name", name}, {"group", name}});
    std::ofstream(dir_ / "sweep.json") << nlohmann::json{{"points", points_}}.dump();
    return d;
  }
  void add_curve(const std::string& arch, int n) {
    for (int i = 0; i < n; ++i) {
      const double c = 1e-6 * std::pow(10.0, 0.5 * i);
      const double loss = arch == "mla" ? kMla.loss_at(c) : hybrid_loss(c);
      add(arch, c, fmt::format("{:.17g}", loss));
      add(arch, c * 1.2, fmt::format("{:.17g}", loss + 0.3));  // dominated: off the envelope
    }
  }
  void add_unstarted() {
    points_.push_back({{"index", points_.size()}, {"name", "never"}, {"group", "never"}});
    std::ofstream(dir_ / "sweep.json") << nlohmann::json{{"points", points_}}.dump();
  }
  std::string dir() const { return dir_.string(); }

 private:
  fs::path dir_;
  nlohmann::json points_ = nlohmann::json::array();
};

std::string error_of(const std::string& dir) {
  try {
    write_scaling_report(dir, dir + "/scaling", {});
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

TEST(ScalingReport, FitsRatioAndFilesFromKnownCurves) {
  FakeSweep s("known");
  s.add_curve("mla", 6);
  s.add_curve("hybrid", 6);
  s.add_unstarted();
  ScalingOptions o;
  o.bootstrap = 200;
  o.seed = 5;
  const std::string out = s.dir() + "/out";
  const ScalingResult r = write_scaling_report(s.dir(), out, o);
  ASSERT_EQ(r.fits.size(), 2u);
  EXPECT_EQ(r.baseline, "all-mla");
  EXPECT_EQ(r.points_total, 25);
  EXPECT_EQ(r.runs.size(), 24u);
  for (const ArchFit& f : r.fits) {
    EXPECT_EQ(f.envelope.size(), 6u) << f.arch;
    const double a_true = f.arch == "all-mla" ? 2.0 : 2.0 * std::pow(kShift, -0.1);
    EXPECT_NEAR(f.saturating.law.a, a_true, 1e-5) << f.arch;
    EXPECT_NEAR(f.saturating.law.b, 0.1, 1e-6) << f.arch;
    EXPECT_NEAR(f.saturating.law.c, 1.0, 1e-5) << f.arch;
    EXPECT_TRUE(f.b.lo <= 0.1 + 1e-6 && 0.1 - 1e-6 <= f.b.hi) << f.b.lo << " " << f.b.hi;
  }
  ASSERT_EQ(r.ratios.size(), 3u);
  for (const RatioRow& row : r.ratios) {
    EXPECT_EQ(row.other, "kda:mla=3:1");
    EXPECT_NEAR(row.ratio, kShift, 1e-4) << row.loss;
    EXPECT_TRUE(row.ci.lo <= kShift + 1e-4 && kShift - 1e-4 <= row.ci.hi);
    EXPECT_GT(row.ratio2, 1.0);  // the two-parameter form bends, but sees the same order
  }

  const auto points = read_csv(fs::path(out) / "scaling_points.csv");
  ASSERT_EQ(points.size(), 24u);
  int on = 0;
  for (const auto& p : points) {
    on += p.at("on_envelope") == "1";
    const double loss = std::stod(p.at("loss"));
    const double c = std::stod(p.at("pflops_days"));
    const double curve = p.at("arch") == "all-mla" ? kMla.loss_at(c) : hybrid_loss(c);
    // Envelope points lie on their curve; the dominated ones 0.3 above (at 1.2 x compute).
    EXPECT_EQ(p.at("on_envelope") == "1", std::abs(loss - curve) < 1e-5) << p.at("run");
    EXPECT_NEAR(std::stod(p.at("flops")), c * kFlopsPerPflopsDay, 1e-6 * c * kFlopsPerPflopsDay);
    EXPECT_EQ(p.at("tokens"), "6400");
  }
  EXPECT_EQ(on, 12);
  const auto fits = read_csv(fs::path(out) / "scaling_fit.csv");
  ASSERT_EQ(fits.size(), 4u);
  EXPECT_EQ(fits[0].at("arch"), "all-mla");
  EXPECT_EQ(fits[0].at("form"), "a*C^-b+c");
  EXPECT_NEAR(std::stod(fits[0].at("b")), 0.1, 1e-6);
  EXPECT_NEAR(std::stod(fits[0].at("c")), 1.0, 1e-5);
  EXPECT_EQ(fits[1].at("form"), "a*C^-b");
  EXPECT_EQ(fits[0].at("bootstrap"), "200");
  const auto ratios = read_csv(fs::path(out) / "scaling_ratio.csv");
  ASSERT_EQ(ratios.size(), 3u);
  EXPECT_NEAR(std::stod(ratios[1].at("ratio")), kShift, 1e-4);
  const std::string md = read_file(fs::path(out) / "report.md");
  EXPECT_NE(md.find("scaled-down replication"), std::string::npos);
  EXPECT_NE(md.find("2.3092"), std::string::npos);  // the paper's fits beside ours
  EXPECT_NE(md.find("2.2879"), std::string::npos);
  EXPECT_NE(md.find("1 point(s) not started yet"), std::string::npos);
  EXPECT_EQ(md, scaling_report_md(r));

  // The same seed gives the same file; another seed other intervals.
  write_scaling_report(s.dir(), out + "2", o);
  EXPECT_EQ(read_file(fs::path(out + "2") / "scaling_fit.csv"),
            read_file(fs::path(out) / "scaling_fit.csv"));
}

TEST(ScalingReport, BootstrapSeedChangesTheIntervalsOfNoisyPoints) {
  FakeSweep s("noisy");
  for (const char* arch : {"mla", "hybrid"})
    for (int i = 0; i < 8; ++i) {
      const double c = 1e-6 * std::pow(10.0, 0.4 * i);
      const double wiggle = 1 + 0.01 * ((i * 7) % 5 - 2);
      const double loss = std::string(arch) == "mla" ? kMla.loss_at(c) : hybrid_loss(c);
      s.add(arch, c, fmt::format("{:.17g}", loss * wiggle));
    }
  ScalingOptions a, b;
  a.bootstrap = b.bootstrap = 100;
  b.seed = 1;
  const ScalingResult ra = write_scaling_report(s.dir(), s.dir() + "/a", a);
  const ScalingResult rb = write_scaling_report(s.dir(), s.dir() + "/b", b);
  EXPECT_NE(ra.fits[0].b.lo, rb.fits[0].b.lo);
  EXPECT_EQ(ra.fits[0].saturating.law.b, rb.fits[0].saturating.law.b);  // the fit is the fit
}

TEST(ScalingReport, AnArchitecturesIntervalsDoNotDependOnTheOthers) {
  auto runs_of = [](const std::string& arch, double shift, double wiggle_sign) {
    std::vector<ScalingRun> out;
    for (int i = 0; i < 6; ++i) {
      ScalingRun run;
      run.name = fmt::format("{}_{}", arch, i);
      run.arch = arch;
      run.flops = 1e-6 * std::pow(10.0, 0.5 * i) * kFlopsPerPflopsDay;
      run.loss = kMla.loss_at(shift * run.pflops_days()) * (1 + wiggle_sign * 0.01 * (i % 3 - 1));
      out.push_back(run);
    }
    return out;
  };
  ScalingOptions o;
  o.bootstrap = 100;
  const ScalingResult alone = analyse_scaling(runs_of("all-mla", 1, 1), o);
  std::vector<ScalingRun> both = runs_of("all-mla", 1, 1);
  for (auto& run : runs_of("all-gdn", 2, -1)) both.push_back(run);  // sorts before all-mla
  const ScalingResult with_other = analyse_scaling(both, o);
  ASSERT_EQ(with_other.fits.size(), 2u);
  const ArchFit& mla = with_other.fits[1];
  EXPECT_EQ(mla.arch, "all-mla");
  EXPECT_EQ(mla.b.lo, alone.fits[0].b.lo);
  EXPECT_EQ(mla.b2.hi, alone.fits[0].b2.hi);
  EXPECT_EQ(with_other.baseline, "all-mla");
  ASSERT_EQ(with_other.ratios.size(), 3u);
  EXPECT_EQ(with_other.ratios[0].other, "all-gdn");
}

TEST(ScalingReport, RefusesNoFinishedPoint) {
  FakeSweep s("none");
  s.add_unstarted();
  EXPECT_NE(error_of(s.dir()).find("no point has finished yet"), std::string::npos);
  EXPECT_NE(error_of(s.dir() + "/nope").find("no sweep.json"), std::string::npos);
}

TEST(ScalingReport, RefusesMissingEvalNanLossAndMissingFlops) {
  {
    FakeSweep s("no_eval");
    const fs::path d = s.add("mla", 1e-3, "2.0", /*with_eval=*/false);
    const std::string e = error_of(s.dir());
    EXPECT_NE(e.find((d / "eval.csv").string()), std::string::npos) << e;
    EXPECT_NE(e.find("missing"), std::string::npos) << e;
  }
  {
    FakeSweep s("nan_loss");
    const fs::path d = s.add("mla", 1e-3, "nan");
    const std::string e = error_of(s.dir());
    EXPECT_NE(e.find((d / "eval.csv").string()), std::string::npos) << e;
    EXPECT_NE(e.find("nan"), std::string::npos) << e;
  }
  {
    FakeSweep s("no_flops");
    const fs::path d = s.add("mla", 1e-3, "2.0", true, /*with_flops=*/false);
    const std::string e = error_of(s.dir());
    EXPECT_NE(e.find((d / "metrics.csv").string()), std::string::npos) << e;
    EXPECT_NE(e.find("flops"), std::string::npos) << e;
  }
  {
    // A run from before metrics.csv had tokens and flops: named, not misread.
    FakeSweep s("old_metrics");
    const fs::path d = s.add("mla", 1e-3, "2.0");
    std::ofstream(d / "metrics.csv") << "step,loss,lr,grad_norm,tokens_per_s,ms_per_step,wall_s\n"
                                     << "100,2,0.001,1,1000,1,2\n";
    const std::string e = error_of(s.dir());
    EXPECT_NE(e.find((d / "metrics.csv").string() + ": no 'tokens' column"), std::string::npos)
        << e;
  }
}

TEST(ScalingReport, RefusesFewerEnvelopePointsThanParameters) {
  FakeSweep s("too_few");
  s.add_curve("mla", 4);
  s.add_curve("hybrid", 2);  // 2 on the envelope, 2 dominated
  const std::string e = error_of(s.dir());
  EXPECT_NE(e.find("architecture kda:mla=3:1: 2 point(s) on its lower envelope (4 finished)"),
            std::string::npos)
      << e;
}

TEST(ScalingReport, ThreeEnvelopePointsGetNoIntervalForTheThreeParameterFit) {
  FakeSweep s("three");
  s.add_curve("mla", 3);
  const std::string out = s.dir() + "/out";
  const ScalingResult r = write_scaling_report(s.dir(), out, {});
  ASSERT_EQ(r.fits.size(), 1u);
  EXPECT_NEAR(r.fits[0].saturating.law.b, 0.1, 1e-6);  // through the three points
  EXPECT_TRUE(std::isnan(r.fits[0].b.lo));
  EXPECT_EQ(r.fits[0].boot_ok, 0);
  EXPECT_EQ(r.fits[0].boot_ok2, 1000);  // the two-parameter form still has one point to spare
  EXPECT_LT(r.fits[0].b2.lo, r.fits[0].b2.hi);
  EXPECT_NE(scaling_report_md(r).find("only 3 envelope points has no interval"), std::string::npos);
  EXPECT_NE(scaling_report_md(r).find("No compute ratio: the sweep has one architecture"),
            std::string::npos);
}

TEST(ScalingReport, ArchitectureNamesFromTheLayers) {
  auto arch = [](const std::vector<std::string>& overrides) {
    std::vector<std::string> o = {"task.name=mqar", "model.n_layers=4"};
    o.insert(o.end(), overrides.begin(), overrides.end());
    return scaling_arch(load_config("", o));
  };
  EXPECT_EQ(arch({"model.mixer=mla"}), "all-mla");
  EXPECT_EQ(arch({"model.hybrid=kda:mla=0:1"}), "all-mla");  // scaling.yaml's all-MLA points
  EXPECT_EQ(arch({"model.hybrid=kda:mla = 3:1"}), "kda:mla=3:1");
  EXPECT_EQ(arch({"model.mixer=[kda, mla, gdn, mla]"}), "kda+mla+gdn+mla");
}

TEST(ScalingReport, PausedPointsAreLeftOutAndListed) {
  FakeSweep s("paused");
  s.add_curve("mla", 3);
  const fs::path d = s.add("mla", 1.0, "1.5");
  std::ofstream(d / "summary.json") << R"({"steps_done": 50, "parameters": 12345})";  // --stop-at
  const ScalingResult r = write_scaling_report(s.dir(), s.dir() + "/out", {});
  EXPECT_EQ(r.runs.size(), 6u);
  ASSERT_EQ(r.skipped.size(), 1u);
  EXPECT_EQ(r.skipped[0], d.filename().string() + " (interrupted)");
  EXPECT_NE(scaling_report_md(r).find("Started but not finished, left out: " + r.skipped[0]),
            std::string::npos);
}

// The built binary, as a user runs it: output, stdout, exit status and one-line errors.
struct Cli {
  int status = -1;
  std::string out;  // stdout and stderr together
};
Cli run_cli(const std::string& args) {
  Cli r;
  FILE* p = popen((std::string(KIMI_LAB_BINARY) + " " + args + " 2>&1").c_str(), "r");
  std::array<char, 4096> buf;
  for (size_t n; (n = fread(buf.data(), 1, buf.size(), p)) > 0;) r.out.append(buf.data(), n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

TEST(ScalingCommand, WritesTheFilesAndThePlot) {
  FakeSweep s("cli");
  s.add_curve("mla", 5);
  s.add_curve("hybrid", 5);
  const Cli r = run_cli("scaling " + s.dir() + " --bootstrap 50 --seed 3");
  ASSERT_EQ(r.status, 0) << r.out;
  for (const char* f : {"scaling_points.csv", "scaling_fit.csv", "scaling_ratio.csv", "report.md",
                        "scaling.png", "scaling.svg"})
    EXPECT_TRUE(fs::exists(fs::path(s.dir()) / "scaling" / f)) << f << "\n" << r.out;
  EXPECT_NE(r.out.find("| 1.5 [1.5, 1.5] |"), std::string::npos) << r.out;  // the ratio rows
  const Cli again =
      run_cli("scaling " + s.dir() + " --out " + s.dir() + "/o2 --no-plot --bootstrap 0");
  ASSERT_EQ(again.status, 0) << again.out;
  EXPECT_NE(again.out.find("No intervals (--bootstrap 0)"), std::string::npos) << again.out;
  EXPECT_NE(again.out.find("| 1.5 | 1.5"), std::string::npos) << again.out;  // ratio, no interval
  EXPECT_FALSE(fs::exists(fs::path(s.dir()) / "o2" / "scaling.png"));
}

TEST(ScalingCommand, BadArgumentsAreOneLineAndStatusTwo) {
  FakeSweep s("cli_bad");
  s.add_curve("mla", 3);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"scaling", "sweep_dir"},
      {"scaling " + s.dir() + " --bootstrap -1", "--bootstrap"},
      {"scaling " + s.dir() + " --bootstrap 99999999999999999999", "--bootstrap"},
      {"scaling " + s.dir() + " --seed -2", "--seed"},
      {"scaling " + s.dir() + " --level 1.5", "--level"},
      {"scaling " + s.dir() + " --level abc", "--level"},
      {"scaling " + s.dir() + " --bogus", "--bogus"},
      {"scaling " + s.dir() + "/missing", "missing"},
  };
  for (const auto& [args, names] : cases) {
    const Cli r = run_cli(args);
    EXPECT_EQ(r.status, 2) << args << "\n" << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << args << "\n" << r.out;
    EXPECT_NE(r.out.find(names), std::string::npos) << args << "\n" << r.out;
  }
}

}  // namespace
}  // namespace kimi
