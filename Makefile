# The README's two commands: `make demo` (set up + main job) and `make test` (set up + tests).
# Both create or update the virtual environment themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build of torch, installed before the package so pip never pulls a multi-GB CUDA build.
# GPU users: make TORCH_SPEC=torch ORT_GPU=1 ...
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.edgeres-installed

.PHONY: setup demo test bench lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[all,test]"
	@if [ -n "$(ORT_GPU)" ]; then $(PY) -m pip uninstall -y -q onnxruntime && $(PY) -m pip install -q onnxruntime-gpu; fi
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(PY) scripts/demo.py

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/bench_matrix.py

lint: setup
	$(VENV)/bin/ruff check edgeres tests benchmarks scripts

clean:
	rm -rf $(VENV) build dist .pytest_cache
