# DadaCat SMS. `make run` runs the bot locally; `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip

.PHONY: run sms test bench soak lint docs install install-dev clean

# Bot port for `make run` / `make sms`; DYNAMODB_LOCAL=auto|jar|docker picks DynamoDB Local's source.
PORT ?= 5000
DYNAMODB_LOCAL ?= auto

$(VENV)/.installed: requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "error: Python 3.11 or newer is needed; run e.g. make PYTHON=python3.11 ..."; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt
	$(PIP) install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PIP) install --quiet -r requirements-dev.txt
	touch $@

# The npm manifest lives in scripts/npm/, not at the root: a root package.json makes
# Heroku build the app as Node.js (its detection tries Node before Python).
NPM_DIR := scripts/npm
NODE_MODULES := $(NPM_DIR)/node_modules

$(NODE_MODULES)/.installed: $(NPM_DIR)/package.json $(NPM_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "error: Node.js 20 and npm are needed for DynamoDB Local (apt-get install nodejs npm)"; exit 1; }
	npm ci --prefix $(NPM_DIR) --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed $(NODE_MODULES)/.installed
install-dev: $(VENV)/.installed-dev $(NODE_MODULES)/.installed

# Node (for the DynamoDB Local jar) is not needed with your own endpoint or Docker;
# run_local.py names a missing Java itself.
RUN_NEEDS := $(VENV)/.installed $(if $(or $(AWS_ENDPOINT_URL),$(filter docker,$(DYNAMODB_LOCAL))),,$(NODE_MODULES)/.installed)

run: $(RUN_NEEDS)
	$(PY) scripts/run_local.py --port $(PORT) --dynamodb $(DYNAMODB_LOCAL)

sms: $(VENV)/.installed
	$(PY) scripts/sms.py --port $(PORT)

# The DynamoDB Local tier starts its own server from scripts/npm/node_modules, so it never skips;
# the browser tests drive Debian's chromium, installed here when missing.
test: install-dev
	@command -v java >/dev/null || { echo "error: Java 17 is needed: the tests run a real DynamoDB Local (apt-get install openjdk-17-jre-headless)"; exit 1; }
	@scripts/ensure_chromium.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/cfn-lint scripts/aws/dynamodb.yaml
	$(PY) -m pytest -q $(PYTEST_ARGS)

docs: $(VENV)/.installed
	$(PY) scripts/gen_config_docs.py

# Regenerates docs/benchmarks.md and docs/benchmarks.png (about 15 minutes on 2 cores);
# BENCH_ARGS passes options, e.g. BENCH_ARGS="--repeats 9 --texters 50,100,200,400";
# BENCH_ARGS="--parts cost" refreshes only the memory and cost tables (seconds);
# BENCH_ARGS="--parts async" refreshes only part 5, the async and auto reply modes (about 7 minutes).
bench: install-dev
	$(PY) -m scripts.bench $(BENCH_ARGS)

# Runs gunicorn against DynamoDB Local under steady mixed traffic and prints a table per
# minute (texts, replies, losses, duplicates, errors, p50/p99, RSS per worker);
# SOAK_SECONDS sets the length (10 to 3600, default 600). Exits 1 on losses or leftovers.
SOAK_SECONDS ?= 600
soak: install-dev
	SOAK_SECONDS=$(SOAK_SECONDS) $(PY) -m scripts.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) $(NODE_MODULES) .pytest_cache .ruff_cache

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
