# Two entry points, each doing all set-up on a fresh machine:
#   make demo   compress + decompress the bundled sample photo with the embedded default model
#   make test   run the test suite (CI runs this through .ci/run)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench-kodak bench-kernels clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/aecodec demo

test: $(VENV)/.installed
	$(PY) -m pytest -q

bench-kodak: $(VENV)/.installed
	$(VENV)/bin/aecodec bench ../shared/data/kodak -o results/kodak --reference ../shared/reference/kodak -j 2

bench-kernels: $(VENV)/.installed
	$(PY) -m aecodec.bench.kernels --train-speed

clean:
	rm -rf $(VENV) build *.egg-info
