# The two commands of the README. Both are idempotent and work from a fresh clone.
#   make demo  - install everything, then run the demo at http://127.0.0.1:5000
#   make test  - install everything the tests need (system packages too), then run the whole suite

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export SDE_TEST_DATABASE_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres
PYTEST_ARGS ?=
# Two workers on the two cores: host-bound tests (hubs, sandboxes, browsers) in one, database tests shared out.
TEST_WORKERS ?= 2

.PHONY: demo test setup system-deps test-system-deps workspace-env lint clean screenshots

demo: setup system-deps workspace-env
	$(BIN)/sde demo

test: test-system-deps setup workspace-env
	$(BIN)/ruff check .
	SDE_STRICT_TESTS=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=25 \
		--ignore=tests/integration/test_documented_commands.py $(PYTEST_ARGS)
	# one process: its last test checks every documented command ran in the tests before it
	SDE_STRICT_TESTS=1 $(BIN)/python -m pytest tests/integration/test_documented_commands.py $(PYTEST_ARGS)

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	bash infra/setup/python-env.sh "$(PYTHON)" "$(VENV)"
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The workspace (single-user JupyterLab) environment, outside /root so workspace users can run it.
workspace-env:
	bash infra/jupyterhub/build_singleuser_env.sh

system-deps:
	bash infra/setup/system-deps.sh demo

test-system-deps:
	bash infra/setup/system-deps.sh test

screenshots: test-system-deps setup workspace-env
	SDE_UPDATE_SCREENSHOTS=1 $(BIN)/python -m pytest tests/functional

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) node_modules instance test-artifacts
