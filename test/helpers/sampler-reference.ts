// The plain twin of src/engine/sampler.ts: the sampler as it was before it stopped sorting the vocabulary, kept to
// check the fast one against. It sorts every candidate by logit, cuts top-k, top-p (softmax at temperature 1),
// min-p, and walks the softmax at the temperature in sorted order.
import { mulberry32, type SamplingParams } from "../../src/engine/sampler.ts";

export class ReferenceSampler {
  private readonly rand: () => number;
  readonly params: SamplingParams;
  constructor(params: SamplingParams) {
    this.params = params;
    this.rand = mulberry32(params.seed ?? 0);
  }

  penalize(logits: Float32Array, penalized: number[]): Float32Array {
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
    return l;
  }

  /** The sorted candidates and their probabilities at the temperature. */
  distribution(l: Float32Array): { cand: number[]; final: Float64Array } {
    const p = this.params;
    let cand = Array.from({ length: l.length }, (_, i) => i).sort((a, b) => l[b]! - l[a]! || a - b);
    if (p.topK > 0) cand = cand.slice(0, p.topK);
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
      const cut = l[cand[0]!]! + Math.log(p.minP);
      const kept = cand.filter((t) => l[t]! >= cut);
      if (kept.length) cand = kept;
    }
    return { cand, final: softmaxOf(l, cand, p.temperature) };
  }

  draw(l: Float32Array): number {
    const { cand, final } = this.distribution(l);
    let r = this.rand();
    for (let i = 0; i < cand.length; i++) {
      r -= final[i]!;
      if (r < 0) return cand[i]!;
    }
    return cand[cand.length - 1]!;
  }
}

function softmaxOf(l: Float32Array, ids: number[], temperature: number): Float64Array {
  const out = new Float64Array(ids.length);
  const m = l[ids[0]!]!;
  let s = 0;
  for (let i = 0; i < ids.length; i++) s += out[i] = Math.exp((l[ids[i]!]! - m) / temperature);
  for (let i = 0; i < ids.length; i++) out[i]! /= s;
  return out;
}
