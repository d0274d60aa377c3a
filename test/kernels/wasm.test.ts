// The WebAssembly kernels (both builds: relaxed SIMD and plain SIMD128) against the plain-TypeScript reference.
// Both follow llama.cpp's summation order, so the tolerance is zero: results must be bit-identical.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ReferenceBackend } from "../../src/engine/backend/reference.ts";
import type { Backend, Weight } from "../../src/engine/backend/backend.ts";
import { hasRelaxedSimd, instantiateKernels, WasmBackend } from "../../src/engine/backend/wasm.ts";
import { MemoryByteSource } from "../../src/engine/byte-source.ts";
import { GGML_TYPE, ggmlTypeName, rowBytes } from "../../src/engine/ggml-types.ts";
import { loadModel } from "../../src/engine/model/load.ts";
import { encodeRow } from "../../src/engine/quant.ts";
import { quantizeActivationsQ8_K } from "../../src/engine/quant-k.ts";
import { attendHead, attendHeadTiled, geglu, visibleCells } from "../../src/engine/model/ops.ts";
import { f16ToF32, f32ToF16 } from "../../src/engine/numeric.ts";
import { mulberry32 } from "../../src/engine/sampler.ts";
import { SoftmaxKernels } from "../../src/engine/sampler-wasm.ts";
import { kernelModule, loadWasmBackend } from "../../src/hosts/node-wasm.ts";
import { kquantMatmulActivations } from "../golden/inputs.ts";
import { testModel } from "../helpers/models.ts";

// relaxed-f64: the relaxed build with its fused relaxed_madd path off (the f64 emulation of a fused multiply-add),
// and Q4_K's one-token products by the dot-add whatever the CPU (exact everywhere; by default only with AVX-VNNI);
// relaxed-sign: with Q8_0's unsigned-dot form off (the sign trick, what engines without an exact unsigned dot run),
// and so Q4_K's i16 products
const VARIANTS = ["relaxed", "relaxed-f64", "relaxed-sign", "simd"] as const;
const wasmBackend = async (v: (typeof VARIANTS)[number]) =>
  v === "relaxed-f64" ? new WasmBackend(await kernelModule("relaxed"), "relaxed", { fusedMadd: false, dotAdd: true })
  : v === "relaxed-sign" ? new WasmBackend(await kernelModule("relaxed"), "relaxed", { unsignedDot: false })
  : new WasmBackend(await kernelModule(v), v);

/** Run one matmul on a backend: weights and activations copied into its arena. */
function runMatmul(b: Backend, type: number, rows: number, cols: number, n: number, wBytes: Uint8Array, x: Float32Array, repacked: boolean) {
  const wOff = b.reserve(wBytes.length);
  const xOff = b.reserve(n * cols * 4);
  const oOff = b.reserve(n * rows * 4);
  const sBytes = b.scratchBytes(cols, n);
  const sOff = sBytes ? b.reserve(sBytes) : 0;
  b.commit();
  b.setScratch(sOff, sBytes);
  b.bytes(wOff, wBytes.length).set(wBytes);
  b.f32(xOff, n * cols).set(x);
  const w: Weight = { name: "w", type, rows, cols, offset: wOff, nbytes: wBytes.length, repacked };
  b.prepareWeight(w); // the wasm backend rearranges repacked Q4_0 into its x4 layout here
  const out = b.f32(oOff, n * rows);
  b.matmul(out, w, b.f32(xOff, n * cols), n);
  return Array.from(out);
}

function randomCase(type: number, rows: number, cols: number, n: number, seed: number) {
  const rand = mulberry32(seed);
  const w = new Float32Array(rows * cols).map(() => (rand() * 2 - 1) * (rand() < 0.05 ? 8 : 1));
  const x = new Float32Array(n * cols).map(() => (rand() * 2 - 1) * 3);
  return { wBytes: encodeRow(type, w), x };
}

describe("matrix products split across worker threads (shared memory, -mt builds)", () => {
  // rows past the split threshold; 1000 = 8 x 125 takes the repacked Q4_0 path, 300 leaves a ragged last range
  for (const [type, rows, repacked] of [[GGML_TYPE.Q4_0, 1000, true], [GGML_TYPE.Q4_0, 300, false], [GGML_TYPE.Q8_0, 300, false], [GGML_TYPE.Q5_1, 300, false], [GGML_TYPE.Q4_K, 1000, true], [GGML_TYPE.Q6_K, 300, false], [GGML_TYPE.F16, 300, false], [GGML_TYPE.BF16, 300, false], [GGML_TYPE.F32, 300, false]] as const) {
    it(`${ggmlTypeName(type)} ${rows} rows, 1, 3 and 6 tokens, on 2 and 3 threads: the one-thread bits`, async () => {
      for (const n of [1, 3, 6]) {
        const { wBytes, x } = randomCase(type, rows, 256, n, rows + type + n);
        const one = runMatmul(await wasmBackend("relaxed"), type, rows, 256, n, wBytes, x, repacked);
        for (const threads of [2, 3]) {
          expect(runMatmul(await loadWasmBackend("relaxed", threads), type, rows, 256, n, wBytes, x, repacked), `${n} tokens, ${threads} threads`).toEqual(one);
        }
        expect(one).toEqual(runMatmul(new ReferenceBackend(), type, rows, 256, n, wBytes, x, repacked));
      }
    });
  }

  /** One decode attention call of `heads` query heads sharing a KV head, on a backend: out as an array. */
  function runAttend(b: Backend, heads: number, d: number, n: number, cap: number, seed: number) {
    const rand = mulberry32(seed);
    const stride = 2 * d;
    const qOff = b.reserve(heads * d * 4), kOff = b.reserve(n * stride * 2), vOff = b.reserve(n * stride * 2), oOff = b.reserve(heads * d * 4);
    const sb = b.scratchBytes(2048, 1, d), sOff = b.reserve(sb);
    b.commit();
    b.setScratch(sOff, sb);
    const q = b.f32(qOff, heads * d), k = b.u16(kOff, n * stride), v = b.u16(vOff, n * stride), out = b.f32(oOff, heads * d);
    for (let i = 0; i < heads * d; i++) q[i] = (rand() * 2 - 1) * 0.5;
    for (let i = 0; i < n * stride; i++) {
      k[i] = f32ToF16((rand() * 2 - 1) * 2);
      v[i] = f32ToF16((rand() * 2 - 1) * 4);
    }
    b.attendHead!(out, q, k, v, visibleCells(n - 1, n, 0), stride, d, cap, heads);
    return Array.from(out);
  }

  it("decode attention, its query heads split across 2 and 3 threads (8 and 5 heads of 256, 3 of 64; soft-caps 0, 50, 2.5): the one-thread bits", async () => {
    for (const [heads, d, cap] of [[8, 256, 0], [5, 256, 50], [3, 64, 2.5]] as const) {
      const one = runAttend(await wasmBackend("relaxed"), heads, d, 37, cap, heads * d);
      for (const threads of [2, 3]) expect(runAttend(await loadWasmBackend("relaxed", threads), heads, d, 37, cap, heads * d), `${heads} heads, ${threads} threads`).toEqual(one);
      // the soft-cap reaches the threads' share: without it their heads differ
      if (cap) expect(runAttend(await wasmBackend("relaxed"), heads, d, 37, 0, heads * d)).not.toEqual(one);
    }
  });
});

describe("relaxed SIMD detection", () => {
  it("finds relaxed SIMD in this runtime (Node 22 and later have it on by default)", () => {
    expect(hasRelaxedSimd()).toBe(true);
  });
  it("finds relaxed_madd fused on this CPU (V8 emits FMA3), so the fused kernels are the ones under test", async () => {
    expect((await wasmBackend("relaxed")).fusedMadd).toBe(true);
    expect((await wasmBackend("relaxed-f64")).fusedMadd).toBe(false);
    expect((await wasmBackend("simd")).fusedMadd).toBe(false);
  });
  it("finds the exact unsigned dot (Q8_0's offset form) where the CPU has AVX-VNNI, which V8 13 lowers the dot-add to", async () => {
    // V8 emits vpdpbusd for i32x4.relaxed_dot_i8x16_i7x16_add_s only with AVX-VNNI; elsewhere pmaddubsw (saturating)
    const vnni = /\bavx_vnni\b/.test(readFileSync("/proc/cpuinfo", "utf8"));
    expect((await wasmBackend("relaxed")).unsignedDot).toBe(vnni);
    expect((await wasmBackend("relaxed-sign")).unsignedDot).toBe(false);
    expect((await wasmBackend("simd")).unsignedDot).toBe(false);
    // Q4_K's dot-add products follow it, and are under test on every CPU (relaxed-f64) and off in relaxed-sign
    expect((await wasmBackend("relaxed")).dotAdd).toBe(vnni);
    expect((await wasmBackend("relaxed-f64")).dotAdd).toBe(true);
    expect((await wasmBackend("relaxed-sign")).dotAdd).toBe(false);
    expect((await wasmBackend("simd")).dotAdd).toBe(false);
  });
});

// shapes that take each of llama.cpp's code paths: repacked or not (rows % 8), tinyBLAS or vec_dot
// (n >= 2, rows % 4, cols % 8), and vec_dot leftovers (cols % 32)
const QUANT_SHAPES: [number, number, number][] = [[16, 64, 1], [16, 96, 3], [12, 64, 2], [5, 32, 1], [64, 512, 2], [8, 64, 5]];
const FLOAT_SHAPES: [number, number, number][] = [[16, 64, 1], [16, 64, 3], [12, 40, 2], [6, 36, 3], [8, 100, 1]];
const K_SHAPES: [number, number, number][] = [[16, 256, 1], [12, 512, 3], [5, 256, 2], [8, 768, 1], [7, 512, 1], [8, 256, 5], [16, 512, 8]];

describe.each(VARIANTS)("wasm-%s matmul equals the reference bit for bit", (variant) => {
  const quantized = [[GGML_TYPE.Q4_0, QUANT_SHAPES], [GGML_TYPE.Q8_0, QUANT_SHAPES], [GGML_TYPE.Q4_1, QUANT_SHAPES], [GGML_TYPE.Q5_0, QUANT_SHAPES], [GGML_TYPE.Q5_1, QUANT_SHAPES], [GGML_TYPE.Q4_K, K_SHAPES], [GGML_TYPE.Q5_K, K_SHAPES], [GGML_TYPE.Q6_K, K_SHAPES]] as const;
  for (const [type, shapes] of quantized) {
    for (const [rows, cols, n] of shapes) {
      // llama.cpp repacks Q4_0 and Q4_K matrices whose rows are a multiple of 8 (other orders)
      for (const repacked of (type === GGML_TYPE.Q4_0 || type === GGML_TYPE.Q4_K) && rows % 8 === 0 ? [true, false] : [false]) {
        it(`${ggmlTypeName(type)} ${rows}x${cols}, ${n} token(s)${repacked ? ", repacked order" : ""}`, async () => {
          const { wBytes, x } = randomCase(type, rows, cols, n, rows * 1000 + cols + n);
          expect(wBytes.length).toBe(rows * rowBytes(type, cols));
          const ours = runMatmul(await wasmBackend(variant), type, rows, cols, n, wBytes, x, repacked);
          expect(ours).toEqual(runMatmul(new ReferenceBackend(), type, rows, cols, n, wBytes, x, repacked));
        });
      }
    }
  }
  for (const type of [GGML_TYPE.F16, GGML_TYPE.BF16, GGML_TYPE.F32]) {
    for (const [rows, cols, n] of FLOAT_SHAPES) {
      it(`${ggmlTypeName(type)} ${rows}x${cols}, ${n} token(s)`, async () => {
        const { wBytes, x } = randomCase(type, rows, cols, n, rows * 1000 + cols + n);
        const ours = runMatmul(await wasmBackend(variant), type, rows, cols, n, wBytes, x, false);
        expect(ours).toEqual(runMatmul(new ReferenceBackend(), type, rows, cols, n, wBytes, x, false));
      });
    }
  }

  // f16 block scales below 2^-14, where the conversion takes its subnormal path: Q6_K's d (max scale / 128) is that
  // small for weights of the magnitudes real checkpoints have; the other types need smaller weights to get there
  for (const [type, repacked] of [[GGML_TYPE.Q6_K, false], [GGML_TYPE.Q4_0, false], [GGML_TYPE.Q4_0, true], [GGML_TYPE.Q4_K, true], [GGML_TYPE.Q8_0, false], [GGML_TYPE.F16, false]] as const) {
    it(`${ggmlTypeName(type)}${repacked ? " repacked" : ""} with f16 scales in the subnormal range, 1 and 4 tokens`, async () => {
      const rows = 16, cols = 512;
      const rand = mulberry32(type * 31 + 5);
      const w = new Float32Array(rows * cols).map(() => (rand() * 2 - 1) * (type === GGML_TYPE.F16 ? 1e-4 : type === GGML_TYPE.Q4_0 ? 3e-4 : 0.002));
      const wBytes = encodeRow(type, w);
      if (type === GGML_TYPE.Q6_K) expect(new Uint16Array(wBytes.buffer, wBytes.byteOffset + 208, 1)[0]! & 0x7c00, "block 0's d is a subnormal f16").toBe(0);
      for (const n of [1, 4]) {
        const x = new Float32Array(n * cols).map(() => (rand() * 2 - 1) * 3);
        const ours = runMatmul(await wasmBackend(variant), type, rows, cols, n, wBytes, x, repacked);
        expect(ours.some((v) => v !== 0)).toBe(true);
        expect(ours, `${n} token(s)`).toEqual(runMatmul(new ReferenceBackend(), type, rows, cols, n, wBytes, x, repacked));
      }
    });
  }

  it("reads every finite f16 value exactly, subnormal ones and signed zeros included (F16 rows, 1 token and 2)", async () => {
    // row r holds f16 pattern r (exponent 31 left out) then zeros; x = (1, 0, ...): each output is that value
    // (1 token: vec_dot's scalar leftovers; 2 tokens: the tinyBLAS path's 4-lane conversion)
    const patterns = Array.from({ length: 0x10000 }, (_, h) => h).filter((h) => (h & 0x7c00) !== 0x7c00);
    const rows = patterns.length, cols = 8;
    const wBytes = new Uint8Array(rows * cols * 2);
    const wv = new Uint16Array(wBytes.buffer);
    patterns.forEach((h, r) => (wv[r * cols] = h));
    const want = patterns.map((h) => f16ToF32(h) + 0); // + 0: the sums turn -0 into +0
    for (const n of [1, 2]) {
      const x = new Float32Array(n * cols);
      for (let t = 0; t < n; t++) x[t * cols] = 1;
      const ours = runMatmul(await wasmBackend(variant), GGML_TYPE.F16, rows, cols, n, wBytes, x, false);
      for (let t = 0; t < n; t++) expect(ours.slice(t * rows, (t + 1) * rows), `${n} token(s), token ${t}`).toEqual(want);
    }
  });

  it("takes every finite f16 value as a repacked Q4_0 block scale exactly (1 token and 4)", async () => {
    // block r: scale pattern r (exponent 31 left out, padded to whole groups of 8 rows), quants +1 then -1 then 0s;
    // the one-token and the four-token kernels convert the scales their own way (f16x4_load_to_f32x4)
    const patterns = Array.from({ length: 0x10000 }, (_, h) => h).filter((h) => (h & 0x7c00) !== 0x7c00);
    const rows = Math.ceil(patterns.length / 8) * 8, cols = 32;
    const wBytes = new Uint8Array(rows * 18);
    const dv = new DataView(wBytes.buffer);
    for (let r = 0; r < rows; r++) {
      dv.setUint16(r * 18, patterns[r % patterns.length]!, true);
      wBytes.fill(0x88, r * 18 + 2, r * 18 + 18);
      wBytes[r * 18 + 2] = 0x79; // value 0: 9 - 8 = +1; value 16: 7 - 8 = -1
    }
    for (const n of [1, 4]) {
      const x = new Float32Array(n * cols);
      for (let t = 0; t < n; t++) [x[t * cols], x[t * cols + 16]] = [1 + t, -0.5];
      const ours = runMatmul(await wasmBackend(variant), GGML_TYPE.Q4_0, rows, cols, n, wBytes, x, true);
      expect(ours, `${n} token(s)`).toEqual(runMatmul(new ReferenceBackend(), GGML_TYPE.Q4_0, rows, cols, n, wBytes, x, true));
    }
  });

  it("Q8_0 with a quant of -128 (never written by ggml's quantizer) keeps the file's layout and llama.cpp's products, 1 and 3 tokens", async () => {
    // the rows layout's sign trick would give -128 * |x| where x < 0; such a matrix stays on matmul_q8_0
    const rows = 8, cols = 256;
    for (const n of [1, 3]) {
      const { wBytes, x } = randomCase(GGML_TYPE.Q8_0, rows, cols, n, 11 + n);
      for (let r = 0; r < rows; r++) for (let b = 0; b < cols / 32; b += 3) wBytes[r * (cols / 32) * 34 + b * 34 + 2 + ((r * 7 + b) % 32)] = 0x80;
      expect(runMatmul(await wasmBackend(variant), GGML_TYPE.Q8_0, rows, cols, n, wBytes, x, false), `${n} token(s)`).toEqual(runMatmul(new ReferenceBackend(), GGML_TYPE.Q8_0, rows, cols, n, wBytes, x, false));
    }
  });

  it.each([[GGML_TYPE.Q4_0, 64], [GGML_TYPE.Q4_K, 512], [GGML_TYPE.Q8_0, 160], [GGML_TYPE.Q6_K, 512]] as const)("reads embedding rows back from the repacked layout exactly (%i)", async (type, cols) => {
    const rows = 16;
    const { wBytes } = randomCase(type, rows, cols, 1, 7);
    const rowOf = async (b: Backend) => {
      const off = b.reserve(wBytes.length), out = b.reserve(cols * 4), sb = b.scratchBytes(cols, 1), s = b.reserve(sb);
      b.commit();
      b.setScratch(s, sb);
      b.bytes(off, wBytes.length).set(wBytes);
      const w: Weight = { name: "e", type, rows, cols, offset: off, nbytes: wBytes.length, repacked: true };
      b.prepareWeight(w);
      return [5, 6, 15].map((r) => (b.dequantizeRow(w, r, b.f32(out, cols)), Array.from(b.f32(out, cols))));
    };
    expect(await rowOf(await wasmBackend(variant))).toEqual(await rowOf(new ReferenceBackend()));
  });

  it("warms every matrix once, after the last weight is in place and before the first product", async () => {
    const { bytes } = await testModel("tiny-gqa", "q4_0");
    const b = await wasmBackend(variant);
    const calls: [string, string][] = [];
    const spy = new Proxy(b, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver);
        if (typeof v !== "function") return v;
        return (...a: unknown[]) => {
          if (prop === "prepareWeight" || prop === "warmWeight" || prop === "matmul") calls.push([String(prop), (a[prop === "matmul" ? 1 : 0] as Weight).name]);
          return v.apply(target, a);
        };
      },
    });
    const m = await loadModel(new MemoryByteSource(bytes), spy, { contextSize: 32 });
    await m.forward([2, 10], 0);
    const names = (what: string) => calls.filter(([c]) => c === what).map(([, n]) => n);
    expect(names("warmWeight").sort()).toEqual(names("prepareWeight").sort());
    const first = calls.findIndex(([c]) => c === "warmWeight"), last = calls.findLastIndex(([c]) => c === "warmWeight");
    expect(calls.findLastIndex(([c]) => c === "prepareWeight")).toBeLessThan(first);
    expect(calls.findIndex(([c]) => c === "matmul")).toBe(last + 1);
  });

  it("gives the same logits as the reference on the tiny model (prefill and decode)", async () => {
    const { bytes } = await testModel("tiny-gqa", "q4_0");
    const prompt = [2, 10, 200, 300, 400, 500, 600];
    const logits = async (b: Backend) => {
      const m = await loadModel(new MemoryByteSource(bytes), b, { contextSize: 32 });
      const a = Array.from(await m.forward(prompt, 0));
      return [a, Array.from(await m.forward([42], prompt.length))];
    };
    expect(await logits(await wasmBackend(variant))).toEqual(await logits(new ReferenceBackend()));
  });
});

describe.each(VARIANTS)("wasm-%s GeGLU equals the TypeScript geglu bit for bit", (variant) => {
  it("on random values, both sides of +-10, f16 ties, subnormals, infinities and NaN, in place", async () => {
    const rand = mulberry32(11);
    // 4099: the four-at-a-time loop and its scalar tail; NaN inside a group of four
    const gate = Float32Array.from({ length: 4099 }, (_, i) => (rand() * 2 - 1) * (i % 3 === 0 ? 12 : 3));
    gate.set([-10, 10, -9.999, 9.999, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 2 ** -20, -(2 ** -24), 70000, -Infinity, Infinity, NaN, 0, -0]);
    // f16-subnormal inputs and their ties (multiples of 2^-25), the normal/subnormal edge, ties near 1 and 8
    for (let i = 0; i < 512; i++) gate[100 + i] = (i - 256) * 2 ** -25;
    for (let i = 0; i < 256; i++) gate[800 + i] = (2 * Math.floor(rand() * 1024) + 1) * 2 ** -25 * (i & 1 ? -1 : 1);
    for (let i = 0; i < 256; i++) gate[1100 + i] = (rand() * 2 - 1) * 2 ** -14;
    gate.set([2 ** -14, 2 ** -14 - 2 ** -25, -(2 ** -14 - 2 ** -26), 1 + 2 ** -11, 8 - 2 ** -9, 4 + 3 * 2 ** -9], 700);
    const up = Float32Array.from({ length: gate.length }, () => rand() * 4 - 2);
    const want = new Float32Array(gate.length);
    geglu(want, gate, up);
    const b = await wasmBackend(variant);
    const g = b.reserve(gate.length * 4), u = b.reserve(up.length * 4);
    b.commit();
    b.f32(g, gate.length).set(gate);
    b.f32(u, up.length).set(up);
    b.geglu(b.f32(g, gate.length), b.f32(g, gate.length), b.f32(u, up.length));
    expect(new Uint32Array(b.f32(g, gate.length).slice().buffer)).toEqual(new Uint32Array(want.buffer));
  });
});

describe.each(VARIANTS)("wasm-%s attention equals the TypeScript attention bit for bit", (variant) => {
  // [head_dim, cells, query position, window (0: all), soft-cap]: a global layer, a sliding window inside the
  // cells, a ring that has wrapped (the newest positions in the low cells), soft-capped scores (Gemma 2)
  it.each([
    [32, 1, 0, 0, 0], [32, 7, 6, 0, 0], [64, 40, 39, 0, 0], [256, 130, 129, 0, 0], [40, 9, 8, 0, 0],
    [64, 40, 39, 16, 0], [64, 48, 100, 20, 0], [32, 64, 63, 0, 50], [64, 48, 131, 30, 50],
  ])("head_dim %i over %i cells, query at %i, window %i, soft-cap %i", async (d, n, qPos, window, cap) => {
    const rand = mulberry32(d * 7 + n + qPos * 3 + window + cap);
    const stride = 2 * d; // two KV heads, the second one attended
    const b = await wasmBackend(variant);
    const qOff = b.reserve(d * 4), kOff = b.reserve(n * stride * 2), vOff = b.reserve(n * stride * 2), oOff = b.reserve(d * 4);
    const sb = b.scratchBytes(d, 1), sOff = b.reserve(sb);
    b.commit();
    b.setScratch(sOff, sb);
    const q = b.f32(qOff, d), k = b.u16(kOff, n * stride), v = b.u16(vOff, n * stride), out = b.f32(oOff, d);
    for (let i = 0; i < d; i++) q[i] = (rand() * 2 - 1) * (i % 5 === 0 ? 1e-6 : 0.5);
    for (let i = 0; i < n * stride; i++) {
      k[i] = f32ToF16((rand() * 2 - 1) * 2);
      v[i] = f32ToF16((rand() * 2 - 1) * (i % 7 === 0 ? 3e-5 : 4)); // subnormal-range values too
    }
    const vis = visibleCells(qPos, n, window);
    b.attendHead!(out, q, k, v, vis, stride, d, cap);
    const want = new Float32Array(d);
    attendHead(want, Float32Array.from(q), Uint16Array.from(k), Uint16Array.from(v), vis, stride, d, new Float32Array(d), cap);
    expect(Array.from(out)).toEqual(Array.from(want));
  });

  // the query heads of a KV head in one call (decode's path; past 16, in calls of 16): each head's bits as that head alone
  it.each([[32, 7, 6, 0, 0, 3], [256, 130, 129, 0, 0, 8], [64, 48, 131, 30, 50, 2], [32, 9, 8, 0, 0, 20]])(
    "head_dim %i over %i cells, query at %i, window %i, soft-cap %i: %i query heads at once",
    async (d, n, qPos, window, cap, heads) => {
      const rand = mulberry32(d * 5 + n + qPos + heads);
      const stride = 2 * d;
      const b = await wasmBackend(variant);
      const qOff = b.reserve(heads * d * 4), kOff = b.reserve(n * stride * 2), vOff = b.reserve(n * stride * 2), oOff = b.reserve(heads * d * 4);
      const sb = b.scratchBytes(d, 1), sOff = b.reserve(sb);
      b.commit();
      b.setScratch(sOff, sb);
      const q = b.f32(qOff, heads * d), k = b.u16(kOff, n * stride), v = b.u16(vOff, n * stride), out = b.f32(oOff, heads * d);
      for (let i = 0; i < heads * d; i++) q[i] = (rand() * 2 - 1) * (i % 5 === 0 ? 1e-6 : 0.5);
      for (let i = 0; i < n * stride; i++) {
        k[i] = f32ToF16((rand() * 2 - 1) * 2);
        v[i] = f32ToF16((rand() * 2 - 1) * (i % 7 === 0 ? 3e-5 : 4));
      }
      const vis = visibleCells(qPos, n, window);
      b.attendHead!(out, q, k, v, vis, stride, d, cap, heads);
      for (let h = 0; h < heads; h++) {
        const want = new Float32Array(d);
        attendHead(want, q.slice(h * d, (h + 1) * d), Uint16Array.from(k), Uint16Array.from(v), vis, stride, d, new Float32Array(d), cap);
        expect(Array.from(out.subarray(h * d, (h + 1) * d)), `head ${h}`).toEqual(Array.from(want));
      }
    },
  );
});

describe.each(VARIANTS)("wasm-%s tiled attention equals the TypeScript tiled attention bit for bit", (variant) => {
  // [head_dim, rows in the batch, positions already cached, cells (0: one per position), window, soft-cap]: tiles of
  // 64 keys, partial last tiles, rows past a tile edge; sliding windows that leave whole tiles unseen; a ring
  // that wraps within the batch; soft-capped scores
  it.each([
    [32, 64, 0, 0, 0, 0], [64, 70, 60, 0, 0, 0], [256, 65, 3, 0, 0, 0], [40, 100, 130, 0, 0, 0],
    [64, 70, 140, 0, 40, 0], [32, 64, 200, 192, 100, 0], [64, 66, 10, 0, 0, 50], [32, 80, 150, 192, 64, 30],
  ])("head_dim %i, %i rows after %i cached, cells %i, window %i, soft-cap %i", async (d, nq, pos0, ring, window, cap) => {
    const rand = mulberry32(d * 13 + nq + pos0 + ring + window + cap);
    const n = ring || pos0 + nq, stride = 2 * d, qStride = 2 * d; // two heads in the query rows and the cache; the second attended
    const b = await wasmBackend(variant);
    const qOff = b.reserve(nq * qStride * 4), kOff = b.reserve(n * stride * 2), vOff = b.reserve(n * stride * 2);
    const oOff = b.reserve(nq * qStride * 4);
    const sb = b.scratchBytes(d, nq), sOff = b.reserve(sb);
    b.commit();
    b.setScratch(sOff, sb);
    const q = b.f32(qOff, nq * qStride), k = b.u16(kOff, n * stride), v = b.u16(vOff, n * stride);
    const out = b.f32(oOff, nq * qStride);
    for (let i = 0; i < nq * qStride; i++) q[i] = (rand() * 2 - 1) * (i % 5 === 0 ? 1e-6 : 0.5);
    for (let i = 0; i < n * stride; i++) {
      k[i] = f32ToF16((rand() * 2 - 1) * 2);
      v[i] = f32ToF16((rand() * 2 - 1) * (i % 7 === 0 ? 3e-5 : 4));
    }
    out.fill(Number.NaN);
    b.attendHeadTiled!(out.subarray(d), q.subarray(d), qStride, k, v, pos0, nq, n, window, stride, d, d, cap);
    const kc = Uint16Array.from(k), vc = Uint16Array.from(v);
    for (let r = 0; r < nq; r++) {
      const want = new Float32Array(d);
      const vis = visibleCells(pos0 + r, n, window);
      attendHeadTiled(want, Float32Array.from(q.subarray(r * qStride + d, r * qStride + 2 * d)), kc, vc, vis, Math.min(n, pos0 + nq), stride, d, new Float32Array(d), cap);
      expect(Array.from(out.subarray(r * qStride + d, r * qStride + 2 * d)), `row ${r}`).toEqual(Array.from(want));
      expect(Number.isNaN(out[r * qStride]!), `row ${r} first head untouched`).toBe(true);
    }
  });
});

// llama.cpp's own K-quant matrix products (ggml's CPU backend, AVX2 build: test/golden/make-kquant-matmul.cpp),
// 16 x 512 matrices times 1..9 tokens: Q4_K repacked (gemv for single tokens and leftovers, gemm for groups of 4)
// and plain (vec_dot), Q5_K and Q6_K (vec_dot). Both backends must give their f32 results bit for bit.
describe.each(["relaxed", "simd"] as const)("wasm-%s quantize_q8_k equals quantizeActivationsQ8_K bit for bit", (variant) => {
  it("random blocks, a block of zeros, NaN and infinities, ties, equal magnitudes of both signs, subnormals", async () => {
    const nb = 8, n = 256 * nb, base = 65536; // the first page is the module's
    const memory = new WebAssembly.Memory({ initial: 4 });
    const { k } = instantiateKernels(await kernelModule(variant), memory);
    const rand = mulberry32(5);
    const x = new Float32Array(memory.buffer, base, n);
    for (let i = 0; i < n; i++) x[i] = (rand() * 2 - 1) * 4;
    x.fill(0, 256, 512); // block 1: zeros
    x[512 + 3] = NaN; x[512 + 200] = NaN; // block 2: NaNs are passed over
    x[768 + 7] = Infinity; // block 3: an infinite max
    x[1024 + 10] = -9; x[1024 + 99] = 9; // block 4: the first of two equal magnitudes is negative
    x[1280 + 10] = 9; x[1280 + 99] = -9; // block 5: positive first
    for (let j = 0; j < 256; j++) x[1536 + j] = j === 0 ? 127 : (j % 40) - 19.5; // block 6: iscale -1, every value a tie
    for (let j = 0; j < 256; j++) x[1792 + j] = (rand() - 0.5) * 2 ** -130; // block 7: subnormal values
    const qs = base + 4 * n, ds = qs + n, bsums = ds + 4 * nb;
    k.quantize_q8_k(base, qs, ds, bsums, n);
    const want = { qs: new Int8Array(n), ds: new Float32Array(nb), bsums: new Int32Array(16 * nb) };
    quantizeActivationsQ8_K(x, want.qs, want.ds, want.bsums);
    expect(Array.from(new Int8Array(memory.buffer, qs, n))).toEqual(Array.from(want.qs));
    expect(Array.from(new Float32Array(memory.buffer, ds, nb))).toEqual(Array.from(want.ds));
    expect(Array.from(new Int32Array(memory.buffer, bsums, 16 * nb))).toEqual(Array.from(want.bsums));
    expect(want.ds[1]).toBe(0);
    expect(want.ds[6]).toBe(-1);
    expect(want.qs.subarray(1792).every((q) => q === 0) && want.ds[7] === 0).toBe(true); // iscale overflowed
  });
});

describe("K-quant products equal llama.cpp's (ggml CPU backend golden values) bit for bit", () => {
  const golden = JSON.parse(readFileSync(new URL("../golden/ggml-kquant-matmul.json", import.meta.url), "utf8")) as Record<string, { weights: string; outputs: string[] }> & { rows: number; cols: number };
  const cases = [["q4_K_repacked", GGML_TYPE.Q4_K, true], ["q4_K", GGML_TYPE.Q4_K, false], ["q5_K", GGML_TYPE.Q5_K, false], ["q6_K", GGML_TYPE.Q6_K, false]] as const;
  const activations = kquantMatmulActivations(cases.length);
  const bits = (a: number[]) => a.map((v) => new Uint32Array(Float32Array.of(v).buffer)[0]!.toString(16).padStart(8, "0")).join("");
  cases.forEach(([name, type, repacked], c) => {
    for (const backend of ["reference", ...VARIANTS] as const) {
      it(`${name}, 1..9 tokens, ${backend}`, async () => {
        const w = Buffer.from(golden[name]!.weights, "hex");
        for (let n = 1; n <= 9; n++) {
          const b = backend === "reference" ? new ReferenceBackend() : await wasmBackend(backend);
          const ours = runMatmul(b, type, golden.rows, golden.cols, n, new Uint8Array(w), activations[c]![n - 1]!, repacked);
          expect(bits(ours), `${n} tokens`).toBe(golden[name]!.outputs[n - 1]);
        }
      });
    }
  });
});

describe.each(["relaxed", "simd"] as const)("wasm-%s sampler kernels (softmax.ts) against Math.exp and the sampler's JavaScript passes", (variant) => {
  // n from 1 to 9 and 1001: every tail length past the four-lane loop (and the max's eight-lane one)
  const rand = mulberry32(7);
  const values = (n: number) => Float32Array.from({ length: n }, (_, i) => (i % 13 === 5 ? -Infinity : i % 17 === 3 ? -750 : (rand() - 0.5) * 40));

  it("weighs every value as exp((x - m) / t) within 4e-16 relative (2 ulp), 0 below the cut, below 2^-1022 and at -Infinity", async () => {
    const k = new SoftmaxKernels(await kernelModule(variant));
    for (const n of [1, 2, 3, 4, 5, 6, 7, 8, 9, 1001]) {
      const x = values(n);
      k.load(x);
      let m = -Infinity;
      for (const v of x) if (v > m) m = v;
      expect(k.max(), `max of ${n}`).toBe(m);
      for (const [t, cut] of [[1, -Infinity], [0.7, -Infinity], [1.7, m - 3]] as const) {
        const total = k.expSum(m, t, cut, true);
        let want = 0;
        for (let i = 0; i < n; i++) {
          const e = x[i]! >= cut ? Math.exp(t === 1 ? x[i]! - m : (x[i]! - m) / t) : 0;
          want += e;
          const got = k.weights[i]!;
          if (e < 2 ** -1022) expect(got, `n ${n} t ${t} value ${x[i]}`).toBe(0);
          else expect(Math.abs(got - e) / e, `n ${n} t ${t} value ${x[i]}`).toBeLessThanOrEqual(4e-16);
        }
        expect(Math.abs(total - want) / want, `sum of ${n}`).toBeLessThan(1e-14);
        // the sum alone is the same sum, bit for bit
        expect(k.expSum(m, t, cut, false)).toBe(total);
      }
    }
  });

  it("buckets top-p's mass and selects ids by bucket as Sampler.nucleus's JavaScript pass does, bit for bit", async () => {
    const k = new SoftmaxKernels(await kernelModule(variant));
    const n = 1001, scale = 4096 / 64, range = 64;
    const x = values(n);
    x[10] = x[11] = 20; // the maximum, twice
    x[12] = 20 - 64; // exactly at the range's floor: the last bucket
    k.load(x);
    const m = k.max();
    k.expSum(m, 1, -Infinity, true);
    k.buckets(m, scale, range);
    const mass = new Float64Array(4097), bucketOf = new Uint16Array(n);
    for (let i = 0; i < n; i++) {
      const v = x[i]!;
      const b = v > m - range ? Math.min(4095, Math.floor((m - v) * scale)) : 4096;
      bucketOf[i] = b;
      mass[b]! += k.weights[i]!;
    }
    expect(Array.from(k.bucketOf)).toEqual(Array.from(bucketOf));
    expect(Array.from(k.mass)).toEqual(Array.from(mass));
    expect(k.bucketOf[12]).toBe(4096);
    for (const c of [0, 1, 300, 4095, 4096]) {
      const { kept, crossing } = k.select(c);
      expect(Array.from(kept), `kept below ${c}`).toEqual(Array.from(bucketOf.keys()).filter((i) => bucketOf[i]! < c));
      expect(crossing, `crossing ${c}`).toEqual(Array.from(bucketOf.keys()).filter((i) => bucketOf[i] === c));
    }
  });

  it("draws the index where r minus the weights so far drops below 0, else the last nonzero weight (Sampler.pick's walk)", async () => {
    const k = new SoftmaxKernels(await kernelModule(variant));
    k.load(Float32Array.of(0, -Infinity, Math.log(2), -Infinity, Math.log(3), -Infinity));
    expect(k.expSum(0, 1, -Infinity, true)).toBeCloseTo(6, 6); // 1 + 2 + 3, from f32 logarithms
    const walk = (r: number) => {
      let last = 0;
      for (let i = 0; i < 6; i++) {
        const w = k.weights[i]!;
        if (w === 0) continue;
        last = i;
        r -= w;
        if (r < 0) return i;
      }
      return last;
    };
    for (const r of [0, 0.5, 0.999, 1, 2.5, 3, 5.99, 6, 7]) expect(k.pick(r), `r ${r}`).toBe(walk(r));
    expect([k.pick(0.5), k.pick(1.5), k.pick(5)]).toEqual([0, 2, 4]);
  });
});
