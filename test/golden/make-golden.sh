#!/usr/bin/env bash
# Regenerates test/golden/ggml-golden.json and ggml-kquant-matmul.json from ggml's own code (the libggml-base.so and
# libggml-cpu-haswell.so, its AVX2 build, that node-llama-cpp ships; the headers from the llama.cpp source bundle it
# ships too) and glibc. Needs a C and a C++ compiler and git; the tests only read the JSON.
set -euo pipefail
cd "$(dirname "$0")"
lib=$(dirname "$(ls ../../node_modules/@node-llama-cpp/linux-x64/bins/*/libggml-base.so | head -1)")
cc -O2 -o /tmp/gemma-edge-make-golden make-golden.c -L"$lib" -l:libggml-cpu-haswell.so -l:libggml-base.so -Wl,-rpath,"$lib" -lm
/tmp/gemma-edge-make-golden > ggml-golden.json
echo "wrote test/golden/ggml-golden.json"
# K-quant matrix products through ggml's CPU backend (C++: the repack buffer type has no C declaration)
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
git clone -q ../../node_modules/node-llama-cpp/llama/gitRelease.bundle "$src" 2>/dev/null
inc="$src/ggml/include"
g++ -O2 -std=c++17 -I"$inc" -o /tmp/gemma-edge-make-kquant-matmul make-kquant-matmul.cpp -L"$lib" -l:libggml-cpu-haswell.so -l:libggml-base.so -Wl,-rpath,"$lib"
/tmp/gemma-edge-make-kquant-matmul 2>/dev/null | grep -v '^repack:' > ggml-kquant-matmul.json
echo "wrote test/golden/ggml-kquant-matmul.json"
