// Samplers on 4-token distributions with hand-computed expectations (after llama.cpp's test-sampling.cpp).
import { describe, expect, it } from "vitest";
import { DEFAULT_SAMPLING, Sampler, topTokens, type SamplingParams } from "../../src/engine/sampler.ts";

const logits = (p: number[]) => Float32Array.from(p, (x) => Math.log(x));
const make = (o: Partial<SamplingParams>) => new Sampler({ ...DEFAULT_SAMPLING, seed: 42, ...o });

/** Empirical distribution of `n` draws. */
function freq(s: Sampler, l: Float32Array, n = 20000, penalized: number[] = []): number[] {
  const c = new Array(l.length).fill(0);
  for (let i = 0; i < n; i++) c[s.sample(l, penalized).id]++;
  return c.map((x) => x / n);
}

describe("sampler", () => {
  const p = [0.1, 0.2, 0.3, 0.4];

  it("is greedy at temperature 0, lowest id on ties", () => {
    expect(make({ temperature: 0 }).sample(logits(p)).id).toBe(3);
    expect(make({ temperature: 0 }).sample(Float32Array.of(1, 5, 5, 2)).id).toBe(1);
  });

  it("draws from the softmax at temperature 1 (within 0.01 on 20000 draws)", () => {
    freq(make({}), logits(p)).forEach((f, i) => expect(Math.abs(f - p[i]!)).toBeLessThan(0.01));
  });

  it("sharpens with temperature: T = 0.5 squares the probabilities", () => {
    const sq = p.map((x) => x * x);
    const z = sq.reduce((a, b) => a + b);
    freq(make({ temperature: 0.5 }), logits(p)).forEach((f, i) => expect(Math.abs(f - sq[i]! / z)).toBeLessThan(0.01));
  });

  it("top-k keeps the k most likely", () => {
    const f = freq(make({ topK: 2 }), logits(p));
    expect(f[0]).toBe(0);
    expect(f[1]).toBe(0);
    expect(Math.abs(f[3]! - 0.4 / 0.7)).toBeLessThan(0.01);
  });

  it("top-p keeps the smallest set reaching p", () => {
    // sorted 0.4, 0.3 (0.7 >= 0.6) -> {3, 2}
    const f = freq(make({ topP: 0.6 }), logits(p));
    expect(f[0]! + f[1]!).toBe(0);
    expect(Math.abs(f[2]! - 0.3 / 0.7)).toBeLessThan(0.01);
  });

  it("min-p drops tokens below p x the top probability", () => {
    // 0.6 x 0.4 = 0.24: keeps 0.3 and 0.4
    const f = freq(make({ minP: 0.6 }), logits(p));
    expect(f[0]! + f[1]!).toBe(0);
  });

  it("applies repetition, frequency and presence penalties as llama.cpp does", () => {
    // repetition 2: positive logits halve, negative logits double
    const l = Float32Array.of(2, -1, 1.5, 0);
    expect(make({ temperature: 0, repetitionPenalty: 2 }).sample(l, [0]).id).toBe(2); // 2 -> 1 < 1.5
    expect(make({ temperature: 0, repetitionPenalty: 2 }).sample(l, [2]).id).toBe(0);
    // frequency 0.3 x 2 occurrences and presence 0.5: 2 - 0.6 - 0.5 = 0.9 < 1.5
    expect(make({ temperature: 0, frequencyPenalty: 0.3, presencePenalty: 0.5 }).sample(l, [0, 0]).id).toBe(2);
    expect(make({ temperature: 0, frequencyPenalty: 0.1 }).sample(l, [0, 0]).id).toBe(0); // 1.8 > 1.5
  });

  it("reports the model's log-probabilities and the top alternatives", () => {
    const c = make({ temperature: 0 }).sample(logits(p), [], 2);
    expect(c.logprob).toBeCloseTo(Math.log(0.4), 6);
    expect(c.top.map((t) => t.id)).toEqual([3, 2]);
    expect(c.top[1]!.logprob).toBeCloseTo(Math.log(0.3), 6);
  });

  it("repeats exactly with the same seed, differs with another", () => {
    const l = logits([0.25, 0.25, 0.25, 0.25]);
    const run = (seed: number) => Array.from({ length: 50 }, ((s) => () => s.sample(l).id)(make({ seed })));
    expect(run(7)).toEqual(run(7));
    expect(run(7)).not.toEqual(run(8));
  });

  it("topTokens orders by logit, lower id first on ties", () => {
    expect(topTokens(Float32Array.of(1, 3, 3, 2, 0), 3)).toEqual([1, 2, 3]);
  });
});
