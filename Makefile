# Two commands on a fresh machine:  `make demo`  (set up + the quickstart experiment)   `make test`  (set up + tests)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: demo test lint typecheck docs wheel-check bench bench-llm docs-numbers docs-numbers-check mutation-check install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first and pinned (the local CPU build), then everything else constrained to it (with the Lightning,
# Hugging Face and W&B integrations, so the tests run against the real packages), then the optional
# Debian-packaged data (apt-get download + dpkg -x into ~/.cache/curvlab: no root or R needed; skipped with one
# line where there is no apt, and the tests that need it skip there, saying so).
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[data,test,lightning,transformers,wandb,docs]'
	$(PIP) uninstall -y -q torchvision  # pulled by curvlinops' BackPACK (test extra): see .installed-bench
	@! $(BIN)/python -c "import torchvision" 2>/dev/null || (echo "torchvision is installed: it breaks transformers beside the CPU torch; pip uninstall torchvision" && false)
	-apt-get update -qq >/dev/null 2>&1
	$(BIN)/python -m curvlab.data.debian || echo "curvlab: the optional Debian data is missing (above); run python -m curvlab.data.debian to retry"
	touch $@

# curvlinops pulls backpack-for-pytorch, which pulls torchvision (a CUDA wheel that breaks transformers):
# removed again, curvlinops and backpack run without it.
$(VENV)/.installed-bench: $(VENV)/.installed
	$(PIP) install -q -c constraints.txt -e '.[bench]'
	$(PIP) uninstall -y -q torchvision 2>/dev/null || true
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/curvlab quickstart --out runs/quickstart

# Measure again the figures README and docs quote from generated blocks (scripts/docs_numbers.py), and re-render them.
docs-numbers: install
	$(BIN)/python scripts/docs_numbers.py --run

# Measure every generated block again and compare with its stored numbers (2 threads, fixed seeds); writes nothing.
docs-numbers-check: install
	$(BIN)/python scripts/docs_numbers.py --check

# Lint and format gate (ruff, configured in pyproject.toml), then the tests: on two processes of one torch thread each
# (pytest-xdist; tests/conftest.py sets the thread), which use two cores better than one process of two threads
# does on the small models most tests train. The report test opens the HTML report in Debian's headless Chromium:
# installed here when run as root.
test: install lint typecheck docs wheel-check
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)
	$(BIN)/python -m pytest -q -n 2 --dist worksteal

# The release as a lab installs it: wheel and sdist built (python -m build) and checked (twine check --strict), the
# wheel installed with its data extra in a fresh virtual environment (not editable; torch first, as above), then
# `curvlab list`, `curvlab quickstart` and scripts/installed_check.py run from it outside the repository.
WHEEL_CHECK := .wheel-check
wheel-check: install
	rm -rf $(WHEEL_CHECK) dist
	$(BIN)/python -m build --no-isolation --outdir dist . >/dev/null
	$(BIN)/python -m twine check --strict dist/*
	$(PYTHON) -m venv $(WHEEL_CHECK)/venv
	$(WHEEL_CHECK)/venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(WHEEL_CHECK)/venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt "$$(ls dist/*.whl)[data]"
	cd $(WHEEL_CHECK) && venv/bin/curvlab list >/dev/null && venv/bin/curvlab quickstart --out quickstart --quiet
	cd $(WHEEL_CHECK) && venv/bin/python ../scripts/installed_check.py

# The type checker (mypy, configured in pyproject.toml): all of src/ at its default checks, the public modules
# (the API reference's) under the flags of --strict.
typecheck: install
	$(BIN)/python -m mypy

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The documentation site with its API reference generated from the docstrings (mkdocs.yml): a warning (a broken
# link or anchor, a docstring naming a parameter the signature lacks) fails the build.
docs: install
	$(BIN)/mkdocs build --strict --quiet --site-dir site

# Each numerical claim broken by the size it rules out, in a copy of the source, against the tests that back it
# (scripts/mutation_check.py): fails when a mutation survives; writes docs/mutation-check.md. Not part of CI.
mutation-check: install
	$(BIN)/python scripts/mutation_check.py

bench: $(VENV)/.installed-bench
	cd bench && ../$(BIN)/python bench_core.py && ../$(BIN)/python bench_batched.py && ../$(BIN)/python bench_scaling.py && ../$(BIN)/python bench_monitor.py && ../$(BIN)/python bench_tracking.py && ../$(BIN)/python bench_start.py && ../$(BIN)/python bench_finite_difference.py && ../$(BIN)/python bench_fsdp.py

bench-llm: $(VENV)/.installed-bench
	cd bench && ../$(BIN)/python bench_llm.py --layers 2 12 --he-steps 30
	cd bench && ../$(BIN)/python bench_llm.py --layers medium --no-compare --section bench_llm_medium
	cd bench && ../$(BIN)/python bench_lm_head.py

clean:
	rm -rf $(VENV) runs site $(WHEEL_CHECK) dist
