# The two commands of the README. Each creates the virtual environment it needs.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev,postgres]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/bastion demo $(ARGS)

test: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/python -m pytest
