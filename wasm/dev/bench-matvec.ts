// Kernel scratch bench: one Q4_0 matrix-vector product (llama.cpp's repacked order) on the wasm backends, checked
// bit for bit against the reference backend on a slice, timed over repeats. Run: node wasm/dev/bench-matvec.ts
import { ReferenceBackend } from "../../src/engine/backend/reference.ts";
import { WasmBackend } from "../../src/engine/backend/wasm.ts";
import type { Backend, Weight } from "../../src/engine/backend/backend.ts";
import { GGML_TYPE } from "../../src/engine/ggml-types.ts";
import { quantizeQ4_0 } from "../../src/engine/quant.ts";
import { mulberry32 } from "../../src/engine/sampler.ts";
import { kernelModule } from "../../src/hosts/node-wasm.ts";

const shapes: [number, number][] = [[16384, 2048], [2048, 16384]];
const type = GGML_TYPE.Q4_0;

function setup(b: Backend, rows: number, cols: number, wBytes: Uint8Array, x: Float32Array) {
  const wOff = b.reserve(wBytes.length), xOff = b.reserve(cols * 4), oOff = b.reserve(rows * 4);
  const sb = b.scratchBytes(cols, 1), sOff = b.reserve(sb);
  b.commit();
  b.setScratch(sOff, sb);
  b.bytes(wOff, wBytes.length).set(wBytes);
  b.f32(xOff, cols).set(x);
  const w: Weight = { name: "w", type, rows, cols, offset: wOff, nbytes: wBytes.length, repacked: true };
  b.prepareWeight(w);
  return { w, x: b.f32(xOff, cols), out: b.f32(oOff, rows) };
}

for (const [rows, cols] of shapes) {
  const rand = mulberry32(rows + cols);
  const wf = new Float32Array(rows * cols).map(() => rand() * 2 - 1);
  const wBytes = quantizeQ4_0(wf);
  const x = new Float32Array(cols).map(() => rand() * 2 - 1);
  // reference on the first 64 rows
  const refRows = 64;
  const ref = setup(new ReferenceBackend(), refRows, cols, wBytes.subarray(0, refRows * (cols / 32) * 18), x);
  new ReferenceBackend();
  const rb = ref;
  for (const variant of ["relaxed", "simd"] as const) {
    const b = new WasmBackend(await kernelModule(variant), variant);
    const s = setup(b, rows, cols, wBytes, x);
    b.matmul(s.out, s.w, s.x, 1);
    const refB = new ReferenceBackend();
    const r = setup(refB, refRows, cols, wBytes.subarray(0, refRows * (cols / 32) * 18), x);
    refB.matmul(r.out, r.w, r.x, 1);
    const same = r.out.every((v, i) => Object.is(v, s.out[i]));
    const times: number[] = [];
    for (let k = 0; k < 15; k++) {
      const t = performance.now();
      b.matmul(s.out, s.w, s.x, 1);
      times.push(performance.now() - t);
    }
    times.sort((a, c) => a - c);
    const med = times[7]!;
    console.log(`${rows}x${cols} ${variant}: ${med.toFixed(2)} ms (min ${times[0]!.toFixed(2)}, max ${times.at(-1)!.toFixed(2)}), ${(wBytes.length / med / 1e6).toFixed(2)} GB/s, exact vs reference: ${same}`);
  }
  void rb;
}
