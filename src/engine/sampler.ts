// Next-token choice from logits, in llama.cpp's default order: penalties -> top-k -> top-p -> min-p ->
// temperature -> draw. Temperature 0 is greedy (argmax, lowest id on ties). A seed makes draws repeatable.
// Log-probabilities reported to callers are those of the model's own distribution (softmax of the raw logits).

export interface SamplingParams {
  temperature: number; //       0 = greedy
  topK: number; //              0 = off
  topP: number; //              1 = off
  minP: number; //              0 = off
  repetitionPenalty: number; // 1 = off (llama.cpp/CTRL form: divide positive logits, multiply negative)
  frequencyPenalty: number; //  0 = off (OpenAI form: minus count * penalty)
  presencePenalty: number; //   0 = off (minus penalty once a token has appeared)
  seed?: number;
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

export class Sampler {
  private readonly rand: () => number;
  readonly params: SamplingParams;
  constructor(params: SamplingParams) {
    this.params = params;
    this.rand = mulberry32(params.seed ?? Math.floor(Math.random() * 2 ** 32));
  }

  /**
   * Choose the next token. `penalized` lists the tokens counted by the penalties (llama.cpp counts the
   * last tokens of prompt and output alike). `topN` alternatives are reported with their logprobs.
   */
  sample(logits: Float32Array, penalized: number[] = [], topN = 0): TokenChoice {
    const p = this.params;
    const l = Float32Array.from(logits);
    if (penalized.length && (p.repetitionPenalty !== 1 || p.frequencyPenalty !== 0 || p.presencePenalty !== 0)) {
      const counts = new Map<number, number>();
      for (const t of penalized) counts.set(t, (counts.get(t) ?? 0) + 1);
      for (const [t, c] of counts) {
        let v = l[t]!;
        if (p.repetitionPenalty !== 1) v = v <= 0 ? v * p.repetitionPenalty : v / p.repetitionPenalty;
        l[t] = v - c * p.frequencyPenalty - p.presencePenalty;
      }
    }
    let id: number;
    if (p.temperature <= 0) {
      id = 0;
      for (let i = 1; i < l.length; i++) if (l[i]! > l[id]!) id = i;
    } else {
      id = this.draw(l);
    }
    const lse = logSumExp(logits);
    return { id, logprob: logits[id]! - lse, top: topN > 0 ? topTokens(logits, topN).map((t) => ({ id: t, logprob: logits[t]! - lse })) : [] };
  }

  private draw(l: Float32Array): number {
    const p = this.params;
    // candidates sorted by logit, highest first (ties: lower id first)
    let cand = p.topK > 0 ? topTokens(l, p.topK) : sortedIds(l);
    // top-p over the softmax at temperature 1, as llama.cpp applies it before temperature
    const probs = softmaxOf(l, cand, 1);
    if (p.topP < 1) {
      let cum = 0;
      let keep = cand.length;
      for (let i = 0; i < cand.length; i++) {
        cum += probs[i]!;
        if (cum >= p.topP) {
          keep = i + 1;
          break;
        }
      }
      cand = cand.slice(0, keep);
    }
    if (p.minP > 0) {
      const maxLogit = l[cand[0]!]!;
      const cut = maxLogit + Math.log(p.minP);
      const kept = cand.filter((t) => l[t]! >= cut);
      if (kept.length) cand = kept;
    }
    const final = softmaxOf(l, cand, p.temperature);
    let r = this.rand();
    for (let i = 0; i < cand.length; i++) {
      r -= final[i]!;
      if (r < 0) return cand[i]!;
    }
    return cand[cand.length - 1]!;
  }
}

function logSumExp(l: Float32Array): number {
  let m = -Infinity;
  for (let i = 0; i < l.length; i++) if (l[i]! > m) m = l[i]!;
  let s = 0;
  for (let i = 0; i < l.length; i++) s += Math.exp(l[i]! - m);
  return m + Math.log(s);
}

function softmaxOf(l: Float32Array, ids: number[], temperature: number): Float64Array {
  const out = new Float64Array(ids.length);
  const m = l[ids[0]!]!;
  let s = 0;
  for (let i = 0; i < ids.length; i++) s += out[i] = Math.exp((l[ids[i]!]! - m) / temperature);
  for (let i = 0; i < ids.length; i++) out[i]! /= s;
  return out;
}

function sortedIds(l: Float32Array): number[] {
  const ids = Array.from({ length: l.length }, (_, i) => i);
  return ids.sort((a, b) => l[b]! - l[a]! || a - b);
}

/** The k highest logits' ids, highest first (lower id first on ties). */
export function topTokens(l: Float32Array, k: number): number[] {
  if (k >= l.length) return sortedIds(l);
  // keep a small sorted list; fine for the k values APIs allow (<= a few hundred)
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
