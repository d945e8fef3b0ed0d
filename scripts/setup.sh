#!/usr/bin/env bash
# One-time, idempotent set-up of everything fastvision needs besides Rust itself:
#   .venv with the pinned torch wheel (libtorch for tch) and the offline MobileNetV2 weights.
# FASTVISION_TORCH_PYTHON=/path/to/python uses the torch already installed for that interpreter
# (a GPU cloud image's, say) instead of downloading one: .venv is created from it and sees its
# site-packages through a .pth file (which works when that python is itself a venv's, where
# --system-site-packages would not), after checking that its torch is exactly the pinned version.
# Called by every make target that builds; a no-op (well under a second) once done.
# Why a stamp file: re-running pip on a 5 GB environment takes ~20 s even when nothing changes,
# so we record a hash of the pins and only call pip when they change.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
req="$root/requirements.txt"
stamp="$venv/.fastvision-setup"
cache="${FASTVISION_CACHE:-$HOME/.cache/fastvision}"
want_torch="$(sed -n 's/^torch==\([^ ]*\).*/\1/p' "$req")"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

# .venv/libtorch: a fixed name for the wheel's torch folder (whatever python3.X it sits under);
# $cache/libtorch: the same, at a path that does not change between clones, which is what cargo
# builds against (see the Makefile), so a fresh clone reuses the compiled tch bindings.
link_torch() {
  local dir
  dir="$(ls -d "$venv"/lib/python3*/site-packages/torch 2>/dev/null | head -n1)"
  # A torch shared from FASTVISION_TORCH_PYTHON's site-packages: the .pth file names that folder
  # (read, not imported: this runs on every make target's fast path).
  local pth
  pth="$(ls "$venv"/lib/python3*/site-packages/fastvision-torch.pth 2>/dev/null | head -n1)"
  [[ -z "$dir" && -n "$pth" ]] && dir="$(cat "$pth")/torch"
  [[ -n "$dir" && -d "$dir/lib" ]] || return 1
  ln -sfn "$dir" "$venv/libtorch"
  mkdir -p "$cache"
  [[ "$(readlink "$cache/libtorch" 2>/dev/null)" == "$dir" ]] || ln -sfn "$dir" "$cache/libtorch"
}

# The pins and the torch source together: switching FASTVISION_TORCH_PYTHON re-runs the set-up.
req_hash="$( { cat "$req"; echo "torch-python:${FASTVISION_TORCH_PYTHON:-}"; } | sha256sum | cut -c1-16)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$req_hash" && -x "$venv/bin/python" ]] && link_torch; then
  exit 0
fi

py="${PYTHON:-python3}"
torch_site=""
if [[ -n "${FASTVISION_TORCH_PYTHON:-}" ]]; then
  tp="$FASTVISION_TORCH_PYTHON"
  [[ -x "$tp" ]] || die "FASTVISION_TORCH_PYTHON=$tp is not an executable Python. Point it at the python whose torch to use (e.g. /opt/conda/bin/python), or unset it to download torch $want_torch."
  # One import gives both the version and the site-packages folder holding torch.
  tv=""
  read -r tv torch_site < <("$tp" -c 'import os, torch; print(torch.__version__, os.path.dirname(os.path.dirname(torch.__file__)))' 2>/dev/null) || true
  [[ -n "$tv" ]] || die "FASTVISION_TORCH_PYTHON=$tp cannot 'import torch'. Install torch==$want_torch for it, or unset FASTVISION_TORCH_PYTHON to let setup download torch $want_torch into .venv."
  [[ "${tv%%+*}" == "$want_torch" ]] || die "FASTVISION_TORCH_PYTHON=$tp has torch $tv, but fastvision is built for exactly torch $want_torch (tch 0.24 checks the libtorch version). Install torch==$want_torch there, or unset FASTVISION_TORCH_PYTHON to download it into .venv."
  if [[ -d "$venv/lib" ]] && ! ls "$venv"/lib/python3*/site-packages/fastvision-torch.pth >/dev/null 2>&1; then
    die "$venv was made with its own torch, not FASTVISION_TORCH_PYTHON's. Remove it ('rm -rf .venv') and run 'make setup' again to use $tp's torch."
  fi
  py="$tp"
  say "using torch $tv from $tp (FASTVISION_TORCH_PYTHON); nothing of torch is downloaded"
fi
command -v "$py" >/dev/null 2>&1 || die "no '$py' on PATH. Install Python 3.10+ (Debian/Ubuntu: 'sudo apt-get install python3 python3-venv'), or point PYTHON=/path/to/python3 at one, then run 'make setup' again."
"$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
  || die "$("$py" --version 2>&1) is too old: torch $want_torch needs Python 3.10 or newer. Set PYTHON=/path/to/python3.x and run 'make setup' again."

# A torch wheel plus its CUDA libraries unpack to about 5 GB; check before pip fills the disk halfway.
mkdir -p "$cache"
need_gb="${FASTVISION_SETUP_NEED_GB:-$([[ -n "$torch_site" ]] && echo 2 || echo 7)}"
free_kb="$(df -Pk "$root" | awk 'NR==2 {print $4}')"
if [[ ! -d "$venv/lib" ]] && (( free_kb < need_gb * 1024 * 1024 )); then
  die "only $((free_kb / 1024 / 1024)) GB free on $(df -P "$root" | awk 'NR==2 {print $6}'); the torch wheels need about $need_gb GB. Free some space (or clone the project onto a larger disk) and run 'make setup' again."
fi

if [[ ! -x "$venv/bin/python" ]]; then
  say "creating $venv with $("$py" --version 2>&1)"
  "$py" -m venv "$venv" 2>/dev/null || die "'$py -m venv' failed. On Debian/Ubuntu install the venv module: 'sudo apt-get install python3-venv', then run 'make setup' again."
fi

if [[ -n "$torch_site" ]]; then
  site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "$torch_site" > "$site/fastvision-torch.pth"
fi

# A torch from some earlier install that is not the pinned one would make tch refuse to build
# (it checks the libtorch version exactly); say so instead of letting cargo fail cryptically.
have_torch="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true)"
if [[ -n "$have_torch" && "${have_torch%%+*}" != "$want_torch" ]]; then
  say "found torch $have_torch in .venv, but fastvision needs exactly torch $want_torch (tch 0.24 is built for libtorch $want_torch): replacing it"
fi

say "installing the pinned Python packages into .venv (first run: about 5 GB of wheels, a few minutes; pip cache in $cache/pip)"
pip_install() { PIP_CACHE_DIR="$cache/pip" "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar on "$@"; }
with_deps="$(mktemp)"; no_deps="$(mktemp)"; trap 'rm -f "$with_deps" "$no_deps"' EXIT
grep -v -- '# no-deps' "$req" > "$with_deps"
grep -- '# no-deps' "$req" | sed 's/#.*//' > "$no_deps"
if ! { pip_install -r "$with_deps" && pip_install --no-deps -r "$no_deps"; }; then
  die "pip could not install the packages in requirements.txt (see its message above). Check your connection to PyPI and free disk space (df -h), then run 'make setup' again."
fi

got_torch="$("$venv/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)"
[[ "$got_torch" == "$want_torch" ]] || die "torch in .venv is '${got_torch:-missing}' after pip, expected $want_torch. Remove .venv and run 'make setup' again."

if command -v rustup >/dev/null 2>&1; then
  # evcxr (the notebook kernel) needs the standard library's source for its analyzer.
  rustup component add rust-src >/dev/null 2>&1 || say "warning: 'rustup component add rust-src' failed; the notebooks' kernel needs it (run it by hand)"
fi

link_torch || die "torch is installed but its folder was not found under $venv/lib; remove .venv and run 'make setup' again."
echo "$req_hash" > "$stamp"
say "done: torch $got_torch in .venv"
