# Two commands set up everything on a fresh machine with Python 3.11+:
#   make demo   - create .venv, install varflow, run it on bundled sample photos
#   make test   - create .venv, install varflow with test tools, lint (ruff), run the test suite
# and, for looking at results:
#   make notebooks   - install the notebooks extra and open notebooks/ in JupyterLab
#   make system-deps - Debian's Chromium for the gallery's browser test (CI runs it before make test)
PYTHON ?= python3
ROOT   := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
VENV   := $(ROOT)/.venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum $(ROOT)/pyproject.toml | cut -d' ' -f1)

.PHONY: demo test bench install clean notebooks system-deps

$(STAMP): $(ROOT)/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "varflow needs Python 3.11 or newer; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The default editable mode: setuptools' finder maps varflow and varflow.flows/.tasks/.storage/
	# .deployments to this checkout's folders; no other top-level name is importable.
	$(BIN)/python -m pip install --quiet -e '$(ROOT)[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/varflow demo

# -P: the checkout's root is not put on sys.path, so the tests import varflow the way a user's
# process (and a Dask worker) does, through the installed finder, never a top-level folder by chance.
test: $(STAMP)
	cd $(ROOT) && $(BIN)/ruff check . && $(BIN)/python -P -m pytest

system-deps:
	bash $(ROOT)/scripts/install-system-deps.sh

$(VENV)/.notebooks-installed: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '$(ROOT)[notebooks]'
	touch $@

notebooks: $(VENV)/.notebooks-installed
	$(BIN)/jupyter lab $(ROOT)/notebooks

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps imagededup
	for b in $(ROOT)/bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) varflow-demo .pytest_cache
