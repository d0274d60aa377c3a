// Scalar definitions of llama.cpp's x86 CPU kernels (AVX2 + FMA + F16C builds, the ones node-llama-cpp runs on
// x86-64 machines without AVX-512), written so that every float operation happens in the same order and with
// the same rounding as there. Token-for-token agreement with llama.cpp needs this: activations are rounded onto
// coarse grids (Q8_0 blocks, f16) after each step, and a one-ulp difference upstream can move a value across a
// rounding boundary. Sources: ggml-cpu/arch/x86/quants.c (vec_dot_q4_0_q8_0, vec_dot_q8_0_q8_0),
// arch/x86/repack.cpp (gemv/gemm_q4_0_8x8_q8_0), vec.cpp (vec_dot_f16/bf16/f32), llamafile/sgemm.cpp (tinyBLAS).
// These are the reference backend's kernels; the WebAssembly kernels compute the same sums.

const fr = Math.fround;

/** Fused multiply-add in f32: a*b is exact in double for f32 inputs (or an int below 2^29 times an f32). */
export function fma32(a: number, b: number, c: number): number {
  return fr(a * b + c);
}

/** hsum_float_8 / tinyBLAS hsum of 8 lanes: ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)). */
export function hsum8(l: ArrayLike<number>, o = 0): number {
  return fr(fr(fr(l[o]! + l[o + 4]!) + fr(l[o + 2]! + l[o + 6]!)) + fr(fr(l[o + 1]! + l[o + 5]!) + fr(l[o + 3]! + l[o + 7]!)));
}

/** GGML_F32x8_REDUCE of 4 accumulators of 8 lanes (acc[j*8 + lane]): pairwise vectors, then hadd twice. */
export function reduce4x8(acc: Float32Array): number {
  const x = new Float32Array(8);
  for (let i = 0; i < 8; i++) x[i] = fr(fr(acc[i]! + acc[16 + i]!) + fr(acc[8 + i]! + acc[24 + i]!));
  const t0 = [fr(x[0]! + x[4]!), fr(x[1]! + x[5]!), fr(x[2]! + x[6]!), fr(x[3]! + x[7]!)];
  return fr(fr(t0[0]! + t0[1]!) + fr(t0[2]! + t0[3]!));
}

/**
 * ggml_vec_dot_f16 / ggml_vec_dot_f32 (AVX): 32 lanes accumulated by FMA over steps of 32 values, reduced by
 * GGML_F32x8_REDUCE; the n % 32 leftover products are added after (in double for f16, fused in f32 for f32).
 * `x` and `y` hold the values already converted to f32 (f16 inputs are exact in f32).
 */
export function vecDot32Lanes(n: number, x: ArrayLike<number>, xo: number, y: ArrayLike<number>, yo: number, leftoverInDouble: boolean): number {
  const acc = new Float32Array(32);
  const np = n & ~31;
  for (let i = 0; i < np; i += 32) {
    for (let l = 0; l < 32; l++) acc[l] = fma32(x[xo + i + l]!, y[yo + i + l]!, acc[l]!);
  }
  let sum = reduce4x8(acc);
  if (leftoverInDouble) {
    for (let i = np; i < n; i++) sum += fr(x[xo + i]! * y[yo + i]!);
    return fr(sum);
  }
  for (let i = np; i < n; i++) sum = fma32(x[xo + i]!, y[yo + i]!, sum);
  return sum;
}

/** ggml_vec_dot_bf16 (AVX2): 4 x 8 lanes of products added (not fused), reduced (c1+c3)+(c2+c4), then hsum. */
export function vecDotBf16(n: number, x: ArrayLike<number>, xo: number, y: ArrayLike<number>, yo: number): number {
  const acc = new Float32Array(32);
  let i = 0;
  for (; i + 32 <= n; i += 32) {
    for (let l = 0; l < 32; l++) acc[l] = fr(fr(x[xo + i + l]! * y[yo + i + l]!) + acc[l]!);
  }
  const c = new Float32Array(8);
  for (let l = 0; l < 8; l++) c[l] = fr(fr(acc[l]! + acc[16 + l]!) + fr(acc[8 + l]! + acc[24 + l]!));
  const g = [fr(c[4]! + c[0]!), fr(c[5]! + c[1]!), fr(c[6]! + c[2]!), fr(c[7]! + c[3]!)];
  let sum = fr(fr(g[0]! + g[2]!) + fr(g[1]! + g[3]!));
  for (; i < n; i++) sum += fr(x[xo + i]! * y[yo + i]!);
  return fr(sum);
}

/** tinyBLAS (AVX2) element: 8 lanes accumulated by FMA over steps of 8, then hsum8. n % 8 == 0. */
export function tinyBlasDot(n: number, x: ArrayLike<number>, xo: number, y: ArrayLike<number>, yo: number): number {
  const acc = new Float32Array(8);
  for (let i = 0; i < n; i += 8) {
    for (let l = 0; l < 8; l++) acc[l] = fma32(x[xo + i + l]!, y[yo + i + l]!, acc[l]!);
  }
  return hsum8(acc);
}
