// Golden values from the reference implementations the engine must reproduce bit for bit:
// ggml's reference quantizers (quantize_row_q4_0_ref / quantize_row_q8_0_ref from the libggml-base.so that
// node-llama-cpp ships), ggml's f32->f16/bf16 row conversions, and glibc's expf, sinf and cosf.
// Build and run with ./make-golden.sh; the inputs come from the same LCG as test/golden/inputs.ts.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

void quantize_row_q4_0_ref(const float * x, void * y, int64_t k);
void quantize_row_q8_0_ref(const float * x, void * y, int64_t k);
void ggml_fp32_to_fp16_row(const float * x, uint16_t * y, int64_t n);
void ggml_fp32_to_bf16_row_ref(const float * x, uint16_t * y, int64_t n);

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
  printf("]\n}\n");
  return 0;
}
