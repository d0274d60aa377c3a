// Quantized block formats (ggml-common.h) and ggml's reference quantizers, bit for bit
// (ggml-quants.c: quantize_row_q4_0_ref, quantize_row_q8_0_ref), plus row dequantization.
//   Q4_0 block (18 bytes): f16 d | 16 bytes; byte j = value j (low nibble) | value j+16 (high nibble); x = (q-8)*d
//   Q8_0 block (34 bytes): f16 d | 32 x int8;                                                     x = q*d
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "./numeric.ts";
import { GGML_TYPE, ggmlTypeName, kQuantName } from "./ggml-types.ts";
import { dequantizeK, quantizeQ4_K, quantizeQ5_K, quantizeQ6_K } from "./quant-k.ts";

export const QK4_0 = 32;
export const QK8_0 = 32;
const fr = Math.fround;

/** quantize_row_q4_0_ref: x.length must be a multiple of 32. */
export function quantizeQ4_0(x: Float32Array, out = new Uint8Array((x.length / QK4_0) * 18)): Uint8Array {
  const nb = x.length / QK4_0;
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let i = 0; i < nb; i++) {
    let amax = 0;
    let max = 0;
    for (let j = 0; j < QK4_0; j++) {
      const v = x[i * QK4_0 + j]!;
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = fr(max / -8);
    const id = d ? fr(1 / d) : 0;
    dv.setUint16(i * 18, f32ToF16(d), true);
    for (let j = 0; j < QK4_0 / 2; j++) {
      const x0 = fr(x[i * QK4_0 + j]! * id);
      const x1 = fr(x[i * QK4_0 + QK4_0 / 2 + j]! * id);
      // (int8_t)(x + 8.5f): truncation toward zero of an f32 sum
      const xi0 = Math.min(15, Math.trunc(fr(x0 + 8.5)) << 24 >> 24);
      const xi1 = Math.min(15, Math.trunc(fr(x1 + 8.5)) << 24 >> 24);
      out[i * 18 + 2 + j] = (xi0 & 0xff) | ((xi1 & 0xff) << 4);
    }
  }
  return out;
}

/** roundf: halves away from zero. */
function roundAway(v: number): number {
  return v < 0 ? -Math.round(-v) : Math.round(v);
}

/** quantize_row_q8_0_ref: x.length must be a multiple of 32. */
export function quantizeQ8_0(x: Float32Array, out = new Uint8Array((x.length / QK8_0) * 34)): Uint8Array {
  const nb = x.length / QK8_0;
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let i = 0; i < nb; i++) {
    let amax = 0;
    for (let j = 0; j < QK8_0; j++) amax = Math.max(amax, Math.abs(x[i * QK8_0 + j]!));
    const d = fr(amax / 127);
    const id = d ? fr(1 / d) : 0;
    dv.setUint16(i * 34, f32ToF16(d), true);
    for (let j = 0; j < QK8_0; j++) dv.setInt8(i * 34 + 2 + j, roundAway(fr(x[i * QK8_0 + j]! * id)));
  }
  return out;
}

export function toF16(x: Float32Array): Uint8Array {
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f32ToF16(x[i]!);
  return new Uint8Array(out.buffer);
}

export function toBf16(x: Float32Array): Uint8Array {
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f32ToBf16(x[i]!);
  return new Uint8Array(out.buffer);
}

/** Encode f32 values as a tensor of the given type (for writers). */
export function encodeRow(type: number, x: Float32Array): Uint8Array {
  switch (type) {
    case GGML_TYPE.F32: return new Uint8Array(Float32Array.from(x).buffer);
    case GGML_TYPE.F16: return toF16(x);
    case GGML_TYPE.BF16: return toBf16(x);
    case GGML_TYPE.Q8_0: return quantizeQ8_0(x);
    case GGML_TYPE.Q4_0: return quantizeQ4_0(x);
    case GGML_TYPE.Q4_K: return quantizeQ4_K(x);
    case GGML_TYPE.Q5_K: return quantizeQ5_K(x);
    case GGML_TYPE.Q6_K: return quantizeQ6_K(x);
    default: throw new Error(`cannot encode ggml type ${ggmlTypeName(type)}`);
  }
}

/** Dequantize `n` values of a row that starts at byte `off` of `src` into `out` (ggml's to_float). */
export function dequantizeRow(type: number, src: Uint8Array, off: number, n: number, out: Float32Array): void {
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  switch (type) {
    case GGML_TYPE.F32:
      for (let i = 0; i < n; i++) out[i] = dv.getFloat32(off + 4 * i, true);
      return;
    case GGML_TYPE.F16:
      for (let i = 0; i < n; i++) out[i] = f16ToF32(dv.getUint16(off + 2 * i, true));
      return;
    case GGML_TYPE.BF16:
      for (let i = 0; i < n; i++) out[i] = bf16ToF32(dv.getUint16(off + 2 * i, true));
      return;
    case GGML_TYPE.Q8_0:
      for (let b = 0; b < n / 32; b++) {
        const p = off + b * 34;
        const d = f16ToF32(dv.getUint16(p, true));
        for (let j = 0; j < 32; j++) out[b * 32 + j] = fr(dv.getInt8(p + 2 + j) * d);
      }
      return;
    case GGML_TYPE.Q4_0:
      for (let b = 0; b < n / 32; b++) {
        const p = off + b * 18;
        const d = f16ToF32(dv.getUint16(p, true));
        for (let j = 0; j < 16; j++) {
          const q = src[p + 2 + j]!;
          out[b * 32 + j] = fr(((q & 15) - 8) * d);
          out[b * 32 + j + 16] = fr(((q >> 4) - 8) * d);
        }
      }
      return;
    default: {
      const k = kQuantName(type);
      if (!k) throw new Error(`cannot dequantize ggml type ${ggmlTypeName(type)}`);
      dequantizeK(k, src, off, n, out);
    }
  }
}
