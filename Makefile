# scalp_ml: `make train` runs the CPU demo on synthetic data, `make test` runs the tests.
# Both set everything up on a fresh machine (Python 3.11, pip registry access).
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA ?= data/synthetic
N_IMAGES ?= 2000
export NO_ALBUMENTATIONS_UPDATE := 1
export WANDB_MODE ?= offline
# pip warns about every package missing from this machine's local mirrors: noise, not errors.
PIP_QUIET := 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

.PHONY: install data train test test-slow bench bench-infer bench-index bench-data bench-train bench-gpu bench-memory bench-cli bench-tradeoff bench-recipes bench-cv bench-probe lint format clean

install: $(STAMP)  ## create .venv with the pinned stack and the package (editable, every extra: dev,all)

$(STAMP): pyproject.toml .ci/constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: set PYTHON=python3.x (>= 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip $(PIP_QUIET)
	$(PY) -m pip install -q -c .ci/constraints.txt -e ".[dev,all]" $(PIP_QUIET)
	touch $(STAMP)

data: install  ## generate the synthetic demo dataset (reused when already complete)
	$(PY) -m scalp_ml.data.synthetic out_dir=$(DATA) n_images=$(N_IMAGES)

train: install data  ## CPU demo: tiny model on the synthetic data, report in outputs/
	$(PY) -m scalp_ml.train experiment=demo data.root=$(DATA)

test: install  ## the default test suite (no network, no GPU)
	$(PY) -m pytest

test-slow: install  ## slow end-to-end checks (the demo's quality bar)
	$(PY) -m pytest -m slow

bench: bench-infer bench-index bench-data bench-train bench-gpu bench-memory bench-cli  ## every benchmark (< 10 min); results appended to benchmarks/RESULTS.md

bench-infer: install  ## CPU inference latency/throughput, eager vs ONNX Runtime
	$(PY) benchmarks/bench_infer.py --threads 2

bench-index: install  ## index 20,000 label + image pairs of a zip download (goal: < 60 s)
	$(PY) benchmarks/bench_index.py --pairs 20000

bench-data: install  ## images/s per core: JPEG + albumentations vs memmap cache + CPU / device augmentation
	$(PY) benchmarks/bench_data.py

bench-train: install  ## Lightning fit epoch time vs a plain PyTorch loop (tiny model, CPU)
	$(PY) benchmarks/bench_train.py

bench-gpu: install  ## GPU only: loader-fed vs loader-free training images/s per pipeline mode
	$(PY) benchmarks/bench_gpu.py

bench-memory: install  ## peak RAM of the demo training run and of one on a 20,000-image cache
	$(PY) benchmarks/bench_memory.py

bench-cli: install  ## start-up: every command's --help (goal < 3 s), predict with ONNX (no torch) vs .ckpt
	$(PY) benchmarks/bench_cli.py

bench-tradeoff: install  ## demo recipe at several image sizes: test macro-F1 vs ONNX images/s (~15 min)
	$(PY) benchmarks/bench_tradeoff.py --data $(DATA) --images $(N_IMAGES) --threads 2

bench-cv: install  ## 5-fold CV of the demo, the folds' ensemble vs the single model, ONNX latency (~20 min)
	$(PY) benchmarks/bench_cv.py --data $(DATA) --images $(N_IMAGES) --threads 2

bench-recipes: install  ## the ablation: study recipe vs each change, the recommended recipe, seeds, hard set (~1.5 h)
	$(PY) benchmarks/bench_recipes.py --data $(DATA) --images $(N_IMAGES)

bench-probe: install  ## one head alone on the harder set (dandruff, 120x160): can the demo network learn it? (~6 min)
	$(PY) -m scalp_ml.data.synthetic out_dir=data/synthetic_hard n_images=$(N_IMAGES) lesion_scale=0.6 lesion_contrast=0.5
	$(PY) benchmarks/probe_head.py --data data/synthetic_hard --indicator dandruff --epochs 30 --override 'data.image_size=[120,160]'

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

clean:
	rm -rf outputs multirun .pytest_cache
