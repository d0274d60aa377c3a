// Continuous batching (engine/batching.ts): a request's tokens and logprobs are bit for bit those of the same
// request alone (generate(), which the llama.cpp comparisons check), whatever runs beside it and whenever it
// joins; the prompt cache reuses prefixes (and `cachePrompt: false` reproduces the uncached run exactly); a
// queued request that is cancelled costs no prefill; kept sequences are evicted least recently used.
import { beforeAll, describe, expect, it } from "vitest";
import { ReferenceBackend } from "../../src/engine/backend/reference.ts";
import { BatchScheduler, type BatchEvent, type BatchOptions, type BatchRequest, type StepInfo } from "../../src/engine/batching.ts";
import { MemoryByteSource } from "../../src/engine/byte-source.ts";
import { generate } from "../../src/engine/generate.ts";
import { loadModel, type LoadedModel } from "../../src/engine/model/load.ts";
import type { SamplingParams } from "../../src/engine/sampler.ts";
import { loadWasmBackend } from "../../src/hosts/node-wasm.ts";
import { testModel } from "../helpers/models.ts";

interface Out {
  ids: number[];
  logprobs: number[];
  cached: number;
  finish: string;
}

/** Deterministic prompt ids: BOS, then ids from a small LCG (no special tokens below 8). */
function prompt(n: number, seed: number, vocab: number): number[] {
  const ids = [2];
  let x = seed;
  for (let i = 1; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    ids.push(8 + (x % (vocab - 8)));
  }
  return ids;
}

async function alone(m: LoadedModel, ids: number[], maxTokens: number, sampling: Partial<SamplingParams>): Promise<Out> {
  const out: Out = { ids: [], logprobs: [], cached: 0, finish: "" };
  for await (const ev of generate(m, { prompt: { ids }, maxTokens, sampling })) {
    if (ev.type === "token") out.ids.push(ev.id), out.logprobs.push(ev.logprob);
    else out.finish = ev.finishReason;
  }
  return out;
}

interface Job extends BatchRequest {
  /** Submit once the scheduler has run this many steps. */
  afterSteps?: number;
}

/** Run jobs through one scheduler, each submitted after its step count; every job's tokens. */
function batched(m: LoadedModel, jobs: Job[], opts: Partial<BatchOptions> = {}, steps: StepInfo[] = []): Promise<Out[]> {
  const s = new BatchScheduler(m.batch!, m.tokenizer, { maxBatchSize: 4, prefillChunk: 32, promptCache: false, ...opts });
  s.onStep = (i) => steps.push(i);
  return new Promise((resolve, reject) => {
    const outs: Out[] = jobs.map(() => ({ ids: [], logprobs: [], cached: -1, finish: "" }));
    let left = jobs.length;
    const submit = (j: number) =>
      s.submit(jobs[j]!, (ev: BatchEvent) => {
        const o = outs[j]!;
        if (ev.type === "started") o.cached = ev.cachedTokens;
        else if (ev.type === "token") o.ids.push(ev.id), o.logprobs.push(ev.logprob);
        else if (ev.type === "error") reject(new Error(ev.message));
        else {
          o.finish = ev.finishReason;
          if (--left === 0) resolve(outs);
        }
      });
    const pending = jobs.map((_, j) => j);
    const tick = () => {
      for (const j of pending.slice()) {
        if ((jobs[j]!.afterSteps ?? 0) <= steps.length) {
          pending.splice(pending.indexOf(j), 1);
          submit(j);
        }
      }
      if (pending.length) setTimeout(tick, 0);
    };
    tick();
  });
}

const GREEDY = { temperature: 0 };
const SAMPLED = { temperature: 1, topK: 0, topP: 1, minP: 0, seed: 1234 };

// types whose kernels choose by batch size: F16 (tinyBLAS for 2+ rows), Q4_K repacked (gemm for groups of 4),
// and the attention (tiled for micro-batches of 64+ rows); Q4_0 / Q8_0 as the usual files
for (const [shape, type] of [["tiny", "q4_0"], ["tiny", "q8_0"], ["tiny", "f16"], ["tiny-k", "q4_k"]] as const) {
  describe(`batch invariance, ${shape} ${type} (wasm)`, () => {
    let m: LoadedModel;
    beforeAll(async () => {
      m = await loadModel(new MemoryByteSource((await testModel(shape, type)).bytes), await loadWasmBackend(), { contextSize: 512, sequences: 6 });
    });

    it("each request's greedy and seeded tokens equal the same request alone, joining at any step", async () => {
      const V = m.cfg.vocabSize;
      const jobs: Job[] = [
        { promptIds: prompt(70, 1, V), maxTokens: 24, sampling: GREEDY }, // 70 rows: the tiled attention, in 3 chunks
        { promptIds: prompt(9, 2, V), maxTokens: 30, sampling: SAMPLED },
        { promptIds: prompt(133, 3, V), maxTokens: 12, sampling: GREEDY, afterSteps: 3 }, // joins while others decode
        { promptIds: prompt(5, 4, V), maxTokens: 20, sampling: { ...SAMPLED, seed: 99 }, afterSteps: 5 },
        { promptIds: prompt(21, 5, V), maxTokens: 16, sampling: GREEDY, afterSteps: 6 }, // waits for a slot
        { promptIds: prompt(33, 6, V), maxTokens: 8, sampling: GREEDY, afterSteps: 1 }, // a last chunk of one row
      ];
      const want = [];
      for (const j of jobs) want.push(await alone(m, j.promptIds, j.maxTokens, j.sampling!));
      const steps: StepInfo[] = [];
      const got = await batched(m, jobs, {}, steps);
      for (let i = 0; i < jobs.length; i++) {
        expect(got[i]!.ids, `request ${i}`).toEqual(want[i]!.ids);
        expect(got[i]!.logprobs, `request ${i}`).toEqual(want[i]!.logprobs);
        expect(got[i]!.finish).toBe(want[i]!.finish);
      }
      // they did share steps: 4 sequences decoded together, and prompt chunks rode along with decode tokens
      expect(Math.max(...steps.map((s) => s.sequences))).toBe(4);
      expect(steps.some((s) => s.decodeTokens > 0 && s.prefillTokens > 0)).toBe(true);
      expect(Math.max(...steps.map((s) => s.prefillTokens))).toBeLessThanOrEqual(32);
    });

    it("a prompt one token longer than the prefill chunk (its last chunk one row) computes as in one chunk", async () => {
      const ids = prompt(33, 61, m.cfg.vocabSize);
      const want = await alone(m, ids, 6, GREEDY);
      const [got] = await batched(m, [{ promptIds: ids, maxTokens: 6, sampling: GREEDY }], { prefillChunk: 32 });
      expect(got!.logprobs).toEqual(want.logprobs);
      expect(got!.ids).toEqual(want.ids);
    });
  });
}

describe("the prompt cache (tiny q4_0, reference backend)", () => {
  let m: LoadedModel;
  let single: LoadedModel; // for runs alone: generate() uses slot 0, which a scheduler of `m` keeps sequences in
  beforeAll(async () => {
    const bytes = (await testModel("tiny", "q4_0")).bytes;
    m = await loadModel(new MemoryByteSource(bytes), new ReferenceBackend(), { contextSize: 256, sequences: 3 });
    single = await loadModel(new MemoryByteSource(bytes), new ReferenceBackend(), { contextSize: 256 });
  });

  it("a later turn starts from the kept prefix; cachePrompt: false reproduces the uncached run bit for bit", async () => {
    const V = m.cfg.vocabSize;
    const first = prompt(40, 7, V);
    const [a] = await batched(m, [{ promptIds: first, maxTokens: 6, sampling: GREEDY }], { promptCache: true, maxBatchSize: 2 });
    expect(a!.cached).toBe(0);
    // the next turn: the first prompt, what was generated (minus the last token, never fed), then new tokens
    const next = [...first, ...a!.ids.slice(0, -1), ...prompt(12, 8, V).slice(1)];
    const s = new BatchScheduler(m.batch!, m.tokenizer, { maxBatchSize: 2, prefillChunk: 32, promptCache: true });
    const run = (req: BatchRequest) =>
      new Promise<Out>((resolve) => {
        const o: Out = { ids: [], logprobs: [], cached: -1, finish: "" };
        s.submit(req, (ev) => {
          if (ev.type === "started") o.cached = ev.cachedTokens;
          else if (ev.type === "token") o.ids.push(ev.id), o.logprobs.push(ev.logprob);
          else if (ev.type === "done") (o.finish = ev.finishReason), resolve(o);
        });
      });
    await run({ promptIds: first, maxTokens: 6, sampling: GREEDY });
    const cached = await run({ promptIds: next, maxTokens: 8, sampling: GREEDY });
    expect(cached.cached).toBe(first.length + a!.ids.length - 1);
    const uncached = await run({ promptIds: next, maxTokens: 8, sampling: GREEDY, cachePrompt: false });
    expect(uncached.cached).toBe(0);
    const want = await alone(single, next, 8, GREEDY);
    expect(uncached.ids).toEqual(want.ids);
    expect(uncached.logprobs).toEqual(want.logprobs);
    // reused KV was computed by other micro-batches and decode steps: the same tokens here, logprobs within 1e-4
    expect(cached.ids).toEqual(want.ids);
    cached.logprobs.forEach((lp, i) => expect(Math.abs(lp - want.logprobs[i]!)).toBeLessThan(1e-4));
    // a running sequence's prefix is copied to another slot: two requests with one system prompt at once
    const shared = prompt(30, 9, V);
    let firstToken!: () => void;
    const decoding = new Promise<void>((r) => (firstToken = r));
    const a2 = new Promise<Out>((resolve) => {
      const o: Out = { ids: [], logprobs: [], cached: -1, finish: "" };
      s.submit({ promptIds: [...shared, 11, 12], maxTokens: 20, sampling: GREEDY }, (ev) => {
        if (ev.type === "started") o.cached = ev.cachedTokens;
        else if (ev.type === "token") firstToken();
        else if (ev.type === "done") resolve(o);
      });
    });
    await decoding;
    const b2 = await run({ promptIds: [...shared, 13], maxTokens: 3, sampling: GREEDY });
    expect([(await a2).cached, b2.cached]).toEqual([1, 30]); // (every prompt here starts with BOS)
    expect(b2.ids).toEqual((await alone(single, [...shared, 13], 3, GREEDY)).ids);
  });

  it("keeps finished sequences until their slot is needed, least recently used first", async () => {
    const V = m.cfg.vocabSize;
    const s = new BatchScheduler(m.batch!, m.tokenizer, { maxBatchSize: 1, prefillChunk: 32, promptCache: true });
    const run = (ids: number[]) =>
      new Promise<number>((resolve) => {
        let cached = -1;
        s.submit({ promptIds: ids, maxTokens: 2, sampling: GREEDY }, (ev) => {
          if (ev.type === "started") cached = ev.cachedTokens;
          else if (ev.type === "done") resolve(cached);
        });
      });
    const [p, q, r] = [prompt(20, 21, V), prompt(20, 22, V), prompt(20, 23, V)];
    await run(p);
    await run(q);
    await run(r); // three slots: p, q, r kept
    expect(await run([...p, 5])).toBe(20); // p is used again (now most recent)
    await run(prompt(20, 24, V)); // needs a slot: q, the least recently used, goes
    expect(s.kvUse.keptSlots).toBe(3);
    expect(await run([...r, 5])).toBe(20);
    expect(await run([...q, 5])).toBe(1); // only BOS is left of q: its slot was reused
  });

  it("a queued request that is cancelled leaves at once and costs no prefill", async () => {
    const V = m.cfg.vocabSize;
    const steps: StepInfo[] = [];
    const s = new BatchScheduler(m.batch!, m.tokenizer, { maxBatchSize: 1, prefillChunk: 32, promptCache: false });
    s.onStep = (i) => steps.push(i);
    const ends: string[] = [];
    const done = new Promise<void>((resolve) =>
      s.submit({ promptIds: prompt(10, 31, V), maxTokens: 20, sampling: GREEDY }, (ev) => ev.type === "done" && (ends.push("first"), resolve())),
    );
    const queued = s.submit({ promptIds: prompt(50, 32, V), maxTokens: 5, sampling: GREEDY }, (ev) => ev.type === "done" && ends.push(`queued ${ev.finishReason}`));
    expect(s.queued).toBe(2); // both wait for the first step, which admits one
    await new Promise((r) => setTimeout(r, 5));
    expect([s.active, s.queued]).toEqual([1, 1]);
    queued.cancel();
    expect([s.queued, ends]).toEqual([0, ["queued abort"]]);
    await done;
    expect(steps.reduce((a, i) => a + i.prefillTokens, 0)).toBe(10);
  });

  it("a long prompt is read in chunks with the event loop free between them (probes and timers run)", async () => {
    const V = m.cfg.vocabSize;
    const s = new BatchScheduler(m.batch!, m.tokenizer, { maxBatchSize: 2, prefillChunk: 32, promptCache: false });
    const order: string[] = [];
    s.onStep = (i) => order.push(i.prefillTokens ? "prefill" : "decode");
    let probing = true;
    const probe = () => {
      order.push("probe");
      if (probing) setTimeout(probe, 0);
    };
    setTimeout(probe, 0);
    await new Promise<void>((resolve) => s.submit({ promptIds: prompt(200, 41, V), maxTokens: 2, sampling: GREEDY }, (ev) => ev.type === "done" && resolve()));
    probing = false;
    const prefills = order.flatMap((o, i) => (o === "prefill" ? [i] : []));
    expect(prefills).toHaveLength(Math.ceil(200 / 32));
    // a probe ran between every two prefill steps
    for (let k = 1; k < prefills.length; k++) expect(order.slice(prefills[k - 1]!, prefills[k]!)).toContain("probe");
  });

  it("a step that fails because a part lost its KV (a restarted shard) starts the unproduced requests over", async () => {
    const V = m.cfg.vocabSize;
    let fail = false;
    const flaky = { ...m.batch!, step: (segs: Parameters<NonNullable<LoadedModel["batch"]>["step"]>[0]) => {
      if (fail && segs.some((g) => g.pos > 0)) {
        fail = false;
        return Promise.reject(new Error("sequence slot 0 holds 0 positions here, so position 19 cannot follow (was this part restarted?)"));
      }
      return m.batch!.step(segs);
    } };
    const s = new BatchScheduler(flaky, m.tokenizer, { maxBatchSize: 1, prefillChunk: 32, promptCache: true });
    const run = (ids: number[]) => new Promise<Out>((resolve, reject) => {
      const o: Out = { ids: [], logprobs: [], cached: -1, finish: "" };
      s.submit({ promptIds: ids, maxTokens: 4, sampling: GREEDY }, (ev) => {
        if (ev.type === "token") o.ids.push(ev.id);
        else if (ev.type === "error") reject(new Error(ev.message));
        else if (ev.type === "done") (o.cached = ev.cachedTokens), (o.finish = ev.finishReason), resolve(o);
      });
    });
    const p = prompt(20, 51, V);
    await run(p);
    fail = true; // the part "restarts": the kept prefix of p is gone there
    const again = await run([...p, 7]);
    expect(again.cached).toBe(0); // computed whole, after the failed step
    expect(again.ids).toEqual((await alone(single, [...p, 7], 4, GREEDY)).ids);
  });
});

describe("the prompt cache over sliding-window rings (Gemma 3)", () => {
  it("does not reuse a prefix whose ring cells a longer sequence of the same slot wrote over", async () => {
    // window 16, a context of 1024: the local layers' rings have 768 cells
    const { bytes } = await testModel({ ...(await import("../../src/tools/make-test-model.ts")).SHAPES["tiny-gemma3"]!, contextLength: 1024 }, "q8_0");
    const m = await loadModel(new MemoryByteSource(bytes), await loadWasmBackend(), { contextSize: 1024, sequences: 2 });
    const V = m.cfg.vocabSize;
    const a = prompt(990, 7, V);
    // A fills its slot to position 999; B takes over its first 800 positions (they stay, the ring's cells past them
    // still hold A's later positions); C shares 100 tokens with B: its queries would need cells A wrote over
    const b = [...a.slice(0, 800), ...prompt(10, 8, V).slice(1)];
    const c = [...a.slice(0, 100), ...prompt(20, 9, V).slice(1)];
    const jobs: Job[] = [a, b, c].map((promptIds) => ({ promptIds, maxTokens: 10, sampling: GREEDY }));
    const got = await batched(m, jobs, { maxBatchSize: 1, promptCache: true, prefillChunk: 128 });
    expect(got.map((o) => o.cached)).toEqual([0, 800, 0]);
    expect(got[2]!.ids).toEqual((await alone(m, c, 10, GREEDY)).ids);
  });
});
