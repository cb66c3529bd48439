# The two commands a new user needs: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast coverage conformance schema lint migrate demo bench bench-pg mutate vendor-graphiql clean

# The suite runs on every core (pytest-xdist), in a random order (pytest-randomly prints its
# seed; rerun that order with PYTEST_ARGS=--randomly-seed=N), and ends with its slowest tests.
WORKERS ?= auto
PYTEST_ARGS ?=

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/ordergate migrate
	$(BIN)/ordergate demo
	$(BIN)/ordergate serve --host 127.0.0.1 --port 8000

# CI (CI=true) also measures line and branch coverage of api/ and domain/ (greenlet-aware, see
# [tool.coverage] in pyproject.toml) and prints it at the end: 355 s became 493 s here.
COVERAGE ?= $(if $(CI),--cov --cov-report=term:skip-covered,)

test: $(STAMP) conformance
	$(BIN)/ruff check .
	. tools/test-services.sh && $(BIN)/python -m pytest -n $(WORKERS) --durations=25 \
		$(COVERAGE) $(PYTEST_ARGS)

# The inner loop: SQLite only, no browser, no processes or clusters started, no long generated
# searches (2 min 18 s here).
test-fast: $(STAMP)
	env -u ORDERGATE_TEST_DATABASE_URL -u ORDERGATE_TEST_REDIS_URL \
		$(BIN)/python -m pytest -n $(WORKERS) -m "not slow and not npm" $(PYTEST_ARGS)

# Line and branch coverage of api/ and domain/ (async code measured through greenlets; see
# [tool.coverage] in pyproject.toml), over the whole suite.
coverage: $(STAMP)
	. tools/test-services.sh && $(BIN)/python -m pytest -n $(WORKERS) --cov --cov-report=term \
		$(PYTEST_ARGS)

# The GraphQL-over-HTTP audit suite is an npm package. On a developer's machine without npm
# its test is skipped with that reason; in CI (CI=true) a missing or failed install fails.
conformance:
	@if command -v npm >/dev/null; then \
		(cd tests/conformance && npm install --no-audit --no-fund --silent) \
			|| { echo "npm install failed: the graphql-http audit cannot run"; \
			     if [ -n "$$CI" ]; then exit 1; fi; }; \
	else echo "npm not found: the graphql-http audit cannot run"; \
	     if [ -n "$$CI" ]; then exit 1; fi; fi

schema: $(STAMP)
	$(BIN)/python -m api.schema > schema.graphql

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

migrate: $(STAMP)
	$(BIN)/ordergate migrate

demo: $(STAMP)
	$(BIN)/ordergate demo

bench: $(STAMP)
	$(BIN)/python bench/authz_overhead.py
	$(BIN)/python bench/audit_overhead.py
	$(BIN)/python bench/export_memory.py

# On the local PostgreSQL (ORDERGATE_BENCH_PG, default postgresql://postgres@127.0.0.1:5432).
bench-pg: $(STAMP)
	$(BIN)/python bench/read_path.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/write_path.py
	$(BIN)/python bench/workers.py
	$(BIN)/python bench/login_burst.py
	$(BIN)/python bench/ratelimit_cost.py
	$(BIN)/python bench/anonymous_flood.py

# Mutation testing of the security core (tests/MUTATION.md); slow, so not part of `make test`.
mutate: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[mutation]'
	tests/mutation/run.sh $(FILE)

# Refresh GraphiQL's vendored assets (api/static/graphiql/vendor/README.md); needs npm.
vendor-graphiql:
	tools/vendor-graphiql.sh

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
