// `npm run bench:grammar`: what constrained decoding costs on a 256k vocabulary, in two parts.
// 1. The grammar engine alone, on the vocabulary of the Gemma-2B-shape file: building its tables, compiling each
//    kind of constraint, and the mask of each step along a generation under it (medians and max over STEPS steps),
//    with the engine's WebAssembly memory.
// 2. As a user sees it: `gemma-edge serve` on the same file (1 thread), streaming /v1/chat/completions with a JSON
//    schema against the same request unconstrained, alternating for REPEATS rounds (default 3): decode tok/s
//    (median, min–max) and the ratio. Each request generates GEN tokens (default 48).
// The mask's share of a decode step is part 1's median mask time over part 2's unconstrained step time.
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import OpenAI from "openai";
import { GrammarEngine, grammarMemoryBytes, provideGrammarWasm, type ConstraintSpec } from "../src/engine/grammar.ts";
import { readModelHeader } from "../src/engine/model/load.ts";
import { mulberry32 } from "../src/engine/sampler.ts";
import { toolCallConstraint } from "../src/engine/tools.ts";
import { FileByteSource } from "../src/hosts/node-file-source.ts";
import { startServe } from "./bench-server.ts";

const root = resolve(import.meta.dirname, "..");
const model = resolve(root, process.env.MODEL ?? "models/gemma-2b-shape-q4_0.gguf");
const repeats = Number(process.env.REPEATS ?? 3);
const gen = Number(process.env.GEN ?? 48);
const steps = Number(process.env.STEPS ?? 64);
if (!existsSync(model)) throw new Error(`${model} is missing: npm run bench makes it`);
const med = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;

// --- 1. the engine alone
const src = await FileByteSource.open(model);
const { tokenizer: tok } = await readModelHeader(src);
await src.close?.();
provideGrammarWasm(await WebAssembly.compile(readFileSync(resolve(root, "build/xgrammar.wasm"))));
let t = performance.now();
const engine = new GrammarEngine(tok);
const schema = {
  type: "object",
  properties: { name: { type: "string" }, age: { type: "integer", minimum: 0, maximum: 150 }, email: { type: "string" }, tags: { type: "array", items: { type: "string" }, maxItems: 8 }, kind: { enum: ["person", "company"] } },
  required: ["name", "age", "email", "tags", "kind"],
  additionalProperties: false,
};
const SPECS: [string, ConstraintSpec][] = [
  ["json_object", { type: "json_object" }],
  ["json_schema (5 properties)", { type: "json_schema", schema }],
  ["json_schema, the same with email maxLength 64", { type: "json_schema", schema: { ...schema, properties: { ...schema.properties, email: { type: "string", maxLength: 64 } } } }],
  ["regex (an email)", { type: "regex", pattern: "[a-z]{1,20}@[a-z]{1,20}\\.(com|org|net)" }],
  ["tools, required (2 functions)", toolCallConstraint([{ name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } }, { name: "get_time", parameters: { type: "object", properties: { zone: { type: "string" } }, required: ["zone"] } }], "required", true)],
];
const rows: string[] = [];
let first = true;
for (const [name, spec] of SPECS) {
  t = performance.now();
  const c = await engine.constrain(spec, "bench");
  const compileMs = performance.now() - t;
  const times: number[] = [];
  const rand = mulberry32(7);
  for (let s = 0; s < steps && !c.terminated; s++) {
    const t0 = performance.now();
    const mask = await c.nextMask();
    times.push(performance.now() - t0);
    // a random allowed token, as a sampler would draw one (stop tokens only when nothing else is allowed)
    const ok: number[] = [];
    for (let i = 0; i < tok.vocabSize; i++) if ((mask[i >> 5]! >>> (i & 31)) & 1 && !tok.stopIds.includes(i)) ok.push(i);
    const id = ok.length ? ok[Math.floor(rand() * ok.length)]! : tok.stopIds.find((i) => (mask[i >> 5]! >>> (i & 31)) & 1)!;
    c.accept(id);
  }
  c.dispose();
  rows.push(`| ${name} | ${compileMs.toFixed(0)}${first ? " (with the vocabulary's tables)" : ""} | ${med(times).toFixed(3)} | ${Math.max(...times).toFixed(2)} | ${times.length} |`);
  first = false;
  process.stderr.write(`${rows.at(-1)}\n`);
}
const memory = grammarMemoryBytes();

// --- 2. end to end
const { base, stop } = await startServe(model);
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: "none", maxRetries: 0 });
const story = { type: "object", properties: { story: { type: "string" } }, required: ["story"], additionalProperties: false };
async function decodeRate(constrained: boolean, seed: number): Promise<number> {
  const stream = await client.chat.completions.create({
    model: "m", messages: [{ role: "user", content: "Tell me a story as JSON" }], max_tokens: gen, stream: true, seed, temperature: 1,
    ...(constrained ? { response_format: { type: "json_schema" as const, json_schema: { name: "story", schema: story } } } : {}),
  });
  const times: number[] = [];
  for await (const ch of stream) if (ch.choices[0]?.delta.content) times.push(performance.now());
  return (times.length - 1) / ((times.at(-1)! - times[0]!) / 1000);
}
await decodeRate(true, 0); // warm-up (and the schema compiled)
const rates: [number[], number[]] = [[], []];
for (let r = 0; r < repeats; r++) {
  for (const [i, constrained] of [false, true].entries()) {
    rates[i]!.push(await decodeRate(constrained, 100 + r));
    process.stderr.write(`${constrained ? "json_schema" : "unconstrained"}: ${rates[i]!.at(-1)!.toFixed(2)} tok/s\n`);
  }
}
stop();

const stepMs = 1000 / med(rates[0]);
process.stdout.write(`\nGrammar engine on ${model.split("/").pop()} (${tok.vocabSize} tokens); its WebAssembly memory afterwards: ${(memory / 1e6).toFixed(1)} MB\n\n`);
process.stdout.write(`| constraint | compile ms | mask ms per step (median) | max | steps |\n|---|---|---|---|---|\n${rows.join("\n")}\n\n`);
process.stdout.write(`| stream of ${gen} tokens, 1 thread, ${repeats} alternating rounds | decode tok/s (median, min–max) | / unconstrained |\n|---|---|---|\n`);
for (const [i, name] of ["unconstrained", "response_format json_schema"].entries()) {
  process.stdout.write(`| ${name} | ${med(rates[i]!).toFixed(2)} (${Math.min(...rates[i]!).toFixed(2)}–${Math.max(...rates[i]!).toFixed(2)}) | ${(med(rates[i]!) / med(rates[0])).toFixed(3)} |\n`);
}
const maskMed = Number(rows[1]!.split("|")[3]);
process.stdout.write(`\nA decode step takes ${stepMs.toFixed(0)} ms unconstrained; the json_schema mask's median is ${maskMed.toFixed(3)} ms: ${((100 * maskMed) / stepMs).toFixed(2)}% of a step.\n`);
