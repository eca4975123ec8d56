# The two set-up commands (see README.md):
#   make demo   install seedledger in .venv and run the demo on embedded defaults
#   make test   install seedledger with its test tools and run the whole suite
# Both install from hashed locks of constraints.txt, the lock of record (hashing libraries
# are pinned there because their versions change perceptual hashes): first every
# dependency with --require-hashes (requirements*.lock, written by scripts/lock.py), then
# seedledger itself, editable, without build isolation (pip refuses hash checking for an
# editable install; the build uses the setuptools just installed from the lock).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO_DIR ?= demo-out
# the suite on one worker per core (at most 4); a test file stays on one worker, in order
# (module fixtures are shared by its tests). `make test PYTEST_PARALLEL=` runs it serially.
PYTEST_PARALLEL ?= -n auto --maxprocesses 4 --dist loadfile

.PHONY: demo test install install-test build-deps media-deps browser lint bench clean sanitize-native lowest-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt --upgrade pip setuptools wheel

# with the PostgreSQL driver, so the README's PostgreSQL section runs as written
install: $(BIN)/python build-deps
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements-demo.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .

install-test: $(BIN)/python build-deps media-deps
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	$(BIN)/python scripts/check_lock.py

# headers for the optional native verify walker (ledger/integrity/_leafwalk_src/)
build-deps:
	bash scripts/install-build-deps.sh

# Chromaprint (audio fingerprints), see scripts/install-media-deps.sh
media-deps:
	bash scripts/install-media-deps.sh

browser:
	bash scripts/install-browser.sh

demo: install
	$(BIN)/seedledger demo --dir $(DEMO_DIR) --force

test: install-test browser
	$(BIN)/ruff check ledger tests bench scripts
	$(BIN)/ruff format --check ledger tests bench scripts
	$(BIN)/mypy  # ledger/, strict: [tool.mypy] in pyproject.toml
	$(BIN)/python -m pytest $(PYTEST_PARALLEL)
	bash scripts/sanitize-native.sh $(BIN)/python

lint: install-test
	$(BIN)/ruff check ledger tests bench scripts
	$(BIN)/ruff format --check ledger tests bench scripts
	$(BIN)/mypy

# the native walker's tests against an ASan+UBSan build of it (part of `test`)
sanitize-native: install-test
	bash scripts/sanitize-native.sh $(BIN)/python

# a fast subset of the suite with every direct dependency at its pyproject floor (PyPI;
# ~1 min to install, then the tests; not part of `test`: too slow for CI)
lowest-deps: install-test
	$(BIN)/python scripts/lowest_deps.py

bench: install-test
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info $(DEMO_DIR) ledger/integrity/*.so
