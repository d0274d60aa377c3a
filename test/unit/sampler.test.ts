// Samplers on 4-token distributions with hand-computed expectations (after llama.cpp's test-sampling.cpp).
// Every test runs twice: the sampler's passes in JavaScript, and in the WebAssembly kernels (sampler-wasm.ts).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_SAMPLING, mulberry32, Sampler, topTokens, type SamplingParams } from "../../src/engine/sampler.ts";
import { provideSamplerWasm, samplerKernels } from "../../src/engine/sampler-wasm.ts";
import { kernelModule } from "../../src/hosts/node-wasm.ts";
import { ReferenceSampler } from "../helpers/sampler-reference.ts";

const logits = (p: number[]) => Float32Array.from(p, (x) => Math.log(x));
const make = (o: Partial<SamplingParams>) => new Sampler({ ...DEFAULT_SAMPLING, seed: 42, ...o });

/** Empirical distribution of `n` draws. */
function freq(s: Sampler, l: Float32Array, n = 20000, penalized: number[] = []): number[] {
  const c = new Array(l.length).fill(0);
  for (let i = 0; i < n; i++) c[s.sample(l, penalized).id]++;
  return c.map((x) => x / n);
}

for (const path of ["JavaScript", "WebAssembly"] as const) describe(`passes in ${path}`, () => {
  beforeAll(async () => {
    provideSamplerWasm(path === "WebAssembly" ? await kernelModule("simd") : null);
    expect(samplerKernels() !== null).toBe(path === "WebAssembly");
  });
  afterAll(() => provideSamplerWasm(null));

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

    it("without logprob wanted: the same tokens seed for seed, no log-sum-exp pass (NaN, or the draw's own sum); top alternatives still reported", () => {
      const l = logits([0.05, 0.15, 0.3, 0.5]);
      // [params, whether the draw sums the softmax itself (temperature 1 without top-k: the logprob comes free)]
      const cases: [Partial<SamplingParams>, boolean][] = [[{ temperature: 0 }, false], [{}, true], [{ temperature: 0.7, topK: 3 }, false], [{ topP: 0.9 }, true], [{ temperature: 0.8, minP: 0.2 }, false]];
      for (const [o, free] of cases) {
        const a = make(o), b = make(o);
        for (let i = 0; i < 30; i++) {
          const with_ = a.sample(l, [1], 0, undefined, true), without = b.sample(l, [1], 0, undefined, false);
          expect(without.id).toBe(with_.id);
          expect(with_.logprob).toBeLessThan(0);
          if (free) expect(without.logprob).toBe(with_.logprob);
          else expect(without.logprob).toBeNaN();
        }
      }
      const t = make({ temperature: 0 }).sample(l, [], 2, undefined, false);
      expect(t.logprob).toBeCloseTo(Math.log(0.5), 6);
      expect(t.top.map((x) => x.id)).toEqual([3, 2]);
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

  describe("the sampler that sorts nothing draws from the distribution of its plain twin (which sorts everything)", () => {
    // logits with the shapes that matter: peaked, flat, wide, with ties, some far below the rest
    const rand = mulberry32(99);
    const gauss = () => Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
    const cases: [string, Float32Array][] = [
      ["peaked", Float32Array.from({ length: 3000 }, (_, i) => (i === 17 ? 12 : i === 900 ? 11 : gauss() * 2))],
      ["flat", Float32Array.from({ length: 3000 }, () => gauss() * 0.3)],
      ["wide", Float32Array.from({ length: 3000 }, () => gauss() * 8)],
      ["ties", Float32Array.from({ length: 3000 }, (_, i) => Math.round(gauss() * 2) / 2 + (i % 997 === 0 ? -90 : 0))],
    ];
    const penalized = [17, 17, 900, 5, 6, 2999, 1234];
    const settings: Partial<SamplingParams>[] = [];
    for (const temperature of [0.5, 1, 1.7]) for (const topK of [0, 1, 40, 300]) for (const topP of [1, 0.9, 0.5]) for (const minP of [0, 0.05]) settings.push({ temperature, topK, topP, minP });
    settings.push({ repetitionPenalty: 1.3, frequencyPenalty: 0.2, presencePenalty: 0.1 }, { temperature: 0.8, topP: 0.9, repetitionPenalty: 1.1 });

    const normalized = (ids: ArrayLike<number> | null, w: Float64Array, total: number, n: number) => {
      const m = new Map<number, number>();
      for (let j = 0; j < w.length; j++) if (w[j]! > 0) m.set(ids ? ids[j]! : j, w[j]! / total);
      expect(ids ? ids.length : n).toBeGreaterThan(0);
      return m;
    };

    for (const [name, l] of cases) {
      it(`${name} logits: the same candidates and probabilities (1e-12) at ${settings.length} settings`, () => {
        for (const o of settings) {
          const params = { ...DEFAULT_SAMPLING, ...o };
          const fast = new Sampler(params), plain = new ReferenceSampler(params);
          const c = fast.candidates(fast.penalize(l, penalized));
          const got = normalized(c.ids, c.weights, c.total, l.length);
          const ref = plain.distribution(plain.penalize(l, penalized));
          const want = new Map(ref.cand.map((id, i) => [id, ref.final[i]!] as const).filter(([, p]) => p > 0));
          expect([...got.keys()].sort((a, b) => a - b), JSON.stringify(o)).toEqual([...want.keys()].sort((a, b) => a - b));
          for (const [id, p] of want) expect(Math.abs(got.get(id)! - p), `${JSON.stringify(o)} id ${id}`).toBeLessThan(1e-12);
        }
      });
    }

    it("with top-k the candidates stay sorted: the same draws as the plain twin, seed for seed", () => {
      const l = cases[0]![1];
      for (const o of [{ topK: 40 }, { topK: 300, topP: 0.9, temperature: 0.7 }, { topK: 5, minP: 0.05, temperature: 1.5 }]) {
        const params = { ...DEFAULT_SAMPLING, seed: 123, ...o };
        const fast = new Sampler(params), plain = new ReferenceSampler(params);
        const a = Array.from({ length: 500 }, () => fast.sample(l).id);
        const b = Array.from({ length: 500 }, () => plain.draw(l));
        expect(a).toEqual(b);
      }
    });

    it("without top-k it walks in id order: the draws' frequencies match the twin's probabilities (20000 draws)", () => {
      const l = Float32Array.from({ length: 50 }, (_, i) => Math.sin(i) * 2);
      for (const o of [{}, { temperature: 0.6, minP: 0.1 }, { topP: 0.8 }]) {
        const params = { ...DEFAULT_SAMPLING, seed: 5, ...o };
        const f = freq(new Sampler(params), l);
        const ref = new ReferenceSampler(params).distribution(l);
        ref.cand.forEach((id, i) => expect(Math.abs(f[id]! - ref.final[i]!), `${JSON.stringify(o)} id ${id}`).toBeLessThan(0.01));
      }
    });

    it("reports the logprob of the model's own distribution, the same value whichever path drew", () => {
      const l = cases[2]![1];
      const lse = Math.log(Array.from(l).reduce((s, x) => s + Math.exp(x - Math.max(...l)), 0)) + Math.max(...l);
      for (const o of [{}, { temperature: 0 }, { topK: 40 }, { topP: 0.5, temperature: 0.3 }, { repetitionPenalty: 1.5 }]) {
        const c = new Sampler({ ...DEFAULT_SAMPLING, seed: 3, ...o }).sample(l, [1, 2, 3]);
        expect(Math.abs(c.logprob - (l[c.id]! - lse))).toBeLessThan(1e-9);
      }
    });
  });
});
