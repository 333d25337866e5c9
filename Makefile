# Two commands for a fresh machine:
#   make demo   sets up .venv and runs the flagship job (examples/hfl_digits.yaml)
#   make test   sets up .venv and runs the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0

.PHONY: demo test test-fast lint bench setup clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch first, so that nothing pulls a multi-gigabyte CUDA build.
	$(BIN)/pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

setup: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/consortium run examples/hfl_digits.yaml

# One BLAS/OpenMP/numba thread per test process: two processes share the cores, and a
# torch op issued while other party threads run ops can get a different number of threads
# from run to run, and with it different rounding (split-network tests compare to 1e-4).
test: $(BIN)/.installed
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \
		$(BIN)/python -m pytest -n 2 --dist loadfile -q

# The same without the tests marked slow (several processes, long fuzzing, compiling).
test-fast: $(BIN)/.installed
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \
		$(BIN)/python -m pytest -n 2 --dist loadfile -q -m "not slow"

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests bench fuzz
	$(BIN)/ruff format --check src tests bench fuzz
	$(BIN)/mypy

bench: $(BIN)/.installed
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) runs mlruns .pytest_cache .mypy_cache .ruff_cache
