// `npm run bench:sampling`: what sampling costs against greedy decoding, as a user sees it: `gemma-edge serve` on
// the Gemma-2B-shape Q4_0 file (1 thread), streaming /v1/completions with the official client's settings,
// alternating between settings for REPEATS rounds (default 3), a greedy request before each setting and after the
// last: decode tok/s (from each stream's median gap between tokens; medians, min–max over the rounds), and each
// setting's ratio to the mean of the greedy requests either side of it (median and min–max over the rounds: the
// machine's drift over a round cancels). Each request generates GEN tokens (default 64) from the same prompt. Then the sampler alone, in this
// process: `Sampler.sample` per setting on 256,000 logits, with its passes in JavaScript and in WebAssembly.
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import OpenAI from "openai";
import { hasRelaxedSimd } from "../src/engine/backend/wasm.ts";
import { DEFAULT_SAMPLING, mulberry32, Sampler } from "../src/engine/sampler.ts";
import { provideSamplerWasm } from "../src/engine/sampler-wasm.ts";
import { kernelModule } from "../src/hosts/node-wasm.ts";
import { startServe } from "./bench-server.ts";

const root = resolve(import.meta.dirname, "..");
const model = resolve(root, process.env.MODEL ?? "models/gemma-2b-shape-q4_0.gguf");
const repeats = Number(process.env.REPEATS ?? 3);
const gen = Number(process.env.GEN ?? 64);
if (!existsSync(model)) throw new Error(`${model} is missing: npm run bench makes it`);

const SETTINGS: [string, Record<string, number>][] = [
  ["greedy (temperature 0)", { temperature: 0 }],
  ["temperature 1 (the OpenAI default)", { temperature: 1 }],
  ["temperature 0.8, top_k 40", { temperature: 0.8, top_k: 40 }],
  ["top_p 0.95", { temperature: 1, top_p: 0.95 }],
  ["temperature 0.7, top_p 0.9, min_p 0.05", { temperature: 0.7, top_p: 0.9, min_p: 0.05 }],
  ["repetition_penalty 1.1, frequency_penalty 0.5", { temperature: 1, repetition_penalty: 1.1, frequency_penalty: 0.5 }],
];

const { base, stop } = await startServe(model);
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: "none", maxRetries: 0 });
const modelId = (await client.models.list()).data[0]!.id;

const med = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;

async function decodeRate(extra: Record<string, number>, seed: number): Promise<number> {
  const stream = await client.completions.create({ model: modelId, prompt: "Once upon a time there was a little model", max_tokens: gen, stream: true, seed, ...extra } as never) as unknown as AsyncIterable<{ choices: { text: string }[] }>;
  const times: number[] = [];
  for await (const c of stream) if (c.choices[0]) times.push(performance.now());
  // chunks arrive per token (each of the 64 here: every setting's streams carry one chunk a token); the rate from
  // the median gap between chunks, which a pause of the shared machine in the middle of a stream does not move
  const gaps = times.slice(1).map((t, i) => t - times[i]!);
  return 1000 / med(gaps);
}

// SETTINGS[0] is greedy: a round runs greedy, setting 1, greedy, setting 2, ..., greedy
const rates = SETTINGS.map(() => [] as number[]);
const ratios = SETTINGS.map(() => [] as number[]);
const measure = async (i: number, r: number) => {
  const rate = await decodeRate(SETTINGS[i]![1], 1000 + r);
  process.stderr.write(`${SETTINGS[i]![0]}: ${rate.toFixed(2)} tok/s\n`);
  return rate;
};
await decodeRate({ temperature: 0 }, 0); // warm-up
for (let r = 0; r < repeats; r++) {
  let before = await measure(0, r);
  rates[0]!.push(before);
  for (let i = 1; i < SETTINGS.length; i++) {
    const rate = await measure(i, r);
    const after = await measure(0, r);
    rates[i]!.push(rate);
    rates[0]!.push(after);
    ratios[i]!.push(rate / ((before + after) / 2));
    before = after;
  }
}
const range = (v: number[], digits: number) => `${med(v).toFixed(digits)} (${Math.min(...v).toFixed(digits)}–${Math.max(...v).toFixed(digits)})`;
process.stdout.write(`\n| setting (stream of ${gen} tokens, 1 thread, ${repeats} alternating rounds) | decode tok/s (median, min–max) | / greedy either side (median, min–max) |\n|---|---|---|\n`);
SETTINGS.forEach(([name], i) => process.stdout.write(`| ${name} | ${range(rates[i]!, 2)} | ${i === 0 ? "1" : range(ratios[i]!, 3)} |\n`));
stop();

// the sampler alone: logits drawn from a normal distribution (sd 4), the last 64 tokens penalized, no logprob
// asked (the server's case without `logprobs`); ms per call, median of 50 after 10 to warm up
const rand = mulberry32(1);
const logits = Float32Array.from({ length: 256_000 }, () => 4 * Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand()));
const penalized = Array.from({ length: 64 }, (_, i) => i * 997);
const asParams = (o: Record<string, number>) => ({
  ...DEFAULT_SAMPLING, seed: 1, temperature: o.temperature!, topK: o.top_k ?? 0, topP: o.top_p ?? 1, minP: o.min_p ?? 0,
  repetitionPenalty: o.repetition_penalty ?? 1, frequencyPenalty: o.frequency_penalty ?? 0,
});
const samplerMs = (o: Record<string, number>) => {
  const sampler = new Sampler(asParams(o));
  const ms: number[] = [];
  for (let i = 0; i < 60; i++) {
    const t = performance.now();
    sampler.sample(logits, penalized, 0, undefined, false);
    if (i >= 10) ms.push(performance.now() - t);
  }
  return med(ms);
};
const js = SETTINGS.map(([, o]) => samplerMs(o));
provideSamplerWasm(await kernelModule(hasRelaxedSimd() ? "relaxed" : "simd"));
const wasm = SETTINGS.map(([, o]) => samplerMs(o));
process.stdout.write(`\n| setting (Sampler.sample, 256,000 logits, median of 50) | passes in JavaScript, ms | in WebAssembly, ms |\n|---|---|---|\n`);
SETTINGS.forEach(([name], i) => process.stdout.write(`| ${name} | ${js[i]!.toFixed(2)} | ${wasm[i]!.toFixed(2)} |\n`));
