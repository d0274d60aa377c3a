// Plain-TypeScript backend: the oracle the WebAssembly kernels are tested against. Scalar loops that follow
// ggml's generic kernels (ggml-cpu/quants.c *_generic, vec.cpp), with the activation rounding llama.cpp uses.
import { GGML_TYPE, ggmlTypeName } from "../ggml-types.ts";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../numeric.ts";
import { alignUp, type Backend, type Weight } from "./backend.ts";

const fr = Math.fround;

/** Activations to Q8_0 as ggml's x86 quantize_row_q8_0 does: d = amax/127, q = nearest-even(x * 127/amax). */
export function quantizeActivationsQ8_0(x: Float32Array, qs: Int8Array, ds: Float32Array): void {
  const nb = x.length / 32;
  for (let b = 0; b < nb; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]!));
    const d = fr(amax / 127);
    const id = amax !== 0 ? fr(127 / amax) : 0;
    ds[b] = f16ToF32(f32ToF16(d));
    for (let j = 0; j < 32; j++) {
      const v = fr(x[b * 32 + j]! * id);
      // round half to even (_mm256_round_ps with _MM_ROUND_NEAREST)
      let r = Math.round(v);
      if (r - v === 0.5 && r % 2 !== 0) r -= 1;
      qs[b * 32 + j] = r;
    }
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

  matmul(out: Float32Array, w: Weight, x: Float32Array, n: number): void {
    const { rows, cols } = w;
    const data = this.bytes(w.offset, w.nbytes);
    const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
    for (let t = 0; t < n; t++) {
      const xt = x.subarray(t * cols, (t + 1) * cols);
      const o = out.subarray(t * rows, (t + 1) * rows);
      switch (w.type) {
        case GGML_TYPE.Q4_0:
        case GGML_TYPE.Q8_0: {
          const nb = cols / 32;
          const qs = new Int8Array(cols);
          const ds = new Float32Array(nb);
          quantizeActivationsQ8_0(xt, qs, ds);
          const q4 = w.type === GGML_TYPE.Q4_0;
          const bb = q4 ? 18 : 34;
          for (let r = 0; r < rows; r++) {
            let sum = 0;
            for (let b = 0; b < nb; b++) {
              const p = (r * nb + b) * bb;
              let sumi = 0;
              if (q4) {
                for (let j = 0; j < 16; j++) {
                  const v = data[p + 2 + j]!;
                  sumi += ((v & 15) - 8) * qs[b * 32 + j]! + ((v >> 4) - 8) * qs[b * 32 + j + 16]!;
                }
              } else {
                for (let j = 0; j < 32; j++) sumi += dv.getInt8(p + 2 + j) * qs[b * 32 + j]!;
              }
              sum = fr(sum + fr(fr(f16ToF32(dv.getUint16(p, true)) * ds[b]!) * sumi));
            }
            o[r] = sum;
          }
          break;
        }
        case GGML_TYPE.F16:
        case GGML_TYPE.BF16:
        case GGML_TYPE.F32: {
          const xr = new Float32Array(cols);
          for (let i = 0; i < cols; i++) {
            xr[i] = w.type === GGML_TYPE.F16 ? f16ToF32(f32ToF16(xt[i]!)) : w.type === GGML_TYPE.BF16 ? bf16ToF32(f32ToBf16(xt[i]!)) : xt[i]!;
          }
          for (let r = 0; r < rows; r++) {
            let sum = 0;
            for (let i = 0; i < cols; i++) {
              const wv = w.type === GGML_TYPE.F16 ? f16ToF32(dv.getUint16((r * cols + i) * 2, true))
                : w.type === GGML_TYPE.BF16 ? bf16ToF32(dv.getUint16((r * cols + i) * 2, true))
                : dv.getFloat32((r * cols + i) * 4, true);
              sum += wv * xr[i]!;
            }
            o[r] = sum;
          }
          break;
        }
        default:
          throw new Error(`${w.name}: no matmul for ggml type ${ggmlTypeName(w.type)}`);
      }
    }
  }
}
