# Two commands do everything on a fresh machine with Python 3.11:
#   make report   run the whole study (params/default, embedded synthetic data, CPU) -> reports/index.html
#   make test     the tests, including every notebook executed at smoke scale (nbval)
#                 (make test-under-load: the same while every core is kept busy)
# Each target creates the environment (.venv) first if needed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PARAMS ?= params/default
SMOKE  := build/smoke
# ENV=system runs with $(PYTHON) as it is (no virtual environment, nothing from the network):
# for an offline GPU machine with only the torch stack, whose missing packages come from wheels/
# (`make wheels` fills it where PyPI is reachable), e.g.
#   make report PARAMS=params/gpu ENV=system PYTHON=python3
ENV    ?= venv
SITE   := build/site

.PHONY: all install report readme test test-under-load test-unit smoke lab hooks clean clean-runs bench gpu-check wheels mutants

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

ifeq ($(ENV),system)
report:
	$(if $(wildcard wheels/*.whl),$(PYTHON) -m pip install --quiet --no-index --no-deps --no-compile --upgrade --target $(SITE) wheels/*.whl)
	PYTHONPATH=$(CURDIR)/$(SITE):$(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH)) $(PYTHON) -m thesislib report \
		--params $(PARAMS) $(if $(DATA),--data $(DATA)) --out reports/index.html
else
report: $(STAMP)
	$(BIN)/thesislib report --params $(PARAMS) $(if $(DATA),--data $(DATA)) --out reports/index.html
endif

# After `make report` at default scale: the README's first look, rewritten from reports/summary.json.
readme: $(STAMP)
	$(BIN)/thesislib readme --summary reports/summary.json

# The smoke report runs every notebook with params/smoke on fresh runs; pytest then checks the
# package, the report, and re-executes the executed notebooks with nbval. A one-node Slurm
# cluster (.ci/slurm.sh: installed if missing and possible) runs for tests/test_slurm.py and is
# stopped at the end, pass or fail.
test: $(STAMP)
	rm -rf $(SMOKE)
	.ci/slurm.sh start
	trap '.ci/slurm.sh stop' EXIT; \
	THESISLIB_RUNS=$(CURDIR)/$(SMOKE)/runs $(BIN)/thesislib report --params params/smoke \
		--out $(SMOKE)/index.html --workdir $(SMOKE)/notebooks && \
	THESISLIB_RUNS=$(CURDIR)/$(SMOKE)/runs THESISLIB_SMOKE_REPORT=$(CURDIR)/$(SMOKE)/index.html \
		$(BIN)/python -m pytest tests $(SMOKE)/notebooks --nbval-lax --nbval-current-env -p no:cacheprovider

# `make test` while a busy loop runs on every core (LOAD=N loops instead), started and stopped by
# tools/under_load.py, pass or fail: shows that no test depends on how fast the machine is. On
# demand, not in CI (it takes about twice as long as `make test`).
test-under-load: $(STAMP)
	$(BIN)/python tools/under_load.py $(if $(LOAD),--workers $(LOAD)) -- $(MAKE) test

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests -m "not slow"

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

hooks: $(STAMP)
	$(BIN)/nbstripout --install --attributes .gitattributes

# One-line breakages of the study's core, each against its room's tests; none may survive.
# On demand, not in CI (one test run per mutant: about half an hour). MUTANTS="--room metrics" for one room.
mutants: $(STAMP)
	$(BIN)/python tools/mutants.py $(MUTANTS)

# Measured speed ratios -> benchmarks/RESULTS.md (RESULTS-gpu.md on CUDA); BENCH="--quick" for a few minutes.
bench: $(STAMP)
	$(BIN)/python -m benchmarks $(BENCH)

# The CUDA path end to end on a GPU machine with only the torch stack: uses $(PYTHON) as given
# (make gpu-check PYTHON=python3), builds no environment, installs only from wheels/ if present.
gpu-check:
	$(PYTHON) -m benchmarks.gpu_check $(GPU_CHECK_FLAGS)

# The wheels an offline GPU machine needs (grad-cam, papermill, the kernel stack), from PyPI;
# WHEELS_SKIP=opencv-python-headless,scikit-learn where the target image already has those.
wheels: $(STAMP)
	$(BIN)/python -m benchmarks.wheels --dest wheels $(if $(WHEELS_SKIP),--skip $(WHEELS_SKIP))

clean:
	rm -rf build reports/index.html

clean-runs:
	rm -rf runs
