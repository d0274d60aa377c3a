// Keys and values of past positions, f16 as in llama.cpp's default cache, one (seqLen, nKvHeads*headDim)
// matrix per layer, in the backend's arena. One cache per sequence; the model holds none.
import type { Backend } from "../backend/backend.ts";
import type { GemmaConfig } from "../config.ts";

export class KvCache {
  readonly k: Uint16Array[] = [];
  readonly v: Uint16Array[] = [];
  private readonly offsets: number[] = [];

  /** Reserve space in the arena (before the backend commits); `views()` binds it afterwards. */
  private readonly backend: Backend;
  readonly cfg: GemmaConfig;
  readonly seqLen: number;
  constructor(backend: Backend, cfg: GemmaConfig, seqLen: number) {
    this.backend = backend;
    this.cfg = cfg;
    this.seqLen = seqLen;
    const kvDim = cfg.nKvHeads * cfg.headDim;
    for (let l = 0; l < cfg.nLayers * 2; l++) this.offsets.push(backend.reserve(seqLen * kvDim * 2));
  }

  static bytes(cfg: GemmaConfig, seqLen: number): number {
    return cfg.nLayers * 2 * seqLen * cfg.nKvHeads * cfg.headDim * 2;
  }

  bind(): this {
    const n = this.seqLen * this.cfg.nKvHeads * this.cfg.headDim;
    for (let l = 0; l < this.cfg.nLayers; l++) {
      this.k.push(this.backend.u16(this.offsets[2 * l]!, n));
      this.v.push(this.backend.u16(this.offsets[2 * l + 1]!, n));
    }
    return this;
  }
}
