// A kernel change, measured against the build before it: one matrix product (TYPE=q4_0|q8_0|q4_k|q5_k|q6_k|f16, ROWS x COLS,
// N tokens) in two kernel builds, OLD (an earlier build/kernels-relaxed.wasm, e.g. copied aside before the change)
// and the current build/ (or NEW, another build), on the same weights and activations; the outputs must agree bit for bit, then the calls
// alternate old, new, old, new (PAIRS pairs) so that this machine's drifting speed lands on both alike, and the
// ratio is taken pair by pair (`npm run bench:kernels-ab`; pinned to one core it is steadier):
//   git stash && npm run build:wasm && cp build/kernels-relaxed.wasm /tmp/old.wasm && git stash pop && npm run build:wasm
//   OLD=/tmp/old.wasm N=16 taskset -c 1 npm run bench:kernels-ab
import { readFileSync } from "node:fs";
import { mulberry32 } from "../src/engine/sampler.ts";
import { wasmRowEncoder } from "../src/engine/wasm-quantizer.ts";
import { kernelModule } from "../src/hosts/node-wasm.ts";
import { KERNEL_TYPES, matmulCase } from "./kernel-case.ts";

const env = process.env;
const rows = Number(env.ROWS ?? 2048), cols = Number(env.COLS ?? 2048), n = Number(env.N ?? 16), pairs = Number(env.PAIRS ?? 200);
const type = KERNEL_TYPES[env.TYPE ?? "q4_0"];
if (type === undefined) throw new Error(`TYPE: one of ${Object.keys(KERNEL_TYPES).join(", ")}`);
const encode = wasmRowEncoder(await kernelModule("simd"));
if (!env.OLD) throw new Error("OLD: the path of the earlier kernels-relaxed.wasm to compare with");
const mods = [await WebAssembly.compile(readFileSync(env.OLD)), env.NEW ? await WebAssembly.compile(readFileSync(env.NEW)) : await kernelModule("relaxed")];
const rand = mulberry32(7);
const wf = new Float32Array(rows * cols).map(() => (rand() * 2 - 1) * 0.05);
const xf = new Float32Array(n * cols).map(() => (rand() * 2 - 1) * 2);
const wBytes = encode(type, wf);
const runs = mods.map((m) => matmulCase(m, type, rows, cols, wBytes, xf, n));
for (const r of runs) r.run();
const [ra, rb] = runs.map((r) => r.out);
let diff = 0;
for (let i = 0; i < ra!.length; i++) if (!Object.is(ra![i], rb![i])) diff++;
if (diff) throw new Error(`outputs differ in ${diff} of ${ra!.length}`);
for (let i = 0; i < 5; i++) for (const r of runs) r.run();
const ta: number[] = [], tb: number[] = [];
for (let i = 0; i < pairs; i++) {
  let t0 = performance.now(); runs[0]!.run(); ta.push(performance.now() - t0);
  t0 = performance.now(); runs[1]!.run(); tb.push(performance.now() - t0);
}
const med = (a: number[]) => [...a].sort((p, q) => p - q)[a.length >> 1]!;
const g = (ms: number) => ((rows * cols * n) / (ms * 1e6)).toFixed(1);
const ratio = ta.map((a, i) => a / tb[i]!).sort((p, q) => p - q);
const q = (f: number) => ratio[Math.floor(f * (ratio.length - 1))]!.toFixed(3);
console.log(`${env.TYPE ?? "q4_0"} ${rows}x${cols} n=${n}: old ${g(med(ta))} GMAC/s (best ${g(Math.min(...ta))}), new ${g(med(tb))} (best ${g(Math.min(...tb))}); new/old speed per pair: median ${q(0.5)}, quartiles ${q(0.25)}-${q(0.75)}`);
