# flowlens — every target does its own set-up: a .venv with Python >= 3.12 and the package installed.
VENV    ?= .venv
PY      := $(VENV)/bin/python
ARGS    ?=
PYTEST_ARGS ?=
# one test worker per core, at most 4: each test file runs whole in one worker (its fixtures are made once), and
# the files that drive Chromium all in one worker, one at a time (tests/pytest_groups.py)
PYTEST_PARALLEL ?= -n auto --maxprocesses 4

.PHONY: serve test install install-test install-lab browser promtool lint bench lab notebooks clean

# One stamp per set of extras: `make serve` installs what serving needs (pyproject's dependencies) and nothing
# more, `make test` adds the test extra (which pulls research and export), `make lab` research and export.
$(VENV)/.flowlens-%: pyproject.toml
	@set -e; \
	if ! [ -x "$(PY)" ] || ! "$(PY)" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then \
	  BASE=$$(.ci/find-python); \
	  echo "make: creating $(VENV) with $$BASE"; rm -rf "$(VENV)"; "$$BASE" -m venv "$(VENV)"; \
	else echo "make: using $(VENV) ($$($(PY) --version))"; fi
	@# uv (from PyPI) installs in seconds what pip takes minutes for; pip stays the fallback
	@SPEC='.$(if $(filter-out serve,$*),[$(subst +,$(comma),$*)])'; \
	if [ -x "$(VENV)/bin/uv" ] || $(PY) -m pip install --quiet --disable-pip-version-check uv; then \
	  echo "make: installing -e $$SPEC with uv"; "$(VENV)/bin/uv" pip install --python "$(PY)" -e "$$SPEC"; \
	else echo "make: uv not available, installing -e $$SPEC with pip"; \
	  $(PY) -m pip install --progress-bar on --upgrade pip && $(PY) -m pip install --progress-bar on -e "$$SPEC"; fi
	@touch $@

comma := ,
install: $(VENV)/.flowlens-serve
install-test: $(VENV)/.flowlens-test
install-lab: $(VENV)/.flowlens-research+export

serve: install  ## start flowlens on http://localhost:5006 (replaying the bundled recording at 10x)
	$(PY) serve.py $(ARGS)

browser:  ## make sure a Chromium for the browser tests is there (installs Debian's chromium as root)
	@if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then echo "make: chromium: $$(command -v chromium || echo /usr/bin/chromium)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "make: installing Debian chromium"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "make: no chromium found and cannot install it (not root or no apt-get); browser tests will fail under CI=true, skip otherwise"; fi

promtool:  ## make sure promtool is there for the /metrics lint test (installs Debian's prometheus as root)
	@if command -v promtool >/dev/null 2>&1; then echo "make: promtool: $$(command -v promtool)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "make: installing Debian prometheus (for promtool)"; { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } || \
	  echo "make: installing prometheus failed; the promtool test fails under CI=true, skips otherwise"; \
	else echo "make: no promtool and cannot install it (not root or no apt-get); its test fails under CI=true, skips otherwise"; fi

test: install-test browser promtool  ## run the whole test suite
	$(PY) -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

lint: install-test
	$(PY) -m ruff check .

lab: install-lab  ## open the notebooks in JupyterLab (installed into the .venv on first use)
	@$(PY) -c 'import jupyterlab' 2>/dev/null || { [ -x "$(VENV)/bin/uv" ] && "$(VENV)/bin/uv" pip install --python "$(PY)" jupyterlab || $(PY) -m pip install jupyterlab; }
	$(PY) -m jupyter lab notebooks/

notebooks: install-lab  ## re-run every notebook and store its outputs (what a researcher sees before running anything)
	cd notebooks && $(abspath $(PY)) -m jupyter nbconvert --to notebook --execute --inplace \
	  --ClearOutputPreprocessor.enabled=True --CoalesceStreamsPreprocessor.enabled=True \
	  --ExecutePreprocessor.record_timing=False *.ipynb

bench: install-test  ## speed and memory benchmarks (not part of the tests; compute, then ingest into an embedded Valkey)
	$(PY) -m benchmarks.bench_compute
	$(PY) -m benchmarks.bench_decode
	$(PY) -m benchmarks.bench_ingest
	$(PY) -m benchmarks.bench_alerts

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis artifacts
