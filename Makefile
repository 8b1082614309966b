# flowlens — every target does its own set-up: a .venv with Python >= 3.12 and the package installed.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.flowlens-installed
ARGS    ?=
PYTEST_ARGS ?=

.PHONY: serve test install browser lint bench clean

$(STAMP): pyproject.toml
	@set -e; \
	if ! [ -x "$(PY)" ] || ! "$(PY)" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then \
	  BASE=$$(.ci/find-python); \
	  echo "make: creating $(VENV) with $$BASE"; rm -rf "$(VENV)"; "$$BASE" -m venv "$(VENV)"; \
	else echo "make: using $(VENV) ($$($(PY) --version))"; fi
	$(PY) -m pip install --progress-bar on --upgrade pip
	$(PY) -m pip install --progress-bar on -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

serve: install  ## start flowlens on http://localhost:5006 (replaying the bundled recording at 10x)
	$(PY) serve.py $(ARGS)

browser:  ## make sure a Chromium for the browser tests is there (installs Debian's chromium as root)
	@if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then echo "make: chromium: $$(command -v chromium || echo /usr/bin/chromium)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "make: installing Debian chromium"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "make: no chromium found and cannot install it (not root or no apt-get); browser tests will fail under CI=true, skip otherwise"; fi

test: install browser  ## run the whole test suite
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .

bench: install  ## speed and memory benchmarks (not part of the tests)
	$(PY) -m benchmarks.bench_compute

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis artifacts
