# olmotrain: `make train` trains the CPU demo end to end, `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA_ROOT ?= data

.PHONY: setup data train test test-durations test-fast bench bench-slurm gpu-kit mutation lint clean ladder-demo mixture-demo docs

setup: $(STAMP)  ## the virtual environment with everything installed

$(STAMP): requirements.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -c constraints.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

data: setup  ## build the embedded dataset: a small offline text corpus from this Python's sources and package docs (skipped when built)
	OLMOTRAIN_DATA_ROOT=$(DATA_ROOT) $(PY) -m olmotrain.embedded --root $(DATA_ROOT)/embedded

train: data  ## train the CPU demo (experiment=cpu_demo) and print where the results are
	OLMOTRAIN_DATA_ROOT=$(DATA_ROOT) $(PY) train.py experiment=cpu_demo $(ARGS)

ladder-demo: data  ## DataDecide on the CPU: 4 sizes x 3 embedded mixes -> fit, decide, report in docs/ladder-demo/
	OLMOTRAIN_DATA_ROOT=$(DATA_ROOT) $(PY) -m olmotrain.ladder run demo
	OLMOTRAIN_DATA_ROOT=$(DATA_ROOT) $(PY) -m olmotrain.ladder collect demo
	OLMOTRAIN_DATA_ROOT=$(DATA_ROOT) $(PY) -m olmotrain.ladder fit demo
	OLMOTRAIN_DATA_ROOT=$(DATA_ROOT) $(PY) -m olmotrain.ladder decide demo
	OLMOTRAIN_DATA_ROOT=$(DATA_ROOT) $(PY) -m olmotrain.ladder report demo --output docs/ladder-demo

mixture-demo: data  ## which mix to train, on the CPU: 24 olmo2_1m proxies of the embedded corpus's 3 sources -> fit, propose, verify at 2 sizes, report in docs/mixture-demo/
	OLMOTRAIN_DATA_ROOT=$(DATA_ROOT) $(PY) -m olmotrain.mixture run demo
	OLMOTRAIN_DATA_ROOT=$(DATA_ROOT) $(PY) -m olmotrain.mixture collect demo
	OLMOTRAIN_DATA_ROOT=$(DATA_ROOT) $(PY) -m olmotrain.mixture fit demo
	OLMOTRAIN_DATA_ROOT=$(DATA_ROOT) $(PY) -m olmotrain.mixture propose demo
	OLMOTRAIN_DATA_ROOT=$(DATA_ROOT) $(PY) -m olmotrain.mixture verify demo
	OLMOTRAIN_DATA_ROOT=$(DATA_ROOT) $(PY) -m olmotrain.mixture report demo --output docs/mixture-demo

test: setup data  ## the whole suite (CPU), two workers, a test file each, longest first (tests/durations.json); skips listed with their reasons; exit 5 (no tests) is a failure
	$(PY) -m pytest -q -rs -p no:cacheprovider -n 2 --dist loadfile --no-loadscope-reorder tests $(PYTEST_ARGS)

test-durations: setup data  ## run the suite as `make test` does and rewrite tests/durations.json (seconds per test file)
	OLMOTRAIN_TEST_DURATIONS=tests/durations.json $(MAKE) test

test-fast: setup  ## everything but the end-to-end training runs
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow" tests $(PYTEST_ARGS)

bench: data  ## ratios vs baselines measured in the same run: overhead, CLI latency, eval throughput, ladder overhead, mixture fit and swarm overhead, decide with intervals, remote data vs local, generation vs transformers, prep vs dolma (see bench/README.md)
	$(PY) bench/overhead.py $(ARGS)
	$(PY) bench/eval_throughput.py
	$(PY) bench/ladder_overhead.py
	$(PY) bench/mixture_fit.py
	$(PY) bench/mixture_overhead.py
	$(PY) bench/decide_confidence.py
	$(PY) bench/remote_data.py
	$(PY) bench/generate_speed.py
	$(PY) bench/prepare_vs_dolma.py

mutation: setup data  ## mutation testing (mutmut) of the modules users' results rest on: score per module, survivors (minutes; not in make test)
	$(PY) scripts/mutation.py $(ARGS)

gpu-kit: setup data  ## the wheels (Python 3.12) and data a lent GPU machine without PyPI needs, in .gpu-kit/ (see bench/gpu_check.sh)
	$(PY) scripts/gpu_kit.py

bench-slurm: data  ## (root) the two-node SLURM cluster: start time, job start latency, 2-node vs local loss
	$(PY) bench/slurm_multinode.py

docs: setup  ## regenerate docs/config-reference.md from the config schema's docstrings
	$(PY) scripts/config_reference.py

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf runs outputs multirun bench/results
