# The two set-up commands of the README: `make demo` and `make test`. Everything they need is
# installed from here into .venv (no global state), torch pinned so no dependency can upgrade it.
PYTHON ?= python3.11
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
# extra pip arguments for torch, e.g. a CUDA wheel index on a GPU machine:
#   make test TORCH_PIP_ARGS='--index-url <CUDA wheel index URL>'
TORCH_PIP_ARGS ?=
PIP = $(VENV)/bin/python -m pip
EXTRAS ?= vlm,train,export,ros,station,dev
PYTEST_ARGS ?=

.PHONY: venv demo test lint bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: setup.py requirements/constraints.txt scripts/build_vision_msgs.sh ros2_ws/src/differad_edge/setup.py \
		scripts/register_ros_package.sh $(wildcard ros2_ws/src/differad_edge_msgs/msg/*.msg ros2_ws/src/differad_edge_msgs/srv/*.srv)
	# the station's browser tests drive Debian's Chromium (no browser download); CI runs as root on Debian
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; } || \
		echo "warning: chromium/chromedriver not installed; the station's browser tests need them (skipped locally, failed in CI)"
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q "torch==$(TORCH_VERSION)" $(TORCH_PIP_ARGS)
	$(PIP) install -q -c requirements/constraints.txt -e ".[$(EXTRAS)]"
	bash scripts/build_vision_msgs.sh $(VENV)
	$(PIP) install -q -c requirements/constraints.txt -e ros2_ws/src/differad_edge
	bash scripts/register_ros_package.sh $(VENV)
	$(VENV)/bin/python -c "import torch, sys; v = torch.__version__.split('+')[0]; sys.exit(0 if v == '$(TORCH_VERSION)' else f'torch was changed to {v}')"
	touch $@

demo: venv
	$(VENV)/bin/differad demo --out demo_out/offline
	$(VENV)/bin/differad-cell-demo --out demo_out/cell --frames 60 --rate 10

test: venv
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# format check, lint and type check (the core); CI runs it before the tests
lint: venv
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build *.egg-info
