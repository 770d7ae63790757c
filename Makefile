# Quick start: `make demo`, then `make test`.  Nothing needs installing by hand
# beyond Python 3.11 with venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
TF ?= cpu
STAMP := $(VENV)/.installed-$(TF)

.PHONY: venv data demo test test-lab test-hub lint figures specification bench browser-deps sandbox-deps postgres-deps clean hub hub-deps hub-setup hub-remove

# jsonschema imports rfc3987-syntax whenever it is installed (jupyter-events asks for it), and that package
# builds some 35 Earley parsers as it is imported: 2 s of CPU in every process that reads a notebook (each
# nbgrader command, Validate, a regrade's grader per student).  No Jupyter schema uses the two formats it
# checks (iri, iri-reference), so the environments go without it (python-jsonschema issue #1428).
DROP_SLOW_IMPORTS := pip uninstall --quiet --yes rfc3987-syntax

venv: $(STAMP)

# Reinstalls only when the requirements change, so a second `make demo` is quick.
$(STAMP): requirements.txt requirements-student.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
ifeq ($(TF),gpu)
	$(BIN)/python -m pip uninstall --yes tensorflow-cpu
	$(BIN)/python -m pip install --quiet "tensorflow[and-cuda]==$$(sed -n 's/^tensorflow-cpu==\([0-9.]*\).*/\1/p' requirements-student.txt)"
endif
	$(BIN)/python -m $(DROP_SLOW_IMPORTS)
	rm -f $(VENV)/.installed-*
	touch $@

# Makes the synthetic set unless data/ already holds CameraRGB/ (e.g. the real one).
data: $(STAMP)
	@if [ -d data/CameraRGB ]; then echo "data/CameraRGB exists: using it"; \
	else $(BIN)/python notebooks/unet_segmentation/carla_synth.py data; fi

# Grading gives each kernel a control group; DELEGATED starts the command where
# that is allowed (for a normal user on cgroup v2: a group systemd delegates).
DELEGATED := sh grader/tools/delegated.sh

demo: data sandbox-deps
	$(DELEGATED) $(BIN)/python -m grader.dev.demo

# Everything but the hub suites (marked hub), which make unix accounts and run a real JupyterHub
# (root and `make hub-deps`; `make test-hub`), and the companion lab's run (marked lab, `make test-lab`).
# CI runs all three.
# Two workers run the test files side by side (pytest-xdist, a file per worker at a time): a grading waits
# on one core most of the time, so one worker leaves a 2-core machine half idle.  The tests marked serial
# look at the whole machine (every control group, process or kernel template) or time themselves, so they
# run afterwards, alone.  TEST_WORKERS=0 runs the first part in one process too.
TEST_WORKERS ?= 2
test: lint
	$(DELEGATED) $(BIN)/python -m pytest -m "not hub and not lab and not serial" -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15
	$(DELEGATED) $(BIN)/python -m pytest -m "serial and not hub and not lab" --durations=5

# The companion lab (notebooks/unet_lab/) run end to end on the synthetic set, and the margin by
# which skip connections win on the thin classes there (the lab's own run: 5 to 10 minutes on 2 cores).
test-lab: $(STAMP)
	$(BIN)/python -m pytest -m lab --durations=5

test-hub: $(STAMP)
	$(DELEGATED) $(BIN)/python -m pytest -m hub --durations=10

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	@# Without shellcheck and pyflakes, which are on some machines and not others: the same verdict everywhere.
	$(BIN)/actionlint -shellcheck= -pyflakes=

figures: $(STAMP)
	$(BIN)/python notebooks/make_figures.py

# specification.json, the specification's networks for the visible checks, from the reference
# solutions; run it after changing a solution or a visible example (a test says when it is due).
specification: $(STAMP)
	$(BIN)/python -m grader.dev.specification_file

# Speed and quality figures (bench/); about 35 minutes on 2 cores.  BENCH_ARGS
# picks sections, e.g. make bench BENCH_ARGS="--only grading,throughput".
bench: data sandbox-deps
	$(DELEGATED) $(BIN)/python -m bench $(BENCH_ARGS)

# Debian's Chromium for the browser test (Playwright drives it; it downloads no browser).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser-deps:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

# bubblewrap and prlimit for the grading sandbox, and on Ubuntu 23.10 and later the
# AppArmor profile that lets bubblewrap run as a normal user (with sudo; it says what it does).
sandbox-deps:
	@sh grader/tools/sandbox_deps.sh

# A PostgreSQL server for the distributed-grading tests (they start their own
# throw-away instance; without it they are skipped, except in CI).
postgres-deps:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq postgresql; }

clean:
	rm -rf release submitted autograded feedback gradebook.db grades.csv reports

# The course on a JupyterHub (README.md, "Running the course on JupyterHub").
# Every account's server runs as that account, which cannot use .venv (its
# Python lives in root's home), so the hub, the course service and every
# student share a second environment built from the system's Python 3.11 in
# HUB_ENV, readable by all.  The proxy comes from npm, pinned in hub/package-lock.json.
HUB_STATE ?= /srv/unet-hub
HUB_ENV ?= $(HUB_STATE)/env
HUB_PYTHON ?= /usr/bin/python3.11
HUB_STAMP := $(HUB_ENV)/.installed
export UNET_HUB_STATE := $(HUB_STATE)
export UNET_HUB_ENV := $(HUB_ENV)

$(HUB_STAMP): requirements.txt requirements-student.txt hub/requirements.txt
	umask 022 && $(HUB_PYTHON) -m venv $(HUB_ENV)
	umask 022 && $(HUB_ENV)/bin/python -m pip install --quiet --upgrade pip
	umask 022 && $(HUB_ENV)/bin/python -m pip install --quiet -r hub/requirements.txt
	$(HUB_ENV)/bin/python -m $(DROP_SLOW_IMPORTS)
	touch $@

hub/node_modules/.package-lock.json: hub/package.json hub/package-lock.json
	cd hub && npm ci --no-audit --no-fund --loglevel=error

hub-deps: $(HUB_STAMP) hub/node_modules/.package-lock.json

# Set up (accounts, course, exchange, release) and run the hub in the foreground; Ctrl-C stops it.
hub: hub-deps data sandbox-deps
	$(BIN)/python -m hub

# The same set-up without starting the hub; hub-remove deletes the demo accounts and the state (not HUB_ENV).
hub-setup: hub-deps data sandbox-deps
	$(BIN)/python -m hub setup

hub-remove: $(STAMP)
	$(BIN)/python -m hub remove
