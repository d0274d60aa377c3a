// npm run bench:kernels: the WebAssembly matrix kernels alone, one thread, GMAC/s (multiply-adds per second) and
// the weight bytes they stream per second, for each weight type at one token (decode) and at a prompt chunk.
// Each case is a fresh backend holding the weights as the engine does (Q4_0 and Q4_K repacked, as llama.cpp's
// CPU_REPACK buffers hold them); the cases alternate over ROUNDS rounds, each round the median of REPEATS calls
// after a warm-up, so a noisy minute lands on every case alike. Shape: Gemma-2B's 2048 x 2048 by default.
// Options: TYPES=q4_0,q8_0,q4_k,q6_k ROWS=N COLS=N TOKENS=1,16 REPEATS=N ROUNDS=N.
import { WasmBackend } from "../src/engine/backend/wasm.ts";
import type { Weight } from "../src/engine/backend/backend.ts";
import { GGML_TYPE, ggmlTypeName } from "../src/engine/ggml-types.ts";
import { mulberry32 } from "../src/engine/sampler.ts";
import { wasmRowEncoder } from "../src/engine/wasm-quantizer.ts";
import { kernelModule } from "../src/hosts/node-wasm.ts";

const env = process.env;
const TYPE_IDS: Record<string, number> = { q4_0: GGML_TYPE.Q4_0, q8_0: GGML_TYPE.Q8_0, q4_k: GGML_TYPE.Q4_K, q5_k: GGML_TYPE.Q5_K, q6_k: GGML_TYPE.Q6_K, f16: GGML_TYPE.F16 };
const types = (env.TYPES ?? "q4_0,q8_0,q4_k,q6_k").split(",").map((t) => {
  const id = TYPE_IDS[t.trim().toLowerCase()];
  if (id === undefined) throw new Error(`TYPES: unknown type "${t}" (one of ${Object.keys(TYPE_IDS).join(", ")})`);
  return id;
});
const rows = Number(env.ROWS ?? 2048), cols = Number(env.COLS ?? 2048);
const tokenCounts = (env.TOKENS ?? "1,16").split(",").map(Number);
const repeats = Number(env.REPEATS ?? 10), rounds = Number(env.ROUNDS ?? 3);
const encode = wasmRowEncoder(await kernelModule("simd"));
const module = await kernelModule("relaxed");

const rand = mulberry32(7);
const wf = new Float32Array(rows * cols).map(() => (rand() * 2 - 1) * 0.05);
const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;

interface Case { type: number; n: number; run: () => void; bytes: number; times: number[] }
const cases: Case[] = [];
for (const type of types) {
  const wBytes = encode(type, wf);
  for (const n of tokenCounts) {
    const b = new WasmBackend(module, "relaxed");
    const wOff = b.reserve(wBytes.length), xOff = b.reserve(n * cols * 4), oOff = b.reserve(n * rows * 4);
    const sBytes = b.scratchBytes(cols, n), sOff = sBytes ? b.reserve(sBytes) : 0;
    b.commit();
    b.setScratch(sOff, sBytes);
    b.bytes(wOff, wBytes.length).set(wBytes);
    const x = b.f32(xOff, n * cols);
    for (let i = 0; i < x.length; i++) x[i] = (rand() * 2 - 1) * 2;
    const w: Weight = { name: "w", type, rows, cols, offset: wOff, nbytes: wBytes.length, repacked: type === GGML_TYPE.Q4_0 || type === GGML_TYPE.Q4_K };
    b.prepareWeight(w);
    const out = b.f32(oOff, n * rows);
    cases.push({ type, n, run: () => b.matmul(out, w, x, n), bytes: wBytes.length, times: [] });
  }
}
for (let round = 0; round < rounds; round++) {
  for (const c of cases) {
    // warm-up: V8 recompiles hot WebAssembly (and the TypeScript around it) optimized
    for (let r = 0, t0 = performance.now(); r < 3 || performance.now() - t0 < 200; r++) c.run();
    const t: number[] = [];
    for (let r = 0; r < repeats; r++) {
      const t0 = performance.now();
      c.run();
      t.push(performance.now() - t0);
    }
    c.times.push(median(t));
  }
}
console.log(`${rows} x ${cols}, one thread, ${rounds} alternating rounds of the median of ${repeats} calls: median (min-max over rounds)`);
console.log("| type | tokens | ms a call | GMAC/s | weight GB/s |\n|---|---|---|---|---|");
for (const c of cases) {
  const m = median(c.times);
  const gmac = (v: number) => ((rows * cols * c.n) / v / 1e6).toFixed(1);
  console.log(`| ${ggmlTypeName(c.type)} | ${c.n} | ${m.toFixed(3)} | ${gmac(m)} (${gmac(Math.max(...c.times))}-${gmac(Math.min(...c.times))}) | ${(c.bytes / m / 1e6).toFixed(1)} |`);
}
