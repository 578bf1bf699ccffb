# One-command entry points. Each target sets up what it needs in .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# One BLAS/OpenMP thread per process unless the caller says otherwise: results are then
# reproducible bit for bit across machines and the parity tests compare like with like.
export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: help venv test demo bench integration lint clean browser

help:
	@echo "make test         unit + end-to-end tests (sets up .venv)"
	@echo "make demo         generate the example dataset and run bids_regionx on it"
	@echo "make bench        speed/memory benchmarks against nilearn (ratios)"
	@echo "make integration  real-data, container and SLURM runs"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The compiled random-walker kernels are built by the (editable) install: rebuild when they change.
$(STAMP): pyproject.toml setup.py bids_regionx/core/_stencil.pyx bids_regionx/core/_stencil_kernels.h | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

# Debian's chromium + chromedriver for the headless-browser report tests (never a download).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	 { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	   apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	     --no-install-recommends chromium chromium-driver >/dev/null; \
	   else echo "install chromium chromium-driver for the browser tests" >&2; fi; }

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/python scripts/demo.py demo_output

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Real data, the container image (podman) and a real single-node SLURM; see scripts/integration.sh.
integration: $(STAMP) browser
	PYTHON=$(BIN)/python scripts/integration.sh

lint: $(STAMP)
	$(BIN)/python -m ruff check bids_regionx tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
