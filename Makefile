# Two commands on a fresh clone: `make run` (install + the pipeline on the demo data) and
# `make test` (install + lint + types + tests). Everything lands in the project-local .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# Exact versions of everything installed (direct and transitive), for reproducible installs.
CONSTRAINTS := constraints.txt
ARGS ?=
# make serve: which registered model, and where
MODEL ?= housing_price
PORT ?= 5001

.PHONY: run serve mlflow-server test lint typecheck pytest test-unit test-data test-e2e install install-dev clean constraints
.PHONY: bench bench-ingest bench-lasso bench-quality bench-overhead bench-faults bench-sweep bench-scale sweep

$(VENV)/.install-run.stamp: pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -c $(CONSTRAINTS) -e .
	touch $@

$(VENV)/.install-dev.stamp: $(VENV)/.install-run.stamp
	$(PIP) install --quiet -c $(CONSTRAINTS) -e ".[dev]"
	touch $@

install: $(VENV)/.install-run.stamp
install-dev: $(VENV)/.install-dev.stamp

## Run the whole pipeline on the built-in demo data (extra Hydra overrides: make run ARGS="model=random_forest").
run: install
	$(PY) -m flows.train_pipeline $(ARGS)

## A sweep: the variants of conf/sweep/ (SWEEP=models) trained and evaluated in parallel on a Dask
## cluster, the best on validation promoted. Command-line variants instead:
## make run ARGS="--multirun model=torch_lasso,random_forest model.alpha=0.01,0.001"
SWEEP ?= models
sweep: install
	$(PY) -m flows.sweep sweep=$(SWEEP) $(ARGS)

## CI: train, gate and (on the main branch only; a dry run elsewhere) promote, against
## $MLFLOW_TRACKING_URI. Prints a markdown report, writes it to ci-report.md ($CI_REPORT_PATH)
## and $GITHUB_STEP_SUMMARY; exits 1 when the candidate fails the gate or loses to the champion.
.PHONY: ci-train
ci-train: install
	$(PY) -m flows.ci_gate $(ARGS)

## Score listings with the champion and check them for drift (docs/scoring.md), e.g.
## make score ARGS="data.source=/data/new.csv scoring.output=predictions.parquet"
.PHONY: score
score: install
	$(PY) -m flows.score $(ARGS)

## Serve the champion on loopback: POST raw listing rows to http://127.0.0.1:$(PORT)/invocations.
## The model is checked first (project format, no pickle: docs/model-format.md), then served.
serve: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" \
	MLFLOW_TRACKING_URI="$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlruns/mlflow.db}" \
	$(PY) -m deployments.model_server --model "models:/$(MODEL)@champion" --host 127.0.0.1 --port $(PORT)

## The shared MLflow tracking server (SQL backend, served artifacts) on $MLFLOW_HOST:$MLFLOW_PORT
## (127.0.0.1:5000): SQLite in mlruns/server/ unless MLFLOW_BACKEND_STORE_URI=postgresql://USER@HOST/DB.
## Pipelines and workers then need only MLFLOW_TRACKING_URI=http://HOST:PORT (Ctrl-C stops it).
mlflow-server: install
	$(PY) -m deployments.tracking_server $(ARGS)

## A real local Prefect server and the deployments of conf/deployments.yaml (make serve is the
## model server above, hence other names). One terminal: make server; another: make deployments.
## Its database lives under $(PREFECT_HOME_DIR) (PREFECT_HOME), apart from ~/.prefect.
## PREFECT_SERVER_API_AUTH_STRING=user:password in the environment or ./.env (Prefect reads both
## itself; never on this command line) makes every API call and the UI ask for it; clients then
## set PREFECT_API_AUTH_STRING to the same string (docs/auth.md).
PREFECT_PORT ?= 4200
PREFECT_API := http://127.0.0.1:$(PREFECT_PORT)/api
PREFECT_HOME_DIR ?= $(CURDIR)/.prefect
POOL ?= local-process
PREFECT_ENV := PREFECT_HOME="$(PREFECT_HOME_DIR)" PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=true
.PHONY: server deployments deploy worker browser test-services

server: install
	@echo "Prefect UI: http://127.0.0.1:$(PREFECT_PORT)  (API: $(PREFECT_API); Ctrl-C stops it)"
	@if [ -n "$$PREFECT_SERVER_API_AUTH_STRING" ] || grep -qs '^PREFECT_SERVER_API_AUTH_STRING=.' .env; then \
		echo "API auth: on (PREFECT_SERVER_API_AUTH_STRING); clients set PREFECT_API_AUTH_STRING"; \
	else echo "API auth: off (loopback only; set PREFECT_SERVER_API_AUTH_STRING, docs/auth.md)"; fi
	$(PREFECT_ENV) PREFECT_UI_API_URL=$(PREFECT_API) \
		$(VENV)/bin/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

## Serve every deployment (schedules, parameters, concurrency limits) from this process.
deployments: install
	$(PREFECT_ENV) PREFECT_API_URL=$(PREFECT_API) $(PY) -m deployments.serve

## The same deployments through prefect.yaml and a process work pool: make deploy, then make worker.
deploy: install
	$(PY) -m deployments.render --check
	$(PREFECT_ENV) PREFECT_API_URL=$(PREFECT_API) $(VENV)/bin/prefect work-pool create $(POOL) --type process --overwrite
	$(PREFECT_ENV) PREFECT_API_URL=$(PREFECT_API) $(VENV)/bin/prefect --no-prompt deploy --all

worker: install
	$(PREFECT_ENV) PREFECT_API_URL=$(PREFECT_API) PATH="$(CURDIR)/$(VENV)/bin:$$PATH" \
		$(VENV)/bin/prefect worker start --pool $(POOL)

## Debian's Chromium for the browser test (as root, when missing); without it that test skips.
browser:
	@if command -v chromium >/dev/null 2>&1; then chromium --version; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	    || echo "browser: apt-get install chromium failed; the browser test will skip" >&2; \
	else echo "browser: chromium is missing and this is not root; the browser test will skip" >&2; fi

## Lint, type-check and run every test tier.
test: install-dev lint typecheck pytest

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install-dev
	$(VENV)/bin/mypy

pytest: install-dev
	$(PY) -m pytest -m "not services"

test-unit: install-dev
	$(PY) -m pytest -m unit

test-data: install-dev
	$(PY) -m pytest -m data

test-e2e: install-dev
	$(PY) -m pytest -m e2e

## A real Prefect server, the deployments served and run, the UI in headless Chromium, and the
## pipeline against `make mlflow-server` on a real PostgreSQL (Debian's postgresql, installed as
## root when missing, else skipped) (minutes; not part of make test). Screenshots land in
## $(SERVICES_OUTPUT_DIR).
SERVICES_OUTPUT_DIR ?= $(CURDIR)/test-output/services
test-services: install-dev browser
	SERVICES_OUTPUT_DIR="$(SERVICES_OUTPUT_DIR)" $(PY) -m pytest -m services

## Benchmarks: each prints its table and writes benchmarks/results/<name>.json; a missed target
## fails the target (make -k bench runs them all anyway). Extra flags: BENCH_ARGS="--size-mb 200".
## OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (set on some machines for old OpenBLAS builds) slow a current
## numpy, so they are unset for the benchmark command alone, never for tests or CI.
BENCH_ARGS ?=
BENCH := env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) -m
bench: bench-ingest bench-lasso bench-quality bench-overhead bench-faults bench-sweep bench-scale

## Faults injected into the real pipeline: counts injected, survived, data lost (must be 0).
bench-faults: install-dev
	$(PY) -m benchmarks.fault_injection --check $(BENCH_ARGS)

bench-ingest: install
	$(BENCH) benchmarks.ingest --check $(BENCH_ARGS)

bench-lasso: install
	$(BENCH) benchmarks.lasso --check $(BENCH_ARGS)

bench-quality: install
	$(BENCH) benchmarks.model_quality --check $(BENCH_ARGS)

## Per-step orchestration overhead, main.backend=local vs warm-fork vs the steps called in one
## process, and the end-to-end wall time of the pipeline with each step's share.
bench-overhead: install
	$(BENCH) benchmarks.orchestration_overhead --check $(BENCH_ARGS)

## A sweep of 4 variants on 2 Dask workers against the same variants one after another.
bench-sweep: install
	$(BENCH) benchmarks.sweep_parallel --check $(BENCH_ARGS)

## Each step's wall time, work and peak RSS at 100k, 1M and 5M demo rows, for torch_lasso and
## hist_gradient_boosting, and the fitted exponent of work against rows (tens of minutes, ~10 GB).
bench-scale: install
	$(BENCH) benchmarks.scale --check $(BENCH_ARGS)

## Upload the offline W&B runs under ./wandb (WANDB_SYNC_DIR=path for another start directory)
## when WANDB_API_KEY is set in the environment or in that directory's .env; runs already
## uploaded are skipped. Without a key it says so and exits 2, uploading nothing.
.PHONY: wandb-sync
WANDB_SYNC_DIR ?= .
wandb-sync: install
	@cd $(WANDB_SYNC_DIR) && \
	if [ -f .env ]; then load="$(abspath $(VENV))/bin/dotenv -f .env run --no-override --"; else load=""; fi; \
	$$load sh -c 'if [ -z "$$WANDB_API_KEY" ]; then \
	  echo "wandb-sync: WANDB_API_KEY is not set (environment or .env); the offline runs stay in $$PWD/wandb" >&2; exit 2; fi; \
	  if ! ls -d wandb/offline-run-* >/dev/null 2>&1; then echo "wandb-sync: no offline runs under $$PWD/wandb"; exit 0; fi; \
	  exec "$(abspath $(VENV))/bin/wandb" sync --yes'

clean:
	rm -rf mlruns wandb outputs multirun .pytest_cache .mypy_cache .ruff_cache

## Re-pin constraints.txt to what the virtual environment holds now.
constraints:
	{ head -n 2 $(CONSTRAINTS); $(PIP) freeze --exclude-editable | grep -v '^nyc-price-pipeline' | sed 's/+cpu$$//'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
