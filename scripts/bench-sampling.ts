// `npm run bench:sampling`: what sampling costs against greedy decoding, as a user sees it: `gemma-edge serve` on
// the Gemma-2B-shape Q4_0 file (1 thread), streaming /v1/completions with the official client's settings,
// alternating between settings for REPEATS rounds (default 3); decode tok/s (medians, min–max) and the ratio to
// greedy. Each request generates GEN tokens (default 64) from the same prompt.
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import OpenAI from "openai";
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

async function decodeRate(extra: Record<string, number>, seed: number): Promise<number> {
  const stream = await client.completions.create({ model: modelId, prompt: "Once upon a time there was a little model", max_tokens: gen, stream: true, seed, ...extra } as never) as unknown as AsyncIterable<{ choices: { text: string }[] }>;
  const times: number[] = [];
  for await (const c of stream) if (c.choices[0]) times.push(performance.now());
  // chunks arrive per token (text may be held back: then fewer chunks); the rate over the stream's duration
  return (times.length - 1) / ((times.at(-1)! - times[0]!) / 1000);
}

const rates = SETTINGS.map(() => [] as number[]);
await decodeRate({ temperature: 0 }, 0); // warm-up
for (let r = 0; r < repeats; r++) {
  for (let i = 0; i < SETTINGS.length; i++) {
    rates[i]!.push(await decodeRate(SETTINGS[i]![1], 1000 + r));
    process.stderr.write(`${SETTINGS[i]![0]}: ${rates[i]!.at(-1)!.toFixed(2)} tok/s\n`);
  }
}
const med = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
const greedy = med(rates[0]!);
process.stdout.write(`\n| setting (stream of ${gen} tokens, 1 thread, ${repeats} alternating rounds) | decode tok/s (median, min–max) | / greedy |\n|---|---|---|\n`);
SETTINGS.forEach(([name], i) => process.stdout.write(`| ${name} | ${med(rates[i]!).toFixed(2)} (${Math.min(...rates[i]!).toFixed(2)}–${Math.max(...rates[i]!).toFixed(2)}) | ${(med(rates[i]!) / greedy).toFixed(3)} |\n`));
stop();
