# Two commands do everything on a fresh machine (see README):
#   make run    emulators + demo fleet + pipeline + simulated devices + live table
#   make test   the whole test suite (unit, TestStream, end-to-end on the emulators)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install run test test-fast check-prereqs clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

check-prereqs: install
	$(PY) -m local.prereqs

run: check-prereqs
	$(PY) -m local.demo

test: check-prereqs
	$(PY) -m pytest tests $(PYTEST_ARGS)

# Pure logic and TestStream tests only: no emulators needed.
test-fast: install
	$(PY) -m pytest tests -m "not emulator" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
