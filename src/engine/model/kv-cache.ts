// Keys and values of past positions, f16 as in llama.cpp's default cache, one (seqLen, nKvHeads*headDim)
// matrix per layer, in the backend's arena. One cache per sequence, over the layers of the part that holds it
// (a shard of layers [from, to) keeps k[l], v[l] for those l only); the model holds none.
import type { Backend } from "../backend/backend.ts";
import type { GemmaConfig } from "../config.ts";

export class KvCache {
  /** k[l], v[l]: (seqLen, kvDim) f16 bit patterns, for the layers held; undefined for the others. */
  readonly k: Uint16Array[] = [];
  readonly v: Uint16Array[] = [];
  private readonly offsets: number[] = [];

  /** Reserve space in the arena (before the backend commits); `bind()` makes the views afterwards. */
  private readonly backend: Backend;
  readonly cfg: GemmaConfig;
  readonly seqLen: number;
  readonly from: number;
  readonly to: number;
  constructor(backend: Backend, cfg: GemmaConfig, seqLen: number, from = 0, to = cfg.nLayers) {
    this.backend = backend;
    this.cfg = cfg;
    this.seqLen = seqLen;
    this.from = from;
    this.to = to;
    const bytes = KvCache.layerBytes(cfg, seqLen) / 2;
    for (let l = from; l < to; l++) this.offsets.push(backend.reserve(bytes), backend.reserve(bytes));
  }

  /** Bytes of one layer's keys and values for `seqLen` positions. */
  static layerBytes(cfg: GemmaConfig, seqLen: number): number {
    return 2 * seqLen * cfg.nKvHeads * cfg.headDim * 2;
  }

  bind(): this {
    const n = this.seqLen * this.cfg.nKvHeads * this.cfg.headDim;
    for (let l = this.from; l < this.to; l++) {
      const i = 2 * (l - this.from);
      this.k[l] = this.backend.u16(this.offsets[i]!, n);
      this.v[l] = this.backend.u16(this.offsets[i + 1]!, n);
    }
    return this;
  }
}
