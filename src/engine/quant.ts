// Quantized block formats (ggml-common.h) and ggml's reference quantizers, bit for bit
// (ggml-quants.c: quantize_row_q4_0_ref, quantize_row_q8_0_ref), plus row dequantization.
//   Q4_0 block (18 bytes): f16 d | 16 bytes; byte j = value j (low nibble) | value j+16 (high nibble); x = (q-8)*d
//   Q8_0 block (34 bytes): f16 d | 32 x int8;                                                     x = q*d
//   Q4_1 block (20 bytes): f16 d | f16 m | 16 bytes of nibbles as Q4_0;                           x = q*d + m
//   Q5_0 block (22 bytes): f16 d | u32 qh (bit j: the 5th bit of value j) | nibbles as Q4_0;     x = (q-16)*d
//   Q5_1 block (24 bytes): f16 d | f16 m | u32 qh | nibbles;                                       x = q*d + m
// (quantize_row_q4_1_ref, _q5_0_ref, _q5_1_ref for those: what llama.cpp's quantizer writes without an imatrix)
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

/** quantize_row_q4_1_ref / quantize_row_q5_1_ref (bits 4 or 5): min and (max - min) / (2^bits - 1) per block. */
function quantizeMinMax(x: Float32Array, bits: 4 | 5): Uint8Array {
  const bb = bits === 4 ? 20 : 24;
  const nb = x.length / 32;
  const out = new Uint8Array(nb * bb);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < nb; i++) {
    let min = Infinity, max = -Infinity;
    for (let j = 0; j < 32; j++) {
      const v = x[i * 32 + j]!;
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const d = fr(fr(max - min) / ((1 << bits) - 1));
    const id = d ? fr(1 / d) : 0;
    dv.setUint16(i * bb, f32ToF16(d), true);
    dv.setUint16(i * bb + 2, f32ToF16(min), true);
    let qh = 0;
    const qs = i * bb + (bits === 4 ? 4 : 8);
    for (let j = 0; j < 16; j++) {
      const x0 = fr(fr(x[i * 32 + j]! - min) * id);
      const x1 = fr(fr(x[i * 32 + 16 + j]! - min) * id);
      // Q4_1: MIN(15, (int8_t)(x + 0.5f)); Q5_1: (uint8_t)(x + 0.5f)
      const q0 = bits === 4 ? Math.min(15, (Math.trunc(fr(x0 + 0.5)) << 24) >> 24) & 0xff : Math.trunc(fr(x0 + 0.5)) & 0xff;
      const q1 = bits === 4 ? Math.min(15, (Math.trunc(fr(x1 + 0.5)) << 24) >> 24) & 0xff : Math.trunc(fr(x1 + 0.5)) & 0xff;
      out[qs + j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
      qh |= ((q0 & 0x10) >> 4) << j;
      qh |= ((q1 & 0x10) >> 4) << (j + 16);
    }
    if (bits === 5) dv.setUint32(i * bb + 4, qh >>> 0, true);
  }
  return out;
}

/** quantize_row_q5_0_ref: d = max / -16 of the value with the largest magnitude, as Q4_0 with a 5th bit. */
export function quantizeQ5_0(x: Float32Array): Uint8Array {
  const nb = x.length / 32;
  const out = new Uint8Array(nb * 22);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < nb; i++) {
    let amax = 0, max = 0;
    for (let j = 0; j < 32; j++) {
      const v = x[i * 32 + j]!;
      if (amax < Math.abs(v)) (amax = Math.abs(v)), (max = v);
    }
    const d = fr(max / -16);
    const id = d ? fr(1 / d) : 0;
    dv.setUint16(i * 22, f32ToF16(d), true);
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      const q0 = Math.min(31, (Math.trunc(fr(fr(x[i * 32 + j]! * id) + 16.5)) << 24) >> 24) & 0xff;
      const q1 = Math.min(31, (Math.trunc(fr(fr(x[i * 32 + 16 + j]! * id) + 16.5)) << 24) >> 24) & 0xff;
      out[i * 22 + 6 + j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
      qh |= ((q0 & 0x10) >> 4) << j;
      qh |= ((q1 & 0x10) >> 4) << (j + 16);
    }
    dv.setUint32(i * 22 + 2, qh >>> 0, true);
  }
  return out;
}

/**
 * Value j (0..31) of a 32-value block of a legacy quant type at byte `p` of `src`, as the integer the dot
 * products multiply (Q4_0 and Q5_0 centred: -8..7, -16..15; Q4_1 and Q5_1 unsigned: their min is added apart),
 * and the block's d and m (0 for the centred types).
 */
export function legacyBlockValue(type: number, src: Uint8Array, p: number, j: number): number {
  const nib = (o: number) => (j < 16 ? src[p + o + j]! & 15 : src[p + o + j - 16]! >> 4);
  const high = (o: number) => ((src[p + o + (j >> 3)]! >> (j & 7)) & 1) << 4;
  switch (type) {
    case GGML_TYPE.Q4_0: return nib(2) - 8;
    case GGML_TYPE.Q4_1: return nib(4);
    case GGML_TYPE.Q5_0: return (nib(6) | high(2)) - 16;
    case GGML_TYPE.Q5_1: return nib(8) | high(4);
    case GGML_TYPE.Q8_0: return (src[p + 2 + j]! << 24) >> 24;
  }
  throw new Error(`not a 32-value legacy quant type: ${ggmlTypeName(type)}`);
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

/** Encodes f32 values (whole blocks) as bytes of a ggml type: encodeRow, or the WebAssembly twin (wasm-quantizer.ts). */
export type RowEncoder = (type: number, x: Float32Array) => Uint8Array;

/** Encode f32 values as a tensor of the given type (for writers). */
export function encodeRow(type: number, x: Float32Array): Uint8Array {
  switch (type) {
    case GGML_TYPE.F32: return new Uint8Array(Float32Array.from(x).buffer);
    case GGML_TYPE.F16: return toF16(x);
    case GGML_TYPE.BF16: return toBf16(x);
    case GGML_TYPE.Q8_0: return quantizeQ8_0(x);
    case GGML_TYPE.Q4_0: return quantizeQ4_0(x);
    case GGML_TYPE.Q4_1: return quantizeMinMax(x, 4);
    case GGML_TYPE.Q5_0: return quantizeQ5_0(x);
    case GGML_TYPE.Q5_1: return quantizeMinMax(x, 5);
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
    case GGML_TYPE.Q4_1:
    case GGML_TYPE.Q5_0:
    case GGML_TYPE.Q5_1: {
      // dequantize_row_q4_1 / _q5_0 / _q5_1: q*d (+ m), two f32 operations (ggml-base has no FMA)
      const bb = type === GGML_TYPE.Q4_1 ? 20 : type === GGML_TYPE.Q5_0 ? 22 : 24;
      for (let b = 0; b < n / 32; b++) {
        const p = off + b * bb;
        const d = f16ToF32(dv.getUint16(p, true));
        const m = type === GGML_TYPE.Q5_0 ? 0 : f16ToF32(dv.getUint16(p + 2, true));
        for (let j = 0; j < 32; j++) {
          const q = legacyBlockValue(type, src, p, j);
          out[b * 32 + j] = type === GGML_TYPE.Q5_0 ? fr(q * d) : fr(fr(q * d) + m);
        }
      }
      return;
    }
    default: {
      const k = kQuantName(type);
      if (!k) throw new Error(`cannot dequantize ggml type ${ggmlTypeName(type)}`);
      dequantizeK(k, src, off, n, out);
    }
  }
}
