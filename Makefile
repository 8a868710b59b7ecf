# `make test` works on a fresh machine: it creates .venv when missing and installs
# what requirements*.txt name into it (again whenever they change).
VENV ?= .venv
PYTHON := $(VENV)/bin/python

.PHONY: test bench

$(VENV)/.installed: requirements.txt requirements-test.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
	touch $@

test: $(VENV)/.installed
	$(PYTHON) -m pytest

bench: $(VENV)/.installed
	$(PYTHON) bench/bench_metrics.py
	$(PYTHON) bench/bench_data.py
