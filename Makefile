# The two commands of the README. Each creates the virtual environment it needs (.venv) on first use.
#   make demo   the sample shop API behind Bastion (ARGS=--attack replays attacks and prints a report)
#   make test   lint + the whole test suite
# Needs only python3 (3.11+, with the venv module) and make; packages come from PyPI.

VENV := .venv
STAMP := $(VENV)/.installed
# The first Python that is 3.11 or newer.
PY ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& echo $$p && break; done)

.PHONY: demo test docs clean-venv

$(STAMP): pyproject.toml
	@if [ -z "$(PY)" ]; then echo "error: Bastion needs Python 3.11 or newer (python3 --version)"; exit 1; fi
	@[ -x $(VENV)/bin/python ] || $(PY) -m venv $(VENV) || { \
		echo "error: '$(PY) -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv"; \
		rm -rf $(VENV); exit 1; }
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[dev,postgres]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/bastion demo $(ARGS)

# Lint and tests both run (a lint error does not hide test results); either failing fails the target.
test: $(STAMP)
	@status=0; \
	$(VENV)/bin/ruff check src tests bench || status=1; \
	$(VENV)/bin/python -m pytest $(ARGS) || status=1; \
	exit $$status

# Regenerate the reference part of docs/configuration.md from the config model.
docs: $(STAMP)
	$(VENV)/bin/python -c "from bastion.configdoc import write_reference; write_reference('docs/configuration.md')"

clean-venv:
	rm -rf $(VENV)
