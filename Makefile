# Two entry points, each doing all set-up on a fresh machine:
#   make demo   compress + decompress the bundled sample photo with the embedded default model
#   make test   run the test suite (CI runs this through .ci/run)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# the shared data beside the checkout (../shared/README.md); the library itself never assumes it:
# the targets that need it pass it on (--data, AECODEC_KODAK, AECODEC_TRAIN_DATA); the tests find it themselves
SHARED ?= ../shared
KODAK ?= $(SHARED)/data/kodak
TRAIN_DATA ?= $(SHARED)/data/train
URBAN ?= $(SHARED)/data/urban

.PHONY: demo test test-fast bench-kodak bench-urban bench-kernels bench-train bench-latency bench-effort train train-stop train-status train-eval clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench,openvino]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/aecodec demo

test: $(VENV)/.installed
	$(PY) -m pytest -q

# the tests not marked slow (a few minutes on 2 cores); `make test` (CI) runs them all
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow"

# BENCH_ARGS adds options, e.g. BENCH_ARGS="--efforts 1" (~40 more CPU minutes) or "--device cuda"
bench-kodak: $(VENV)/.installed
	$(VENV)/bin/aecodec bench $(KODAK) -o results/kodak --reference $(SHARED)/reference/kodak --k 192 -j 2 $(BENCH_ARGS)
	$(PY) tools/publish.py results/kodak

# the second test set: sharp photos of buildings and streets (never trained on); the anchors and
# JPEG only (18.5 Mpx: 1,800 points, over an hour on 2 cores beside training; HEIC / JPEG XL / WebP
# would add as much again)
bench-urban: $(VENV)/.installed
	$(VENV)/bin/aecodec bench $(URBAN) -o results/urban --k 192 -j 2 --codecs aecodec,jpeg,jpeg2000,avif-psnr $(BENCH_ARGS)
	$(PY) tools/publish.py results/urban

bench-kernels: $(VENV)/.installed
	$(PY) -m aecodec.bench.kernels
	$(PY) -m aecodec.train.speed --fused-vs-eager

bench-train: $(VENV)/.installed
	AECODEC_TRAIN_DATA=$(TRAIN_DATA) $(PY) -m aecodec.train.speed --check

# Pauses the background training run (if any) while it times, then lets it go on.
bench-latency: $(VENV)/.installed
	@pid=$$(cat $(RUN_DIR)/pid 2>/dev/null); [ -n "$$pid" ] && kill -STOP $$pid 2>/dev/null; \
	AECODEC_KODAK=$(KODAK) $(PY) -m aecodec.bench.latency --sizes $(LATENCY_ARGS); rc=$$?; [ -n "$$pid" ] && kill -CONT $$pid 2>/dev/null; exit $$rc

# Effort levels, size targets, continuous quality (docs/performance.md); EFFORT_ARGS narrows it.
bench-effort: $(VENV)/.installed
	@pid=$$(cat $(RUN_DIR)/pid 2>/dev/null); [ -n "$$pid" ] && kill -STOP $$pid 2>/dev/null; \
	AECODEC_KODAK=$(KODAK) $(PY) -m aecodec.bench.effort $(EFFORT_ARGS); rc=$$?; [ -n "$$pid" ] && kill -CONT $$pid 2>/dev/null; exit $$rc

# The long training run (docs/training.md): `make train` starts or resumes it in the background at
# low priority; `make train-stop` saves and stops it; `make train-eval` scores it on validation.
RUN ?= main
RUNS ?= $(HOME)/.cache/aecodec/runs
RUN_DIR := $(RUNS)/$(RUN)
# recipe flags for `make train` (a new run: the whole shipped default model, its context included,
# on 256x256 crops, bf16 autocast where it is safe, on every core; a resumed run keeps the rest of its recipe), docs/training.md
TRAIN_FLAGS ?= --bf16 --crop 256 --threads 0
# and for a new run only: its entropy networks trained as 8-bit-weight, 9-bit-activation integer networks
# (a run keeps its architecture, so an older float run resumes as it is)
NEW_RUN_FLAGS ?= --integer-bits 8,9

train: $(VENV)/.installed
	@mkdir -p $(RUN_DIR)
	@if [ -f $(RUN_DIR)/pid ] && kill -0 $$(cat $(RUN_DIR)/pid) 2>/dev/null; then \
	  echo "run $(RUN) is already going (pid $$(cat $(RUN_DIR)/pid))"; \
	else \
	  AECODEC_RUNS=$(RUNS) AECODEC_TRAIN_DATA=$(TRAIN_DATA) nohup nice -n 19 $(VENV)/bin/aecodec train $(RUN) --quiet $(TRAIN_FLAGS) \
	    $$([ -f $(RUN_DIR)/state.safetensors ] || echo "$(NEW_RUN_FLAGS)") \
	    >> $(RUN_DIR)/train.out 2>&1 & echo $$! > $(RUN_DIR)/pid; \
	  echo "run $(RUN) started (pid $$(cat $(RUN_DIR)/pid)); log: $(RUN_DIR)/log.csv, output: $(RUN_DIR)/train.out"; \
	fi

train-stop:
	@if [ -f $(RUN_DIR)/pid ] && kill -0 $$(cat $(RUN_DIR)/pid) 2>/dev/null; then \
	  pid=$$(cat $(RUN_DIR)/pid); kill -CONT $$pid; kill -TERM $$pid; \
	  while kill -0 $$pid 2>/dev/null; do sleep 1; done; echo "run $(RUN) stopped and saved"; \
	else echo "run $(RUN) is not running"; fi

train-status:
	@tail -n 3 $(RUN_DIR)/log.csv 2>/dev/null || echo "no run $(RUN) in $(RUNS)"

train-eval: $(VENV)/.installed
	AECODEC_RUNS=$(RUNS) AECODEC_TRAIN_DATA=$(TRAIN_DATA) $(VENV)/bin/aecodec train $(RUN) --evaluate

clean:
	rm -rf $(VENV) build *.egg-info
