// Builds the WebAssembly kernels from wasm/kernels.ts (which exports wasm/kernels/*) with the AssemblyScript compiler from npm:
// build/kernels-relaxed.wasm (SIMD128 + relaxed SIMD) and build/kernels-simd.wasm (SIMD128 only), and the same two
// over a shared memory (kernels-*-mt.wasm), for hosts that run kernels on several threads (Node worker_threads).
import asc from "assemblyscript/asc";
import { mkdirSync } from "node:fs";

mkdirSync("build", { recursive: true });
const common = ["wasm/kernels.ts", "-O3", "--runtime", "stub", "--importMemory", "--initialMemory", "1", "--noAssert", "--enable", "simd"];
const shared = ["--enable", "threads", "--sharedMemory", "--maximumMemory", "65536"];
for (const [name, extra] of [
  ["relaxed", ["--enable", "relaxed-simd"]],
  ["simd", []],
  ["relaxed-mt", ["--enable", "relaxed-simd", ...shared]],
  ["simd-mt", shared],
]) {
  const { error, stderr } = await asc.main([...common, ...extra, "--outFile", `build/kernels-${name}.wasm`]);
  if (error) {
    console.error(stderr.toString());
    console.error(`wasm build failed (${name}): ${error.message}`);
    process.exit(1);
  }
}
console.log("built build/kernels-{relaxed,simd}{,-mt}.wasm");
await import("./build-xgrammar.js");
