#!/usr/bin/env bash
# The GPU check, on a machine with an NVIDIA GPU and torch 2.11.0 for python3 but no Rust and no
# network, run from the repository root with the bundle from `make gpu-bundle` in .gpu/:
#   bash scripts/gpu-check.sh            results in out/gpu-check, or the folder OUT names
# Every step prints a marker, runs under `timeout`, and a failing step never stops the later
# ones. The whole check ends within GPU_CHECK_BUDGET seconds (default 470, under 8 minutes):
# each step's limit is cut to what is left, and a step with no time left is marked skipped.
# Steps run most important first. At most 8 flat files are written.
# GPU_CHECK_QUICK=1 shrinks every step (a rehearsal on a CPU machine).
set -u
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bundle="${GPU_BUNDLE:-$root/.gpu}"
out="${OUT:-$root/out/gpu-check}"
work="${GPU_WORK:-/tmp/fastvision-gpu}"
quick="${GPU_CHECK_QUICK:-0}"
deadline=$((SECONDS + ${GPU_CHECK_BUDGET:-470}))
threads="${GPU_THREADS:-8}"
mkdir -p "$out" "$work/bin" "$work/logs"
summary="$out/summary.txt"
: > "$summary"

# step NAME SECONDS COMMAND...: run, keep the log, mark start and end, never stop the script.
step() {
  local name="$1" limit="$2"; shift 2
  local left=$((deadline - SECONDS - 5))
  if (( left < 10 )); then
    echo "=== SKIP $name: the time budget is spent ==="
    printf '%-12s skipped (budget)\n' "$name" >> "$summary"
    return 0
  fi
  (( limit > left )) && limit=$left
  echo "=== STEP $name (limit ${limit}s) ==="
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" > "$work/logs/$name.log" 2>&1
  local rc=$?
  tail -n 40 "$work/logs/$name.log"
  echo "=== END $name rc=$rc $((SECONDS - t0))s ==="
  printf '%-12s rc=%-3s %4ss\n' "$name" "$rc" "$((SECONDS - t0))" >> "$summary"
  return 0
}

echo "=== STEP unpack ==="
for f in "$bundle"/bin/*.xz; do
  xz -dc "$f" > "$work/bin/$(basename "$f" .xz)" && chmod +x "$work/bin/$(basename "$f" .xz)"
done
py="$(command -v python3)"
torch_lib="$("$py" -c 'import os, torch; print(os.path.dirname(torch.__file__) + "/lib")')"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export FASTVISION_PYTHON="$py" TORCH_HOME="$work/torch" PYTHONUNBUFFERED=1
mkdir -p "$TORCH_HOME/hub/checkpoints"
cp "$bundle"/weights/*.pth "$TORCH_HOME/hub/checkpoints/"
if [[ -f "$bundle/sample.tar" ]]; then
  tar -xf "$bundle/sample.tar" -C "$work"
  sample="$work/fruits-360-sample"
else
  "$work/bin/fastvision" sample "$work/sample" --classes 30 --per-class 100 > /dev/null
  sample="$work/sample"
fi
python3 -m pip install -q --no-index --no-deps --target "$work/site" "$bundle"/wheels/*.whl
export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}"
echo "torch: $torch_lib; sample: $sample" | tee -a "$summary"
echo "=== END unpack ==="

fv="$work/bin/fastvision"
step info 30 bash -c "'$fv' info && '$fv' info | grep -q 'device      cuda:0'"
cp "$work/logs/info.log" "$out/info.txt"

export FASTVISION_REAL_SAMPLE="$sample"
step gpu-tests 120 env FASTVISION_DEVICE=cuda FASTVISION_REQUIRE_CUDA=1 "$work/bin/gpu-tests" --test-threads=1
cp "$work/logs/gpu-tests.log" "$out/gpu-tests.txt"

rounds=1
step bench 150 "$py" "$root/bench/run.py" "$sample" --fastvision "$work/bin/bench" --python "$py" \
  --weights "$(ls "$bundle"/weights/*.pth)" --threads "$threads" --rounds "$rounds" \
  --phases "$([[ "$quick" == 1 ]] && echo data,fit || echo data,fit,lr-find,interp,fit-resnet34)" \
  --out "$out/RESULTS-gpu.md"

# The layout default per device (device::prefers_channels_last): both layouts, 2 epochs each.
layout_epochs=2; [[ "$quick" == 1 ]] && layout_epochs=1
step layout 70 bash -c "for cl in 0 1; do echo channels_last=\$cl; FASTVISION_CHANNELS_LAST=\$cl \
  '$fv' train '$sample' --epochs $layout_epochs --export '$work/layout.safetensors'; done"

# Whether bf16 (or fp16) should be the CUDA default: the same 2 epochs in each (fp32 is the
# layout step's channels_last=0 run).
step precision 60 bash -c "for p in bf16 fp16; do echo precision=\$p; FASTVISION_PRECISION=\$p \
  '$fv' train '$sample' --epochs $layout_epochs --export '$work/precision.safetensors'; done"

epochs=(4 2); [[ "$quick" == 1 ]] && epochs=(1 0)
step lesson 90 "$fv" lesson --data "$sample" --arch mobilenet_v2 --out "$work/lesson" \
  --epochs "${epochs[0]}" --unfrozen-epochs "${epochs[1]}"

per_class=400; [[ "$quick" == 1 ]] && per_class=20
step full-sample 60 "$fv" sample "$work/full" --classes 131 --per-class "$per_class"
step full-bench 120 "$py" "$root/bench/run.py" "$work/full" --fastvision "$work/bin/bench" --python "$py" \
  --weights "$(ls "$bundle"/weights/*.pth)" --threads "$threads" --rounds 1 --phases fit \
  --out "$out/RESULTS-gpu-full.md"
step full-lesson 120 "$fv" lesson --data "$work/full" --arch resnet34 --no-pretrained \
  --out "$work/full-lesson" --epochs "${epochs[0]}" --unfrozen-epochs "${epochs[1]}"

# The logs of the longer steps in one file, the summary last.
for s in layout precision lesson bench full-bench full-lesson; do
  echo "===== $s ====="; tail -n 60 "$work/logs/$s.log" 2>/dev/null
done > "$out/steps.txt"
echo "=== SUMMARY ==="
cat "$summary"
