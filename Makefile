# Two commands set up everything on a fresh machine with Python 3.11+:
#   make demo   - create .venv, install varflow, run it on bundled sample photos
#   make test   - create .venv, install varflow with test tools, run the test suite
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
	# compat: the checkout goes on sys.path as a path entry, so its regular packages win over a
	# same-named folder on sys.path (a Dask worker puts its scratch folder, holding "storage/", there).
	$(BIN)/python -m pip install --quiet -e '$(ROOT)[test]' --config-settings editable_mode=compat
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/varflow demo

test: $(STAMP)
	cd $(ROOT) && $(BIN)/python -m pytest

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
