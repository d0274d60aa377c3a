// The WebGPU backend on a CPU Vulkan driver (SwiftShader, set up by test/setup/system.ts): each kernel
// against the TypeScript reference with a named tolerance, then whole models against the WebAssembly backend.
import { describe, expect, it } from "vitest";
import { fma32 } from "../../src/engine/backend/ggml-order.ts";
import { quantizeActivationsQ8_0, ReferenceBackend } from "../../src/engine/backend/reference.ts";
import { repackRows } from "../../src/engine/backend/webgpu/model.ts";
import { attention, embedKernel, fmaProbe, GEGLU, hasMin, isQuantized, matmulKernel, matmulRowsPerGroup, quantize, rmsnorm, rope as ropeKernel, STORE_KV } from "../../src/engine/backend/webgpu/kernels.ts";
import { MemoryByteSource } from "../../src/engine/byte-source.ts";
import { GGML_TYPE, ggmlTypeName } from "../../src/engine/ggml-types.ts";
import { loadModel } from "../../src/engine/model/load.ts";
import { attendHead, attendHeadTiled, geglu, rmsNorm, Rope, visibleCells } from "../../src/engine/model/ops.ts";
import { f16ToF32, f32ToF16 } from "../../src/engine/numeric.ts";
import { dequantizeRow, encodeRow } from "../../src/engine/quant.ts";
import { mulberry32 } from "../../src/engine/sampler.ts";
import { loadNodeWebGpuModel } from "../../src/hosts/node-webgpu.ts";
import { kernelModule } from "../../src/hosts/node-wasm.ts";
import { WasmBackend } from "../../src/engine/backend/wasm.ts";
import { runCli } from "../helpers/cli.ts";
import { asF32, f32bits, GPU_DRIVER, kernelVariants, runKernel, testGpu } from "../helpers/gpu.ts";
import { testModel } from "../helpers/models.ts";

const TYPES = [GGML_TYPE.Q4_0, GGML_TYPE.Q8_0, GGML_TYPE.Q4_1, GGML_TYPE.Q5_0, GGML_TYPE.Q5_1, GGML_TYPE.F16, GGML_TYPE.BF16, GGML_TYPE.F32];
const random = (n: number, seed: number, scale = 1) => {
  const r = mulberry32(seed);
  return new Float32Array(n).map(() => (r() * 2 - 1) * scale);
};
const words = (b: Uint8Array) => {
  const padded = new Uint8Array(Math.ceil(b.length / 4) * 4);
  padded.set(b);
  return new Uint32Array(padded.buffer);
};
const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

describe("WebGPU kernels against the reference", () => {
  it(`has a device on ${GPU_DRIVER} (a missing driver fails this test with the reason)`, async () => {
    const { device } = await testGpu();
    expect(device.limits.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 << 20);
    const info = (device as GPUDevice & { adapterInfo: GPUAdapterInfo }).adapterInfo;
    if (GPU_DRIVER !== "user") expect(info.description).toMatch(GPU_DRIVER === "lavapipe" ? /^llvmpipe: Mesa/ : /^SwiftShader/);
  });

  it("fmaSoft (fma in integer arithmetic, for devices whose fma() rounds twice) is RN(a*b + c) exactly", async () => {
    const r = mulberry32(99);
    const n = 20000;
    const a = new Float32Array(n), b = new Float32Array(n), c = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      a[i] = (r() * 2 - 1) * 2 ** Math.floor(r() * 20 - 10);
      b[i] = (r() * 2 - 1) * 2 ** Math.floor(r() * 20 - 10);
      const k = i % 4;
      // plain sums; c nearly cancelling a*b; c far smaller; c zero or a zero
      c[i] = k === 0 ? (r() * 2 - 1) * 2 ** Math.floor(r() * 20 - 10) : k === 1 ? -Math.fround(a[i]! * b[i]!) * (1 + (r() - 0.5) * 2 ** -20) : k === 2 ? r() * 2 ** -40 : 0;
      if (i % 97 === 0) a[i] = 0;
    }
    const [, , , out] = await runKernel(fmaProbe(false), [1, 0, 0], [n], [a, b, c, n], [Math.ceil(n / 64)]);
    const got = asF32(out!);
    const bad = [];
    for (let i = 0; i < n; i++) if (got[i] !== fma32(a[i]!, b[i]!, c[i]!) && !Object.is(got[i], fma32(a[i]!, b[i]!, c[i]!) + 0)) bad.push([a[i], b[i], c[i], got[i], fma32(a[i]!, b[i]!, c[i]!)]);
    expect(bad.slice(0, 5)).toEqual([]);
  });

  it("quantizes activations to Q8_0 exactly as ggml's quantize_row_q8_0 (and Q8_1's d * sum as quantize_row_q8_1)", async () => {
    const n = 3, cols = 256;
    const x = random(n * cols, 7, 3);
    x.fill(0, 32, 64); // an all-zero block
    const qs = new Int8Array(n * cols);
    const ds = new Float32Array((n * cols) / 32);
    const ss = new Float32Array((n * cols) / 32);
    quantizeActivationsQ8_0(x, qs, ds, ss);
    for (const { label, f } of await kernelVariants()) {
      const [, xq, xd, xs] = await runKernel(quantize(f), [n, 0, n - 1], [cols], [x, (n * cols) / 4, (n * cols) / 32, (n * cols) / 32], [Math.ceil((n * cols) / 32 / 64), 1]);
      expect(Array.from(new Int8Array(xq!.buffer)), label).toEqual(Array.from(qs));
      expect(Array.from(asF32(xd!)), label).toEqual(Array.from(ds));
      expect(Array.from(asF32(xs!)), `Q8_1's d * sum (${label})`).toEqual(Array.from(ss));
    }
  });

  for (const type of TYPES) {
    it(`matmul ${ggmlTypeName(type)}: bit for bit the reference's sums (ggml's x86 order), each path`, async () => {
      const variants = await kernelVariants();
      const cols = 256;
      // 24 rows: Q4_0 repacked (one fma chain), tinyBLAS for 2+ tokens; 22 rows: 8-lane blocks, vec_dot
      for (const [rows, n] of [[24, 1], [24, 3], [22, 3], [22, 1]] as const) {
        const w = random(rows * cols, 11 + type, 1);
        const x = random(n * cols, 13 + type, 2);
        const wBytes = new Uint8Array(Array.from({ length: rows }, (_, r) => Array.from(encodeRow(type, w.subarray(r * cols, (r + 1) * cols)))).flat());
        const ref = new ReferenceBackend();
        const wOff = ref.reserve(wBytes.length), xOff = ref.reserve(n * cols * 4), oOff = ref.reserve(n * rows * 4);
        ref.commit();
        ref.bytes(wOff, wBytes.length).set(wBytes);
        ref.f32(xOff, n * cols).set(x);
        const repacked = type === GGML_TYPE.Q4_0 && rows % 8 === 0;
        ref.matmul(ref.f32(oOff, n * rows), { name: "w", type, rows, cols, offset: wOff, nbytes: wBytes.length, repacked }, ref.f32(xOff, n * cols), n);
        const want = Array.from(ref.f32(oOff, n * rows));
        for (const { label, f } of variants) {
          const parts = repackRows(type, wBytes, rows, cols).map(words);
          let inputs: (Uint32Array | Float32Array)[] = [x];
          if (isQuantized(type)) {
            const [, xq, xd, xs] = await runKernel(quantize(f), [n, 0, n - 1], [cols], [x, (n * cols) / 4, (n * cols) / 32, (n * cols) / 32], [1, 1]);
            inputs = hasMin(type) ? [xq!, xd!, xs!] : [xq!, xd!];
          }
          const res = await runKernel(matmulKernel(type, f), [n, 0, n - 1], [rows, cols, 0, rows], [...parts, ...inputs, n * rows], [Math.ceil(rows / matmulRowsPerGroup(type)), 1, n]);
          expect(Array.from(asF32(res[res.length - 1]!)), `${rows} rows, ${n} tokens, ${label}`).toEqual(want);
        }
      }
    });
  }

  it("embeds tokens: the dequantized row times sqrt(dim), exactly", async () => {
    const variantsNow = await kernelVariants();
    const rows = 40, cols = 64, scale = Math.fround(Math.sqrt(cols));
    const w = random(rows * cols, 3);
    for (const [type, { label, f }] of TYPES.flatMap((t) => variantsNow.map((v) => [t, v] as const))) {
      const bytes = new Uint8Array(Array.from({ length: rows }, (_, r) => Array.from(encodeRow(type, w.subarray(r * cols, (r + 1) * cols)))).flat());
      const tokens = new Uint32Array([5, 39, 0, 17]);
      // rows 10..39 as a chunk of their own (as a split weight has): token 5 and 0 are not in it
      const chunkBytes = bytes.subarray((bytes.length / rows) * 10);
      const parts = repackRows(type, chunkBytes, rows - 10, cols).map(words);
      const res = await runKernel(embedKernel(type, f), [4, 0, 3], [cols, 10, rows - 10, f32bits(scale)], [...parts, tokens, new Float32Array(4 * cols).fill(-1)], [1, 4]);
      const got = asF32(res[res.length - 1]!);
      const row = new Float32Array(cols);
      for (const [t, tok] of tokens.entries()) {
        if (tok < 10) {
          expect(Array.from(got.subarray(t * cols, (t + 1) * cols)).every((v) => v === -1), `token ${tok} is outside the chunk`).toBe(true);
          continue;
        }
        dequantizeRow(type, bytes, tok * (bytes.length / rows), cols, row);
        expect(Array.from(got.subarray(t * cols, (t + 1) * cols)), `${ggmlTypeName(type)} token ${tok} (${label})`).toEqual(Array.from(row.map((v) => Math.fround(v * scale))));
      }
    }
  });

  it("RMSNorm of every row: exactly the reference (double sum, correctly rounded 1/sqrt)", async () => {
    const n = 3, dim = 192, eps = 1e-6;
    const x = random(n * dim, 5, 4);
    const w = random(dim, 6, 2);
    const want = new Float32Array(n * dim);
    rmsNorm(want, x, w, eps);
    for (const { label, f } of await kernelVariants()) {
      const [, , all] = await runKernel(rmsnorm(f), [n, 0, n - 1], [dim, f32bits(eps)], [x, w, n * dim], [n]);
      expect(Array.from(asF32(all!)), label).toEqual(Array.from(want));
    }
  });

  it("RoPE (partial: 16 of 32 dims, the first product fused) then the query scale: exactly the reference", async () => {
    const n = 3, nHeads = 4, headDim = 32, ropeDims = 16, pos = 5, scale = Math.fround(1 / Math.sqrt(headDim));
    const rope = new Rope(headDim, ropeDims, 10000, 64);
    const half = ropeDims / 2;
    const cos = new Float32Array((pos + n) * half), sin = new Float32Array((pos + n) * half);
    for (let p = 0; p < pos + n; p++) {
      cos.set(rope.values(p).cos, p * half);
      sin.set(rope.values(p).sin, p * half);
    }
    const v = random(n * nHeads * headDim, 9, 2);
    const want = v.slice();
    for (let t = 0; t < n; t++) {
      const row = want.subarray(t * nHeads * headDim, (t + 1) * nHeads * headDim);
      rope.apply(row, nHeads, pos + t);
      for (let i = 0; i < row.length; i++) row[i] = Math.fround(row[i]! * scale);
    }
    for (const { label, f } of await kernelVariants()) {
      const [got] = await runKernel(ropeKernel(f), [n, pos, n - 1], [nHeads, headDim, ropeDims, f32bits(scale)], [v, cos, sin], [Math.ceil((nHeads * (headDim - half)) / 64), n]);
      expect(Array.from(asF32(got!)), label).toEqual(Array.from(want));
    }
  });

  it("stores keys and values into the f16 cache at their positions, exactly", async () => {
    const n = 2, kvDim = 64, pos = 3, ctx = 8;
    const k = random(n * kvDim, 1, 3), v = random(n * kvDim, 2, 3);
    const [, , kc, vc] = await runKernel(STORE_KV, [n, pos, n - 1], [kvDim, ctx], [k, v, (ctx * kvDim) / 2, (ctx * kvDim) / 2], [1, n]);
    const half = (u: Uint32Array) => Array.from(new Uint16Array(u.buffer));
    const expected = (src: Float32Array) => {
      const c = new Array(ctx * kvDim).fill(0);
      for (let i = 0; i < n * kvDim; i++) c[pos * kvDim + i] = f32ToF16(src[i]!);
      return c;
    };
    expect(half(kc!)).toEqual(expected(k));
    expect(half(vc!)).toEqual(expected(v));
    // a sliding-window layer's ring of 8 cells: positions 6, 7, 8 go to cells 6, 7, 0 (the model-level ring, past 768
    // positions, is the CPU backends' test: test/llama-cpp; too slow on a CPU Vulkan driver)
    const [, , ring] = await runKernel(STORE_KV, [3, 6, 2], [kvDim, 8], [random(3 * kvDim, 5, 3), random(3 * kvDim, 6, 3), (8 * kvDim) / 2, (8 * kvDim) / 2], [1, 3]);
    const r = half(ring!);
    const k3 = random(3 * kvDim, 5, 3);
    expect([r.slice(6 * kvDim, 8 * kvDim), r.slice(0, kvDim)]).toEqual([Array.from(k3.subarray(0, 2 * kvDim), f32ToF16), Array.from(k3.subarray(2 * kvDim), f32ToF16)]);
  });

  it("GeGLU through ggml's f16 GELU table: exactly the reference", async () => {
    const n = 2, cols = 320;
    const gate = random(n * cols, 3, 14); // beyond +-10 too
    const up = random(n * cols, 4, 2);
    const want = new Float32Array(n * cols);
    geglu(want, gate, up);
    const { GELU_F16 } = await import("../../src/engine/model/ops.ts");
    const [got] = await runKernel(GEGLU, [n, 0, n - 1], [cols], [gate, up, GELU_F16], [Math.ceil((n * cols) / 64), 1]);
    expect(Array.from(asF32(got!))).toEqual(Array.from(want));
  });

  // 4 query heads sharing 2 KV heads of 32 over 70 cached positions
  const nHeads = 4, nKv = 2, d = 32, kvDim = nKv * d, qDim = nHeads * d, ctx = 160;
  const cacheOf = (seed: number) => Uint16Array.from(random(ctx * kvDim, seed, 2), (v) => f32ToF16(v));
  const kc = cacheOf(21), vc = cacheOf(22);
  const cacheWords = (c: Uint16Array) => new Uint32Array(c.buffer.slice(0));
  /**
   * The kernel's rows `rows` of an n-row batch at pos, each variant, against attendHead or attendHeadTiled; over
   * `cells` cells of the cache (a ring when fewer than the positions), each row seeing `window` positions (0: all),
   * scores soft-capped by `cap` (0: none).
   */
  async function expectAttention(n: number, pos: number, q: Float32Array, rows: number[], tiled: boolean, cells = ctx, window = 0, cap = 0) {
    for (const { label, f } of await kernelVariants()) {
      const [, , , out] = await runKernel(attention(f), [n, pos, n - 1], [d, kvDim, nHeads / nKv, qDim, cells, window, cap ? f32bits(cap) : 0, 0], [q, cacheWords(kc), cacheWords(vc), n * qDim], [nHeads, n]);
      const got = asF32(out!);
      const want = new Float32Array(d);
      for (const t of rows) {
        for (let h = 0; h < nHeads; h++) {
          const qh = q.subarray(t * qDim + h * d, t * qDim + (h + 1) * d), vis = visibleCells(pos + t, cells, window);
          if (tiled) attendHeadTiled(want, qh, kc, vc, vis, Math.min(cells, pos + n), kvDim, Math.floor(h / 2) * d, new Float32Array(d), cap);
          else attendHead(want, qh, kc, vc, vis, kvDim, Math.floor(h / 2) * d, new Float32Array(d), cap);
          expect(Array.from(got.subarray(t * qDim + h * d, t * qDim + (h + 1) * d)), `token ${t} head ${h} (${label})`).toEqual(Array.from(want));
        }
      }
    }
  }

  it("attention for decode and short batches (f16 query and accumulators, glibc expf): exactly the reference", async () => {
    const n = 3, pos = 67; // rows attend to 68, 69, 70 positions
    const q = random(n * qDim, 23, 1.5);
    await expectAttention(n, pos, q, Array.from({ length: n }, (_, t) => t), false);
  });

  it("attention for batches of 64+ rows (f32 query and accumulators, a softmax step per tile): exactly the reference", async () => {
    const n = 64, pos = 6;
    const q = random(n * qDim, 24, 1.5);
    await expectAttention(n, pos, q, [0, 1, 31, 57, 63], true);
  });

  it("attention on sliding-window layers (a ring of cells, a window) with soft-capped scores (Gemma 2): exactly the reference", async () => {
    const q = random(70 * qDim, 25, 1.5);
    // decode rows in a 128-cell ring that has wrapped (positions 200..202), a window of 40 (both branches of tanhf)
    await expectAttention(3, 200, q, [0, 1, 2], false, 128, 40, 20);
    // 64+ rows: a window that leaves whole tiles unseen, in a ring, soft-capped
    await expectAttention(66, 150, q, [0, 5, 33, 64, 65], true, 160, 30, 8);
  });

});

describe("WebGPU model against the WebAssembly backend", () => {
  const greedy = async (forward: (t: number[], p: number) => Float32Array | Promise<Float32Array>, prompt: number[], steps: number) => {
    const argmax = (l: Float32Array) => l.reduce((b, v, i, a) => (v > a[b]! ? i : b), 0);
    let next = argmax(await forward(prompt, 0));
    const ids = [next];
    for (let i = 1; i < steps; i++) {
      next = argmax(await forward([next], prompt.length + i - 1));
      ids.push(next);
    }
    return ids;
  };
  const prompt = [2, 526, 423, 556, 100, 200, 300, 17];

  /** The same model file on both backends: bit-identical logits for the prompt, then the same greedy tokens. */
  async function expectSameAsWasm(bytes: Uint8Array, ids: number[], steps: number, contextSize = 128) {
    const wasm = await loadModel(new MemoryByteSource(bytes), new WasmBackend(await kernelModule("simd"), "simd"), { contextSize });
    const gpu = await loadNodeWebGpuModel(new MemoryByteSource(bytes), { contextSize });
    try {
      expect(Array.from(await gpu.forward(ids, 0))).toEqual(Array.from(await wasm.forward(ids, 0)));
      expect(await greedy(gpu.forward, ids, steps)).toEqual(await greedy(wasm.forward, ids, steps));
    } finally {
      gpu.destroy();
    }
  }

  for (const [shape, type] of [["tiny", "q4_0"], ["tiny", "q8_0"], ["tiny", "f16"], ["tiny", "bf16"], ["tiny", "f32"], ["tiny-gqa", "q4_0"], ["tiny-gqa", "f16"]] as const) {
    it(`${shape} ${type}: bit-identical logits and the same 32 greedy tokens`, async () => {
      await expectSameAsWasm((await testModel(shape, type)).bytes, prompt, 32);
    });
  }

  // Gemma 2 (post-norms, soft-capped attention and logits, every other layer on a 16-position window) and Gemma 3
  // (QK-norms, two RoPE bases, five local layers to one global): generations past the window (8 + 12 positions);
  // and the 32-value types with a 5th bit or a min
  for (const [shape, type] of [["tiny-gemma2", "q8_0"], ["tiny-gemma2", "f16"], ["tiny-gemma3", "q4_0"], ["tiny-gemma3", "f16"], ["tiny-gemma3", "q5_0"], ["tiny", "q4_1"], ["tiny-gqa", "q5_1"]] as const) {
    it(`${shape} ${type}: bit-identical logits and the same 12 greedy tokens`, async () => {
      await expectSameAsWasm((await testModel(shape, type)).bytes, prompt, 12);
    });
  }

  it("a 90-token prompt (the 64+ row attention path): bit-identical logits, the same 16 greedy tokens", async () => {
    const long = [2, ...Array.from({ length: 89 }, (_, i) => 100 + ((i * 37) % 900))];
    await expectSameAsWasm((await testModel("tiny", "q8_0")).bytes, long, 16);
  });

  it("weights split across bindings (a 4 KiB binding limit) give the same logits bit for bit", async () => {
    const { bytes } = await testModel("tiny", "q4_0");
    const whole = await loadNodeWebGpuModel(new MemoryByteSource(bytes), { contextSize: 64 });
    const split = await loadNodeWebGpuModel(new MemoryByteSource(bytes), { contextSize: 64, maxBindingBytes: 4096 });
    try {
      expect(split.model.tokenEmbd.chunks.length).toBeGreaterThan(10); // 1024 rows of 64 bytes each, 64 rows a chunk
      expect(Array.from(await split.forward(prompt, 0))).toEqual(Array.from(await whole.forward(prompt, 0)));
    } finally {
      whole.destroy();
      split.destroy();
    }
  });

  it("gemma-edge generate --backend webgpu prints what --backend wasm prints", async () => {
    const { path } = await testModel("tiny", "q4_0");
    const args = ["generate", "--model", path, "--prompt", "The quick brown fox", "--max-tokens", "24", "--temperature", "0", "--json"];
    const wasm = await runCli([...args, "--backend", "wasm"]);
    const gpu = await runCli([...args, "--backend", "webgpu"]);
    expect(gpu.code, gpu.stderr).toBe(0);
    expect(JSON.parse(gpu.stdout)).toEqual(JSON.parse(wasm.stdout));
    expect(JSON.parse(gpu.stdout).ids).toHaveLength(24);
  });

  it("without a Vulkan driver, --backend webgpu fails with one line that says what to do", async () => {
    const { path } = await testModel("tiny", "q4_0");
    const r = await runCli(["generate", "--model", path, "--prompt", "x", "--backend", "webgpu"], { VK_ICD_FILENAMES: "/nonexistent/icd.json" });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/WebGPU: no adapter\. Dawn found no Vulkan driver/);
  });
});
