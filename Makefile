# The README's two commands: `make demo` and `make test`. Each sets up everything it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Python 3.8 (what Jetson JetPack 5 ships) to prove the device agent there; pyenv's copy on this image.
PY38 ?= $(firstword $(wildcard /root/.pyenv/versions/3.8.*/bin/python3.8) $(shell command -v python3.8))
PY38_VENV := .cache/py38

# Debian packages the tests use: real sshd devices, network namespaces with tc/nftables, and an arm64
# userland run under emulation (qemu-user-static, debootstrap), a PostgreSQL server for the shared store,
# headless Chromium to look at the HTML report.
APT_PACKAGES := openssh-server iproute2 nftables qemu-user-static debootstrap postgresql chromium

.PHONY: demo test install install-dev system-deps agent-py38 arm64-rootfs benchmarks clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Base install: the generic (ONNX Runtime) path and the embedded demo.
install: $(BIN)/python
	$(BIN)/pip install -q -e .

# Everything the tests exercise: PyTorch intake (torch pinned, CPU build), OpenVINO + NNCF, LiteRT,
# ansible-core (inventories), psycopg (PostgreSQL store), vermin, pytest, hypothesis.
install-dev: $(BIN)/python
	$(BIN)/pip install -q -e '.[torch,openvino,tflite,ansible,postgres,search,dev]'
	$(BIN)/pip check

# A Python 3.8 venv with numpy, the last onnxruntime for 3.8 and tflite-runtime (LiteRT's interpreter for
# boards whose Python is too old for ai-edge-litert), where the agent's zipapp is run.
PY38_PACKAGES := numpy==1.24.4 onnxruntime==1.19.2 tflite-runtime==2.14.0
agent-py38:
	@if [ -z "$(PY38)" ]; then echo "no Python 3.8 found: the Python 3.8 agent tests will skip"; \
	else { [ -x $(PY38_VENV)/bin/python ] || $(PY38) -m venv $(PY38_VENV); } && \
	  $(PY38_VENV)/bin/pip install -q $(PY38_PACKAGES) || { rm -rf $(PY38_VENV); exit 1; }; fi

# Installs the Debian packages above when one is missing (root and apt-get needed; else says why).
system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	  else echo "missing Debian packages: $$missing (the tests that need them will skip)"; fi; fi

# The Debian bookworm arm64 userland the arm64 tests run the agent in (tests/arm64.py): built once per
# machine (~4 min) and cached outside the clone; built here so its progress shows. Says why when it cannot.
arm64-rootfs: system-deps install-dev
	$(BIN)/python tests/arm64.py

demo: install
	$(BIN)/edgeopt demo

test: system-deps install-dev agent-py38 arm64-rootfs
	$(BIN)/python -m pytest -q

benchmarks: install-dev
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .cache demo-out results
