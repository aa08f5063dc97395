# `make demo`: the whole pipeline offline on the shipped samples.  `make test`: the test suite.
# Both create .venv from the pinned requirements on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m ernie3.demo --output_dir demo_output

test: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf demo_output output .pytest_cache
