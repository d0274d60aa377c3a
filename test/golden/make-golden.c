// Golden values from the reference implementations the engine must reproduce bit for bit:
// ggml's reference quantizers (quantize_row_q4_0_ref / quantize_row_q8_0_ref from the libggml-base.so that
// node-llama-cpp ships), ggml's f32->f16/bf16 row conversions, and glibc's expf, sinf, cosf and tanhf.
// Build and run with ./make-golden.sh; the inputs come from the same LCG as test/golden/inputs.ts.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

void quantize_row_q4_0_ref(const float * x, void * y, int64_t k);
void quantize_row_q8_0_ref(const float * x, void * y, int64_t k);
void quantize_row_q4_1_ref(const float * x, void * y, int64_t k);
void quantize_row_q5_0_ref(const float * x, void * y, int64_t k);
void quantize_row_q5_1_ref(const float * x, void * y, int64_t k);
void dequantize_row_q4_1(const void * x, float * y, int64_t k);
void dequantize_row_q5_0(const void * x, float * y, int64_t k);
void dequantize_row_q5_1(const void * x, float * y, int64_t k);
void ggml_fp32_to_fp16_row(const float * x, uint16_t * y, int64_t n);
void ggml_fp32_to_bf16_row_ref(const float * x, uint16_t * y, int64_t n);
void quantize_row_q4_K_ref(const float * x, void * y, int64_t k);
void quantize_row_q5_K_ref(const float * x, void * y, int64_t k);
void quantize_row_q6_K_ref(const float * x, void * y, int64_t k);
void quantize_row_q8_K_ref(const float * x, void * y, int64_t k);
void dequantize_row_q4_K(const void * x, float * y, int64_t k);
void dequantize_row_q5_K(const void * x, float * y, int64_t k);
void dequantize_row_q6_K(const void * x, float * y, int64_t k);
// ggml-cpu (libggml-cpu-haswell.so: the AVX2 build llama.cpp picks on these machines): the vec_dot kernels
typedef void (*vec_dot_t)(int n, float * s, size_t bs, const void * x, size_t bx, const void * y, size_t by, int nrc);
struct type_traits_cpu { void * from_float; vec_dot_t vec_dot; int vec_dot_type; int64_t nrows; };
const struct type_traits_cpu * ggml_get_type_traits_cpu(int type);
void ggml_cpu_init(void);

static uint32_t state = 20261128u;
static float next_float(void) { // uniform in [-1, 1)
  state = state * 1664525u + 1013904223u;
  return (float)((int32_t)state) / 2147483648.0f;
}

#define NQ (32 * 64)
static float x[NQ];
static uint8_t q4[NQ / 32 * 18], q8[NQ / 32 * 34];
static uint16_t h16[NQ], b16[NQ];

static void hex(const uint8_t * p, size_t n) { for (size_t i = 0; i < n; i++) printf("%02x", p[i]); }

// K-quants (256-value super-blocks): the inputs above, then 2048 weight-like values (uniform, +-0.05) from a
// second LCG, so that whole super-blocks of one scale are there too
#define NK (2 * NQ)
static float xk[NK], dq[NK];
static uint8_t k4[NK / 256 * 144], k5[NK / 256 * 176], k6[NK / 256 * 210], k8[NK / 256 * 292];
static uint32_t state_k = 77u;
static float next_float_k(void) {
  state_k = state_k * 1664525u + 1013904223u;
  return (float)((int32_t)state_k) / 2147483648.0f;
}
static void k_quants(void) {
  memcpy(xk, x, sizeof x);
  for (int i = NQ; i < NK; i++) xk[i] = next_float_k() * 0.05f;
  quantize_row_q4_K_ref(xk, k4, NK);
  quantize_row_q5_K_ref(xk, k5, NK);
  quantize_row_q6_K_ref(xk, k6, NK);
  quantize_row_q8_K_ref(xk, k8, NK);
  printf(",\n  \"q4_K\": \""); hex(k4, sizeof k4);
  printf("\",\n  \"q5_K\": \""); hex(k5, sizeof k5);
  printf("\",\n  \"q6_K\": \""); hex(k6, sizeof k6);
  printf("\",\n  \"q8_K\": \""); hex(k8, sizeof k8);
  // vec_dot_q{4,5,6}_K_q8_K of each super-block with the Q8_K activations of a second vector (uniform, +-1)
  static float a[NK]; static uint8_t a8[NK / 256 * 292];
  for (int i = 0; i < NK; i++) a[i] = next_float_k();
  quantize_row_q8_K_ref(a, a8, NK);
  ggml_cpu_init();
  const uint8_t * ks[3] = { k4, k5, k6 }; const int kb[3] = { 144, 176, 210 };
  printf("\",\n  \"k_activations\": \""); hex(a8, sizeof a8);
  printf("\",\n  \"k_vec_dot\": [");
  for (int t = 0; t < 3; t++) {
    for (int b = 0; b < NK / 256; b++) {
      float r; ggml_get_type_traits_cpu(12 + t)->vec_dot(256, &r, 0, ks[t] + b * kb[t], 0, a8 + b * 292, 0, 1);
      printf("%s%.9g", t || b ? "," : "", r);
    }
  }
  printf("],\n  \"k_vec_dot_rows\": ["); // whole rows: all 16 blocks, and the 8 weight-like ones
  for (int t = 0; t < 3; t++) {
    float r1, r2;
    ggml_get_type_traits_cpu(12 + t)->vec_dot(NK, &r1, 0, ks[t], 0, a8, 0, 1);
    ggml_get_type_traits_cpu(12 + t)->vec_dot(NK / 2, &r2, 0, ks[t] + 8 * kb[t], 0, a8 + 8 * 292, 0, 1);
    printf("%s%.9g,%.9g", t ? "," : "", r1, r2);
  }
  printf("]");
  printf(",\n  \"q4_K_dequantized\": \"");
  dequantize_row_q4_K(k4, dq, NK);
  hex((uint8_t *)dq, sizeof dq);
  dequantize_row_q5_K(k5, dq, NK);
  printf("\",\n  \"q5_K_dequantized\": \""); hex((uint8_t *)dq, sizeof dq);
  dequantize_row_q6_K(k6, dq, NK);
  printf("\",\n  \"q6_K_dequantized\": \""); hex((uint8_t *)dq, sizeof dq);
  printf("\"");
}

int main(void) {
  // 64 blocks: random values at scales from 1e-6 to 1e4, then blocks built to hit rounding ties
  for (int b = 0; b < 64; b++) {
    float scale = powf(10.0f, (float)(b % 11) - 6.0f);
    for (int j = 0; j < 32; j++) x[b * 32 + j] = next_float() * scale;
  }
  for (int j = 0; j < 32; j++) x[0 * 32 + j] = 0.0f;                      // all zeros
  for (int j = 0; j < 32; j++) x[1 * 32 + j] = (float)(j - 16) / 2.0f;    // halves: ties after scaling
  for (int j = 0; j < 32; j++) x[2 * 32 + j] = (float)(j % 17) - 8.0f;    // exact small integers
  for (int j = 0; j < 32; j++) x[3 * 32 + j] = j == 5 ? -3.0f : 0.001f * j; // negative maximum
  x[4 * 32 + 7] = 65504.0f; x[4 * 32 + 8] = -1e-8f;                        // f16 max, tiny
  quantize_row_q4_0_ref(x, q4, NQ);
  quantize_row_q8_0_ref(x, q8, NQ);
  ggml_fp32_to_fp16_row(x, h16, NQ);
  ggml_fp32_to_bf16_row_ref(x, b16, NQ);
  printf("{\n  \"seed\": 20261128,\n  \"q4_0\": \""); hex(q4, sizeof q4);
  printf("\",\n  \"q8_0\": \""); hex(q8, sizeof q8);
  printf("\",\n  \"f16\": \""); hex((uint8_t *)h16, sizeof h16);
  printf("\",\n  \"bf16\": \""); hex((uint8_t *)b16, sizeof b16);
  // libm: inputs as f32 bit patterns, outputs as f32 bit patterns
  printf("\",\n  \"expf\": [");
  for (int i = 0; i < 4000; i++) {
    float v = next_float() * 110.0f - 10.0f; // [-120, 100): underflow, normal range, overflow
    if (i < 4) v = (float[]){ -INFINITY, 0.0f, -103.0f, 88.7f }[i];
    float r = expf(v); uint32_t a, c; memcpy(&a, &v, 4); memcpy(&c, &r, 4);
    printf("%s[%u,%u]", i ? "," : "", a, c);
  }
  printf("],\n  \"sincosf\": [");
  for (int i = 0; i < 4000; i++) {
    float v = i < 2000 ? next_float() * 130.0f : (next_float() + 1.0f) * 1e5f; // both range reductions
    float s = sinf(v), c = cosf(v); uint32_t a, sb, cb; memcpy(&a, &v, 4); memcpy(&sb, &s, 4); memcpy(&cb, &c, 4);
    printf("%s[%u,%u,%u]", i ? "," : "", a, sb, cb);
  }
  printf("]");
  k_quants();
  // tanhf (Gemma 2's soft-capping): scores / cap in (-4, 4) mostly, both branches of |x| < 1, and the edges
  printf(",\n  \"tanhf\": [");
  for (int i = 0; i < 6000; i++) {
    float v = i < 5000 ? next_float() * 8.0f - 4.0f : (next_float() * 60.0f - 30.0f) * (i % 2 ? 1.0f : 1e-6f);
    if (i < 6) v = (float[]){ 0.0f, -0.0f, 22.0f, -1e-30f, INFINITY, 1.0f }[i];
    float r = tanhf(v); uint32_t a, c; memcpy(&a, &v, 4); memcpy(&c, &r, 4);
    printf("%s[%u,%u]", i ? "," : "", a, c);
  }
  printf("]");
  // the 32-value types with a 5th bit or a min (Gemma 3 1B's K-quant fallbacks), and their dequantization
  {
    static uint8_t b41[NQ / 32 * 20], b50[NQ / 32 * 22], b51[NQ / 32 * 24];
    static float dq[NQ];
    quantize_row_q4_1_ref(x, b41, NQ); quantize_row_q5_0_ref(x, b50, NQ); quantize_row_q5_1_ref(x, b51, NQ);
    printf(",\n  \"q4_1\": \""); hex(b41, sizeof b41);
    printf("\",\n  \"q5_0\": \""); hex(b50, sizeof b50);
    printf("\",\n  \"q5_1\": \""); hex(b51, sizeof b51);
    dequantize_row_q4_1(b41, dq, NQ); printf("\",\n  \"q4_1_dequantized\": \""); hex((uint8_t *)dq, sizeof dq);
    dequantize_row_q5_0(b50, dq, NQ); printf("\",\n  \"q5_0_dequantized\": \""); hex((uint8_t *)dq, sizeof dq);
    dequantize_row_q5_1(b51, dq, NQ); printf("\",\n  \"q5_1_dequantized\": \""); hex((uint8_t *)dq, sizeof dq);
    printf("\"");
  }
  printf("\n}\n");
  return 0;
}
