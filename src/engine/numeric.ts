// Scalar number formats the weights and caches use: IEEE half (f16) and bfloat16, with the same
// round-to-nearest-even conversions as ggml (ggml-impl.h: ggml_compute_fp32_to_fp16, ggml_compute_fp32_to_bf16).

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** f32 -> f16 bits, round to nearest even; NaN stays NaN, overflow becomes infinity. */
export function f32ToF16(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rem = mant & ((1 << shift) - 1);
    let h = mant >>> shift;
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++; // may carry into the exponent: still correct
  return sign | h;
}

const F16_TABLE = new Float32Array(65536);
for (let h = 0; h < 65536; h++) {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  let v: number;
  if (exp === 0) v = mant * 2 ** -24;
  else if (exp === 0x1f) v = mant ? NaN : Infinity;
  else v = (1 + mant / 1024) * 2 ** (exp - 15);
  F16_TABLE[h] = sign * v;
}

/** f16 bits -> number (exact). */
export function f16ToF32(h: number): number {
  return F16_TABLE[h & 0xffff]!;
}

/** Round a number to the nearest f16 value (as ggml does when it stores f16). */
export function roundF16(value: number): number {
  return F16_TABLE[f32ToF16(value)]!;
}

/** f32 -> bf16 bits, round to nearest even (NaN made quiet), as ggml_compute_fp32_to_bf16. */
export function f32ToBf16(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  if ((x & 0x7fffffff) > 0x7f800000) return (x >>> 16) | 64;
  return ((x + (0x7fff + ((x >>> 16) & 1))) >>> 16) & 0xffff;
}

export function bf16ToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0]!;
}
