# Atelier board — set-up, run, test. `make run` and `make test` work on a fresh Debian machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export DEBIAN_FRONTEND := noninteractive

.PHONY: run test test-sqlite test-postgresql setup lint unit integration e2e bench system-deps clean

run: setup
	$(BIN)/board serve

# The whole suite twice: on SQLite, then on PostgreSQL (a throw-away cluster the tests start,
# one fresh database per server). Both runs go to the end; either failing fails `make test`.
test: setup system-deps lint
	@status=0; \
	echo "=== tests on SQLite ==="; \
	$(BIN)/python -m pytest || status=1; \
	echo "=== tests on PostgreSQL (BOARD_TEST_DATABASE=postgresql) ==="; \
	BOARD_TEST_DATABASE=postgresql $(BIN)/python -m pytest -p no:cacheprovider || status=1; \
	exit $$status

test-sqlite: setup system-deps
	$(BIN)/python -m pytest

test-postgresql: setup system-deps
	BOARD_TEST_DATABASE=postgresql $(BIN)/python -m pytest -p no:cacheprovider

setup: $(VENV)/.installed static/vendor/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,pdf]'
	touch $@

static/vendor/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# Debian packages the tests need: chromium (browser tests through Playwright), pango (PDF
# exports through WeasyPrint), poppler-utils (pdftotext reads the PDFs back), postgresql and
# redis-server (tests/engines.py starts its own throw-away servers on free ports: the cluster
# the Debian package may create and start on 5432 is never used).
system-deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v pdftotext >/dev/null 2>&1 || missing="$$missing poppler-utils"; \
	{ ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep -q libpangoft2-1.0 || missing="$$missing libpango-1.0-0 libpangoft2-1.0-0"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q $$missing; fi

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
