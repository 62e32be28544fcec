# hemoedge: `make run` and `make test` each install whatever is missing, then run.
# A second call installs nothing (stamps are keyed on the files that drive each install).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# chromium: the browser tests and bench web; nginx: the emitted nginx.conf, tested for real;
# qemu-user: the same code under an emulated AVX2 CPU (tests/test_cross_isa.py)
APT_PACKAGES := chromium fonts-dejavu-core nginx qemu-user
PY_STAMP := $(VENV)/.stamp-$(shell cat pyproject.toml | sha256sum | cut -c1-16)
NPM_STAMP := webapp/node_modules/.stamp-$(shell cat webapp/package-lock.json 2>/dev/null | sha256sum | cut -c1-16)
PYTEST_ARGS ?=

.PHONY: setup run test bench sweep lint clean-venv

setup: $(PY_STAMP) apt-deps npm-deps

$(PY_STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev]'
	@rm -f $(VENV)/.stamp-* && touch $@

.PHONY: apt-deps npm-deps
apt-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  (apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing) >/dev/null \
	    || { echo "apt-get install$$missing failed"; exit 1; }; \
	fi

npm-deps:
	@if [ -f webapp/package-lock.json ] && [ ! -f $(NPM_STAMP) ]; then \
	  (cd webapp && npm ci --no-audit --no-fund --loglevel=error) && rm -f webapp/node_modules/.stamp-* && touch $(NPM_STAMP); \
	fi

run: setup
	$(VENV)/bin/hemoedge run --out runs/default

test: setup
	$(VENV)/bin/pytest -m "not slow" -q $(PYTEST_ARGS)
	@test -f ci/baseline.json || { echo "ci/baseline.json missing: hemoedge run --quick --out runs/baseline && hemoedge gate runs/baseline/results.json --update-baseline"; exit 2; }
	$(VENV)/bin/hemoedge run --quick --out runs/make-test
	$(VENV)/bin/hemoedge sweep --quick --restart --data runs/make-test/data --detector-art runs/make-test/art --out runs/make-test-sweep

sweep: setup
	$(VENV)/bin/hemoedge sweep --out runs/sweep

bench: setup
	$(VENV)/bin/hemoedge run --out runs/bench
	HEMOEDGE_ART=runs/bench/art HEMOEDGE_DATA=runs/bench/data $(VENV)/bin/pytest -m slow tests/bench -q --benchmark-json runs/bench/pytest-benchmark.json

lint: setup
	$(VENV)/bin/python -m ruff check hemoedge tests

clean-venv:
	rm -rf $(VENV)
