// Where a forward pass spends its time: a backend wrapped so that each kernel call is timed and counted by what it
// does (matrix products by weight type, the LM head apart, attention, GeGLU). The kernels are synchronous, so a
// call's wall time is its cost; whatever the forward pass does between calls (norms, RoPE, residual adds, the
// embedding lookup: plain TypeScript) is the step's time less the kernels'. `gemma-edge bench --profile` prints it.
import { ggmlTypeName } from "../ggml-types.ts";
import type { Backend, Weight } from "./backend.ts";

export interface ProfileEntry {
  calls: number;
  ms: number;
  /** Multiply-adds (matrix products) or 0. */
  macs: number;
  /** Weight bytes read (matrix products) or 0. */
  bytes: number;
}

export class BackendProfile {
  readonly entries = new Map<string, ProfileEntry>();

  private add(key: string, ms: number, macs: number, bytes: number): void {
    const e = this.entries.get(key) ?? { calls: 0, ms: 0, macs: 0, bytes: 0 };
    e.calls++;
    e.ms += ms;
    e.macs += macs;
    e.bytes += bytes;
    this.entries.set(key, e);
  }

  reset(): void {
    this.entries.clear();
  }

  /** The sum of every entry's time. */
  totalMs(): number {
    let t = 0;
    for (const e of this.entries.values()) t += e.ms;
    return t;
  }

  /**
   * `b` with matmul, attendHead, attendHeadTiled and geglu timed into this profile (every other member passes
   * through). `lmHead` names the weight whose product is the LM head (token_embd when the embedding is tied).
   */
  wrap<B extends Backend>(b: B, lmHead = "token_embd.weight"): B {
    const timed = <F extends (...a: never[]) => void>(key: (...a: Parameters<F>) => [string, number, number], f: F) => ((...a: Parameters<F>) => {
      const t0 = performance.now();
      f(...a);
      const [k, macs, bytes] = key(...a);
      this.add(k, performance.now() - t0, macs, bytes);
    }) as unknown as F;
    const overrides: Partial<Backend> = {
      matmul: timed(
        (_o: Float32Array, w: Weight, _x: Float32Array, n: number) => [`${w.name === lmHead ? "LM head " : "matmul "}${ggmlTypeName(w.type)}`, w.rows * w.cols * n, w.nbytes],
        (o: Float32Array, w: Weight, x: Float32Array, n: number, batchRows?: number): void => b.matmul(o, w, x, n, batchRows),
      ),
    };
    if (b.attendHead) overrides.attendHead = timed(() => ["attention", 0, 0], b.attendHead.bind(b));
    if (b.attendHeadTiled) overrides.attendHeadTiled = timed(() => ["attention", 0, 0], b.attendHeadTiled.bind(b));
    if (b.geglu) overrides.geglu = timed(() => ["GeGLU", 0, 0], b.geglu.bind(b));
    return new Proxy(b, {
      get(target, prop, receiver) {
        if (prop in overrides) return overrides[prop as keyof Backend];
        const v = Reflect.get(target, prop, receiver);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
  }
}
