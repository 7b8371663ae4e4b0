# The few commands people type. Everything runs from .venv, this checkout's own virtual environment, which
# scripts/venv creates from Debian's /usr/bin/python3 (and updates when pyproject.toml changes): nothing is
# ever installed into the system Python, the user's site-packages or elsewhere under $HOME.
VENV_PYTHON := .venv/bin/python
PYTEST_ARGS ?= -q
# Test workers (pytest-xdist): the tests mostly wait on engines, so more workers than cores pay off; tests
# sharing an engine stay on one worker (tests/conftest.py). JOBS=1 runs everything in one process.
JOBS ?= 4
CONFIG ?=

.PHONY: run demo test bench screenshots install

# .venv with dtmon installed (editable).
install:
	@scripts/venv >/dev/null

# The dashboard when a config exists (CONFIG=path, $$DTMON_CONFIG, ~/.config/dtmon/config.toml), else the demo
# world, with a notice in the app saying why.
run: install
	@$(VENV_PYTHON) -m dtmon $(if $(CONFIG),--config $(CONFIG)) --or-demo

demo: install
	$(VENV_PYTHON) -m dtmon demo

# Installs the test dependencies (Debian packages when root; pytest and its plugins into .venv; workflow-core
# into .venv-workflow), then runs every test.
test:
	@if [ "$(SKIP_DEPS)" != 1 ]; then scripts/install-test-deps; else scripts/venv test >/dev/null; fi
	$(VENV_PYTHON) -m pytest $(if $(filter-out 1,$(JOBS)),-n $(JOBS) --dist loadgroup) $(PYTEST_ARGS)

# Figures against real engines (needs what `make test` installs): poll times, ratios to the docker CLI, bytes/min.
bench: install
	$(VENV_PYTHON) scripts/bench.py

screenshots: install
	$(VENV_PYTHON) scripts/screenshots.py
