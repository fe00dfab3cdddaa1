# Two entry points: `make demo` and `make test`. Each sets up everything it needs on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint bench clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/linkedout demo

# Debian's chromium for the browser tests; skipped quietly where apt is not available or not root.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "chromium could not be installed; browser tests will skip"; \
	  else echo "no apt or not root: browser tests will skip"; fi; }

test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python bench/extract.py
	$(BIN)/python bench/views.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/train_scale.py
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/store.py
	$(BIN)/python bench/scale.py
	nice $(BIN)/python bench/retrieval.py

clean:
	rm -rf data bench/out .pytest_cache
