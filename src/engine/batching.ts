// Continuous batching with a prompt cache (after llama.cpp's server slots and TGI's router): requests wait in a
// queue, up to `maxBatchSize` of them run at once, each in a KV slot of the model. Every forward step carries
// one decode token of each running sequence and a chunk of at most `prefillChunk` tokens of prompts still being
// read, so a long new prompt never stalls the running streams for its whole length. A request joins at the
// next step and leaves at once when it ends or is cancelled.
//
// Batch invariance: each segment of a step computes exactly as the single-sequence engine computes it (see
// Gemma.layersBatch): decode tokens as one-token products, prompt chunks as parts of llama.cpp's 512-token
// micro-batches, cut at the same places. So a request's tokens do not depend on what else runs beside it.
//
// Prompt cache: a finished sequence's slot keeps its KV ("kept") until the slot is needed (least recently used
// first). A new request starts from the longest prefix it shares with any slot: a kept slot is taken over, a
// running one's prefix is copied. Reused KV was computed for another request's micro-batches (and generated
// tokens by decode steps), so a cached run may differ from an uncached one in the last bits, as with llama.cpp's
// cache_prompt; `cachePrompt: false` reproduces the uncached run bit for bit.
import type { DoneEvent, GenerateRequest, TokenEvent } from "./generate.ts";
import { Decoding } from "./generate.ts";
import type { BatchModel } from "./model/load.ts";
import type { TokenSegment } from "./pipeline.ts";
import type { Tokenizer } from "./tokenizer.ts";

/** llama.cpp's micro-batch: prompts are cut where llama.cpp cuts them. */
const UBATCH = 512;

export interface BatchRequest extends Pick<GenerateRequest, "sampling" | "stop" | "topLogprobs" | "logprobs" | "constraint"> {
  promptIds: number[];
  maxTokens: number;
  /** Start from the longest cached prefix (default true). */
  cachePrompt?: boolean;
}

/** What a request sees: it got a slot (with how many prompt tokens came from the cache), its tokens, its end. */
export type BatchEvent =
  | { type: "started"; cachedTokens: number }
  | TokenEvent
  | (DoneEvent & { cachedTokens: number })
  | { type: "error"; message: string };

export interface BatchOptions {
  /** Sequences that run at once (TGI's max_batch_size). */
  maxBatchSize: number;
  /** Prompt tokens per step (a multiple of 4). */
  prefillChunk: number;
  /** Keep finished sequences' KV for later requests that share their prefix. */
  promptCache: boolean;
}

export interface StepInfo {
  sequences: number;
  decodeTokens: number;
  prefillTokens: number;
  ms: number;
}

interface Slot {
  index: number;
  state: "free" | "running" | "kept";
  /** The tokens whose keys and values the slot holds, in position order. */
  tokens: number[];
  /**
   * The highest position its KV cache was written to plus one, since it last started from position 0: a
   * sliding-window ring may still hold positions of a longer sequence the slot had before its prefix was reused.
   */
  extent: number;
  lastUsed: number;
}

interface Sequence {
  req: BatchRequest;
  emit: (ev: BatchEvent) => void;
  slot?: Slot;
  /** Position of the next token to compute; prompt positions [start, prompt length) are computed in this request. */
  pos: number;
  start: number;
  cached: number;
  decoding?: Decoding;
  cancelled: boolean;
  /** Started over after a failed step (see step()). */
  restarted?: boolean;
}

export interface SequenceHandle {
  /** Stop the request: a queued one leaves the queue at once, a running one frees its slot at the next step. */
  cancel(): void;
}

export class BatchScheduler {
  readonly model: BatchModel;
  readonly opts: BatchOptions;
  private readonly tokenizer: Tokenizer;
  private readonly slots: Slot[];
  private readonly waiting: Sequence[] = [];
  private readonly running: Sequence[] = [];
  private looping = false;
  private clock = 0;
  /** Called after every step (metrics). */
  onStep?: (info: StepInfo) => void;

  constructor(model: BatchModel, tokenizer: Tokenizer, opts: BatchOptions) {
    if (!(Number.isInteger(opts.prefillChunk) && opts.prefillChunk >= 4 && opts.prefillChunk % 4 === 0)) {
      throw new RangeError(`the prefill chunk must be a positive multiple of 4 tokens, got ${opts.prefillChunk}`);
    }
    if (!(Number.isInteger(opts.maxBatchSize) && opts.maxBatchSize >= 1)) throw new RangeError(`the batch size must be a positive integer, got ${opts.maxBatchSize}`);
    this.model = model;
    this.tokenizer = tokenizer;
    const maxBatchSize = Math.min(opts.maxBatchSize, model.slots, model.maxOutputs, model.maxStepTokens - 4);
    this.opts = { ...opts, maxBatchSize: Math.max(1, maxBatchSize) };
    this.slots = Array.from({ length: model.slots }, (_, index) => ({ index, state: "free" as const, tokens: [], extent: 0, lastUsed: 0 }));
  }

  /** Requests waiting for a slot. */
  get queued(): number {
    return this.waiting.length;
  }

  /** Requests running. */
  get active(): number {
    return this.running.length;
  }

  /** Positions held by kept (finished, cached) sequences, and by all slots. */
  get kvUse(): { kept: number; total: number; slots: number; keptSlots: number } {
    let kept = 0, total = 0, keptSlots = 0;
    for (const s of this.slots) {
      total += s.tokens.length;
      if (s.state === "kept") (kept += s.tokens.length), keptSlots++;
    }
    return { kept, total, slots: this.slots.length, keptSlots };
  }

  /** Queue a request; its events go to `emit` (synchronously, from the step loop). */
  submit(req: BatchRequest, emit: (ev: BatchEvent) => void): SequenceHandle {
    if (!req.promptIds.length) throw new RangeError("the prompt is empty");
    const seq: Sequence = { req, emit, pos: 0, start: 0, cached: 0, cancelled: false };
    this.waiting.push(seq);
    this.kick();
    return {
      cancel: () => {
        if (seq.cancelled) return;
        seq.cancelled = true;
        const at = this.waiting.indexOf(seq);
        if (at < 0) return; // running: it leaves at the end of the current step
        this.waiting.splice(at, 1); // never cost a prefill
        req.constraint?.dispose();
        emit({ type: "done", finishReason: "abort", text: "", promptTokens: req.promptIds.length, completionTokens: 0, cachedTokens: 0 });
      },
    };
  }

  private kick(): void {
    if (this.looping) return;
    this.looping = true;
    // the first step waits a turn: requests that arrive together start together, and their responses begin
    setTimeout(() => void this.loop(), 0);
  }

  /** Steps while anything runs; `looping` turns false in the same turn as the last check (a submit then kicks). */
  private async loop(): Promise<void> {
    try {
      for (;;) {
        this.sweep();
        await this.admit();
        if (!this.running.length) {
          this.looping = false;
          return;
        }
        await this.step();
        // health probes, keep-alives, disconnects and new requests get their turn between steps
        await new Promise((r) => setTimeout(r, 0));
      }
    } catch (e) {
      // a bug, not a model error (step() catches those): fail what runs, and start again with what waits
      for (const s of this.running.slice()) {
        s.emit({ type: "error", message: (e as Error).message });
        this.finish(s, true);
      }
      this.looping = false;
      if (this.waiting.length) this.kick();
    }
  }

  /** Running sequences that were cancelled leave, their slots kept for the prefix they computed. */
  private sweep(): void {
    for (const s of this.running.slice()) if (s.cancelled) this.finish(s);
  }

  /** Give waiting requests slots while there is room, each starting from its longest cached prefix. */
  private async admit(): Promise<void> {
    while (this.waiting.length && this.running.length < this.opts.maxBatchSize) {
      const seq = this.waiting.shift()!;
      const prompt = seq.req.promptIds;
      const limit = prompt.length - 1; // the last prompt token is always computed: its logits are the first output
      let best: Slot | undefined, bestLen = 0;
      if (this.opts.promptCache && seq.req.cachePrompt !== false) {
        for (const s of this.slots) {
          if (s.state === "free") continue;
          let n = commonPrefix(s.tokens, prompt, limit);
          if (n > 0 && this.model.canReuse && !this.model.canReuse(s.extent, n)) n = 0; // its rings have moved on
          if (n > bestLen) (best = s), (bestLen = n);
        }
      }
      // a kept sequence whose tokens this prompt mostly repeats (half or more: the next turn of its chat) is taken
      // over; otherwise the prefix is copied into a free slot, or into the least recently used kept one
      let slot: Slot;
      if (best && best.state === "kept" && bestLen * 2 >= best.tokens.length) slot = best;
      else {
        slot = this.slots.find((s) => s.state === "free")
          ?? this.slots.filter((s) => s.state === "kept" && s !== best).sort((a, b) => a.lastUsed - b.lastUsed)[0]
          ?? best!;
        if (slot !== best && best && bestLen > 0) {
          try {
            await this.model.copyKv(best.index, slot.index, bestLen);
            slot.extent = best.extent; // the whole ring came along
          } catch {
            bestLen = 0; // the prompt is computed whole instead
          }
        } else if (slot !== best) bestLen = 0;
      }
      slot.state = "running";
      slot.tokens = prompt.slice(0, bestLen);
      slot.lastUsed = ++this.clock;
      Object.assign(seq, { slot, pos: bestLen, start: bestLen, cached: bestLen });
      seq.decoding = new Decoding(this.tokenizer, seq.req, prompt.length, seq.req.maxTokens, prompt);
      this.running.push(seq);
      seq.emit({ type: "started", cachedTokens: bestLen });
      if (seq.cancelled) this.finish(seq);
    }
  }

  /** One forward step: a decode token of every decoding sequence, then prompt chunks within the budget. */
  private async step(): Promise<void> {
    const segs: TokenSegment[] = [];
    const owners: Sequence[] = [];
    const decoding = this.running.filter((s) => s.pos >= s.req.promptIds.length);
    for (const s of decoding) {
      segs.push({ slot: s.slot!.index, tokens: [s.decoding!.next], pos: s.pos, batchRows: 1, outputs: "last" });
      owners.push(s);
    }
    let budget = Math.min(this.opts.prefillChunk, this.model.maxStepTokens - segs.length);
    let prefill = 0;
    for (const s of this.running) {
      const L = s.req.promptIds.length;
      if (s.pos >= L || budget <= 0) continue;
      // the llama.cpp micro-batch this position belongs to, counted from where this request's computing starts
      const mbStart = s.start + Math.floor((s.pos - s.start) / UBATCH) * UBATCH;
      const mbEnd = Math.min(mbStart + UBATCH, L);
      const rest = mbEnd - s.pos;
      const n = rest <= budget ? rest : budget - (budget % 4);
      if (n <= 0) break;
      segs.push({ slot: s.slot!.index, tokens: s.req.promptIds.slice(s.pos, s.pos + n), pos: s.pos, batchRows: mbEnd - mbStart, outputs: s.pos + n === L ? "last" : "none" });
      owners.push(s);
      budget -= n;
      prefill += n;
    }
    const t0 = Date.now();
    let logits: Float32Array;
    try {
      logits = await this.model.step(segs);
    } catch (e) {
      // a part may have restarted and lost its KV (a shard evicted): no kept prefix can be trusted now. Sequences of
      // the step that have produced nothing yet start over from position 0, once; the others get the error.
      for (const slot of this.slots) if (slot.state === "kept") Object.assign(slot, { state: "free", tokens: [] });
      for (const s of owners) {
        if (s.decoding!.generated === 0 && !s.restarted) {
          Object.assign(s, { restarted: true, pos: 0, start: 0, cached: 0 });
          s.slot!.tokens = [];
          continue;
        }
        s.emit({ type: "error", message: (e as Error).message });
        this.finish(s, true);
      }
      return;
    }
    const vocab = logits.length / Math.max(1, segs.filter((g) => g.outputs === "last").length);
    let row = 0;
    for (const [i, g] of segs.entries()) {
      const s = owners[i]!;
      const slot = s.slot!;
      if (s.pos === 0) slot.extent = 0; // written from position 0: nothing older is left where it is read
      slot.tokens.push(...g.tokens);
      s.pos += g.tokens.length;
      slot.extent = Math.max(slot.extent, s.pos);
      if (g.outputs !== "last") continue;
      const out = logits.subarray(row * vocab, (row + 1) * vocab);
      row++;
      if (s.cancelled) continue;
      const d = s.decoding!;
      let events: ReturnType<Decoding["accept"]>;
      try {
        if (d.needsMask) await d.ready(); // a constrained sequence's mask (grammar.ts)
        events = d.accept(out);
      } catch (e) {
        s.emit({ type: "error", message: (e as Error).message });
        this.finish(s, true);
        continue;
      }
      for (const ev of events) s.emit(ev.type === "done" ? { ...ev, cachedTokens: s.cached } : ev);
      if (d.finished) this.finish(s);
    }
    this.onStep?.({ sequences: owners.length, decodeTokens: decoding.length, prefillTokens: prefill, ms: Date.now() - t0 });
  }

  /** A sequence leaves: its slot keeps its KV for the prompt cache (or is emptied). */
  private finish(s: Sequence, empty = false): void {
    const at = this.running.indexOf(s);
    if (at < 0) return;
    this.running.splice(at, 1);
    if (s.cancelled && !s.decoding?.finished && !empty) s.emit({ ...s.decoding!.abort(), cachedTokens: s.cached });
    s.req.constraint?.dispose(); // (never throws: grammar.ts)
    const slot = s.slot!;
    slot.lastUsed = ++this.clock;
    if (this.opts.promptCache && !empty) slot.state = "kept";
    else {
      slot.state = "free";
      slot.tokens = [];
      void this.model.release(slot.index).catch(() => {});
    }
  }
}

/** Length of the common prefix of a and b, at most `limit`. */
function commonPrefix(a: number[], b: number[], limit: number): number {
  const n = Math.min(a.length, b.length, limit);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/**
 * A model that runs one sequence at a time (WebGPU, a sharded pipeline) as a BatchModel of one slot: each step
 * is one segment, a whole micro-batch of a prompt or a decode token, on the model's own forward().
 */
export function singleSequenceBatch(m: { forward(tokens: number[], pos: number): Float32Array | Promise<Float32Array>; release?(): void | Promise<void> }): BatchModel {
  return {
    slots: 1,
    maxStepTokens: UBATCH,
    maxOutputs: 1,
    async step(segs) {
      if (segs.length !== 1) throw new Error("this model runs one sequence per step");
      const g = segs[0]!;
      const logits = await m.forward(g.tokens, g.pos);
      return g.outputs === "last" ? logits : new Float32Array(0);
    },
    async copyKv() {
      throw new Error("this model holds one sequence");
    },
    async release() {
      await m.release?.();
    },
  };
}

/** Scheduler settings for a single-sequence model: prompts in whole micro-batches, as forward() cuts them. */
export const SINGLE_SEQUENCE: Pick<BatchOptions, "maxBatchSize" | "prefillChunk"> = { maxBatchSize: 1, prefillChunk: UBATCH };
