#!/usr/bin/env bash
# Issue 15: a tiny CPU run killed with SIGKILL at random points (one of them inside a checkpoint
# write, via the KIMI_KILL_IN_WRITE hook of core/io/atomic_file.h) and resumed each time ends
# with the same weights, losses and evals as an unbroken run, bit for bit; every checkpoint left
# behind is intact. Then SIGTERM: exit 143, status.json "interrupted" at a checkpointed step.
# Usage: kill_resume_test.sh KIMI_LAB_BINARY CONFIG_YAML
set -u
BIN=$1 CONFIG=$2
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
O=(task.name=mqar task.vocab_size=32 task.mqar.num_kv_pairs=2 model.d_model=16 model.num_heads=2
   model.head_dim=8 model.kv_lora_rank=8 model.mixer=kda model.chunk_size=4 train.seq_len=16
   train.batch_size=4 train.steps=60 train.warmup_steps=4 train.lr=3e-3 train.log_every=1
   train.eval_every=20 train.checkpoint_every=4 train.keep_checkpoints=3 train.threads=1
   train.device=cpu eval.seq_lens=[16] eval.num_examples=8 eval.batch_size=8)
run() { "$BIN" run --no-plot --no-progress "$@" >>"$W/out.log" 2>&1; }

# The tensor bytes of a checkpoint (after the header, which holds the run id).
data() { python3 -c 'import sys,struct
b=open(sys.argv[1],"rb").read(); n=struct.unpack("<Q",b[:8])[0]; sys.stdout.buffer.write(b[8+n:])' "$1" | md5sum; }
# metrics.csv without its timing columns.
numbers() { cut -d, -f1-4 "$1/metrics.csv"; }

t0=$(date +%s%N)
run "$CONFIG" "${O[@]}" train.keep_checkpoints=100 --out "$W/ref" || fail "the unbroken run failed"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "unbroken run: ${ms} ms"

# Every checkpoint in $1 must hold exactly the unbroken run's tensors of that step.
check_checkpoints() {
  for f in "$1"/ckpt_step*.safetensors; do
    [ -e "$f" ] || continue
    [ "$(data "$f")" = "$(data "$W/ref/$(basename "$f")")" ] || fail "$f differs from the unbroken run's"
  done
}

D=$W/broken
launch() {  # starts (or resumes) the broken run in the background
  if [ -e "$D/config.yaml" ]; then
    "$BIN" run --no-plot --no-progress --resume "$D" >>"$W/out.log" 2>&1 &
  else
    "$BIN" run --no-plot --no-progress "$CONFIG" "${O[@]}" --out "$D" >>"$W/out.log" 2>&1 &
  fi
  PID=$!
}
# Each kill comes within a sixth of the unbroken run's time, so five leave it unfinished.
for i in 1 2 3 4 5; do
  launch
  sleep "$(awk -v r=$RANDOM -v ms="$ms" 'BEGIN { printf "%.3f", r / 32767 * ms / 6000 }')"
  kill -KILL "$PID" 2>/dev/null
  wait "$PID" 2>/dev/null
  check_checkpoints "$D"
done

# Killed inside a checkpoint write: a half-written temp file, and the earlier checkpoints intact.
if [ -e "$D/summary.json" ]; then fail "the run finished before the kill test (too fast?)"; fi
last=$(ls "$D" | sed -n 's/^ckpt_step\([0-9]*\)\.safetensors$/\1/p' | sort -n | tail -1)
next=$(( ${last:-0} + 4 ))
if [ -e "$D/config.yaml" ]; then
  KIMI_KILL_IN_WRITE="ckpt_step$next." run --resume "$D"; rc=$?
else
  KIMI_KILL_IN_WRITE="ckpt_step$next." run "$CONFIG" "${O[@]}" --out "$D"; rc=$?
fi
[ "$rc" -eq 137 ] || fail "expected a SIGKILL inside the write of ckpt_step$next (rc $rc)"
ls -a "$D" | grep -q "^\.ckpt_step$next\.safetensors\.tmp\." || fail "no half-written temp file"
[ -e "$D/ckpt_step$next.safetensors" ] && fail "a half-written checkpoint was renamed into place"
check_checkpoints "$D"

run --resume "$D" || fail "the final resume failed: $(tail -3 "$W/out.log")"
ls -a "$D" | grep -q '\.tmp\.' && fail "temp files left after the resume"
[ "$(data "$D/ckpt_step60.safetensors")" = "$(data "$W/ref/ckpt_step60.safetensors")" ] ||
  fail "final weights differ from the unbroken run's"
[ "$(numbers "$D")" = "$(numbers "$W/ref")" ] || fail "metrics.csv losses differ"
cmp -s "$D/eval.csv" "$W/ref/eval.csv" || fail "eval.csv differs"
check_checkpoints "$D"
[ "$(ls "$D" | grep -c '^ckpt_step')" -eq 3 ] || fail "train.keep_checkpoints=3 not kept"

# SIGTERM: the step finishes, a checkpoint and status.json are written, exit 143.
T=$W/term
"$BIN" run --no-plot --no-progress "$CONFIG" "${O[@]}" train.steps=100000 train.eval_every=0 \
  --out "$T" >>"$W/out.log" 2>&1 &
PID=$!
for _ in $(seq 1 200); do [ -s "$T/metrics.csv" ] && break; sleep 0.05; done
sleep 0.2
kill -TERM "$PID"
wait "$PID"; rc=$?
[ "$rc" -eq 143 ] || fail "SIGTERM: exit $rc, not 143"
python3 - "$T" <<'PY' || fail "status.json after SIGTERM"
import json, os, sys
d = sys.argv[1]
s = json.load(open(os.path.join(d, "status.json")))
assert s["state"] == "interrupted", s
assert "SIGTERM" in s["reason"], s
assert os.path.exists(os.path.join(d, "ckpt_step%d.safetensors" % s["step"])), s
PY
grep -q "SIGTERM" "$T/log.txt" || fail "log.txt does not name the SIGTERM"
echo "kill_resume_test: ok"
