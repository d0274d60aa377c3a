// Kernel threads for Node: worker_threads, each with its own instance of the same kernels over the backend's
// shared WebAssembly.Memory. Calls are handed over through a SharedArrayBuffer (one slot per thread) and
// Atomics.wait/notify, with no message passing on the hot path; the caller's thread blocks until all are done.
import { Worker } from "node:worker_threads";
import type { KernelCall, KernelThreads } from "../engine/backend/wasm.ts";

// int32s per thread: [seq, done, fn, argc, float mask, args..., error]. Arguments go as i32 (pointers, counts: the
// thread reads them unsigned, which WebAssembly's i32 parameters take back as the same bits); an argument that is
// not an integer in i32/u32 range (a soft-cap, a scale) goes as f32 bits, its bit set in the mask.
export const SLOT = 32;
export const ARGS = 5;
const MAX_ARGS = 26;
export const ERROR = 31;
const f32Bits = new Float32Array(1), f32BitsI = new Int32Array(f32Bits.buffer);

export class NodeKernelThreads implements KernelThreads {
  readonly count: number;
  private readonly ctl: Int32Array;
  private readonly workers: Worker[];
  private readonly names: string[];
  private seq = 0;

  private constructor(workers: Worker[], ctl: Int32Array, names: string[]) {
    this.count = workers.length;
    this.workers = workers;
    this.ctl = ctl;
    this.names = names;
  }

  /** Start `count` threads running `module` over `memory`; resolves once each has instantiated it. */
  static async start(module: WebAssembly.Module, memory: WebAssembly.Memory, count: number): Promise<NodeKernelThreads> {
    const ctl = new Int32Array(new SharedArrayBuffer(count * SLOT * 4));
    const names = WebAssembly.Module.exports(module).filter((e) => e.kind === "function").map((e) => e.name);
    const workers = await Promise.all(
      Array.from({ length: count }, (_, index) => {
        const w = new Worker(new URL("./kernel-thread.ts", import.meta.url), { workerData: { module, memory, control: ctl.buffer, index, names } });
        return new Promise<Worker>((resolve, reject) => {
          w.once("message", () => resolve(w));
          w.once("error", reject);
        });
      }),
    );
    for (const w of workers) w.unref(); // idle threads do not keep the process alive
    return new NodeKernelThreads(workers, ctl, names);
  }

  run(calls: KernelCall[], own: () => void): void {
    if (calls.length > this.count) throw new Error(`${calls.length} calls for ${this.count} threads`);
    const seq = ++this.seq;
    calls.forEach((c, i) => {
      const o = i * SLOT;
      if (c.args.length > MAX_ARGS) throw new Error(`${c.fn}: more than ${MAX_ARGS} arguments`);
      this.ctl[o + 2] = this.names.indexOf(c.fn);
      this.ctl[o + 3] = c.args.length;
      let floats = 0;
      c.args.forEach((a, j) => {
        if (Number.isInteger(a) && a >= -(2 ** 31) && a < 2 ** 32) this.ctl[o + ARGS + j] = a | 0;
        else {
          f32Bits[0] = a;
          this.ctl[o + ARGS + j] = f32BitsI[0]!;
          floats |= 1 << j;
        }
      });
      this.ctl[o + ARGS - 1] = floats;
      Atomics.store(this.ctl, o, seq);
      Atomics.notify(this.ctl, o);
    });
    let failure: unknown;
    try {
      own();
    } catch (e) {
      failure = e;
    }
    calls.forEach((c, i) => {
      const o = i * SLOT;
      // the threads' halves take about as long as ours: poll a little before sleeping
      for (let spin = 0; spin < 1 << 16 && Atomics.load(this.ctl, o + 1) !== seq; spin++);
      for (let done = Atomics.load(this.ctl, o + 1); done !== seq; done = Atomics.load(this.ctl, o + 1)) Atomics.wait(this.ctl, o + 1, done);
      if (this.ctl[o + ERROR]) {
        this.ctl[o + ERROR] = 0;
        failure ??= new Error(`kernel thread ${i}: ${c.fn} failed`);
      }
    });
    if (failure) throw failure;
  }

  /** Stop the threads. */
  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
