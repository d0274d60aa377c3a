// Quantizers and number conversions against ggml's own reference code, and libm functions against glibc,
// bit for bit (golden values made by test/golden/make-golden.sh from the shipped libggml-base.so and glibc).
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { GGML_TYPE } from "../../src/engine/ggml-types.ts";
import { cosf, expf, f16ToF32, f32ToF16, roundF16, sinf } from "../../src/engine/numeric.ts";
import { dequantizeRow, quantizeQ4_0, quantizeQ8_0, toBf16, toF16 } from "../../src/engine/quant.ts";
import { goldenInputs } from "../golden/inputs.ts";

const golden = JSON.parse(readFileSync(new URL("../golden/ggml-golden.json", import.meta.url), "utf8")) as {
  q4_0: string; q8_0: string; f16: string; bf16: string; expf: [number, number][]; sincosf: [number, number, number][];
};
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const f = new Float32Array(1);
const u = new Uint32Array(f.buffer);
const fromBits = (b: number) => ((u[0] = b), f[0]!);
const toBits = (x: number) => ((f[0] = x), u[0]!);

describe("ggml reference quantizers, bit for bit", () => {
  const x = goldenInputs();
  it("Q4_0 equals quantize_row_q4_0_ref", () => expect(hex(quantizeQ4_0(x))).toBe(golden.q4_0));
  it("Q8_0 equals quantize_row_q8_0_ref", () => expect(hex(quantizeQ8_0(x))).toBe(golden.q8_0));
  it("F16 equals ggml_fp32_to_fp16_row", () => expect(hex(toF16(x))).toBe(golden.f16));
  it("BF16 equals ggml_fp32_to_bf16_row_ref", () => expect(hex(toBf16(x))).toBe(golden.bf16));

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
});
