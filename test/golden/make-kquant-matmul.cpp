// Golden values for K-quant matrix products as llama.cpp computes them: ggml's CPU backend (the AVX2 build,
// libggml-cpu-haswell.so, that node-llama-cpp runs on x86-64 without AVX-512) multiplies 16 x 512 Q4_K / Q5_K / Q6_K
// matrices by batches of 1..9 tokens, Q4_K both in the repack buffer (as llama.cpp loads it: gemv and gemm
// orders) and in a plain buffer (vec_dot). Weights and activations come from an LCG that test/golden/inputs.ts
// repeats; the JSON holds the quantized weights and the outputs' f32 bit patterns. Built and run by make-golden.sh.
#include "ggml.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

ggml_backend_buffer_type_t ggml_backend_cpu_repack_buffer_type(void);

static uint32_t state = 4242u;
static float next_float() { // uniform in [-1, 1)
  state = state * 1664525u + 1013904223u;
  return (float)((int32_t)state) / 2147483648.0f;
}

static void run(ggml_backend_t cpu, const char * name, ggml_type type, bool repack, bool first) {
  const int cols = 512, rows = 16;
  std::vector<float> w(cols * rows);
  for (auto & v : w) v = next_float() * 0.1f;
  std::vector<uint8_t> wq(ggml_row_size(type, cols) * rows);
  ggml_quantize_chunk(type, w.data(), wq.data(), 0, rows, cols, nullptr);
  ggml_init_params pw = { ggml_tensor_overhead() * 2, nullptr, true };
  ggml_context * cw = ggml_init(pw);
  ggml_tensor * W = ggml_new_tensor_2d(cw, type, cols, rows);
  ggml_backend_buffer_t bw = ggml_backend_alloc_ctx_tensors_from_buft(cw, repack ? ggml_backend_cpu_repack_buffer_type() : ggml_backend_cpu_buffer_type());
  ggml_backend_tensor_set(W, wq.data(), 0, wq.size());
  printf("%s\n  \"%s\": {\n    \"weights\": \"", first ? "" : ",", name);
  for (auto b : wq) printf("%02x", b);
  printf("\",\n    \"outputs\": [");
  for (int n = 1; n <= 9; n++) {
    ggml_init_params p = { ggml_tensor_overhead() * 4 + ggml_graph_overhead(), nullptr, true };
    ggml_context * c = ggml_init(p);
    ggml_tensor * X = ggml_new_tensor_2d(c, GGML_TYPE_F32, cols, n);
    ggml_tensor * Y = ggml_mul_mat(c, W, X);
    ggml_cgraph * g = ggml_new_graph(c);
    ggml_build_forward_expand(g, Y);
    ggml_backend_buffer_t b = ggml_backend_alloc_ctx_tensors(c, cpu);
    std::vector<float> x(cols * n), y(rows * n);
    for (auto & v : x) v = next_float() * (n % 3 == 0 ? 10.0f : 1.0f);
    ggml_backend_tensor_set(X, x.data(), 0, x.size() * 4);
    ggml_backend_graph_compute(cpu, g);
    ggml_backend_tensor_get(Y, y.data(), 0, y.size() * 4);
    printf("%s\n      \"", n > 1 ? "," : "");
    for (auto v : y) { uint32_t u; memcpy(&u, &v, 4); printf("%08x", u); }
    printf("\"");
    ggml_backend_buffer_free(b);
    ggml_free(c);
  }
  printf("\n    ]\n  }");
  ggml_backend_buffer_free(bw);
  ggml_free(cw);
}

int main() {
  ggml_backend_t cpu = ggml_backend_cpu_init();
  ggml_backend_cpu_set_n_threads(cpu, 1);
  printf("{\n  \"seed\": 4242, \"rows\": 16, \"cols\": 512, \"tokens\": [1, 2, 3, 4, 5, 6, 7, 8, 9],");
  run(cpu, "q4_K_repacked", GGML_TYPE_Q4_K, true, true);
  run(cpu, "q4_K", GGML_TYPE_Q4_K, false, false);
  run(cpu, "q5_K", GGML_TYPE_Q5_K, false, false);
  run(cpu, "q6_K", GGML_TYPE_Q6_K, false, false);
  printf("\n}\n");
  return 0;
}
