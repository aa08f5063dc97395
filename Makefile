# `make demo`: the whole pipeline offline on the shipped samples.  `make test`: the test suite.
# Both create .venv from the pinned requirements on first use.
# GPU machines: `make install GPU=cu118` (or cu123, cu126: the CUDA build tags of PaddlePaddle's package index)
# installs paddlepaddle-gpu from PaddlePaddle's own index in place of the CPU paddlepaddle from PyPI.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
GPU ?=
PADDLE_INDEX := https://www.paddlepaddle.org.cn/packages/stable/$(GPU)/
PIP_INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test install clean distclean

ifeq ($(GPU),)
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -r requirements.txt
	$(PIP_INSTALL) --no-deps -e .
	touch $(STAMP)
else
# the same pins with paddlepaddle-gpu in place of paddlepaddle (not on PyPI: PaddlePaddle's index has it)
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	sed 's/^paddlepaddle==/paddlepaddle-gpu==/' requirements.txt > $(VENV)/requirements-gpu.txt
	$(PIP_INSTALL) --extra-index-url $(PADDLE_INDEX) -r $(VENV)/requirements-gpu.txt
	$(PIP_INSTALL) --no-deps -e .
	touch $(STAMP)
endif

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ernie3 demo --output_dir demo_output

# -rs: a skipped test says why (e.g. ../shared/data absent)
test: $(STAMP)
	$(PY) -m pytest -q -rs tests

# every output the targets and the README's commands write by default; never the venv
clean:
	rm -rf demo_output output bench_output soak_output log .pytest_cache

distclean: clean
	rm -rf $(VENV)
