// What the kernel benchmarks share (bench-kernels.ts, ab-kernels.ts): one matrix product held as the engine holds it.
import type { Weight } from "../src/engine/backend/backend.ts";
import { WasmBackend } from "../src/engine/backend/wasm.ts";
import { GGML_TYPE } from "../src/engine/ggml-types.ts";

export const KERNEL_TYPES: Record<string, number> = { q4_0: GGML_TYPE.Q4_0, q8_0: GGML_TYPE.Q8_0, q4_k: GGML_TYPE.Q4_K, q5_k: GGML_TYPE.Q5_K, q6_k: GGML_TYPE.Q6_K, f16: GGML_TYPE.F16 };

/**
 * A fresh relaxed-SIMD backend from `module` holding `wBytes` (rows x cols of `type`, repacked as the engine's
 * CPU_REPACK-style layouts are for Q4_0 and Q4_K) and n tokens' activations `x`: run() is one product into out.
 * UNSIGNED_DOT=0 in the environment: Q8_0 on its sign-trick path.
 */
export function matmulCase(module: WebAssembly.Module, type: number, rows: number, cols: number, wBytes: Uint8Array, x: Float32Array, n: number) {
  // UNSIGNED_DOT=0: Q8_0's sign-trick path, what engines without an exact unsigned dot (x64 without AVX-VNNI) run
  const b = new WasmBackend(module, "relaxed", { unsignedDot: process.env.UNSIGNED_DOT !== "0" });
  const wOff = b.reserve(wBytes.length), xOff = b.reserve(n * cols * 4), oOff = b.reserve(n * rows * 4);
  const sBytes = b.scratchBytes(cols, n), sOff = sBytes ? b.reserve(sBytes) : 0;
  b.commit();
  b.setScratch(sOff, sBytes);
  b.bytes(wOff, wBytes.length).set(wBytes);
  const xs = b.f32(xOff, n * cols);
  xs.set(x);
  const w: Weight = { name: "w", type, rows, cols, offset: wOff, nbytes: wBytes.length, repacked: type === GGML_TYPE.Q4_0 || type === GGML_TYPE.Q4_K };
  b.prepareWeight(w);
  const out = b.f32(oOff, n * rows);
  return { run: () => b.matmul(out, w, xs, n), out };
}
