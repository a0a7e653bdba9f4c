# Two commands on a fresh machine (Debian/Ubuntu, Python >= 3.10):
#   make run    -> installs what it needs, trains the embedded default, prints the results table
#   make test   -> installs what it needs, runs the test suite on the CPU
PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: run test install data lint docs bench-smoke

$(BIN)/python:
	$(PY) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev,deploy]"

# Fashion-MNIST (the default data set) from Debian's package; needs root or sudo.
data:
	@if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then \
	  echo "installing dataset-fashion-mnist (Debian package)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q dataset-fashion-mnist || \
	  { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q dataset-fashion-mnist; }; \
	fi

run: install data
	$(BIN)/python -m train.main

# the suite, plus the doctests of the public layers and converters
DOCTESTS = fsjax/kinds.py fsjax/nn/conv.py fsjax/nn/convert.py fsjax/linen/__init__.py fsjax/linen/compress.py

test: install data
	$(BIN)/python -m pytest -q -n auto tests --doctest-modules $(DOCTESTS)

lint: install
	$(BIN)/ruff check .

# the API reference (HTML from the docstrings) in docs/api/; fails on any pdoc warning
docs: install
	$(BIN)/python docs/build_api.py docs/api

bench-smoke: install
	$(BIN)/python -m benchmarks.all --small
