#!/bin/bash
# Issue 16's GPU check on the device machine, from the repository root (docs/benchmarks.md, "TensorRT on a GPU").
# The payload of make_tensorrt_payload.sh reaches the machine one 58 MB part per call (a call carries at most
# 64 MiB), each moved to $P; the last call carries the last part, the zstd tools and payload.sha256 and runs this:
#   P=/tmp/payload TOOLS=.gpu/tools SHA=.gpu/payload.sha256 OUT=$OUT bash benchmarks/gpu/run_tensorrt.sh
# CELLS=MODEL:PRECISION,... runs those cells in that order (bench_tensorrt.py --cells; the second lease ran
# its SECOND_LEASE). BENCH_SECONDS=N stops the cells after N seconds, so that the results still come back.
# Writes $OUT/tensorrt.json (after each cell), probe.json and runs.tgz (every agent result).
P=${P:-/tmp/payload}
T=$(realpath "${TOOLS:-.gpu/tools}")
SHA=${SHA:-.gpu/payload.sha256}
set -o pipefail
echo "== $(date -u +%T) unpack"
cat $P/payload.part.* > /tmp/payload.tar && echo "$(cat $SHA)  /tmp/payload.tar" | sha256sum -c || exit 9
mkdir -p /tmp/pl && tar xf /tmp/payload.tar -C /tmp/pl || exit 9
mkdir -p /tmp/site /tmp/agentcache /tmp/runs
cat /tmp/pl/trt.tar.zst | LD_LIBRARY_PATH=$T $T/zstd -q -d --long=31 -c | tar xf - -C /tmp/site || exit 9
LD_LIBRARY_PATH=$T $T/zstd -q -d --long=31 -c /tmp/pl/pyenv.tar.zst | tar xf - -C /tmp || exit 9
export PYTHONHOME=/tmp/pyenv/py310/usr PYTHONNOUSERSITE=1 PYTHONUNBUFFERED=1
export LD_LIBRARY_PATH=/tmp/pyenv/py310/usr/lib/x86_64-linux-gnu:/tmp/site/tensorrt
export PYTHONPATH=/tmp/site:/tmp/pyenv/site:$PWD EDGEOPT_AGENT_CACHE=/tmp/agentcache
export BENCH_TRT_OPTIONS=library_tactics=off   # no cuBLAS/cuDNN 11 here: stubs satisfy the plugin library only
export CUDA_CACHE_MAXSIZE=4294967296   # kernels the driver compiles from PTX stay cached for the later builds
PY=/tmp/pyenv/py310/usr/bin/python3.10
echo "== $(date -u +%T) versions"
nvidia-smi --query-gpu=name,driver_version,power.draw,power.limit,clocks.sm,clocks.max.sm --format=csv
$PY -c "import sys, tensorrt, numpy; print(sys.version.split()[0], 'tensorrt', tensorrt.__version__, 'numpy', numpy.__version__)"
/tmp/pl/trtexec/trtexec --help 2>&1 | head -3
$PY -m device_agent probe --power-sensor nvml > $OUT/probe.json 2> $OUT/probe.err; echo "probe exit $?"
echo "== $(date -u +%T) bench"
timeout "${BENCH_SECONDS:-0}" $PY benchmarks/bench_tensorrt.py device /tmp/pl/bundles $OUT --runs /tmp/runs --trtexec /tmp/pl/trtexec/trtexec \
    ${CELLS:+--cells $CELLS}
rc=$?
echo "== $(date -u +%T) done: exit $rc"
tar czf $OUT/runs.tgz -C /tmp/runs . ; ls -la $OUT
