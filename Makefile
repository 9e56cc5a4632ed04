# ratesim: `make demo` runs the flagship scenario, `make test` runs everything CI runs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test demo lint typecheck pytest bench redis-server clean numba-cache

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP) numba-cache
	$(VENV)/bin/ratesim run exchange-surge --out out/demo

# The compat-layer tests need a real redis-server on PATH (the suite starts its own on a free port).
redis-server:
	@if ! command -v redis-server >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's redis-server (needed by the compat-layer tests)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	    systemctl disable --now redis-server >/dev/null 2>&1 || service redis-server stop >/dev/null 2>&1 || true; \
	  else \
	    echo "error: redis-server is not on PATH and cannot be installed here (need root and apt-get)." >&2; \
	    echo "       Install Redis >= 6 (e.g. 'apt-get install redis-server') and run 'make test' again." >&2; \
	    exit 1; \
	  fi; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check ratesim tests benchmarks experiments
	$(VENV)/bin/ruff format --check ratesim tests benchmarks experiments

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# numba's cache=True checks only a compiled function's own file, not the functions it inlines:
# after any change to the package, drop the compiled caches so nothing stale is loaded.
numba-cache: $(STAMP)
	@if [ ! -e $(VENV)/.numba-stamp ] || [ -n "$$(find ratesim -name '*.py' -newer $(VENV)/.numba-stamp | head -1)" ]; then \
	  find ratesim -name '*.nbi' -delete -o -name '*.nbc' -delete; touch $(VENV)/.numba-stamp; \
	fi

pytest: $(STAMP) redis-server numba-cache
	$(PY) -m pytest

test: lint typecheck pytest

bench: $(STAMP) redis-server
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
