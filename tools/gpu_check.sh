#!/usr/bin/env bash
# Builds the CUDA parity tests and benchmark here (no GPU needed: sm_90a machine code, static
# libstdc++/libgcc/libgomp/cudart), copies them and a run script into .gpu/ (git-ignored; the
# golden tensors they read travel as tracked files, tests/golden), and prints the `run` call
# that executes them on the lent GPU.
#   bash tools/gpu_check.sh            # build + stage
# On the GPU machine .gpu/run.sh runs: nvidia-smi; kimi_cuda_tests (every kernel against the
# CPU kernels and the golden files); the same under compute-sanitizer memcheck and racecheck
# (--quick cases); kimi_cuda_bench; optionally (stage profile) ncu on the chunk kernels; stage
# attention: kimi_cuda_attention_test (parity, sanitizers, --bench); stage nccl: the NCCL
# transport (TARGETS=kimi_cuda_nccl_test); stage dp: `run --gpus 1` against a plain run;
# stage engine: the decode
# engine's tests and a short bench-infer (TARGETS="kimi_cuda_engine_test kimi-lab"). Logs land in $OUT.
# The binaries and their shared libraries travel packed (.gpu/bin.tar.xz; PACK=0: loose):
# run.sh unpacks them first, and
# `bash .gpu/run.sh unpack` does only that, for a call's own commands.
# Stages can be picked: bash .gpu/run.sh tests bench profile attention peers (peers: FLA in .gl/fla);
# walks: the state walks' parity variants and bench rows; walks_sanitize: their sanitizers;
# JOBS_FLAGS=--mps runs stage jobs under a private MPS daemon (runs and logs named jobs_mps_N)
# (default: tests sanitize bench)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${BUILD_DIR:-build-cuda}"
stage="${STAGE:-.gpu}"  # another folder (e.g. .gpu-mine) keeps concurrent stagings apart
jobs="${JOBS:-2}"
# ccache, when installed, lets several checkouts (helpers' worktrees) share compiled objects.
launch=()
command -v ccache >/dev/null && launch=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKIMI_LAB_CUDA=ON "${launch[@]}" \
  -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc -DCMAKE_CUDA_ARCHITECTURES=OFF -DKIMI_LAB_NATIVE=OFF \
  "-DKIMI_CUDA_GENCODE=-gencode=arch=compute_90a,code=sm_90a;-gencode=arch=compute_90,code=compute_90" \
  >/dev/null
# TARGETS picks a subset (e.g. TARGETS=kimi_cuda_attention_test); each built one is staged.
targets="${TARGETS:-kimi_cuda_tests kimi_cuda_bench kimi_cuda_tensor_test kimi_cuda_attention_test kimi_cuda_op_parity kimi-lab}"
cmake --build "$dir" -j "$jobs" --target $targets
rm -rf "$stage"/bin "$stage"/bin.tar.xz "$stage"/lib "$stage"/golden  # only what this build made travels
mkdir -p "$stage"/bin "$stage"/lib
for t in $targets; do
  if [ -f "$dir/tests/cuda/$t" ]; then cp "$dir/tests/cuda/$t" "$stage"/bin/; else cp "$dir/$t" "$stage"/bin/; fi
done
# Shared libraries the GPU image may lack (kimi_core's fmt / spdlog / yaml-cpp / gomp; cuBLAS is there).
for b in "$stage"/bin/*; do
  { ldd "$b" | awk '/=> \// {print $3}' |
      grep -vE '/(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|libcublas|libcublasLt|libcudart)\.so' || true; } |
    while read -r lib; do cp -L "$lib" "$stage"/lib/; done
done
# A carry is at most 64 MiB with the tracked files (~34 MB: golden tensors, results), and the
# sm_90a binaries are ~90 MB (kimi-lab alone ~37): they travel as one xz -9 tarball (one 64 MiB
# dictionary spans the binaries, which share most of their code: five ~20 MB, where xz -6 with
# threads made ~32), which run.sh unpacks first. The shared libraries go in it too (8.5 MB loose,
# libcrypto alone 4.7: loose, they pushed session 25's carry with .gl/fla over the limit).
# PACK=0 keeps them loose (a subset of TARGETS that fits).
if [ "${PACK:-1}" = 1 ]; then
  tar cf - -C "$stage" bin lib | xz -9 -T1 >"$stage"/bin.tar.xz
  rm -rf "$stage"/bin "$stage"/lib
fi
cat > "$stage"/run.sh <<'RUN'
#!/usr/bin/env bash
# Runs on the GPU machine from the repository root (see tools/gpu_check.sh).
set -uo pipefail
# Packed binaries (PACK=1): unpacked once per machine (python: the image may lack xz).
[ -d .gpu/bin ] || python3 -c "import tarfile; tarfile.open('.gpu/bin.tar.xz').extractall('.gpu/')"
out="${OUT:-/tmp/out}"; mkdir -p "$out"
stages="${*:-tests sanitize bench}"
# The folder of libnccl.so.2 (kimi-lab opens it by dlopen): PyTorch's wheel, else any on the disk.
nccl_lib_dir() {
  local d
  d=$(python3 -c "import nvidia.nccl as n, os; print(os.path.join(list(n.__path__)[0], 'lib'))" 2>/dev/null)
  [ -f "$d/libnccl.so.2" ] || d=$(dirname "$(find / -name libnccl.so.2 -not -path '/proc/*' 2>/dev/null | head -n 1)")
  echo "$d"
}
rc=0
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv | tee "$out/gpu.txt"
for s in $stages; do
  case "$s" in
    tests)
      .gpu/bin/kimi_cuda_tests tests/golden 2>&1 | tee "$out/tests.log"; rc=$((rc | ${PIPESTATUS[0]}))
      echo "== the same, chunk kernels with 256-thread intra blocks"
      KIMI_CUDA_CHUNK_THREADS=256 .gpu/bin/kimi_cuda_tests tests/golden >"$out/tests_256.log" 2>&1
      r=$?; grep -E "FAIL|checks" "$out/tests_256.log"; rc=$((rc | r))
      LD_LIBRARY_PATH="$PWD/.gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" .gpu/bin/kimi_cuda_tensor_test 2>&1 |
        tee "$out/tensor.log"; rc=$((rc | ${PIPESTATUS[0]})) ;;
    sanitize)
      for tool in memcheck racecheck; do
        echo "== compute-sanitizer --tool $tool (quick cases)"
        timeout 150 compute-sanitizer --tool $tool --error-exitcode 3 .gpu/bin/kimi_cuda_tests --quick tests/golden \
          >"$out/sanitize_$tool.log" 2>&1
        r=$?; tail -n 4 "$out/sanitize_$tool.log"; echo "$tool exit $r"; rc=$((rc | r))
      done ;;
    walks)  # the sequential state walks (forward, F2 store mode, B1 dh walk, the linear recurrence's walk): every
            # variant's parity (the `~` rows compare variants in bits), then their bench rows
      timeout 240 .gpu/bin/kimi_cuda_tests --state --bwd-state --bwd-dh --linear tests/golden >"$out/walks.log" 2>&1
      r=$?; grep -E "FAIL|checks" "$out/walks.log"; echo "walks parity exit $r"; rc=$((rc | r))
      for b in --state --bwd-state --linear; do
        timeout 120 .gpu/bin/kimi_cuda_bench $b 2>&1 | tee "$out/walks_bench$b.log"; rc=$((rc | ${PIPESTATUS[0]}))
      done ;;
    walks_sanitize)  # the walks' quick cases under racecheck, memcheck and synccheck (named
                     # barriers); WALKS_TOOLS picks the tools (a call has 600 s)
      # WALKS_REPEAT=N runs each tool N times: racecheck's one report on the paired forward walk
      # (session 25) did not come back in two reruns, so one clean run settles nothing.
      n=0
      for tool in $(for t in ${WALKS_TOOLS:-racecheck memcheck synccheck}; do
                      for _ in $(seq "${WALKS_REPEAT:-1}"); do echo "$t"; done; done); do
        n=$((n + 1))
        timeout 180 compute-sanitizer --tool $tool --error-exitcode 3 .gpu/bin/kimi_cuda_tests --quick --state --bwd-state --bwd-dh --linear \
          tests/golden >"$out/walks_${tool}_$n.log" 2>&1
        r=$?; tail -n 3 "$out/walks_${tool}_$n.log"; echo "walks $tool ($n) exit $r"; rc=$((rc | r))
      done ;;
    unpack) ;;  # done above: for a call that runs its own commands on .gpu/bin
    bench) .gpu/bin/kimi_cuda_bench 2>&1 | tee "$out/bench.log"; rc=$((rc | ${PIPESTATUS[0]})) ;;
    ops)  # every op, layer and a whole model on the GPU against the CPU; kimi_tiny's logits
      KIMI_GOLDEN_DIR="$PWD/tests/golden" LD_LIBRARY_PATH="$PWD/.gpu/lib" .gpu/bin/kimi_cuda_op_parity --gtest_brief=1 2>&1 | tee "$out/ops.log" | tail -n 40
      rc=$((rc | ${PIPESTATUS[0]})) ;;
    verify)  # the golden files through the ops on the GPU
      for f in linear_ops_small layers_small; do
        LD_LIBRARY_PATH="$PWD/.gpu/lib" .gpu/bin/kimi-lab verify tests/golden/$f.safetensors --device cuda \
          >"$out/verify_$f.log" 2>&1
        r=$?; grep -E "FAIL|passed" "$out/verify_$f.log"; rc=$((rc | r))
      done ;;
    clibench)  # kimi-lab bench --device cuda: the reference shapes, every mixer, decode steps
      LD_LIBRARY_PATH="$PWD/.gpu/lib" timeout "${BENCH_TIMEOUT:-300}" .gpu/bin/kimi-lab bench --device cuda ${BENCH_ARGS:-} 2>&1 | tee "$out/clibench.log"
      rc=$((rc | ${PIPESTATUS[0]})) ;;
    peers)  # kimi-lab beside FLA / PyTorch SDPA in one run (FLA: a fetched copy in .gl/fla, carried,
            # never committed); PEER_ARGS picks shapes, e.g. "--seq-lens 8192 --mixers kda"
      PYTHONPATH="$PWD/.gl/fla:${PYTHONPATH:-}" LD_LIBRARY_PATH="$PWD/.gpu/lib" \
        timeout "${BENCH_TIMEOUT:-500}" python3 tools/peer_bench.py --kimi-lab .gpu/bin/kimi-lab \
        --out "$out/peers.json" --markdown "$out/peers.md" ${PEER_ARGS:-} 2>&1 | tee "$out/peers.log"
      rc=$((rc | ${PIPESTATUS[0]})) ;;
    sweep)  # a sweep on the GPU (SWEEP, default the 4-mixer MQAR comparison); results come back as a
            # tarball without checkpoints (plot them here: kimi-lab sweep FILE again replots, or plot)
      sw="${SWEEP:-experiments/sweep_mqar_gpu.yaml}"
      LD_LIBRARY_PATH="$PWD/.gpu/lib" timeout "${SWEEP_TIMEOUT:-400}" .gpu/bin/kimi-lab sweep "$sw" --device cuda \
        --no-progress --no-plot >"$out/sweep.log" 2>&1
      r=$?; grep -E "finished|summary|error" "$out/sweep.log" | tail -n 12; echo "sweep exit $r"; rc=$((rc | r))
      tar czf "$out/sweep_runs.tgz" --exclude='*.safetensors' runs ;;
    jobs)  # sweep --jobs N = 1 2 4 8 on one GPU: wall time of the same 8 points (JOBS_NS picks N;
           # JOBS_FLAGS adds sweep flags; with --mps the runs and logs are named jobs_mps_N)
      tag=jobs_; case "${JOBS_FLAGS:-}" in *--mps*) tag=jobs_mps_ ;; esac
      for n in ${JOBS_NS:-1 2 4 8}; do
        sw="experiments/gpu/$tag$n.yaml"
        sed "s/^name: .*/name: $tag$n/" experiments/gpu/sweep_jobs_throughput.yaml >"$sw"
        rm -rf "runs/$tag$n"; t0=$(date +%s.%N)
        LD_LIBRARY_PATH="$PWD/.gpu/lib" timeout "${SWEEP_TIMEOUT:-300}" .gpu/bin/kimi-lab sweep "$sw" --device cuda \
          --jobs "$n" ${JOBS_FLAGS:-} --no-progress --no-plot >"$out/$tag$n.log" 2>&1
        r=$?; t1=$(date +%s.%N)
        awk -v n="$n" -v t="$tag" -v a="$t0" -v b="$t1" -v r="$r" 'BEGIN { w = b - a;
          printf "%s%d: 8 points x 400 steps in %.1f s = %.2f points/min, %.0f steps/s (exit %d)\n", t, n, w, 8 * 60 / w, 3200 / w, r }' |
          tee -a "$out/jobs.txt"
        rc=$((rc | r))
      done
      tar czf "$out/${tag}runs.tgz" --exclude='*.safetensors' runs/$tag* ;;
    train)  # a training run on the GPU: TRAIN_CONFIG (default the paper-size MQAR model at T=1024),
            # TRAIN_ARGS overrides, TRAIN_NAME names the run directory under $OUT
      cfg="${TRAIN_CONFIG:-experiments/mqar.yaml}"; name="${TRAIN_NAME:-run_$(basename "$cfg" .yaml)}"
      LD_LIBRARY_PATH="$PWD/.gpu/lib" timeout "${TRAIN_TIMEOUT:-240}" .gpu/bin/kimi-lab run "$cfg" \
        --device cuda --no-progress --no-plot --out "$out/$name" ${TRAIN_ARGS:-train.steps=300 train.eval_every=100} \
        >"$out/$name.log" 2>&1
      r=$?; grep -E "step [0-9]+/|eval step" "$out/$name.log" | tail -n 8; echo "train $name exit $r"; rc=$((rc | r)) ;;
    attention)  # causal attention: parity, memcheck + racecheck on the quick cases, benchmark
      .gpu/bin/kimi_cuda_attention_test tests/golden 2>&1 | tee "$out/attention.log"; rc=$((rc | ${PIPESTATUS[0]}))
      for tool in memcheck racecheck; do
        timeout 90 compute-sanitizer --tool $tool --error-exitcode 3 .gpu/bin/kimi_cuda_attention_test --quick \
          tests/golden >"$out/attention_$tool.log" 2>&1
        r=$?; tail -n 3 "$out/attention_$tool.log"; echo "attention $tool exit $r"; rc=$((rc | r))
      done
      .gpu/bin/kimi_cuda_attention_test --bench 2>&1 | tee "$out/attention_bench.log"; rc=$((rc | ${PIPESTATUS[0]})) ;;
    engine)  # the decode engine: kimi_tiny logits, odd sizes vs the f32 model, batched vs one by
             # one; then a short bench-infer of the 48B hybrid and all-MLA (needs ~100 GB: H200)
      KIMI_GOLDEN_DIR="$PWD/tests/golden" LD_LIBRARY_PATH="$PWD/.gpu/lib" .gpu/bin/kimi_cuda_engine_test \
        --gtest_brief=1 2>&1 | tee "$out/engine.log" | tail -n 30
      rc=$((rc | ${PIPESTATUS[0]}))
      echo "== compute-sanitizer memcheck: engine kernels, batched decode"
      KIMI_GOLDEN_DIR="$PWD/tests/golden" LD_LIBRARY_PATH="$PWD/.gpu/lib" timeout 100 compute-sanitizer \
        --tool memcheck --error-exitcode 3 .gpu/bin/kimi_cuda_engine_test --gtest_brief=1 \
        --gtest_filter='EngineKernels.*:Engine.BatchedDecode*' >"$out/engine_memcheck.log" 2>&1
      r=$?; tail -n 4 "$out/engine_memcheck.log"; echo "engine memcheck exit $r"; rc=$((rc | r))
      # The 48B's bf16 weights are 92 GiB: on a smaller card bench kimi_tiny's checkpoint instead
      # (the CLI, HF loading and timing paths; its floor means little).
      mib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -n 1)
      model="--preset kimi-linear-48b" args="--contexts 4K,128K,1M --batch 1,8,64 --warmup 2 --reps 5"
      if [ "${mib:-0}" -lt 120000 ]; then
        echo "== ${mib} MiB of GPU memory: the 48B does not fit; bench-infer on kimi_tiny instead"
        model="$PWD/tests/golden/kimi_tiny" args="--contexts 4K,128K --batch 1,8,64 --no-max-batch"
      fi
      LD_LIBRARY_PATH="$PWD/.gpu/lib" timeout "${BENCH_TIMEOUT:-150}" .gpu/bin/kimi-lab bench-infer \
        $model ${ENGINE_BENCH_ARGS:-$args} \
        --out "$out/bench_infer" --no-plot 2>&1 | tee "$out/bench_infer.log" | tail -n 45
      rc=$((rc | ${PIPESTATUS[0]})) ;;
    nccl)  # the NCCL transport (kimi_cuda_nccl_test): a world of one, one process per GPU where
           # there are several; libnccl.so.2 from PyTorch's wheel (kimi-lab opens it by dlopen)
      d=$(nccl_lib_dir)
      echo "== libnccl.so.2 from $d"
      NCCL_NVLS_ENABLE=0 LD_LIBRARY_PATH="$d:$PWD/.gpu/lib" .gpu/bin/kimi_cuda_nccl_test 2>&1 | tee "$out/nccl.log" | tail -n 8
      rc=$((rc | ${PIPESTATUS[0]})) ;;
    dp)  # issue 14 on one GPU: the paper-size MQAR run through `--gpus 1` (NCCL, gradient sums,
         # ZeRO-1) against the same run without it; prints the largest loss difference
      d=$(nccl_lib_dir)
      a="experiments/mqar.yaml train.steps=${DP_STEPS:-200} train.eval_every=100 --no-plot --no-progress"
      LD_LIBRARY_PATH="$PWD/.gpu/lib" .gpu/bin/kimi-lab run $a --device cuda --out "$out/dp_plain" >"$out/dp_plain.log" 2>&1
      r1=$?
      NCCL_NVLS_ENABLE=0 LD_LIBRARY_PATH="$d:$PWD/.gpu/lib" .gpu/bin/kimi-lab run $a --gpus 1 --out "$out/dp_gpus1" >"$out/dp_gpus1.log" 2>&1
      r2=$?; echo "plain exit $r1, --gpus 1 exit $r2"; tail -n 3 "$out/dp_gpus1.log"
      python3 - "$out/dp_plain/metrics.csv" "$out/dp_gpus1/metrics.csv" <<'PY'
import csv, sys
a, b = (list(csv.DictReader(open(f))) for f in sys.argv[1:3])
d = max(abs(float(x["loss"]) - float(y["loss"])) for x, y in zip(a, b))
print(f"{len(a)} / {len(b)} rows; largest loss difference {d:.3g}")
PY
      rc=$((rc | r1 | r2)) ;;
    profile)  # the two chunk-forward kernels of one call at T=8192, under Nsight Compute
      timeout 240 ncu --kernel-name regex:chunk_ --launch-skip 4 --launch-count 2 \
        --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
        --section SchedulerStats --section MemoryWorkloadAnalysis \
        .gpu/bin/kimi_cuda_bench --profile >"$out/profile.txt" 2>&1
      r=$?; grep -E "chunk_|Duration|Throughput|Warp Cycles Per Issued|Issued Warp|Eligible|Achieved Occupancy|Registers|Shared Memory Config|Stall|No Eligible" "$out/profile.txt" | head -60
      echo "ncu exit $r" ;;
  esac
done
echo "gpu run exit $rc"
exit $rc
RUN
sed -i "s#\.gpu/#$stage/#g" "$stage"/run.sh
chmod +x "$stage"/run.sh
du -sh "$stage"
echo
echo "Stage ready. On the lent GPU (device tool), call:"
echo "  run(command=\"bash .gpu/run.sh\", carry=[\".gpu\"], timeout_s=600)"
echo "or pick stages: bash .gpu/run.sh tests bench"
