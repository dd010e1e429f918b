# The two README commands. Each installs what it needs into .venv (once; a no-op afterwards).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch/torchvision are pinned here (not in setup.py) to the build this project is tested with.
TORCH ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test
install: $(STAMP)

$(STAMP): setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m ecma_basicsr.demo

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q tests
