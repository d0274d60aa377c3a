// The forward pass over a model held in parts (model/part.ts): the embedding rows of a chunk come from the
// vocabulary parts that hold them, the hidden state goes through the layer parts in order, and the last token's
// final state through every vocabulary part's slice of the LM head, in parallel. A part runs in this process
// (LocalPart) or in another host (a shard: src/hosts/shard-client.ts): the pipeline only sees PartRunner. A model
// in one part is the same code with one runner. The arithmetic of every row is the single-process engine's, so
// where a part runs changes nothing in the logits.
import type { GemmaConfig } from "./config.ts";
import { chunks, type Outputs } from "./model/gemma.ts";
import type { ModelPart, PartSpec, SlotSegment } from "./model/part.ts";

/** A part of the model, wherever it runs. Returned arrays may be views that the next call overwrites. */
export interface PartRunner {
  readonly spec: PartSpec;
  /** Scaled embeddings (n, dim) of tokens inside the part's vocabulary slice. */
  embed(tokens: number[]): Promise<Float32Array> | Float32Array;
  /** One step over rows of several sequences (their hidden states one after another): see ModelPart.layersBatch. */
  layersBatch(x: Float32Array, segs: SlotSegment[]): Promise<{ x: Float32Array; rows: number[] }> | { x: Float32Array; rows: number[] };
  /** The part's slice of the logits for `m` final hidden states (m, dim). */
  headRows(h: Float32Array, m: number): Promise<Float32Array> | Float32Array;
  /** Copy positions [0, n) of slot `from` to slot `to`. */
  copyKv(from: number, to: number, n: number): Promise<void> | void;
  /** Sequence `slot` ended: the part may forget its positions. */
  release(slot: number): Promise<void> | void;
}

/** Tokens of one sequence in a forward step: at positions pos.. of `slot` (see Chunk for batchRows, outputs). */
export interface TokenSegment {
  slot: number;
  tokens: number[];
  pos: number;
  batchRows: number;
  outputs: Outputs;
}

/** A part in this process. */
export class LocalPart implements PartRunner {
  readonly part: ModelPart;
  constructor(part: ModelPart) {
    this.part = part;
  }
  get spec(): PartSpec {
    return this.part.spec;
  }
  embed(tokens: number[]): Float32Array {
    return this.part.embed(tokens);
  }
  release(slot: number): void {
    this.part.release(slot);
  }
  layersBatch(x: Float32Array, segs: SlotSegment[]): { x: Float32Array; rows: number[] } {
    return this.part.layersBatch(x, segs);
  }
  headRows(h: Float32Array, m: number): Float32Array {
    return this.part.headRows(h, m);
  }
  copyKv(from: number, to: number, n: number): void {
    this.part.copyKv(from, to, n);
  }
}

export interface PipelineOptions {
  /** Tokens per chunk: every part is sized for it (a multiple of 4 when it is less than ubatch). */
  chunk: number;
  /** llama.cpp's micro-batch (512): prompts are cut where llama.cpp cuts them. */
  ubatch?: number;
  contextSize: number;
}

export class Pipeline {
  readonly cfg: GemmaConfig;
  /** Parts with layers, in layer order; parts with a vocabulary slice, in vocabulary order. */
  readonly layerParts: PartRunner[];
  readonly vocabParts: PartRunner[];
  readonly runners: PartRunner[];
  private readonly opts: Required<PipelineOptions>;
  get contextSize(): number {
    return this.opts.contextSize;
  }
  private readonly x: Float32Array; //      (chunk, dim) embeddings gathered from several vocabulary parts
  private logits = new Float32Array(0); // (rows, vocabSize) slices gathered from several vocabulary parts

  constructor(cfg: GemmaConfig, runners: PartRunner[], opts: PipelineOptions) {
    this.cfg = cfg;
    this.runners = runners;
    this.opts = { ubatch: 512, ...opts };
    this.layerParts = runners.filter((r) => r.spec.layers).sort((a, b) => a.spec.layers![0] - b.spec.layers![0]);
    this.vocabParts = runners.filter((r) => r.spec.vocab).sort((a, b) => a.spec.vocab![0] - b.spec.vocab![0]);
    cover("layers", this.layerParts.map((r) => r.spec.layers!), cfg.nLayers);
    cover("vocab", this.vocabParts.map((r) => r.spec.vocab!), cfg.vocabSize);
    const several = this.vocabParts.length > 1;
    this.x = new Float32Array(several ? opts.chunk * cfg.dim : 0);
  }

  /** Process `tokens` at positions pos.. of sequence `slot` and return the logits of the last one. */
  async forward(tokens: number[], pos: number, slot = 0): Promise<Float32Array> {
    if (!tokens.length) throw new Error("forward() needs at least one token");
    if (pos + tokens.length > this.opts.contextSize) {
      throw new RangeError(`context full: ${pos + tokens.length} tokens do not fit in a context of ${this.opts.contextSize}`);
    }
    for (const c of chunks(tokens.length, this.opts.ubatch, this.opts.chunk)) {
      const logits = await this.step([{ slot, tokens: tokens.slice(c.start, c.start + c.n), pos: pos + c.start, batchRows: c.batchRows, outputs: c.outputs }]);
      if (c.outputs === "last") return logits;
    }
    throw new Error("unreachable");
  }

  /**
   * One forward step over tokens of several sequences (at most one segment per slot, `chunk` tokens in all):
   * every segment computes as it would alone. Returns the logits of the output rows, (rows, vocabSize) in
   * segment order: one row for "last", every row for "all", none for "none".
   */
  async step(segs: TokenSegment[]): Promise<Float32Array> {
    const { dim, vocabSize } = this.cfg;
    const tokens = segs.flatMap((g) => g.tokens);
    if (!tokens.length || tokens.length > this.opts.chunk) throw new RangeError(`a step needs 1 to ${this.opts.chunk} tokens, got ${tokens.length}`);
    for (const g of segs) {
      if (g.pos + g.tokens.length > this.opts.contextSize) {
        throw new RangeError(`context full: ${g.pos + g.tokens.length} tokens do not fit in a context of ${this.opts.contextSize}`);
      }
    }
    let x = await this.embed(tokens);
    let live = segs.map((g) => ({ slot: g.slot, pos: g.pos, n: g.tokens.length, batchRows: g.batchRows, outputs: g.outputs }));
    for (const part of this.layerParts) {
      if (!live.length) break;
      const r = await part.layersBatch(x, live);
      x = r.x;
      live = live.flatMap((g, i) => (r.rows[i] ? [{ ...g, n: r.rows[i]! }] : []));
    }
    const m = x.length / dim;
    if (m === 0) return new Float32Array(0);
    if (this.vocabParts.length === 1) return this.vocabParts[0]!.headRows(x, m);
    if (this.logits.length < m * vocabSize) this.logits = new Float32Array(m * vocabSize);
    const out = this.logits.subarray(0, m * vocabSize);
    await Promise.all(
      this.vocabParts.map(async (part) => {
        const [v0, v1] = part.spec.vocab!;
        const slice = await part.headRows(x, m);
        for (let r = 0; r < m; r++) out.set(slice.subarray(r * (v1 - v0), (r + 1) * (v1 - v0)), r * vocabSize + v0);
      }),
    );
    return out;
  }

  /** Copy positions [0, n) of slot `from` to slot `to` in every layer part (a shared prompt prefix). */
  async copyKv(from: number, to: number, n: number): Promise<void> {
    await Promise.all(this.layerParts.map((p) => p.copyKv(from, to, n)));
  }

  /** Sequence `slot` ended: tell every part. */
  async release(slot = 0): Promise<void> {
    await Promise.all(this.layerParts.map((p) => p.release(slot)));
  }

  private async embed(ids: number[]): Promise<Float32Array> {
    if (this.vocabParts.length === 1) return this.vocabParts[0]!.embed(ids);
    const { dim } = this.cfg;
    for (const id of ids) if (!(id >= 0 && id < this.cfg.vocabSize)) throw new RangeError(`token id ${id} is outside the vocabulary of ${this.cfg.vocabSize}`);
    // each token's row from the part whose slice holds it, the parts asked at once
    await Promise.all(
      this.vocabParts.map(async (part) => {
        const [v0, v1] = part.spec.vocab!;
        const at = ids.flatMap((id, t) => (id >= v0 && id < v1 ? [t] : []));
        if (!at.length) return;
        const rows = await part.embed(at.map((t) => ids[t]!));
        at.forEach((t, i) => this.x.set(rows.subarray(i * dim, (i + 1) * dim), t * dim));
      }),
    );
    return this.x.subarray(0, ids.length * dim);
  }


}

/** Check that ranges, sorted, cover [0, n) exactly once. */
function cover(what: string, ranges: [number, number][], n: number): void {
  let at = 0;
  for (const [a, b] of ranges) {
    if (a !== at) throw new Error(`the parts' ${what} ranges do not cover [0, ${n}) exactly: [${ranges.map((r) => `[${r}]`).join(", ")}]`);
    at = b;
  }
  if (at !== n) throw new Error(`the parts' ${what} ranges do not cover [0, ${n}) exactly: [${ranges.map((r) => `[${r}]`).join(", ")}]`);
}
