// Quantizers and number conversions against ggml's own reference code, and libm functions against glibc,
// bit for bit (golden values made by test/golden/make-golden.sh from the shipped libggml-base.so and glibc).
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { GGML_TYPE } from "../../src/engine/ggml-types.ts";
import { cosf, expf, f16ToF32, f32ToF16, roundF16, sinf, tanhf } from "../../src/engine/numeric.ts";
import { dequantizeRow, encodeRow, quantizeQ4_0, quantizeQ8_0, toBf16, toF16 } from "../../src/engine/quant.ts";
import { dequantizeK, dotKRow, kDotScratch, quantizeActivationsQ8_K, quantizeQ4_K, quantizeQ5_K, quantizeQ6_K } from "../../src/engine/quant-k.ts";
import { goldenInputs, goldenInputsK } from "../golden/inputs.ts";
import { mulberry32 } from "../../src/engine/sampler.ts";
import { wasmRowEncoder } from "../../src/engine/wasm-quantizer.ts";
import { kernelModule } from "../../src/hosts/node-wasm.ts";

const golden = JSON.parse(readFileSync(new URL("../golden/ggml-golden.json", import.meta.url), "utf8")) as {
  q4_0: string; q8_0: string; f16: string; bf16: string; expf: [number, number][]; sincosf: [number, number, number][]; tanhf: [number, number][];
  q4_K: string; q5_K: string; q6_K: string; q8_K: string; k_activations: string; k_vec_dot: number[]; k_vec_dot_rows: number[]; q4_K_dequantized: string; q5_K_dequantized: string; q6_K_dequantized: string;
  q4_1: string; q5_0: string; q5_1: string; q4_1_dequantized: string; q5_0_dequantized: string; q5_1_dequantized: string;
};
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const f = new Float32Array(1);
const u = new Uint32Array(f.buffer);
const fromBits = (b: number) => ((u[0] = b), f[0]!);
const toBits = (x: number) => ((f[0] = x), u[0]!);

describe("ggml's K-quant reference quantizers and dequantizers, bit for bit", () => {
  const x = goldenInputsK();
  const cases = [["q4_K", quantizeQ4_K], ["q5_K", quantizeQ5_K], ["q6_K", quantizeQ6_K]] as const;
  for (const [name, quantize] of cases) {
    it(`${name.toUpperCase()} equals quantize_row_${name}_ref (16 super-blocks: 1e-6..1e4 scales, ties, zeros, weight-like)`, () => {
      expect(hex(quantize(x))).toBe(golden[name]);
    });
    it(`${name.toUpperCase()} rows dequantize as dequantize_row_${name}`, () => {
      const out = new Float32Array(x.length);
      dequantizeK(name, Buffer.from(golden[name], "hex"), 0, x.length, out);
      expect(hex(new Uint8Array(out.buffer))).toBe(golden[`${name}_dequantized`]);
    });
  }
  it("K-quant dot products equal ggml's vec_dot_q{4,5,6}_K_q8_K (AVX2 build) bit for bit: each block, whole rows", () => {
    const a = Buffer.from(golden.k_activations, "hex");
    const nb = a.length / 292;
    const dv = new DataView(a.buffer, a.byteOffset, a.length);
    const qs = new Int8Array(nb * 256), ds = new Float32Array(nb), bsums = new Int32Array(nb * 16);
    for (let b = 0; b < nb; b++) {
      ds[b] = dv.getFloat32(b * 292, true);
      for (let j = 0; j < 256; j++) qs[b * 256 + j] = dv.getInt8(b * 292 + 4 + j);
      for (let j = 0; j < 16; j++) bsums[b * 16 + j] = dv.getInt16(b * 292 + 260 + 2 * j, true);
    }
    const tmp = kDotScratch();
    const errors: string[] = [];
    cases.forEach(([name], t) => {
      const w = Buffer.from(golden[name], "hex");
      const bb = w.length / nb;
      for (let b = 0; b < nb; b++) {
        const theirs = golden.k_vec_dot[t * nb + b]!;
        const ours = dotKRow(name, w, b * bb, 256, qs, b * 256, ds, bsums, "vec_dot", tmp);
        if (ours !== Math.fround(theirs)) errors.push(`${name} block ${b}: ours ${ours}, ggml ${theirs}`);
      }
    });
    cases.forEach(([name], t) => {
      const w = Buffer.from(golden[name], "hex");
      const bb = w.length / nb;
      const whole = dotKRow(name, w, 0, nb * 256, qs, 0, ds, bsums, "vec_dot", tmp);
      const half = dotKRow(name, w, 8 * bb, 8 * 256, qs, 8 * 256, ds, bsums, "vec_dot", tmp);
      if (whole !== Math.fround(golden.k_vec_dot_rows[2 * t]!)) errors.push(`${name} 16 blocks: ours ${whole}, ggml ${golden.k_vec_dot_rows[2 * t]}`);
      if (half !== Math.fround(golden.k_vec_dot_rows[2 * t + 1]!)) errors.push(`${name} 8 blocks: ours ${half}, ggml ${golden.k_vec_dot_rows[2 * t + 1]}`);
    });
    expect(errors).toEqual([]);
  });

  it("Q8_K activations equal quantize_row_q8_K_ref (d, qs and the 16-value sums)", () => {
    const nb = x.length / 256;
    const qs = new Int8Array(x.length), ds = new Float32Array(nb), bsums = new Int32Array(nb * 16);
    quantizeActivationsQ8_K(x, qs, ds, bsums);
    const block = new Uint8Array(nb * 292);
    const dv = new DataView(block.buffer);
    for (let b = 0; b < nb; b++) {
      dv.setFloat32(b * 292, ds[b]!, true);
      block.set(new Uint8Array(qs.buffer, b * 256, 256), b * 292 + 4);
      for (let j = 0; j < 16; j++) dv.setInt16(b * 292 + 260 + 2 * j, bsums[b * 16 + j]!, true);
    }
    expect(hex(block)).toBe(golden.q8_K);
  });
});

describe("ggml reference quantizers, bit for bit", () => {
  const x = goldenInputs();
  it("Q4_0 equals quantize_row_q4_0_ref", () => expect(hex(quantizeQ4_0(x))).toBe(golden.q4_0));
  it("Q8_0 equals quantize_row_q8_0_ref", () => expect(hex(quantizeQ8_0(x))).toBe(golden.q8_0));
  it("F16 equals ggml_fp32_to_fp16_row", () => expect(hex(toF16(x))).toBe(golden.f16));
  it("BF16 equals ggml_fp32_to_bf16_row_ref", () => expect(hex(toBf16(x))).toBe(golden.bf16));
  for (const [name, type] of [["q4_1", GGML_TYPE.Q4_1], ["q5_0", GGML_TYPE.Q5_0], ["q5_1", GGML_TYPE.Q5_1]] as const) {
    it(`${name.toUpperCase()} equals quantize_row_${name}_ref, and dequantizes as dequantize_row_${name}`, () => {
      const blocks = encodeRow(type, x);
      expect(hex(blocks)).toBe(golden[name]);
      const out = new Float32Array(x.length);
      dequantizeRow(type, blocks, 0, x.length, out);
      expect(hex(new Uint8Array(out.buffer))).toBe(golden[`${name}_dequantized`]);
    });
  }

  it("a hand-checked Q4_0 block: max -3 gives d = 0.375, q = trunc(x/d + 8.5)", () => {
    const b = new Float32Array(32);
    b[0] = -3; //   the value of largest magnitude: d = -3 / -8 = 0.375, and -3 / 0.375 + 8.5 = 0.5 -> q = 0
    b[1] = 1.5; //  4 + 8.5 -> q = 12
    b[16] = 0.75; // 2 + 8.5 -> q = 10, in the high nibble of byte 0; value 17 is 0 -> q = 8
    const q = quantizeQ4_0(b);
    expect(f16ToF32(q[0]! | (q[1]! << 8))).toBe(0.375);
    expect(q[2]).toBe(0 | (10 << 4));
    expect(q[3]).toBe(12 | (8 << 4));
  });

  // Q4_0 has 16 levels (-8..7) x d with d = max / -8: the end opposite the maximum clamps, one full step off.
  it("dequantization inverts quantization within a step (Q4_0) or half a step (Q8_0)", () => {
    for (const [type, q] of [[GGML_TYPE.Q4_0, quantizeQ4_0(x)], [GGML_TYPE.Q8_0, quantizeQ8_0(x)]] as const) {
      const back = new Float32Array(x.length);
      dequantizeRow(type, q, 0, x.length, back);
      for (let b = 0; b < x.length / 32; b++) {
        let amax = 0;
        for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]!));
        // f16 scales cannot hold blocks far from 1 (a 1e-6 block dequantizes to 0); check the usual range
        if (amax < 1e-3 || amax > 1e3) continue;
        const bound = type === GGML_TYPE.Q4_0 ? amax / 8 : amax / 127 / 2;
        // + 0.5% of the block maximum for the scale's own rounding to f16 (times up to 127 levels)
        for (let j = 0; j < 32; j++) expect(Math.abs(back[b * 32 + j]! - x[b * 32 + j]!)).toBeLessThanOrEqual(bound + amax * 5e-3);
      }
    }
  });
});

describe("f16 conversion", () => {
  it("rounds to nearest even and handles the edges", () => {
    expect(roundF16(1 + 2 ** -11)).toBe(1); // tie -> even
    expect(roundF16(1 + 3 * 2 ** -11)).toBe(1 + 2 ** -9); // tie -> even (up)
    expect(roundF16(65504)).toBe(65504);
    expect(roundF16(65520)).toBe(Infinity);
    expect(roundF16(2 ** -24)).toBe(2 ** -24); // smallest subnormal
    expect(roundF16(2 ** -26)).toBe(0);
    expect(f32ToF16(-0)).toBe(0x8000);
    expect(Number.isNaN(f16ToF32(f32ToF16(NaN)))).toBe(true);
  });
});

describe("glibc libm functions, bit for bit", () => {
  it(`expf on ${golden.expf.length} inputs`, () => {
    const bad = golden.expf.filter(([x, y]) => toBits(expf(fromBits(x))) !== y);
    expect(bad).toEqual([]);
  });
  it(`sinf and cosf on ${golden.sincosf.length} inputs (both range reductions)`, () => {
    const bad = golden.sincosf.filter(([x, s, c]) => toBits(sinf(fromBits(x))) !== s || toBits(cosf(fromBits(x))) !== c);
    expect(bad).toEqual([]);
  });
  it(`tanhf on ${golden.tanhf.length} inputs (through expm1f, both of its branches)`, () => {
    const bad = golden.tanhf.filter(([x, y]) => toBits(tanhf(fromBits(x))) !== y);
    expect(bad).toEqual([]);
  });
});

describe("the WebAssembly quantizers (wasm/kernels/quantize.ts) write the same bytes as ggml and the TypeScript ones", () => {
  const types = [["q4_0", GGML_TYPE.Q4_0], ["q4_1", GGML_TYPE.Q4_1], ["q5_0", GGML_TYPE.Q5_0], ["q5_1", GGML_TYPE.Q5_1], ["q8_0", GGML_TYPE.Q8_0],
    ["q4_K", GGML_TYPE.Q4_K], ["q5_K", GGML_TYPE.Q5_K], ["q6_K", GGML_TYPE.Q6_K]] as const;
  // weight-like rows (uniform, with outliers), then blocks the searches treat apart: all zero, constant, one
  // value, all positive (min clamps to 0), all negative, tiny (1e-30) and large (1e4) magnitudes
  const rand = mulberry32(5);
  const x = new Float32Array(64 * 256);
  for (let i = 0; i < x.length; i++) x[i] = (rand() * 2 - 1) * 0.05 * (rand() < 0.01 ? 40 : 1);
  const edge = (b: number, f: (j: number) => number) => { for (let j = 0; j < 256; j++) x[b * 256 + j] = f(j); };
  edge(1, () => 0);
  edge(2, () => 0.25);
  edge(3, (j) => (j === 77 ? -3 : 0));
  edge(4, (j) => 0.01 + j * 1e-4);
  edge(5, (j) => -0.01 - ((j * 37) % 256) * 1e-4);
  edge(6, (j) => (j % 3 ? 1e-30 : -2e-30));
  edge(7, (j) => ((j * 131) % 256) * 40 - 5000);
  for (const variant of ["simd", "relaxed"] as const) {
    it(`${variant} build: ggml's golden blocks, and ${x.length} values of every type equal to quant.ts`, async () => {
      const encode = wasmRowEncoder(await kernelModule(variant));
      for (const [name, type] of types) {
        const k = name.endsWith("K");
        expect(hex(encode(type, k ? goldenInputsK() : goldenInputs())), `${name} golden`).toBe(golden[name]);
        const ours = encode(type, x), ts = encodeRow(type, x);
        expect(ours.length, name).toBe(ts.length);
        const firstDiff = ours.findIndex((v, i) => v !== ts[i]);
        expect(firstDiff, `${name}: first differing byte`).toBe(-1);
      }
      expect(() => encode(GGML_TYPE.Q4_K, new Float32Array(100))).toThrow(/not a whole number of 256-value blocks/);
      expect(hex(encode(GGML_TYPE.F16, goldenInputs()))).toBe(golden.f16); // types it does not carry go to quant.ts
    });
  }
});
