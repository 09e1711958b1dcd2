# Everything a user or CI needs; each target installs what is missing first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: help install test unit e2e demo sandbox crds crds-check bench lint typecheck check clean

help:
	@echo "make demo     start the test bed, run the operator, apply examples/, show status (Ctrl-C ends it)"
	@echo "make test     install what is missing, run every test (unit and e2e), in three pytest runs side by side"
	@echo "make test-serial  the same tests in one pytest (slower; one output)"
	@echo "make unit     only the fast tests (no test bed)"
	@echo "make sandbox  start the test bed alone, for debugging"
	@echo "make sandbox-node  (root) a real one-node Kubernetes + local registry, for debugging"
	@echo "make crds     regenerate crds/ and the chart's templates/crds/ from the pydantic models"
	@echo "make crds-check  fail (with a diff) when crds/ or the chart's copy differ from the models (part of make test)"
	@echo "make lint     ruff with the rules in pyproject.toml (part of make test)"
	@echo "make typecheck  mypy, strict on reconcile/ provision/ api/ harper/ (make test runs it as tests/test_typecheck.py)"
	@echo "make check    lint, crds-check and typecheck: the quick gate, in seconds"
	@echo "make bench    run the benchmarks in bench/ (numbers go to bench/results/)"
	@echo "make image    build the operator and Harper images without Docker (root; PUSH=host:port to push)"

# A venv that an interrupted run left without a runnable python or pip is made anew (.ci/venv-ok says why);
# the stamp is touched only after an install that succeeded, so the next make installs again after a failure.
$(STAMP): pyproject.toml constraints.txt
	@sh .ci/venv-ok $(VENV) || { echo "(re)creating $(VENV)"; rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

unit: $(STAMP)
	$(PY) -m pytest tests -q

# No reruns: a test that passes only when run again hides a bug in the operator or in the test (a wait that is too
# short on 2 cores waits on a condition, not a time). tests/test_makefile.py keeps it so.
#
# Three pytest runs side by side, each with its own test bed; they share nothing but the cache of built tools (each
# build takes a lock, so a cold cache builds each tool once). Waiting for pods and Harper nodes takes most of the time,
# not the 2 cores:
# - NODE_TESTS, the node layer's tests (real pods; one node layer per machine), output in NODE_LOG;
# - MATRIX_TESTS, the loopback fault matrix and the scenarios that cut the network (every user of netcut's iptables
#   chain runs in this one pytest, as test_netcut.py expects the chain to be its own), output in MATRIX_LOG;
# - everything else (unit tests, then the loopback scenarios), in the foreground.
# The two logs are printed after the foreground run (follow them with tail -f meanwhile). `make test-serial` runs
# the same tests in one pytest.
NODE_TESTS   := e2e/pods e2e/test_node.py
MATRIX_TESTS := e2e/test_netcut.py e2e/scenarios/test_leaving.py e2e/scenarios/test_hardening.py e2e/scenarios/test_faults.py
LOG_DIR      ?= $(or $(TMPDIR),/tmp)
NODE_LOG     ?= $(LOG_DIR)/harper-operator-node-tests.log
MATRIX_LOG   ?= $(LOG_DIR)/harper-operator-matrix-tests.log
PYTEST       := $(PY) -m pytest -q -p no:cacheprovider

test: $(STAMP) crds-check lint
	@echo "make test: $(NODE_TESTS) (output: $(NODE_LOG)) and $(MATRIX_TESTS) (output: $(MATRIX_LOG)) run beside the rest"
	@$(PYTEST) $(NODE_TESTS) --durations=40 >$(NODE_LOG) 2>&1 & node=$$!; \
	$(PYTEST) $(MATRIX_TESTS) --durations=10 >$(MATRIX_LOG) 2>&1 & matrix=$$!; \
	$(PYTEST) tests e2e $(NODE_TESTS:%=--ignore=%) $(MATRIX_TESTS:%=--ignore=%) --durations=15; rest=$$?; \
	wait $$matrix; matrixes=$$?; echo "=============== $(MATRIX_TESTS) ($(MATRIX_LOG)) ==============="; \
	cat $(MATRIX_LOG); \
	wait $$node; nodes=$$?; echo "=============== $(NODE_TESTS) ($(NODE_LOG)) ==============="; \
	cat $(NODE_LOG); \
	echo "make test: exit $$rest for the rest, $$matrixes for $(MATRIX_TESTS), $$nodes for $(NODE_TESTS)"; \
	[ $$rest -eq 0 ] && [ $$matrixes -eq 0 ] && [ $$nodes -eq 0 ]

.PHONY: test-serial
test-serial: $(STAMP) crds-check lint
	$(PYTEST) tests e2e --durations=15

e2e: $(STAMP)
	$(PY) -m pytest e2e -q --durations=15

demo: $(STAMP)
	$(PY) -m e2e.demo

sandbox: $(STAMP)
	$(PY) -m e2e.testbed.sandbox --nodes 3

.PHONY: sandbox-node
sandbox-node: $(STAMP)
	$(PY) -m e2e.testbed.sandbox --node

# crds/ for kubectl users; the chart's copy as templates, so `helm upgrade` updates the CRDs.
CHART_CRDS := helm/harper-operator/templates/crds

crds: $(STAMP)
	$(VENV)/bin/harper-operator crds --out crds --chart-out $(CHART_CRDS)

# The committed CRDs must be what the models generate (a second or so): regenerated into a temporary folder and
# compared, a diff shown for each copy that differs (an extra or missing file counts too): crds/ and the chart's
# templates in $(CHART_CRDS).
crds-check: $(STAMP)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(VENV)/bin/harper-operator crds --out "$$tmp/crds" --chart-out "$$tmp/chart" || exit 1; \
	stale=; \
	diff -ru crds "$$tmp/crds" || stale="$$stale crds/"; \
	diff -ru $(CHART_CRDS) "$$tmp/chart" || stale="$$stale $(CHART_CRDS)/"; \
	if [ -n "$$stale" ]; then \
		echo "crds-check: stale CRDs in$$stale (diff above: - committed, + generated); run 'make crds' and commit"; \
		exit 1; \
	fi; \
	echo "crds-check: crds/ and $(CHART_CRDS)/ match the models"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# The packages and the strictness are in pyproject.toml ([tool.mypy]).
typecheck: $(STAMP)
	$(VENV)/bin/mypy

check: lint crds-check typecheck

bench: $(STAMP)
	for b in bench/*.py; do $(PY) $$b || exit 1; done

# Debian's mmdebstrap builds the OS layers (installed with apt-get when missing), so it runs as root.
# Without PUSH the images go to a temporary local registry, are checked with crane, and it stops.
.PHONY: image
image: $(STAMP)
	$(PY) -m e2e.testbed.images $(if $(PUSH),--push $(PUSH))

clean:
	rm -rf $(VENV) .pytest_cache
