#!/usr/bin/env bash
# The "Rust (fastvision)" Jupyter kernel: evcxr_jupyter with the environment fastvision needs.
#
#   scripts/kernel.sh install   build evcxr_jupyter once (cached outside the clone), write the
#                               kernel spec into this clone's .venv, and pre-build the notebook's
#                               `:dep fastvision` cell in the kernel's build folder (idempotent,
#                               instant when nothing changed)
#   scripts/kernel.sh run ...   what the kernel spec starts: picks a persistent build folder and
#                               execs evcxr_jupyter with the arguments Jupyter gives
#
# Why a spec of our own: evcxr loads each cell as a library with no rpath, so libtorch must be on
# LD_LIBRARY_PATH; torch-sys and fastvision's build script need LIBTORCH/FASTVISION_TORCH_DIR; and
# without a persistent EVCXR_TMPDIR every kernel start recompiles fastvision and its dependencies.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$ROOT/.venv
CACHE=${FASTVISION_CACHE:-$HOME/.cache/fastvision}
EVCXR_VERSION=0.22.0
EVCXR_ROOT=$CACHE/evcxr
EVCXR=$EVCXR_ROOT/bin/evcxr_jupyter
KERNEL_NAME=fastvision
KERNEL_DIR=$VENV/share/jupyter/kernels/$KERNEL_NAME

die() { echo "kernel.sh: $*" >&2; exit 1; }

# The one change fastvision makes to evcxr_jupyter: a line of output that starts with a carriage
# return is passed to Jupyter as it is, without the newline evcxr adds to every line. Jupyter then
# redraws that line in place, as it does for tqdm in Python, so a progress bar updates within a
# cell instead of adding a line per update (evcxr otherwise cannot update an output in place:
# evcxr issue #146). Bump EVCXR_PATCH when the patch changes.
EVCXR_PATCH=cr-in-place-1

install_evcxr() {
    local stamp=$EVCXR_ROOT/.fastvision-build
    if [[ -x $EVCXR ]] && [[ $(cat "$stamp" 2>/dev/null) == "$EVCXR_VERSION+$EVCXR_PATCH" ]]; then
        return
    fi
    command -v cargo >/dev/null || die "cargo is not on PATH: install Rust with rustup (https://rustup.rs)"
    echo "Building evcxr_jupyter $EVCXR_VERSION ($EVCXR_PATCH) once into $EVCXR_ROOT (about 10 minutes on 2 cores; every clone reuses it)"
    # cargo itself fetches the published source; it is patched in a copy.
    local probe src
    probe=$(mktemp -d)
    mkdir -p "$probe/src" && : > "$probe/src/lib.rs"
    printf '[package]\nname = "evcxr-source"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nevcxr_jupyter = "=%s"\n' \
        "$EVCXR_VERSION" > "$probe/Cargo.toml"
    src=$(cd "$probe" && cargo metadata --format-version 1 2>/dev/null |
        python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "evcxr_jupyter"))') ||
        die "could not fetch evcxr_jupyter $EVCXR_VERSION from crates.io"
    rm -rf "$probe"
    local work=$CACHE/evcxr-src
    rm -rf "$work" && mkdir -p "$work" && cp -r "$(dirname "$src")" "$work/evcxr_jupyter"
    python3 - "$work/evcxr_jupyter/src/core.rs" <<'PATCH' || die "the evcxr_jupyter patch no longer applies to $EVCXR_VERSION"
import sys
path = sys.argv[1]
text = open(path).read()
old = '"text" => format!("{}\\n", line),'
new = '"text" => if line.starts_with(\'\\r\') { line } else { format!("{}\\n", line) },'
assert text.count(old) == 1, "pass_output_line changed upstream"
open(path, "w").write(text.replace(old, new))
PATCH
    # Its own target folder: the project's CARGO_TARGET_DIR must not fill with evcxr's 270 crates.
    CARGO_TARGET_DIR=$CACHE/evcxr-build cargo install --locked --force --root "$EVCXR_ROOT" \
        --path "$work/evcxr_jupyter" ||
        die "building evcxr_jupyter failed (see above); it needs crates.io and about 2 GB of disk in $CACHE"
    echo "$EVCXR_VERSION+$EVCXR_PATCH" > "$stamp"
    rm -rf "$CACHE/evcxr-build" "$work"
}

install_spec() {
    [[ -x $VENV/bin/jupyter ]] || die "no Jupyter in $VENV: run 'make setup' first"
    local torch_dir torch_lib cargo_dir
    torch_dir=$(realpath "$VENV/libtorch") || die "$VENV/libtorch is missing: run 'make setup' first"
    torch_lib=$torch_dir/lib
    cargo_dir=$(dirname "$(command -v cargo)")
    mkdir -p "$KERNEL_DIR"
    local tmp
    tmp=$(mktemp "$KERNEL_DIR/.kernel.json.XXXXXX")
    "$VENV/bin/python" - "$tmp" <<EOF
import json, sys
spec = {
    "argv": ["$ROOT/scripts/kernel.sh", "run", "--control_file", "{connection_file}"],
    "display_name": "Rust (fastvision)",
    "language": "rust",
    "interrupt_mode": "message",
    "env": {
        # evcxr's cell libraries have no rpath: libtorch is found through this.
        "LD_LIBRARY_PATH": "$torch_lib",
        # torch-sys builds against the stable symlink, fastvision's build.rs against this clone.
        "LIBTORCH": "$CACHE/libtorch",
        "FASTVISION_TORCH_DIR": "$torch_dir",
        # Read by fastvision's build script too: the same value whoever starts Jupyter, so the
        # build that make kernel pre-built is the one the notebook finds (no backquotes here:
        # this text is inside an unquoted shell here-document).
        "FASTVISION_VENV": "$VENV",
        "FASTVISION_CARGO_DIR": "$cargo_dir",
        "FASTVISION_VENV_BIN": "$VENV/bin",
        # This kernel is the patched evcxr_jupyter above: fastvision may redraw progress in place.
        "FASTVISION_STREAM_CR": "$EVCXR_PATCH",
        # fastvision::device::GLIBC_TUNABLES (tune_allocator's settings; crate/tests/allocator.rs
        # checks this line carries it), applied by glibc as the kernel starts, since a library
        # must not retune its host process's allocator from a cell.
        "GLIBC_TUNABLES": "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1099511627776:glibc.malloc.top_pad=67108864:glibc.malloc.arena_max=1",
    },
}
with open(sys.argv[1], "w") as f:
    json.dump(spec, f, indent=1)
EOF
    chmod 644 "$tmp"
    mv -f "$tmp" "$KERNEL_DIR/kernel.json"
    # The Rust logo evcxr ships, so the launcher shows a recognisable icon.
    for logo in logo-32x32.png logo-64x64.png; do
        local src
        src=$(ls "$HOME"/.cargo/registry/src/*/evcxr_jupyter-$EVCXR_VERSION/third_party/rust/rust-$logo 2>/dev/null | head -1 || true)
        [[ -n $src ]] && cp "$src" "$KERNEL_DIR/$logo"
    done
    echo "Kernel \"Rust (fastvision)\" ($KERNEL_NAME) installed in $KERNEL_DIR"
}

run_kernel() {
    export PATH="$FASTVISION_VENV_BIN:$FASTVISION_CARGO_DIR:$PATH"
    # A kernel started from inside `cargo test` (the notebook test) inherits cargo's package
    # variables and OUT_DIR; ring's build script fingerprints OUT_DIR, CARGO_PKG_NAME and the
    # like, so they would make the next kernel rebuild ring, rustls, ureq and fastvision (45 s)
    # for nothing.
    local var
    for var in $(compgen -e | grep -E '^(OUT_DIR$|CARGO_(PKG_|MANIFEST_|CRATE_|BIN_|TARGET_TMPDIR|PRIMARY_PACKAGE))'); do
        unset "$var"
    done
    # Datasets and outputs in the project's folders, whatever the notebook's directory; these are
    # defaults here rather than in kernel.json so that a caller (the notebook test) can move them.
    export FASTVISION_DATA_DIR=${FASTVISION_DATA_DIR:-$ROOT/data}
    export FASTVISION_OUT=${FASTVISION_OUT:-$ROOT/out/notebook}
    # One persistent build folder per running kernel: the first free slot is locked for the
    # kernel's lifetime (the descriptor stays open across exec), so two kernels never share one.
    local slot fd dir
    for slot in 0 1 2 3 4 5 6 7; do
        dir=$CACHE/evcxr/tmp-$slot
        mkdir -p "$dir"
        exec {fd}>"$dir/.lock"
        if flock -n "$fd"; then
            export EVCXR_TMPDIR=$dir
            break
        fi
        exec {fd}>&-
    done
    [[ -n ${EVCXR_TMPDIR:-} ]] || die "all 8 evcxr build folders in $CACHE/evcxr are in use"
    # evcxr links cells against Rust's shared libstd and relies on a relative rpath to find it,
    # which points one folder too high when the build folder and ~/.rustup share a parent
    # (both under $HOME here). Naming rustc's library folder makes it independent of that.
    export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$(rustc --print target-libdir)"
    exec "$EVCXR" "$@"
}

# The notebook's first cell compiles fastvision and every dependency inside the kernel; doing it
# here, with progress, leaves that cell only its own few lines to compile.
warm_kernel() {
    "$VENV/bin/python" "$ROOT/scripts/kernel_warm.py" "$ROOT" "$CACHE" ||
        die "the kernel could not build fastvision (see above)"
}

case ${1:-} in
    install) install_evcxr; install_spec; warm_kernel ;;
    run) shift; run_kernel "$@" ;;
    *) die "usage: scripts/kernel.sh install | run --control_file FILE" ;;
esac
