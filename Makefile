# The two set-up commands on a fresh machine are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# checkov (policy as code) conflicts with the boto3 Prefect and MLflow want: its own venv.
CHECKOV_VENV := .ordinal/checkov-venv

# Nothing is downloaded from a model hub at run time; no telemetry, no writes to $HOME.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export ORT_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export MLFLOW_ENABLE_TELEMETRY := false
export DO_NOT_TRACK := 1

.PHONY: install run test lint format lab bench clean infra-check chaos

# Debian packages the control-plane stack runs (servers are started by the project, on
# loopback; installing them starts nothing), and the Rust crates the serving workspace
# (rust/) builds from offline (Debian's registry; the Rust crate registry is not reachable).
# Skipped when already present.
SYSTEM_PACKAGES := postgresql-15 nginx-light
RUST_CRATES := librust-hyper-dev librust-tokio-dev librust-clap-dev librust-serde-dev \
  librust-serde+serde-derive-dev librust-serde-json-dev librust-libloading-dev \
  librust-sha2-dev librust-unicode-normalization-dev librust-unicode-categories-dev \
  librust-tracing-dev librust-tracing-subscriber-dev librust-thiserror-dev \
  librust-anyhow-dev librust-ring-dev librust-base64-dev librust-hex-dev \
  librust-tempfile-dev librust-aho-corasick-dev librust-libc-dev

# rustup's toolchain when the machine has one; Debian's cargo otherwise (installed below).
export PATH := $(HOME)/.cargo/bin:$(PATH)

$(STAMP): pyproject.toml constraints.txt
	@missing=$$(for p in $(SYSTEM_PACKAGES) $(RUST_CRATES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if ! command -v cargo >/dev/null; then missing="$$missing cargo rustc"; fi; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[pipelines,dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name ordinal --display-name "Python (ordinal)" >/dev/null
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/ordinal run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The suite mostly waits (servers, Terraform against the emulated cloud, Prefect polling),
# so it runs on more workers than cores; tests sharing a broad fixture stay on one worker
# (tests/scheduling.py, longest first). TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 3

test: lint $(CHECKOV_VENV)/bin/checkov
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --cov --cov-report=term --durations=25 \
	  --doctest-modules ordinal pipelines tests
	$(BIN)/coverage report --include='ordinal/*' --fail-under=85
	$(BIN)/coverage report --include='pipelines/*' --fail-under=85
	$(BIN)/coverage report --include='ordinal/training/*' --fail-under=90
	# Every notebook with its default parameters, 01..07 in order (they chain), then research/.
	tmp=$$(mktemp -d) && ORDINAL_HOME=$$tmp PREFECT_HOME=$$tmp/prefect \
	  $(BIN)/python -m pytest -p no:cacheprovider --nbval-lax notebooks; \
	  status=$$?; rm -rf $$tmp; exit $$status

# Jupyter refuses to start as root unless told; containers and CI machines run as root.
lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=. --ServerApp.ip=127.0.0.1 \
	  $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) $(LAB_ARGS)

# Every benchmark, one after the other (each writes benchmarks/results/*.json and prints its
# table); `make bench BENCH=training` runs one. See benchmarks/README.md for their durations.
BENCH ?= *
bench: $(STAMP)
	@set -e; for script in benchmarks/bench_$(BENCH).py; do \
	  echo "== $$script"; $(BIN)/python $$script; done

# Policy as code for tofu/: fmt, validate, terraform test, checkov on the plans (checkov lives
# in a venv of its own: its pins conflict with the boto3 that prefect and mlflow need), IAM
# allow/deny tables. See docs/infrastructure.md.
$(CHECKOV_VENV)/bin/checkov:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet "checkov==3.3.30"

infra-check: $(STAMP) $(CHECKOV_VENV)/bin/checkov
	$(BIN)/ordinal infra check

# The whole fault matrix (kill -9 of orchestrator, worker and kernel in each step, then
# resume); `make test` runs a sample. Results: docs/reliability.md.
chaos: $(STAMP)
	mkdir -p build && ORDINAL_CHAOS=full ORDINAL_CHAOS_RESULTS=build/chaos-results.jsonl \
	  $(BIN)/python -m pytest -p no:cacheprovider -q tests/chaos

clean:
	rm -rf .ordinal runs .pytest_cache .ruff_cache .coverage htmlcov
