# tagwatch — every target sets up what it needs and is quick when already set up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: demo gate test bench lint format setup clean

WEB := backend/web
WEB_STAMP := $(WEB)/node_modules/.installed

setup: $(STAMP) $(WEB_STAMP)
	@.ci/ensure-debian mosquitto=mosquitto '/usr/lib/postgresql/*/bin/initdb=postgresql' \
	  chromium=chromium promtool=prometheus systemd-analyze=systemd \
	  patroni=patroni etcd=etcd-server

# The web UI's front-end packages (Leaflet) from the npm registry, served by the backend:
# never committed, never a CDN at run time (docs/web.md).
$(WEB_STAMP): $(WEB)/package.json $(WEB)/package-lock.json
	@.ci/ensure-debian npm=npm
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "tagwatch: could not create a venv; on Debian: apt-get install python3-venv" >&2; exit 1; }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

demo: setup
	$(BIN)/tagwatch sim demo $(DEMO_ARGS)

lint: setup typings/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pyright -p pyrightconfig.json

# MicroPython stubs for pyright's check of firmware/ (machine, esp32, vfs, time.ticks_*).
typings/.installed: $(STAMP)
	$(BIN)/pip install -q --target typings --no-deps micropython-esp32-stubs micropython-stdlib-stubs
	@touch $@

# The week-long alert gate (docs/simulator.md, "The week's gate"): three seeds from the last
# commit's date through the whole stack, side by side (one a core; `--jobs`), ~47 minutes
# each alone on 2 cores; not part of `make test`.
gate: setup
	$(BIN)/tagwatch sim gate $(GATE_ARGS)

# One pytest worker per core (CI has two), a test file's tests together on one worker so
# that a module's fixtures (a simulated day, a served stack) are built once.
TEST_WORKERS ?= 2
test: setup lint
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: setup
	$(BIN)/python -m tests.bench

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis $(WEB)/node_modules
