// `kimi-lab verify FILE`: compare every recognised op / layer in a reference file with
// kimi-lab's recurrent and chunked forms; a table of relative errors; non-zero exit on failure.
#include "core/backend/precision.h"
#include "models/golden_verify.h"
#include "tools/cli/commands.h"
#include "trainer/trainer.h"

namespace kimi::cli {

void register_verify(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "verify",
      "Check the mixers against a reference safetensors file (prefixes kda., gdn., deltanet.,\n"
      "simple_gla., attention., kda_layer., gdn_layer., mamba2_layer.; any shapes). Prints\n"
      "tensor, relative error ||x-ref||/||ref||, tolerance, pass/fail; exits 1 if any fails.");
  auto file = std::make_shared<std::string>();
  auto dtype = std::make_shared<std::string>("f32");
  auto device = std::make_shared<std::string>("cpu");
  cmd->add_option("file", *file, "a safetensors file in the tests/golden layout")->required();
  cmd->add_option("--dtype", *dtype, "compute in f32 or f64")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "f64"}));
  cmd->add_option("--device", *device, "cpu or cuda (f32 only; products in full fp32)")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->callback([file, dtype, device] {
    const Device dev = resolve_device(*device);
    if (dev == Device::kCUDA && *dtype != "f32")
      throw UserError(
          fmt::format("verify --device cuda --dtype {}: the CUDA backend computes in f32", *dtype));
    ComputePrecisionGuard fp32(ComputePrecision::kFP32);
    models::VerifyReport rep =
        models::verify_golden_file(*file, *dtype == "f64" ? DType::kF64 : DType::kF32, dev);
    fmt::print("{:<14} {:<10} {:<28} {:>11} {:>9}  {}\n", "prefix", "form", "tensor", "rel_err",
               "tol", "result");
    int failed = 0;
    for (const auto& r : rep.rows) {
      fmt::print("{:<14} {:<10} {:<28} {:>11.3e} {:>9.0e}  {}\n", r.prefix, r.form, r.tensor,
                 r.rel_err, r.tol, r.pass ? "pass" : "FAIL");
      failed += r.pass ? 0 : 1;
    }
    for (const auto& s : rep.skipped) fmt::print("(prefix '{}' not recognised; skipped)\n", s);
    fmt::print("{} passed, {} failed\n", rep.rows.size() - failed, failed);
    if (failed || rep.rows.empty()) throw CLI::RuntimeError(1);
  });
}

}  // namespace kimi::cli
