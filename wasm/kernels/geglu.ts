// ---- GeGLU ----

/** f32 -> f16 bits, round to nearest even (NaN stays NaN, overflow to infinity), as numeric.ts f32ToF16. */
function f32_to_f16_bits(v: f32): u32 {
  const x = reinterpret<u32>(v);
  const sign = (x >> 16) & 0x8000;
  const exp = <i32>((x >> 23) & 0xff);
  let mant = x & 0x7fffff;
  if (exp == 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = <u32>(14 - e);
    const half: u32 = 1 << (shift - 1);
    const rem = mant & ((<u32>1 << shift) - 1);
    let h = mant >> shift;
    if (rem > half || (rem == half && (h & 1))) h++;
    return sign | h;
  }
  let h = (<u32>e << 10) | (mant >> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
  return sign | h;
}

/**
 * out[i] = gelu(gate[i]) * up[i], n values, as model/ops.ts geglu (ggml_vec_geglu_f32): gelu from ggml's table of
 * 65536 f16 inputs (f32 values at `table`), 0 at or below -10, x at or above 10. out may be gate.
 */
export function geglu(out: usize, gate: usize, up: usize, n: i32, table: usize): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>i << 2;
    const x = load<f32>(gate + o);
    const g: f32 = x <= -10 ? 0 : x >= 10 ? x : load<f32>(table + (<usize>f32_to_f16_bits(x) << 2));
    store<f32>(out + o, g * load<f32>(up + o));
  }
}
