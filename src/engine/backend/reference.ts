// Plain-TypeScript backend: the oracle the WebAssembly kernels are tested against. Scalar loops that follow
// ggml's generic kernels (ggml-cpu/quants.c *_generic, vec.cpp), with the activation rounding llama.cpp uses.
import { GGML_TYPE, ggmlTypeName, kQuantName, typeLayout } from "../ggml-types.ts";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, roundF16 } from "../numeric.ts";
import { dequantizeRow, legacyBlockValue } from "../quant.ts";
import { dotKRow, kDotScratch, kOrder, QK_K, quantizeActivationsQ8_K } from "../quant-k.ts";
import { fma32, hsum8, tinyBlasDot, vecDot32Lanes, vecDotBf16 } from "./ggml-order.ts";
import { alignUp, type Backend, type Weight } from "./backend.ts";

const fr = Math.fround;

/** Whether ggml's `summs += m * s` (vec_dot_q4_1_q8_1, q5_1_q8_1) is contracted into a fused multiply-add. */
export const LEGACY_SUMMS_FMA = true;

/**
 * Activations to Q8_0 as ggml's x86 quantize_row_q8_0 does: d = amax/127, q = nearest-even(x * 127/amax); with
 * `ss`, Q8_1 as quantize_row_q8_1: also s = d * sum(q) per block (f16-rounded, from the f32 d).
 */
export function quantizeActivationsQ8_0(x: Float32Array, qs: Int8Array, ds: Float32Array, ss?: Float32Array): void {
  const nb = x.length / 32;
  for (let b = 0; b < nb; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]!));
    const d = fr(amax / 127);
    const id = amax !== 0 ? fr(127 / amax) : 0;
    ds[b] = f16ToF32(f32ToF16(d));
    let sum = 0;
    for (let j = 0; j < 32; j++) {
      const v = fr(x[b * 32 + j]! * id);
      // round half to even (_mm256_round_ps with _MM_ROUND_NEAREST)
      let r = Math.round(v);
      if (r - v === 0.5 && r % 2 !== 0) r -= 1;
      qs[b * 32 + j] = r;
      sum += r;
    }
    if (ss) ss[b] = f16ToF32(f32ToF16(fr(d * sum)));
  }
}

export class ReferenceBackend implements Backend {
  readonly name = "reference";
  private size = 0;
  private buf: ArrayBuffer | undefined;

  reserve(bytes: number): number {
    if (this.buf) throw new Error("reserve() after commit()");
    const off = this.size;
    this.size += alignUp(bytes);
    return off;
  }
  commit(): void {
    this.buf = new ArrayBuffer(Math.max(this.size, 64));
  }
  private get arena(): ArrayBuffer {
    if (!this.buf) throw new Error("arena used before commit()");
    return this.buf;
  }
  bytes(offset: number, length: number) {
    return new Uint8Array(this.arena, offset, length);
  }
  f32(offset: number, length: number) {
    return new Float32Array(this.arena, offset, length);
  }
  u16(offset: number, length: number) {
    return new Uint16Array(this.arena, offset, length);
  }
  scratchBytes(): number {
    return 0;
  }
  setScratch(): void {}
  prepareWeight(): void {}
  dequantizeRow(w: Weight, row: number, out: Float32Array): void {
    const rowBytes = w.nbytes / w.rows;
    dequantizeRow(w.type, this.bytes(w.offset, w.nbytes), row * rowBytes, w.cols, out);
  }

  matmul(out: Float32Array, w: Weight, x: Float32Array, n: number, batchRows = n): void {
    const { rows, cols } = w;
    const data = this.bytes(w.offset, w.nbytes);
    const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
    switch (w.type) {
      case GGML_TYPE.Q4_0:
      case GGML_TYPE.Q4_1:
      case GGML_TYPE.Q5_0:
      case GGML_TYPE.Q5_1:
      case GGML_TYPE.Q8_0: {
        const nb = cols / 32;
        const bb = typeLayout(w.type).blockBytes;
        // Q4_1 and Q5_1 take Q8_1 activations: their min m times the activations' d * sum(q), summed apart
        const withMin = w.type === GGML_TYPE.Q4_1 || w.type === GGML_TYPE.Q5_1;
        const qs = new Int8Array(cols);
        const ds = new Float32Array(nb);
        const ss = withMin ? new Float32Array(nb) : undefined;
        const lanes = new Float32Array(8);
        // weight value j of block b of row r
        const wq = (p: number, j: number) => legacyBlockValue(w.type, data, p, j);
        for (let t = 0; t < n; t++) {
          quantizeActivationsQ8_0(x.subarray(t * cols, (t + 1) * cols), qs, ds, ss);
          for (let r = 0; r < rows; r++) {
            if (w.repacked) {
              // gemv/gemm_q4_0_8x8_q8_0: one whole-block integer sum per block, fused into one f32 accumulator
              let acc = 0;
              for (let b = 0; b < nb; b++) {
                const p = (r * nb + b) * bb;
                let isum = 0;
                for (let j = 0; j < 32; j++) isum += wq(p, j) * qs[b * 32 + j]!;
                acc = fma32(isum, fr(f16ToF32(dv.getUint16(p, true)) * ds[b]!), acc);
              }
              out[t * rows + r] = acc;
            } else {
              // vec_dot_q4_0_q8_0 (q4_1_q8_1, q5_0_q8_0, q5_1_q8_1, q8_0_q8_0) / tinyBLAS_Q0_AVX: 8 lanes of 4
              // products each; the min's part summed in f32 beside them (summs += m * s), added at the end
              lanes.fill(0);
              let summs = 0;
              for (let b = 0; b < nb; b++) {
                const p = (r * nb + b) * bb;
                const d = fr(f16ToF32(dv.getUint16(p, true)) * ds[b]!);
                if (withMin) summs = LEGACY_SUMMS_FMA ? fma32(f16ToF32(dv.getUint16(p + 2, true)), ss![b]!, summs) : fr(summs + fr(f16ToF32(dv.getUint16(p + 2, true)) * ss![b]!));
                for (let k = 0; k < 8; k++) {
                  let s = 0;
                  for (let j = 4 * k; j < 4 * k + 4; j++) s += wq(p, j) * qs[b * 32 + j]!;
                  lanes[k] = fma32(d, s, lanes[k]!);
                }
              }
              out[t * rows + r] = withMin ? fr(hsum8(lanes) + summs) : hsum8(lanes);
            }
          }
        }
        return;
      }
      case GGML_TYPE.F16:
      case GGML_TYPE.BF16:
      case GGML_TYPE.F32: {
        // weights and activations as f32 values (activations rounded to the weight's type first)
        const wf = new Float32Array(rows * cols);
        dequantizeRow(w.type, data, 0, rows * cols, wf);
        const xr = new Float32Array(n * cols);
        for (let i = 0; i < n * cols; i++) {
          xr[i] = w.type === GGML_TYPE.F16 ? roundF16(x[i]!) : w.type === GGML_TYPE.BF16 ? bf16ToF32(f32ToBf16(x[i]!)) : x[i]!;
        }
        // llamafile_sgemm (tinyBLAS) takes batches of 2+ tokens when the shapes allow; single tokens use vec_dot
        const tiny = batchRows >= 2 && rows % 4 === 0 && cols % 8 === 0;
        for (let t = 0; t < n; t++) {
          for (let r = 0; r < rows; r++) {
            out[t * rows + r] = tiny ? tinyBlasDot(cols, wf, r * cols, xr, t * cols)
              : w.type === GGML_TYPE.BF16 ? vecDotBf16(cols, wf, r * cols, xr, t * cols)
              : vecDot32Lanes(cols, wf, r * cols, xr, t * cols, w.type === GGML_TYPE.F16);
          }
        }
        return;
      }
      case GGML_TYPE.Q4_K:
      case GGML_TYPE.Q5_K:
      case GGML_TYPE.Q6_K: {
        const kind = kQuantName(w.type)!;
        const nb = cols / QK_K;
        const qs = new Int8Array(n * cols), ds = new Float32Array(n * nb), bsums = new Int32Array(n * nb * 16);
        quantizeActivationsQ8_K(x.subarray(0, n * cols), qs, ds, bsums);
        const tmp = kDotScratch();
        const rb = w.nbytes / rows;
        for (let t = 0; t < n; t++) {
          const order = kOrder(w.repacked, t, batchRows === 1 ? 1 : n); // single-token rows: each as gemv
          for (let r = 0; r < rows; r++) out[t * rows + r] = dotKRow(kind, data, r * rb, cols, qs, t * cols, ds, bsums, order, tmp);
        }
        return;
      }
      default:
        throw new Error(`${w.name}: no matmul for ggml type ${ggmlTypeName(w.type)}`);
    }
  }
}
