# `make demo` and `make test` do all set-up on a fresh machine (a virtual environment in .venv).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= outputs

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-optional.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt -e .
	touch $@

.PHONY: setup demo test lint
setup: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m pipeline render --image examples/astronaut.png --landmarks examples/speech_astronaut_track.json \
		--audio examples/speech.wav -o $(OUT)/demo.mp4

test: $(VENV)/.installed
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(PY) -m ruff check .

.PHONY: app
app: $(VENV)/.installed
	$(PY) app.py
