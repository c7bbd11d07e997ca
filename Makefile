# ssm-signal: `make help` lists the targets. Every target creates .venv on first use.
SHELL := /bin/bash
PY_SYS ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
CONFIG ?= configs/kws_default.yaml
WORDS ?=
CUSTOM_CONFIG ?= configs/kws_custom.yaml
ARGS ?=
MODEL ?= artifacts/kws_default
INPUT ?= data/keywords_recorded/testing_list.txt
OUTPUT ?= artifacts/scores/kws_default_test.parquet
EVAL_OUT ?= artifacts/eval/kws_default
REAL ?= data/real
REAL_VAL ?= data/real_val
EXPORT_OUT ?=

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PY_SYS) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the project with its dev tools

system-deps: ## Install Debian packages (espeak-ng, sox, chromium) where apt-get exists
	@bash scripts/system_deps.sh

train: install system-deps ## Train CONFIG (default: the embedded keyword set) and write a bundle; WORDS="hey nova,lights on": custom keywords from text (docs/custom_keywords.md); ARGS: more fit options
	$(VENV)/bin/ssm-signal fit $(if $(strip $(WORDS)),--config $(CUSTOM_CONFIG) --data.init_args.words "$(WORDS)",--config $(CONFIG)) $(ARGS)

demo: install ## Live-microphone Gradio demo of MODEL (default: the bundle `make train` writes)
	$(VENV)/bin/ssm-signal demo --model $(MODEL)

score: install ## Score INPUT into Parquet with MODEL (default: the test split of the embedded set)
	$(VENV)/bin/ssm-signal score --model $(MODEL) --input $(INPUT) --output $(OUTPUT)

export: install ## Export MODEL's streaming step to ONNX (frame and chunk graphs with explicit state, int8, a JSON sidecar) for the torch-free runtime (docs/export.md); EXPORT_OUT: the folder (default MODEL/onnx)
	$(VENV)/bin/ssm-signal export --model $(MODEL) --format onnx $(if $(strip $(EXPORT_OUT)),--out $(EXPORT_OUT))

evaluate: install system-deps ## Detection quality of MODEL on streamed audio: calibrate at 0.5 FA/h (generated and real validation voices and music), then FRR, FA/h, DET curves (generated and real report recordings) into EVAL_OUT
	$(PY) benchmarks/fetch_real_audio.py --dest $(REAL)
	$(PY) benchmarks/fetch_real_validation.py --dest $(REAL_VAL)
	$(VENV)/bin/ssm-signal evaluate --model $(MODEL) --calibrate 0.5 --out $(EVAL_OUT) \
	  --calibration-positives default --calibration-positives $(REAL_VAL)/positives/manifest.csv \
	  --calibration-negatives default --calibration-negatives $(REAL_VAL)/negatives/speech \
	  --calibration-negatives $(REAL_VAL)/negatives/music \
	  --positives default --positives $(REAL)/positives/manifest.csv \
	  --negatives default --negatives $(REAL)/negatives/speech --negatives $(REAL)/negatives/music

test: install system-deps ## Run the fast CPU test suite (what CI runs)
	$(PY) benchmarks/fetch_uea.py --dest data/uea --streams ucr135 daphnet
	$(PY) -m playwright --version >/dev/null
	$(PY) -m pytest -q
	TRITON_INTERPRET=1 $(PY) -m pytest -q tests/kernels/triton

test-interpret: install ## Run the Triton kernel tests under TRITON_INTERPRET=1 on tiny shapes (part of make test)
	TRITON_INTERPRET=1 $(PY) -m pytest -q tests/kernels/triton

test-gpu: install ## Run the GPU-marked tests (on a CUDA machine)
	$(PY) -m pytest -q -m gpu

lint: install ## ruff
	$(VENV)/bin/ruff check .

bench: install ## CPU benchmarks (results under benchmarks/results/, summary in docs/performance.md)
	$(PY) benchmarks/bench_core_cpu.py
	$(PY) benchmarks/bench_streaming.py
	$(PY) benchmarks/bench_score.py

bench-sensor-env: ## The sensor benchmark's own virtualenv .venv-bench (aeon, pyod, stumpy: never the project's dependencies)
	@test -x .venv-bench/bin/python || $(PY_SYS) -m venv .venv-bench
	.venv-bench/bin/pip install -q aeon==1.6.0 pyod==3.6.7 stumpy==1.14.1

bench-sensor: install bench-sensor-env ## Sensor anomaly detection: the SSM beside aeon's detectors on UCR 135, Daphnet and the generated table
	$(PY) benchmarks/bench_sensor_anomaly.py

clean: ## Remove caches (keeps .venv, data and artifacts)
	rm -rf .pytest_cache .ruff_cache **/__pycache__

.PHONY: help install system-deps train demo score export evaluate test test-interpret test-gpu lint bench bench-sensor-env bench-sensor clean
