// How a model is split so that every host stays within a memory budget: a plan of parts (model/part.ts), each
// a range of layers or a slice of the vocabulary, sized with the same layout the loader allocates (partBytes),
// for the WebAssembly backend every shard runs. A model that fits the budget is one part: the plan with one
// shard is how an unsharded host runs too.
//
// Budget: the WebAssembly memory of one isolate (weights, KV cache for `sequences` x `contextSize` positions,
// activations of one prefill chunk, the kernels' scratch and tables), in whole 64 KiB pages. A production
// isolate has 128 MB for that *and* the JavaScript heap (Cloudflare Workers limits: "128 MB per isolate,
// including the JavaScript heap and WebAssembly allocations"): the default budget of 100 MB leaves 28 MB for
// the heap of a shard (its code, message buffers and RoPE table).
import { wasmMemoryBytes, wasmScratchBytes, WASM_BASE_BYTES } from "./backend/wasm.ts";
import type { ByteSource } from "./byte-source.ts";
import { GRAMMAR_MEMORY_BYTES } from "./grammar-memory.ts";
import { samplerMemoryBytes } from "./sampler-wasm.ts";
import type { GemmaConfig } from "./config.ts";
import { readModelHeader } from "./model/load.ts";
import { partBytes, partTensors, type PartBytes, type PartSizing, type PartSpec, type TensorLookup } from "./model/part.ts";

export const DEFAULT_BUDGET_MB = 100;
/** Megabytes as Cloudflare writes its limits: 10^6 bytes (the smaller reading of "128 MB"). */
export const MB = 1e6;

export interface ShardPlanOptions {
  /** WebAssembly memory per part, in bytes; undefined: no limit (one part). */
  budgetBytes?: number;
  contextSize: number;
  /**
   * KV slots (default 1): running sequences and those kept for the prompt cache. A model that needs shards is
   * planned for the most slots, at most these, with which every layer fits a part.
   */
  sequences?: number;
  /** The largest prefill chunk wanted (default 512, llama.cpp's micro-batch); the plan may choose a smaller one. */
  maxChunk?: number;
  /**
   * What the host of a one-part plan needs beside the part in its isolate (coordinatorReserveBytes). A whole
   * model is one part only if it fits the budget less this.
   */
  localReserveBytes?: number;
  /** Internal: the model does not fit in one part (skip trying). */
  split?: boolean;
}

/** How every part of a plan is sized (what the loader is given). */
export function planSizing(p: ShardPlan): PartSizing {
  return { contextSize: p.contextSize, sequences: p.sequences, chunk: p.chunk, outputs: Math.min(p.sequences, p.chunk) };
}

export interface PlannedPart {
  index: number;
  spec: PartSpec;
  /** What the part reserves, by kind. */
  bytes: PartBytes;
  /** Its WebAssembly memory: the reservations plus the backend's own page and tables, in whole pages. */
  memoryBytes: number;
}

export interface ShardPlan {
  parts: PlannedPart[];
  /** Tokens per prefill chunk, the same for every part. */
  chunk: number;
  budgetBytes?: number;
  contextSize: number;
  sequences: number;
}

/** A budget in MB as bytes (what every host that plans uses, so that their plans agree). */
export function budgetBytes(mb: number): number {
  return Math.floor(mb * MB);
}

/**
 * The plan for a model file, read from its header, with the settings a coordinator plans with (CONTEXT_SIZE,
 * MAX_BATCH): `npm start`, `gemma-edge deploy` and `shard-plan` use this, so their plan is the coordinator's.
 */
export async function planModel(src: ByteSource, o: { budgetMb?: number; contextSize?: number; maxBatch?: number; sequences?: number }): Promise<ShardPlan> {
  const header = await readModelHeader(src, { contextSize: o.contextSize, maxBatch: o.maxBatch });
  return planShards(header.cfg, (n) => header.gguf.tensors.get(n), {
    budgetBytes: o.budgetMb === undefined ? undefined : budgetBytes(o.budgetMb), contextSize: header.contextSize, sequences: o.sequences, maxChunk: header.maxBatch,
    localReserveBytes: coordinatorReserveBytes(header.cfg.vocabSize),
  });
}

/**
 * The WebAssembly memory a coordinator holds beside a part of the model: the grammar engine's (grammar.ts
 * GRAMMAR_MEMORY_BYTES) and the sampler kernels' (sampler-wasm.ts, 4.6 MB at 256k ids).
 */
export function coordinatorReserveBytes(vocabSize: number): number {
  return GRAMMAR_MEMORY_BYTES + samplerMemoryBytes(vocabSize);
}

export class PlanError extends Error {
  override name = "PlanError";
}

/** The smaller chunks a plan may choose: multiples of 4 (see model/gemma.ts chunks()). */
const CHUNKS = [256, 128, 64, 32, 16, 8, 4];
/** Vocabulary slices are whole multiples of this many rows (the repacked layouts group 4 or 8 rows). */
const SLICE_ROWS = 64;

export function planShards(cfg: GemmaConfig, lookup: TensorLookup, o: ShardPlanOptions): ShardPlan {
  const sequences = o.sequences ?? 1;
  const maxChunk = Math.max(1, Math.min(o.maxChunk ?? 512, o.contextSize));
  const sizeFor = (spec: PartSpec, chunk: number, n: number) => {
    const sizing: PartSizing = { contextSize: o.contextSize, sequences: n, chunk, outputs: Math.min(n, chunk) };
    const bytes = partBytes(cfg, partTensors(cfg, lookup, spec), spec, sizing, wasmScratchBytes);
    return { bytes, memoryBytes: wasmMemoryBytes(WASM_BASE_BYTES + bytes.total) };
  };
  const size = (spec: PartSpec, chunk: number) => sizeFor(spec, chunk, sequences);
  const plan = (specs: PartSpec[], chunk: number, n = sequences): ShardPlan => ({
    parts: specs.map((spec, index) => ({ index, spec, ...sizeFor(spec, chunk, n) })),
    chunk, budgetBytes: o.budgetBytes, contextSize: o.contextSize, sequences: n,
  });
  const budget = o.budgetBytes;
  const whole: PartSpec = { layers: [0, cfg.nLayers], vocab: [0, cfg.vocabSize] };
  const candidates = [maxChunk, ...CHUNKS.filter((c) => c < maxChunk)];
  if (budget === undefined) return plan([whole], maxChunk);
  if (!o.split) {
    // one part if it fits with any chunk and as many of the KV slots asked for as fit, down to one sequence: a
    // smaller chunk, or fewer sequences at once, costs less than a hop per token
    const local = budget - (o.localReserveBytes ?? 0);
    for (let n = sequences; n >= 1; n--) {
      for (const chunk of candidates) if (sizeFor(whole, chunk, n).memoryBytes <= local) return plan([whole], chunk, n);
    }
    // shards: the most sequences (at most those asked for) for which the model can be split at all
    for (let n = sequences; n > 1; n--) {
      try {
        return planShards(cfg, lookup, { ...o, sequences: n, split: true });
      } catch (e) {
        if (!(e instanceof PlanError)) throw e;
      }
    }
    if (sequences > 1) return planShards(cfg, lookup, { ...o, sequences: 1, split: true });
  }

  // layers: contiguous ranges packed greedily, for the largest chunk that needs no more parts than the smallest
  const fits = (spec: PartSpec, chunk: number) => size(spec, chunk).memoryBytes <= budget;
  const pack = (chunk: number): PartSpec[] | undefined => {
    const out: PartSpec[] = [];
    for (let a = 0; a < cfg.nLayers; ) {
      if (!fits({ layers: [a, a + 1] }, chunk)) return undefined;
      let b = a + 1;
      while (b < cfg.nLayers && fits({ layers: [a, b + 1] }, chunk)) b++;
      out.push({ layers: [a, b] });
      a = b;
    }
    return out;
  };
  // the vocabulary: as few equal slices (whole multiples of 64 rows) as fit
  const groups = Math.ceil(cfg.vocabSize / SLICE_ROWS);
  const slice = (chunk: number): PartSpec[] | undefined => {
    for (let k = 1; k <= groups; k++) {
      const per = Math.ceil(groups / k) * SLICE_ROWS;
      if (!fits({ vocab: [0, Math.min(per, cfg.vocabSize)] }, chunk)) continue;
      const slices: PartSpec[] = [];
      for (let v = 0; v < cfg.vocabSize; v += per) slices.push({ vocab: [v, Math.min(v + per, cfg.vocabSize)] });
      return slices;
    }
    return undefined;
  };
  // the chunk: the largest of those that need the fewest parts
  let best: { chunk: number; specs: PartSpec[] } | undefined;
  for (const chunk of candidates) {
    const layers = pack(chunk);
    const vocab = layers && slice(chunk);
    if (vocab && (!best || layers!.length + vocab.length < best.specs.length)) best = { chunk, specs: [...layers!, ...vocab] };
  }
  if (best) return plan(best.specs, best.chunk);
  if (!pack(4)) throw new PlanError(overBudget(cfg, lookup, o, size, 4));
  const one = size({ vocab: [0, SLICE_ROWS] }, 4);
  throw new PlanError(
    `token_embd.weight cannot be split to fit the budget of ${fmtMB(budget)}: a slice of ${SLICE_ROWS} rows already needs ` +
      `${fmtMB(one.memoryBytes)} of WebAssembly memory (${describe(one.bytes)})`,
  );
}

/** Why no layer fits: the first layer that does not, with its largest tensor, its KV and its activations. */
function overBudget(
  cfg: GemmaConfig, lookup: TensorLookup, o: ShardPlanOptions,
  size: (spec: PartSpec, chunk: number) => { bytes: PartBytes; memoryBytes: number }, chunk: number,
): string {
  for (let l = 0; l < cfg.nLayers; l++) {
    const s = size({ layers: [l, l + 1] }, chunk);
    if (s.memoryBytes <= o.budgetBytes!) continue;
    const biggest = partTensors(cfg, lookup, { layers: [l, l + 1] }).reduce((a, b) => (b.nbytes > a.nbytes ? b : a));
    return (
      `layer ${l} does not fit the budget of ${fmtMB(o.budgetBytes!)} even alone with a ${chunk}-token chunk: it needs ` +
      `${fmtMB(s.memoryBytes)} of WebAssembly memory (${describe(s.bytes)}; its largest tensor, ${biggest.name}, is ${fmtMB(biggest.nbytes)}; ` +
      `KV for ${o.sequences ?? 1} sequence(s) of ${o.contextSize} positions). Raise the budget, or lower the context size or the sequences.`
    );
  }
  return `no layer packing fits the budget of ${fmtMB(o.budgetBytes!)}`;
}

function describe(b: PartBytes): string {
  return `weights ${fmtMB(b.weights)}, KV ${fmtMB(b.kv)}, activations ${fmtMB(b.activations)}, scratch ${fmtMB(b.scratch)}`;
}

export function fmtMB(bytes: number): string {
  return `${(bytes / MB).toFixed(bytes < 10 * MB ? 2 : 1)} MB`;
}

/** One line per part, for `npm start` and `gemma-edge shard-plan`. */
export function describePlan(p: ShardPlan): string {
  const head = p.budgetBytes === undefined
    ? `one part (no budget): ${fmtMB(p.parts[0]!.memoryBytes)} of WebAssembly memory`
    : `${p.parts.length} part(s) for a budget of ${fmtMB(p.budgetBytes)} each, prefill chunks of ${p.chunk} tokens, KV for ${p.sequences} sequence(s) of ${p.contextSize} positions`;
  const lines = p.parts.map((s) => {
    const what = [s.spec.layers && `layers [${s.spec.layers[0]}, ${s.spec.layers[1]})`, s.spec.vocab && `vocab [${s.spec.vocab[0]}, ${s.spec.vocab[1]})`].filter(Boolean).join(" + ");
    return `  shard ${s.index}: ${what.padEnd(34)} ${fmtMB(s.memoryBytes).padStart(9)} (${describe(s.bytes)})`;
  });
  return [head, ...lines].join("\n");
}
