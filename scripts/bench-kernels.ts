// npm run bench:kernels: the WebAssembly matrix kernels alone, one thread, GMAC/s (multiply-adds per second) and
// the weight bytes they stream per second, for each weight type at one token (decode) and at a prompt chunk.
// Each case is a fresh backend holding the weights as the engine does (Q4_0 and Q4_K repacked, as llama.cpp's
// CPU_REPACK buffers hold them); the cases alternate over ROUNDS rounds, each round the median of REPEATS calls
// after a warm-up, so a noisy minute lands on every case alike. Shape: Gemma-2B's 2048 x 2048 by default.
// Options: TYPES=q4_0,q8_0,q4_k,q6_k ROWS=N COLS=N TOKENS=1,16 REPEATS=N ROUNDS=N.
import { ggmlTypeName } from "../src/engine/ggml-types.ts";
import { mulberry32 } from "../src/engine/sampler.ts";
import { wasmRowEncoder } from "../src/engine/wasm-quantizer.ts";
import { kernelModule } from "../src/hosts/node-wasm.ts";
import { KERNEL_TYPES, matmulCase } from "./kernel-case.ts";

const env = process.env;
const types = (env.TYPES ?? "q4_0,q8_0,q4_k,q6_k").split(",").map((t) => {
  const id = KERNEL_TYPES[t.trim().toLowerCase()];
  if (id === undefined) throw new Error(`TYPES: unknown type "${t}" (one of ${Object.keys(KERNEL_TYPES).join(", ")})`);
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
    const x = Float32Array.from({ length: n * cols }, () => (rand() * 2 - 1) * 2);
    const { run } = matmulCase(module, type, rows, cols, wBytes, x, n);
    cases.push({ type, n, run, bytes: wBytes.length, times: [] });
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
