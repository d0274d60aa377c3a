// One kernel thread (see node-threads.ts): instantiates the kernels over the shared memory, then runs the calls
// put into its slot, forever.
import { parentPort, workerData } from "node:worker_threads";
import { instantiateKernels } from "../engine/backend/wasm.ts";
import { ARGS, ERROR, SLOT } from "./node-threads.ts";

const { module, memory, control, index, names } = workerData as {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  control: SharedArrayBuffer;
  index: number;
  names: string[];
};
const { k } = instantiateKernels(module, memory);
const fns = names.map((n) => (k as unknown as Record<string, (...args: number[]) => void>)[n]!);
const ctl = new Int32Array(control, index * SLOT * 4, SLOT);
const ctlF = new Float32Array(control, index * SLOT * 4, SLOT);
parentPort!.postMessage("ready");

/**
 * Matrix products come back to back while a model runs: poll for the next call for a while (SPIN_MS) before
 * sleeping in Atomics.wait, whose wake-up costs tens of microseconds, a hundred times per decoded token.
 */
const SPIN_MS = 2;

let seen = 0;
for (;;) {
  if (Atomics.load(ctl, 0) === seen) {
    const until = performance.now() + SPIN_MS;
    while (Atomics.load(ctl, 0) === seen && performance.now() < until) for (let i = 0; i < 256; i++) if (Atomics.load(ctl, 0) !== seen) break;
    Atomics.wait(ctl, 0, seen);
  }
  seen = Atomics.load(ctl, 0);
  const floats = ctl[ARGS - 1]!;
  const args = Array.from(ctl.subarray(ARGS, ARGS + ctl[3]!), (a, j) => (floats & (1 << j) ? ctlF[ARGS + j]! : a >>> 0));
  try {
    fns[ctl[2]!]!(...args);
  } catch {
    ctl[ERROR] = 1;
  }
  Atomics.store(ctl, 1, seen);
  Atomics.notify(ctl, 1);
}
