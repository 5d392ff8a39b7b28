# Two commands do all the set-up on a fresh clone:
#   make demo   # the built-in benchmark end to end on CPU (about 6 minutes on 2 cores)
#   make demo-mllmu  # the built-in MLLMU-Bench end to end
#   make demo-safeeraser  # the built-in SafeEraser end to end
#   make demo-efuf  # the built-in EFUF end to end (curation included)
#   make demo-methods  # every method on the built-in FIUBench and MLLMU-Bench (image+text), one table each
#   make demo-attacks  # the attacks (relearning, 8/4-bit, images, text only) on every method's FIUBench run
#   make test   # the test suite (what CI runs)
#   make lock   # regenerate requirements.lock from requirements.txt/setup.py (docs/reproducibility.md)
# Each creates .venv and installs into it first: torch from TORCH_SPEC (the CPU wheel on CPU machines; on a GPU
# node set it to the CUDA build you use, or preinstall torch), then the exact versions of requirements.lock (uv).
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
TORCH_SPEC ?= torch==2.13.0
UV_SPEC ?= uv==0.13.9

ALL_METHODS ?= ga gd kl po npo simnpo idkdpo undial wga rmu mmunlearner manu
# MLLMU-Bench has no refusal stream: PO and IdkDPO are FIUBench's and SafeEraser's
MLLMU_METHODS ?= ga gd kl npo simnpo undial wga rmu mmunlearner manu

.PHONY: demo demo-mllmu demo-safeeraser demo-efuf demo-clear demo-umu demo-methods demo-attacks test install lint lock

$(VENV)/.installed: requirements.lock setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q "$(UV_SPEC)"
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(UV) pip install -q --python $(PY) -r requirements.lock
	$(UV) pip install -q --python $(PY) --no-deps -e .
	$(PY) scripts/check_env.py
	bash scripts/install_wordnet.bash
	bash scripts/install_browser.bash
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/demo.bash

demo-mllmu: $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/demo_mllmu.bash

demo-safeeraser: $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/demo_safeeraser.bash

demo-efuf: $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/demo_efuf.bash

demo-clear: $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/demo_clear.bash

demo-umu: $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/demo_umu.bash

demo-methods: $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" METHODS="$(ALL_METHODS)" RUN_ROOT=runs/methods OUT_DIR=results/methods \
		bash scripts/demo.bash
	PATH="$(abspath $(VENV))/bin:$$PATH" METHODS="$(MLLMU_METHODS)" MODALITIES=multimodal RUN_ROOT=runs/methods \
		OUT_DIR=results/methods bash scripts/demo_mllmu.bash

demo-attacks: $(VENV)/.installed  # trains every method first unless make demo-methods did
	PATH="$(abspath $(VENV))/bin:$$PATH" METHODS="$(ALL_METHODS)" RUN_ROOT=runs/methods OUT_DIR=results/methods \
		bash scripts/demo_attacks.bash

test: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q tests

lock: $(VENV)/.installed
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/lock.bash

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
