# ferkit: `make demo` and `make test` set everything up on a fresh machine, then run.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.ferkit-installed
TORCH   := torch==2.13.0

.PHONY: demo test install sysdeps clean

# Debian packages the tests use when they can (root + apt, as on CI): Xvfb for the window tests,
# Chromium for the web page's browser tests (Playwright drives /usr/bin/chromium; it downloads no browser).
# Elsewhere those tests skip, and nothing else needs them.
SYSPKGS := xvfb chromium chromium-driver
sysdeps:
	@if ! command -v Xvfb >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -q $(SYSPKGS) || (apt-get update -q && apt-get install -y -q $(SYSPKGS))) >/dev/null 2>&1 \
	      || echo "note: could not install $(SYSPKGS); the tests that need it will skip"; \
	  else echo "note: $(SYSPKGS) not installed (needs root + apt); the tests that need it will skip"; fi; \
	fi

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch first and pinned: a bare `torch` requirement would pull GBs of CUDA wheels.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ferkit predict examples/astronaut.jpg --out out/demo

test: $(STAMP) sysdeps
	$(BIN)/python -m pytest tests

clean:
	rm -rf $(VENV) .cache out .pytest_cache
