# ferkit: `make demo` and `make test` set everything up on a fresh machine, then run.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.ferkit-installed
TORCH   := torch==2.13.0

.PHONY: demo test install clean

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

test: $(STAMP)
	$(BIN)/python -m pytest tests

clean:
	rm -rf $(VENV) .cache out .pytest_cache
