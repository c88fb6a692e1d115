# ferkit: `make demo` and `make test` set everything up on a fresh machine, then run.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.ferkit-installed
TORCH   := torch==2.13.0
# PyPI's torch wheel for Linux x86_64 is the CUDA build (GBs of nvidia-* wheels): the CPU build is taken
# from a local wheel where pip's find-links has one (as on these machines, offline), else from this index
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: demo test install sysdeps clean bench-peers

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

# torch first, pinned and CPU-only (see TORCH_CPU_INDEX), then its dependencies (torch itself is in place).
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-index $(TORCH) 2>/dev/null \
	  || $(BIN)/pip install --quiet --disable-pip-version-check --no-deps --index-url $(TORCH_CPU_INDEX) $(TORCH)
	$(BIN)/pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ferkit predict examples/astronaut.jpg --out out/demo

test: $(STAMP) sysdeps
	$(BIN)/python -m pytest tests

# ferkit side by side with the `fer` package (benchmarks/peers.py -> docs/benchmarks.md). fer needs
# TensorFlow, so it gets its own environment, .venv-fer (hundreds of MB; not used by demo or test).
# fer and mtcnn without their declared requirements: those would pull a CUDA torch (facenet-pytorch).
FER_VENV  := .venv-fer
FER_STAMP := $(FER_VENV)/.fer-installed
FER_PKGS  := tensorflow-cpu==2.21.0 'opencv-python-headless<5' pandas h5py lz4 joblib 'setuptools<81' numpy pillow

$(FER_STAMP):
	$(PY) -m venv $(FER_VENV)
	$(FER_VENV)/bin/pip install --quiet --disable-pip-version-check $(FER_PKGS)
	$(FER_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps fer==25.10.3 mtcnn==1.0.0
	touch $(FER_STAMP)

# the models of the published run (every shipped model on both backends would take far longer)
PEERS_MODELS ?= lite_plain-fer2013-bn,lite_cnn-fer2013-bn,mini_xception-fer2013-bn

bench-peers: $(STAMP) $(FER_STAMP)
	$(BIN)/python benchmarks/peers.py --fer-python $(FER_VENV)/bin/python --models $(PEERS_MODELS)
	$(BIN)/python benchmarks/fer_splits.py --fer-python $(FER_VENV)/bin/python --write

clean:
	rm -rf $(VENV) $(FER_VENV) .cache out .pytest_cache
