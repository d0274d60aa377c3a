#!/usr/bin/env bash
# Regenerates test/golden/ggml-golden.json from ggml's own code (the libggml-base.so shipped by node-llama-cpp)
# (and libggml-cpu-haswell.so: ggml's AVX2 vec_dot kernels) and glibc. Needs a C compiler; the tests only read the JSON.
set -euo pipefail
cd "$(dirname "$0")"
lib=$(dirname "$(ls ../../node_modules/@node-llama-cpp/linux-x64/bins/*/libggml-base.so | head -1)")
cc -O2 -o /tmp/gemma-edge-make-golden make-golden.c -L"$lib" -l:libggml-cpu-haswell.so -l:libggml-base.so -Wl,-rpath,"$lib" -lm
/tmp/gemma-edge-make-golden > ggml-golden.json
echo "wrote test/golden/ggml-golden.json"
