# The README's two commands: `make demo` (set up + main job) and `make test` (set up + tests).
# Both create or update the virtual environment themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build of torch, installed before the package so pip never pulls a multi-GB CUDA build.
# GPU users: make TORCH_SPEC=torch ORT_GPU=1 ...
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.edgeres-installed

.PHONY: setup setup-edge demo test test-fast test-cluster test-edge clean-edge bench reference verify-arm64 lint typecheck clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[all,test]"
	@if [ -n "$(ORT_GPU)" ]; then $(PY) -m pip uninstall -y -q onnxruntime && $(PY) -m pip install -q onnxruntime-gpu; fi
	touch $(STAMP)

setup: $(STAMP)

DEMO := out/demo
EDGERES := $(VENV)/bin/edgeres

# The main job on the shipped reference model: export the trained checkpoint (parity-checked),
# quantize it to int8 on train-split calibration images with a 0.5-point budget tuned on the
# validation subset, report fp32 vs int8 on the test split, then benchmark both.
demo: setup
	mkdir -p $(DEMO)
	$(EDGERES) export cifar_resnet20 --weights cifar10 --force -o $(DEMO)/cifar_resnet20.onnx
	$(EDGERES) quantize $(DEMO)/cifar_resnet20.onnx --calib cifar10 --val cifar10-val \
		--max-drop 0.5 --eval cifar10-test --force -o $(DEMO)/cifar_resnet20-int8.onnx
	$(EDGERES) bench $(DEMO)/cifar_resnet20.onnx $(DEMO)/cifar_resnet20-int8.onnx \
		--eval cifar10-test --batch 1,8 --json $(DEMO)/bench.json --markdown $(DEMO)/bench.md \
		--plot $(DEMO)/bench.png
	@echo "LiteRT and ExecuTorch: make setup-edge (their own venv, .venv-edge), then" \
		".venv-edge/bin/edgeres export cifar_resnet20 --weights cifar10 -o $(DEMO)/r20.tflite"
	$(PY) scripts/demo_summary.py $(DEMO)/bench.json

# The cluster tests need ray (edgeres[cluster], ~500 MB, not in `all`): `make test` leaves
# them out, `make test-cluster` installs the extra and runs only them.
test: setup
	$(PY) -m pytest -q -m "not cluster"

# The quick loop while editing (under a minute on 2 cores): leaves out tests marked slow
# (a fresh venv, a full quantize or export of a large model, the fault matrix's subprocesses)
# and runs the rest on two pytest-xdist workers (995 tests: 87 s serial, 52 s so, quiet).
test-fast: setup
	$(PY) -m pytest -q -n 2 -m "not slow and not cluster"

CLUSTER_STAMP := $(VENV)/.edgeres-cluster-installed

$(CLUSTER_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[cluster]"
	touch $(CLUSTER_STAMP)

# Ray registers a multi-node cluster on the host's own address even when told 127.0.0.1, so the
# tests run in a private network namespace whose only interface is loopback (root + unshare);
# elsewhere the cluster fixture skips them with that reason.
LOOPBACK_ONLY := unshare --net sh -c 'ip link set lo up && exec "$$0" "$$@"'

test-cluster: $(CLUSTER_STAMP)
	if unshare --net true 2>/dev/null; then \
		$(LOOPBACK_ONLY) $(PY) -m pytest -q -m cluster tests/test_cluster.py; \
	else \
		$(PY) -m pytest -q -rs -m cluster tests/test_cluster.py; \
	fi

# LiteRT and ExecuTorch (edgeres[litert], edgeres[executorch], ~3 GB with jax and
# transformers, not in `all`) get their own venv so `make demo` and `make test` stay small.
# torch goes in first; the target fails if installing the extras replaced it.
EDGE_VENV ?= .venv-edge
EDGE_PY := $(EDGE_VENV)/bin/python
EDGE_STAMP := $(EDGE_VENV)/.edgeres-edge-installed

$(EDGE_STAMP): pyproject.toml
	test -x $(EDGE_PY) || $(PYTHON) -m venv $(EDGE_VENV)
	$(EDGE_PY) -m pip install -q --upgrade pip
	$(EDGE_PY) -m pip install -q "$(TORCH_SPEC)"
	$(EDGE_PY) -m pip show torch | grep '^Version:' > $(EDGE_VENV)/.torch-before
	$(EDGE_PY) -m pip install -q -e ".[all,test,litert,executorch]"
	$(EDGE_PY) -m pip show torch | grep '^Version:' | cmp -s - $(EDGE_VENV)/.torch-before || \
		{ echo "Error: installing edgeres[litert,executorch] replaced torch" \
		"($$(cat $(EDGE_VENV)/.torch-before) -> $$($(EDGE_PY) -m pip show torch | grep '^Version:'));" \
		"pin it in TORCH_SPEC and rebuild with make clean-edge setup-edge"; exit 1; }
	touch $(EDGE_STAMP)

setup-edge: $(EDGE_STAMP)

# The LiteRT and ExecuTorch tests (they skip with a reason in the plain .venv), their device
# bundles (the LiteRT one also at its minimum versions, in a fresh venv), and the import
# boundaries with their packages installed (nothing heavy may load at import time).
test-edge: $(EDGE_STAMP)
	$(EDGE_PY) -m pytest -q tests/test_litert.py tests/test_executorch.py \
		tests/test_edge_bundles.py tests/test_import_boundaries.py

clean-edge:
	rm -rf $(EDGE_VENV)

bench: setup
	$(PY) benchmarks/bench_matrix.py

# Ship a finished training run: the three reference files + manifest, the training report and
# the quantize accuracy benchmark on the new model. Usage: make reference RUN=runs/r20-s3
reference: setup
	test -f "$(RUN)/last.pt" || { echo "give RUN=<training run folder with last.pt>"; exit 1; }
	$(PY) scripts/make_reference.py $(RUN)/last.pt
	$(PY) scripts/training_report.py $(RUN)/last.pt
	$(PY) benchmarks/bench_quantize.py accuracy

# Every bundle's infer.py --verify on arm64 under qemu-user emulation (needs root; builds and
# caches an arm64 Debian root in .cache/arm64-root the first time, several minutes), results
# in benchmarks/results/arm64_verify.{json,md}. With .venv-edge built (make setup-edge) the LiteRT
# bundles too.
verify-arm64: setup
	PY=$$(test -f $(EDGE_STAMP) && echo $(EDGE_PY) || echo $(PY)) scripts/verify_arm64.sh

lint: setup
	$(VENV)/bin/ruff check edgeres tests benchmarks scripts

# mypy on edgeres/ with the settings in pyproject.toml ([tool.mypy]).
typecheck: setup
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build dist .pytest_cache out
