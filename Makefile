# The two commands of the README: `make demo` and `make test`. Each one builds or
# refreshes the virtualenv in .venv first, so a fresh machine needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint soak bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/flowbot demo

lint: $(STAMP)
	$(BIN)/ruff check flowbot tests bench
	$(BIN)/ruff format --check flowbot tests bench
	$(BIN)/mypy
	@if [ -f Dockerfile ]; then $(BIN)/hadolint Dockerfile; fi

test: lint
	$(BIN)/python -m pytest -q

soak: $(STAMP)
	FLOWBOT_SOAK=1 $(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
