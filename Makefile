# Atelier board — set-up, run, test. `make run` and `make test` work on a fresh Debian machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export DEBIAN_FRONTEND := noninteractive

.PHONY: run test setup lint unit integration e2e bench system-deps clean

run: setup
	$(BIN)/board serve

test: setup system-deps lint
	$(BIN)/python -m pytest

setup: $(VENV)/.installed static/vendor/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

static/vendor/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# Debian packages the tests need (browser tests drive Debian's chromium through Playwright).
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian chromium for the browser tests"; \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }

lint: setup
	$(BIN)/ruff check board tests migrations
	$(BIN)/mypy board

unit: setup
	$(BIN)/python -m pytest tests/unit

integration: setup
	$(BIN)/python -m pytest tests/integration

e2e: setup system-deps
	$(BIN)/python -m pytest tests/e2e

bench: setup
	$(BIN)/board bench --subscribers 100 --duration 10

clean:
	rm -rf $(VENV) node_modules static/vendor test-artifacts .pytest_cache .ruff_cache .mypy_cache
