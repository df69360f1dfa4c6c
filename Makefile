# Two entry points a fresh machine needs: `make demo` and `make test`. Each builds .venv itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: an unpinned resolve would pull several GB of CUDA wheels.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev,generative,serve,hpo,postgres,embedding,export]"
	touch $(STAMP)

# Debian's Chromium for the report.html browser test (skipped, with its reason, where it cannot be installed).
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	-apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && \
		apt-get install -y -q chromium >/dev/null 2>&1) || echo "chromium not installed: browser test will skip"

# Debian's PostgreSQL for the shared-sweep tests (each test session starts its own throwaway server on 127.0.0.1;
# skipped, with the reason, where the package cannot be installed).
POSTGRES := /usr/lib/postgresql

$(POSTGRES):
	-apt-get install -y -q postgresql >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && \
		apt-get install -y -q postgresql >/dev/null 2>&1) || echo "postgresql not installed: its tests will skip"

.PHONY: install demo test test-all lint bench-banking77 bench-wnut17

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tuneforge train configs/demo.yaml --set name=demo-$$(date +%Y%m%d-%H%M%S)

test: $(STAMP) $(CHROMIUM) $(POSTGRES)
	$(BIN)/python -m pytest -q -m "not slow"

test-all: $(STAMP) $(CHROMIUM) $(POSTGRES)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

bench-banking77: $(STAMP)
	$(BIN)/python bench/banking77.py

bench-wnut17: $(STAMP)
	$(BIN)/python bench/wnut17.py
