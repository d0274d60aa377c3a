// Next-token choice from logits, in llama.cpp's default order: logit bias -> penalties -> grammar mask -> top-k ->
// top-p -> min-p -> temperature -> draw. Temperature 0 is greedy (argmax, lowest id on ties). A seed makes draws repeatable.
// Log-probabilities reported to callers are those of the model's own distribution (softmax of the raw logits).
// Cost: one pass over the logits for their log-sum-exp (the reported logprobs), a pass or two more for a draw;
// nothing sorts the vocabulary: top-k selects its k, top-p buckets the mass by logit and sorts only the bucket
// where the mass crosses p, and a draw walks its candidates in id order (the same distribution as walking them
// sorted; with top-k they stay sorted, as before). The plain version of this sampler, which sorted everything, is
// kept as the twin the tests compare it with (test/helpers/sampler-reference.ts). The passes over the whole
// vocabulary (max, exp weights, top-p's buckets, the draw's walk) are a VocabPasses: in WebAssembly where the host
// provided the kernels (sampler-wasm.ts), else JsPasses below.
import { NUCLEUS_BUCKETS, samplerKernels } from "./sampler-wasm.ts";

export interface SamplingParams {
  temperature: number; //       0 = greedy
  topK: number; //              0 = off
  topP: number; //              1 = off
  minP: number; //              0 = off
  repetitionPenalty: number; // 1 = off (llama.cpp/CTRL form: divide positive logits, multiply negative)
  frequencyPenalty: number; //  0 = off (OpenAI form: minus count * penalty)
  presencePenalty: number; //   0 = off (minus penalty once a token has appeared)
  seed?: number;
  /** [token id, bias] pairs added to the logits before anything else (OpenAI's logit_bias). */
  logitBias?: [number, number][];
}

export const DEFAULT_SAMPLING: SamplingParams = {
  temperature: 1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, frequencyPenalty: 0, presencePenalty: 0,
};

export interface TokenChoice {
  id: number;
  logprob: number;
  /** The most likely alternatives (by the model's distribution), when asked for. */
  top: { id: number; logprob: number }[];
}

/**
 * The distribution a draw is made from: candidate ids (null: every id, in order) and their weights, which sum
 * to `total` (normalize to get probabilities). Weights over every id may live in the sampler kernels' memory
 * (sampler-wasm.ts): they hold until the next sampling call in the isolate.
 */
export interface Candidates {
  ids: Int32Array | null;
  weights: Float64Array;
  total: number;
  /** log sum_i exp(l_i) over every id, when the draw computed it on the way (max l + the log of its softmax sum). */
  logSumExp?: number;
}

/** A small, fast, seedable PRNG (mulberry32). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Top-p without sorting (Sampler.nucleus): buckets over this many nats below the best logit (exp(-64) ~ 1.6e-28). */
const NUCLEUS_RANGE = 64;

/**
 * The sampler's passes over every id of the logits last loaded: in WebAssembly (sampler-wasm.ts SoftmaxKernels,
 * one per isolate) or in JavaScript (JsPasses, one per sampler). Their arrays hold until the next load.
 */
export interface VocabPasses {
  /** Take the logits the following calls read. */
  load(l: Float32Array): void;
  /** The largest logit (-Infinity for none; NaN is passed over). */
  max(): number;
  /** sum of exp((x - m) / t) over the logits x >= cut (0 for the others), kept in `weights` when `store`. */
  expSum(m: number, t: number, cut: number, store: boolean): number;
  readonly weights: Float64Array;
  /** Top-p's bucket of each logit (`bucketOf`) over `range` below m, `scale` buckets a unit, and each bucket's mass of `weights`. */
  buckets(m: number, scale: number, range: number): void;
  readonly bucketOf: Uint16Array;
  readonly mass: Float64Array;
  /** The ids in buckets below c, ascending, and those in bucket c. */
  select(c: number): { kept: ArrayLike<number>; crossing: number[] };
  /** A draw from `weights`, r a uniform number times their total (walk). */
  pick(r: number): number;
}

/** The passes in JavaScript: where no host provided the kernels. */
class JsPasses implements VocabPasses {
  private l: Float32Array = new Float32Array(0);
  weights = new Float64Array(0);
  bucketOf = new Uint16Array(0);
  mass = new Float64Array(NUCLEUS_BUCKETS + 1); // the last: everything further below

  load(l: Float32Array): void {
    this.l = l;
  }

  max(): number {
    return maxOf(this.l);
  }

  expSum(m: number, t: number, cut: number, store: boolean): number {
    const l = this.l;
    if (store && this.weights.length !== l.length) this.weights = new Float64Array(l.length);
    // a loop per case: a test inside the loop costs V8 half again
    const w = this.weights, n = l.length;
    let total = 0;
    if (store && t === 1) for (let i = 0; i < n; i++) total += w[i] = l[i]! >= cut ? Math.exp(l[i]! - m) : 0;
    else if (store) for (let i = 0; i < n; i++) total += w[i] = l[i]! >= cut ? Math.exp((l[i]! - m) / t) : 0;
    else if (t === 1) for (let i = 0; i < n; i++) total += l[i]! >= cut ? Math.exp(l[i]! - m) : 0;
    else for (let i = 0; i < n; i++) total += l[i]! >= cut ? Math.exp((l[i]! - m) / t) : 0;
    return total;
  }

  buckets(m: number, scale: number, range: number): void {
    const l = this.l, w = this.weights, mass = this.mass;
    if (this.bucketOf.length !== l.length) this.bucketOf = new Uint16Array(l.length);
    mass.fill(0);
    for (let i = 0; i < l.length; i++) {
      const v = l[i]!;
      const b = v > m - range ? Math.min(NUCLEUS_BUCKETS - 1, Math.floor((m - v) * scale)) : NUCLEUS_BUCKETS;
      this.bucketOf[i] = b;
      mass[b]! += w[i]!;
    }
  }

  select(c: number): { kept: number[]; crossing: number[] } {
    const kept: number[] = [];
    const crossing: number[] = [];
    for (let i = 0; i < this.l.length; i++) {
      const b = this.bucketOf[i]!;
      if (b < c) kept.push(i);
      else if (b === c) crossing.push(i);
    }
    return { kept, crossing };
  }

  pick(r: number): number {
    return walk(this.weights, r);
  }
}

export class Sampler {
  private readonly rand: () => number;
  readonly params: SamplingParams;
  /** The passes where no kernels were provided (their arrays reused across steps). */
  private js: JsPasses | undefined;
  /** The penalized (or masked) copy of the logits, reused across steps. */
  private scratch = new Float32Array(0);

  constructor(params: SamplingParams) {
    this.params = params;
    this.rand = mulberry32(params.seed ?? Math.floor(Math.random() * 2 ** 32));
  }

  /**
   * Choose the next token. `penalized` lists the tokens counted by the penalties (llama.cpp counts the
   * last tokens of prompt and output alike). `topN` alternatives are reported with their logprobs. `mask`
   * (grammar.ts: bit i set when token i is allowed) limits the draw; the reported logprobs stay the model's.
   * `logprob` false (and topN 0): the chosen token's logprob is not computed (NaN), which saves a log-sum-exp over
   * the vocabulary where the draw did not already sum the softmax.
   */
  sample(logits: Float32Array, penalized: number[] = [], topN = 0, mask?: Int32Array, logprob = true): TokenChoice {
    let l = this.penalize(logits, penalized);
    if (mask) {
      if (l === logits) l = this.copy(logits);
      if (!applyMask(l, mask)) throw new Error("the grammar allows no token here");
    }
    const wanted = logprob || topN > 0;
    let id: number;
    let lse: number;
    if (this.params.temperature <= 0) {
      id = argmax(l);
      lse = wanted ? this.logSumExp(logits) : NaN;
    } else {
      const c = this.candidates(l);
      id = this.pick(c);
      // when the draw already summed the softmax of the unpenalized logits, that is the log-sum-exp
      lse = c.logSumExp !== undefined && l === logits ? c.logSumExp : wanted ? this.logSumExp(logits) : NaN;
    }
    return { id, logprob: logits[id]! - lse, top: topN > 0 ? topTokens(logits, topN).map((t) => ({ id: t, logprob: logits[t]! - lse })) : [] };
  }

  /**
   * The logits with the penalties applied (a copy, in the sampler's buffer: valid until its next call), or the
   * logits themselves when none applies.
   */
  penalize(logits: Float32Array, penalized: number[]): Float32Array {
    const p = this.params;
    const bias = p.logitBias?.length ? p.logitBias : undefined;
    if (!bias && (!penalized.length || (p.repetitionPenalty === 1 && p.frequencyPenalty === 0 && p.presencePenalty === 0))) return logits;
    const l = this.copy(logits);
    if (bias) for (const [t, b] of bias) if (t >= 0 && t < l.length) l[t] = l[t]! + b;
    if (!penalized.length) return l;
    const counts = new Map<number, number>();
    for (const t of penalized) counts.set(t, (counts.get(t) ?? 0) + 1);
    for (const [t, c] of counts) {
      let v = l[t]!;
      if (p.repetitionPenalty !== 1) v = v <= 0 ? v * p.repetitionPenalty : v / p.repetitionPenalty;
      l[t] = v - c * p.frequencyPenalty - p.presencePenalty;
    }
    return l;
  }

  /** The distribution of a draw from (penalized) logits `l`, after top-k, top-p, min-p and the temperature. */
  candidates(l: Float32Array): Candidates {
    const p = this.params;
    const T = p.temperature;
    if (p.topK > 0) {
      // the k best, sorted (k is small): top-p and min-p cut that list from its end
      let cand = topTokens(l, p.topK);
      if (p.topP < 1) {
        const m = l[cand[0]!]!;
        let z = 0;
        for (const i of cand) z += Math.exp(l[i]! - m);
        let cum = 0;
        for (let i = 0; i < cand.length; i++) {
          cum += Math.exp(l[cand[i]!]! - m) / z;
          if (cum >= p.topP) {
            cand = cand.slice(0, i + 1);
            break;
          }
        }
      }
      if (p.minP > 0) {
        const cut = l[cand[0]!]! + Math.log(p.minP);
        cand = cand.filter((t) => l[t]! >= cut); // never empty: the best passes
      }
      return this.weigh(l, Int32Array.from(cand), T);
    }
    const passes = this.passes();
    passes.load(l);
    const m = passes.max();
    const cut = p.minP > 0 ? m + Math.log(p.minP) : -Infinity;
    if (p.topP < 1) {
      const { ids, z } = this.nucleus(l, m, p.topP, passes);
      const kept = p.minP > 0 ? ids.filter((t) => l[t]! >= cut) : ids;
      return { ...(T === 1 ? weighed(passes.weights, kept) : this.weigh(l, kept, T)), logSumExp: m + Math.log(z) };
    }
    // every id whose logit passes min-p, in id order: one pass (a draw needs no order)
    const total = passes.expSum(m, T, cut, true);
    return { ids: null, weights: passes.weights, total, ...(T === 1 && cut === -Infinity ? { logSumExp: m + Math.log(total) } : {}) };
  }

  /** The isolate's kernels when a host provided them, else this sampler's JavaScript passes. */
  private passes(): VocabPasses {
    return samplerKernels() ?? (this.js ??= new JsPasses());
  }

  /** log sum_i exp(l_i) over every id. */
  private logSumExp(l: Float32Array): number {
    const passes = this.passes();
    passes.load(l);
    const m = passes.max();
    return m + Math.log(passes.expSum(m, 1, -Infinity, false));
  }

  /**
   * The logits copied into a buffer kept across steps: a fresh megabyte a step costs more than the copy (on these
   * machines a new 1 MB typed array took 0.07 to 3.7 ms, its pages faulted in anew).
   */
  private copy(logits: Float32Array): Float32Array {
    if (this.scratch.length !== logits.length) this.scratch = new Float32Array(logits.length);
    this.scratch.set(logits);
    return this.scratch;
  }

  /** Weights exp((l - max) / T) of `ids`, the first of which has the highest logit or not (max is found). */
  private weigh(l: Float32Array, ids: Int32Array, T: number): Candidates {
    let m = -Infinity;
    for (const i of ids) if (l[i]! > m) m = l[i]!;
    const weights = new Float64Array(ids.length);
    let total = 0;
    for (let j = 0; j < ids.length; j++) total += weights[j] = Math.exp((l[ids[j]!]! - m) / T);
    return { ids, weights, total };
  }

  /**
   * Top-p over every id, without sorting them: the ids of the shortest prefix of the sorted order whose softmax
   * (temperature 1, as llama.cpp applies top-p) reaches `topP`, in no particular order. One pass buckets the
   * probability mass by logit (NUCLEUS_BUCKETS buckets over the NUCLEUS_RANGE below the maximum), the bucket where
   * the running mass crosses topP is the only one sorted, and everything above it is kept as it is.
   */
  private nucleus(l: Float32Array, m: number, topP: number, passes: VocabPasses): { ids: Int32Array; z: number } {
    // the weights exp(l - m) over every id (l is loaded), and their mass by bucket
    const z = passes.expSum(m, 1, -Infinity, true);
    passes.buckets(m, NUCLEUS_BUCKETS / NUCLEUS_RANGE, NUCLEUS_RANGE);
    const { weights: w, mass } = passes;
    let c = 0;
    let cum = 0;
    while (c < NUCLEUS_BUCKETS && (cum + mass[c]!) / z < topP) cum += mass[c++]!;
    // every id of the buckets above c, then c's best first until the mass reaches topP
    const { kept, crossing } = passes.select(c);
    crossing.sort((a, b) => l[b]! - l[a]! || a - b);
    let take = 0;
    while (take < crossing.length) {
      cum += w[crossing[take++]!]!;
      if (cum / z >= topP) break;
    }
    const ids = new Int32Array(kept.length + take);
    ids.set(kept);
    ids.set(crossing.slice(0, take), kept.length);
    return { ids, z };
  }

  /** Draw from a distribution: walk its candidates in their order (every id: the passes' weights). */
  private pick(c: Candidates): number {
    const r = this.rand() * c.total;
    return c.ids ? c.ids[walk(c.weights, r)]! : this.passes().pick(r);
  }
}

/** The index where r minus the weights so far drops below 0, else the last nonzero weight's (0 for none). */
function walk(weights: Float64Array, r: number): number {
  let last = 0;
  for (let i = 0; i < weights.length; i++) {
    const w = weights[i]!;
    if (w === 0) continue;
    last = i;
    r -= w;
    if (r < 0) return i;
  }
  return last;
}

function maxOf(l: Float32Array): number {
  let m = -Infinity;
  for (let i = 0; i < l.length; i++) if (l[i]! > m) m = l[i]!;
  return m;
}

function argmax(l: Float32Array): number {
  let id = 0;
  for (let i = 1; i < l.length; i++) if (l[i]! > l[id]!) id = i;
  return id;
}

/** The weights `w` (over every id) of `ids`. */
function weighed(w: Float64Array, ids: Int32Array): Candidates {
  const weights = new Float64Array(ids.length);
  let total = 0;
  for (let j = 0; j < ids.length; j++) total += weights[j] = w[ids[j]!]!;
  return { ids, weights, total };
}


/** The k highest logits' ids, highest first (lower id first on ties); without sorting the rest. */
export function topTokens(l: Float32Array, k: number): number[] {
  k = Math.min(k, l.length);
  if (k <= 0) return [];
  if (k <= 64) {
    // a small sorted list, kept by insertion
    const top: number[] = [];
    for (let i = 0; i < l.length; i++) {
      const v = l[i]!;
      if (top.length === k && v <= l[top[k - 1]!]!) continue;
      let j = top.length < k ? top.length : k - 1;
      top[j] = i;
      while (j > 0 && l[top[j - 1]!]! < v) {
        top[j] = top[j - 1]!;
        top[j - 1] = i;
        j--;
      }
    }
    return top;
  }
  // the k-th largest value by selection, then the ids above it (and enough of those equal to it, lowest first)
  const thr = kthLargest(l.slice(), k);
  const above: number[] = [];
  const at: number[] = [];
  for (let i = 0; i < l.length; i++) {
    if (l[i]! > thr) above.push(i);
    else if (l[i]! === thr) at.push(i);
  }
  const ids = above.concat(at.slice(0, k - above.length));
  return ids.sort((a, b) => l[b]! - l[a]! || a - b);
}

/** The k-th largest of `v` (1-based), by quickselect; reorders `v`. */
function kthLargest(v: Float32Array, k: number): number {
  let lo = 0, hi = v.length - 1;
  const want = k - 1; // index in descending order
  while (lo < hi) {
    const pivot = v[(lo + hi) >>> 1]!;
    let i = lo, j = hi;
    while (i <= j) {
      while (v[i]! > pivot) i++;
      while (v[j]! < pivot) j--;
      if (i <= j) {
        const t = v[i]!;
        v[i] = v[j]!;
        v[j] = t;
        i++;
        j--;
      }
    }
    if (want <= j) hi = j;
    else if (want >= i) lo = i;
    else return v[want]!;
  }
  return v[want]!;
}

/**
 * Set disallowed logits to -Infinity (in place). `mask` has bit i set when token i is allowed. Returns whether any
 * token is allowed (read off the mask's words, no pass over the logits).
 */
export function applyMask(logits: Float32Array, mask: Int32Array): boolean {
  const n = logits.length;
  let any = false;
  for (let w = 0; w < mask.length; w++) {
    const base = w << 5;
    const end = Math.min(32, n - base);
    const bits = end < 32 ? mask[w]! & ((1 << end) - 1) : mask[w]!;
    if (bits !== 0) any = true;
    if (bits === -1) continue;
    for (let b = 0; b < end; b++) if (!((bits >>> b) & 1)) logits[base + b] = -Infinity;
  }
  return any;
}
