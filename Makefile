# The few commands people type. PYTHON picks .venv/bin/python when a venv exists beside the checkout.
PYTHON ?= $(shell if [ -x .venv/bin/python ]; then echo .venv/bin/python; else echo python3; fi)
PYTEST_ARGS ?= -q
CONFIG ?=

.PHONY: run demo test bench screenshots install

# dtmon installed (editable) unless it already imports.
install:
	@$(PYTHON) -c "import dtmon.cli" 2>/dev/null || $(PYTHON) -m pip install --quiet --disable-pip-version-check -e .

# The dashboard when a config exists (CONFIG=path, $$DTMON_CONFIG, ~/.config/dtmon/config.toml), else the demo world.
run: install
	@if $(PYTHON) -c "import sys; from dtmon.config import locate; sys.exit(locate('$(CONFIG)' or None) is None)"; then \
		$(PYTHON) -m dtmon $(if $(CONFIG),--config $(CONFIG)); \
	else \
		echo "no dtmon config found: opening the demo world (see README for writing one)"; \
		$(PYTHON) -m dtmon demo; \
	fi

demo: install
	$(PYTHON) -m dtmon demo

# Installs the test dependencies (Debian packages when root, pip), then runs every test.
test:
	@if [ "$(SKIP_DEPS)" != 1 ]; then PYTHON=$(PYTHON) scripts/install-test-deps; fi
	$(PYTHON) -m pytest $(PYTEST_ARGS)

# Figures against real engines (needs what `make test` installs): poll times, ratios to the docker CLI, bytes/min.
bench: install
	$(PYTHON) scripts/bench.py

screenshots: install
	$(PYTHON) scripts/screenshots.py
