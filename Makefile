# The two commands of the README: `make run` and `make test`. Everything installs itself into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
LINT_PATHS := src tests $(wildcard bench)

.PHONY: run test lint install clean bench bench-stack screenshots

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "papi-sandbox needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/papi-sandbox serve --demo

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy src

test: lint
	$(BIN)/pytest -q

# The dashboard's screenshots in docs/img, taken by the browser test's own scenario (Debian's
# Chromium; installed by the test when missing and root).
screenshots: $(STAMP)
	PAPI_SANDBOX_SCREENSHOTS=docs/img PAPI_SANDBOX_REQUIRE_BROWSER=1 \
		$(BIN)/pytest -q tests/ui/test_browser.py -k "scenario and sqlite"

# Benchmarks (not part of `make test`): the service against a bare ASGI app and Stoplight Prism,
# with wrk on loopback; a few minutes. Installs wrk (Debian, needs root), Prism (npm, into
# bench/.node) and the `bench` extra (matplotlib, for bench/results/latest.png) when missing.
# Extra options: make bench BENCH_ARGS="--duration 6 --skip-memory".
PRISM_VERSION := 5.14.2
PRISM := bench/.node/node_modules/.bin/prism
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; } \
		|| { echo "wrk is missing: apt-get install wrk (as root)"; exit 1; }
	@test -x $(PRISM) || npm install --prefix bench/.node --no-audit --no-fund --no-save \
		@stoplight/prism-cli@$(PRISM_VERSION)
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/um_trading.py $(UM_BENCH_ARGS)
	$(BIN)/python bench/stream.py $(STREAM_BENCH_ARGS)

# The server stack's decision (docs/performance.md): the same app on uvicorn and on granian,
# interleaved, on every workload of `make bench`; a few minutes.
bench-stack: $(BENCH_STAMP)
	$(BIN)/python bench/stack.py $(STACK_BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
