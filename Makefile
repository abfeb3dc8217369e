# `make run` serves the app; `make test` runs everything CI runs. Both set up
# what they need: a virtual environment with the pinned dependencies, and for
# the tests a MariaDB database, Node's socket.io-client and Debian's Chromium.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_CLIENT := tests/e2e/node/node_modules/.package-lock.json
CHROMIUM := /usr/bin/chromium
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run migrate test lint unit clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (set PYTHON=...)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,redis]'
	touch $(STAMP)

$(NODE_CLIENT): tests/e2e/node/package.json tests/e2e/node/package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed for the Node client tests (apt-get install nodejs npm)"; exit 1; }
	npm ci --prefix tests/e2e/node --no-audit --no-fund --loglevel=error

# The browser test drives this Chromium through Playwright (no browser download).
$(CHROMIUM):
	tests/support/ensure_chromium.sh

# The demo page and events let anyone log in as anyone: on for this local run only, on 127.0.0.1.
run: $(STAMP)
	SESSION_DEMO=1 $(BIN)/uvicorn entrypoints.asgi:app --host $(HOST) --port $(PORT)

migrate: $(STAMP)
	$(BIN)/python -m entrypoints.cli migrate

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

test: lint $(NODE_CLIENT) $(CHROMIUM)
	@mysql_url=$$(tests/support/ensure_mariadb.sh) && redis_url=$$(tests/support/ensure_redis.sh) && \
	SESSION_TEST_MYSQL_URL="$$mysql_url" SESSION_TEST_REDIS_URL="$$redis_url" $(BIN)/pytest

clean:
	rm -rf $(VENV) tests/e2e/node/node_modules .mypy_cache .ruff_cache .pytest_cache .hypothesis

# The speed benchmark: ours vs the in-memory ceiling vs the raw-aiomysql floor (BENCH_ARGS=--quick, ...).
# Node's socket.io-client is its default load generator (BENCH_ARGS=--generator python for the Python one).
.PHONY: bench
bench: $(STAMP) $(NODE_CLIENT)
	@mysql_url=$$(tests/support/ensure_mariadb.sh) && redis_url=$$(tests/support/ensure_redis.sh) && \
	SESSION_TEST_MYSQL_URL="$$mysql_url" SESSION_TEST_REDIS_URL="$$redis_url" $(BIN)/python -m bench.speed $(BENCH_ARGS)

# Cluster figures: sets and resumes per second on a private 3-node Galera cluster (started and
# stopped by the command) against the single MariaDB node, same run (BENCH_ARGS=--quick for a short look).
.PHONY: bench-cluster
bench-cluster: $(STAMP) $(NODE_CLIENT)
	@mysql_url=$$(tests/support/ensure_mariadb.sh) && redis_url=$$(tests/support/ensure_redis.sh) && \
	SESSION_TEST_MYSQL_URL="$$mysql_url" SESSION_TEST_REDIS_URL="$$redis_url" $(BIN)/python -m bench.cluster $(BENCH_ARGS)
