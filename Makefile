# The two set-up commands (see README.md):
#   make demo   install seedledger in .venv and run the demo on embedded defaults
#   make test   install seedledger with its test tools and run the whole suite
# Both install from constraints.txt, the lock of record (hashing libraries are pinned
# there because their versions change perceptual hashes).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO_DIR ?= demo-out

.PHONY: demo test install install-test build-deps browser lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# with the PostgreSQL driver, so the README's PostgreSQL section runs as written
install: $(BIN)/python build-deps
	$(BIN)/pip install --quiet -c constraints.txt -e '.[postgres]'

install-test: $(BIN)/python build-deps
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'

# headers for the optional native verify walker (ledger/integrity/_leafwalk.c)
build-deps:
	bash scripts/install-build-deps.sh

browser:
	bash scripts/install-browser.sh

demo: install
	$(BIN)/seedledger demo --dir $(DEMO_DIR) --force

test: install-test browser
	$(BIN)/ruff check ledger tests bench scripts
	$(BIN)/python -m pytest

lint: install-test
	$(BIN)/ruff check ledger tests bench scripts
	$(BIN)/ruff format --check ledger tests bench scripts

bench: install-test
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info $(DEMO_DIR) ledger/integrity/*.so
