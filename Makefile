# Two commands on a fresh machine: `make run` and `make test`.
# Both create the virtual environment (and build the web client) when missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WEBXR := clients/webxr
WEBXR_STAMP := $(WEBXR)/dist/index.html

.PHONY: run test check bench client clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The web client needs Node.js and npm; without them the server still runs and says so.
client: $(STAMP)
	@if [ -f $(WEBXR)/package.json ] && command -v npm >/dev/null; then \
		$(MAKE) --no-print-directory $(WEBXR_STAMP); \
	else echo "npm or the web client is missing: skipping the web client build"; fi

$(WEBXR_STAMP): $(WEBXR)/package.json $(WEBXR)/package-lock.json $(shell find $(WEBXR)/src $(WEBXR)/index.html -type f 2>/dev/null)
	cd $(WEBXR) && npm ci --no-audit --no-fund && npm run build

run: $(STAMP) client
	$(BIN)/metaworld serve

test: $(STAMP) client
	@if [ -d $(WEBXR)/node_modules ]; then cd $(WEBXR) && npm test --silent; fi
	$(BIN)/pytest

check: $(STAMP)
	$(BIN)/ruff check metaworld clients/python load_tests tests
	$(BIN)/ruff format --check metaworld clients/python load_tests tests
	$(BIN)/mypy

# Micro-benchmarks, then 500 bots for 60 s against a fresh server (reports in bench-out/).
bench: $(STAMP)
	$(BIN)/python -m load_tests.bench
	$(BIN)/python -m load_tests.endtoend --count 500 --duration 60 --out bench-out

clean:
	rm -rf $(VENV) $(WEBXR)/node_modules $(WEBXR)/dist
