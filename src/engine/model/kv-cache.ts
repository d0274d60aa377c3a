// Keys and values of past positions, f16 as in llama.cpp's default cache, one (cells, nKvHeads*headDim) matrix
// per layer, in the backend's arena. A global layer has a cell per position of the context; a sliding-window
// layer a ring that holds its last positions (position p in cell p % cells; config.ts layerCells). One cache
// per sequence, over the layers of the part that holds it (a shard of layers [from, to) keeps k[l], v[l] for
// those l only); the model holds none.
import type { Backend } from "../backend/backend.ts";
import { layerCells, type GemmaConfig } from "../config.ts";

export class KvCache {
  /** k[l], v[l]: (cells[l], kvDim) f16 bit patterns, for the layers held; undefined for the others. */
  readonly k: Uint16Array[] = [];
  readonly v: Uint16Array[] = [];
  /** cells[l]: rows of k[l] and v[l]. */
  readonly cells: number[] = [];
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
    for (let l = from; l < to; l++) {
      this.cells[l] = layerCells(cfg, l, seqLen);
      const bytes = KvCache.layerBytes(cfg, l, seqLen) / 2;
      this.offsets.push(backend.reserve(bytes), backend.reserve(bytes));
    }
  }

  /** Bytes of layer l's keys and values for a context of `seqLen` positions. */
  static layerBytes(cfg: GemmaConfig, l: number, seqLen: number): number {
    return 2 * layerCells(cfg, l, seqLen) * cfg.nKvHeads * cfg.headDim * 2;
  }

  /** Bytes of one sequence's keys and values over layers [from, to). */
  static bytes(cfg: GemmaConfig, seqLen: number, from = 0, to = cfg.nLayers): number {
    let n = 0;
    for (let l = from; l < to; l++) n += KvCache.layerBytes(cfg, l, seqLen);
    return n;
  }

  bind(): this {
    const kvDim = this.cfg.nKvHeads * this.cfg.headDim;
    for (let l = this.from; l < this.to; l++) {
      const i = 2 * (l - this.from);
      this.k[l] = this.backend.u16(this.offsets[i]!, this.cells[l]! * kvDim);
      this.v[l] = this.backend.u16(this.offsets[i + 1]!, this.cells[l]! * kvDim);
    }
    return this;
  }

  /**
   * Copy the first `n` positions of `src` (the same layers), whose highest position written is `length` - 1, into
   * this cache: on a ring that has wrapped, every cell (positions at or past n that it holds are overwritten
   * before any query reads them; see canReuse).
   */
  copyFrom(src: KvCache, n: number, length: number): void {
    const kvDim = this.cfg.nKvHeads * this.cfg.headDim;
    for (let l = this.from; l < this.to; l++) {
      const rows = length > this.cells[l]! ? this.cells[l]! : n;
      this.k[l]!.set(src.k[l]!.subarray(0, rows * kvDim));
      this.v[l]!.set(src.v[l]!.subarray(0, rows * kvDim));
    }
  }
}

/**
 * Whether the first `prefix` positions of a slot can be kept for a new request that continues from there, when
 * the slot's cache was written up to position `length` - 1 (the highest since it last started at 0: after a
 * prefix was taken over, the ring may still hold the longer sequence's positions). A ring of c cells holds
 * positions length - c ..; the new queries need the `window` before `prefix`, and a cell that still holds a
 * position at or past `prefix` must hold one that no new query sees: both hold when prefix >= length - c + window
 * (or when nothing has wrapped yet).
 */
export function canReuse(cfg: GemmaConfig, seqLen: number, length: number, prefix: number): boolean {
  for (let l = 0; l < cfg.nLayers; l++) {
    const c = layerCells(cfg, l, seqLen);
    if (length > c && prefix < length - c + cfg.window) return false;
  }
  return true;
}
