# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch first, pinned, so nothing below can pull a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	# The tensorboard, hf and serve extras too, so their tests run (optional for users); playwright
	# (in test) drives the system's Chromium in the browser test of fewgen serve (.ci/run installs it).
	$(BIN)/pip install -q -e '.[test,tensorboard,hf,serve]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/fewgen demo --out runs/demo --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest tests

clean:
	rm -rf $(VENV) runs
