// `gemma-edge bench`: prefill, decode, time to first token and memory, optionally next to llama.cpp (src/tools/bench.ts).
import { engineOptions, num, openModelFile as open, parse, required, type Command } from "./args.ts";
import { BACKEND_NAMES } from "../hosts/node-backend.ts";

export const benchCommand: Command = {
  name: "bench",
  summary: "measure speed and memory, optionally next to llama.cpp",
  help: `Usage: gemma-edge bench --model FILE [options]

Measures load time, prefill and decode speed, time to first token (16-token prompt) and peak memory.

  --prompt-tokens N    prompt length for prefill (default 128)
  --gen-tokens M       tokens to decode (default 64)
  --threads T          threads for both engines (default 1; ours: worker threads for the wasm backend)
  --backend NAME       ${BACKEND_NAMES.join(" | ")} (default wasm)
  --repeats R          measurements of each engine, alternating (default 3; figures are medians)
  --vs-llama-cpp       also measure llama.cpp (node-llama-cpp, CPU) on the same file and report ratios
  --rounds N           instead: both engines in this process, N rounds each of a prefill and a decode by ours
                       and by llama.cpp back to back, and the ratios round by round (median, min-max): steadier
                       on a noisy machine than whole runs a minute apart; no load time or memory
  --profile            instead: where one prefill and one decode step of our engine spend their time (each
                       kernel by weight type, the LM head, attention, the rest, the sampler), as tables
  --json               the last line of output is one JSON object`,
  run,
};

async function run(args: string[]): Promise<number> {
  const { values } = parse(args, {
    model: { type: "string" }, "prompt-tokens": { type: "string" }, "gen-tokens": { type: "string" }, threads: { type: "string" },
    backend: { type: "string" }, repeats: { type: "string" }, "vs-llama-cpp": { type: "boolean" }, json: { type: "boolean" }, profile: { type: "boolean" },
    rounds: { type: "string" }, internal: { type: "string" },
  });
  const model = required(values.model, "model");
  const { backend, threads } = engineOptions(values);
  await (await open(model)).close();
  const o = {
    model,
    promptTokens: num(values["prompt-tokens"], "prompt-tokens", { min: 16, int: true }) ?? 128,
    genTokens: num(values["gen-tokens"], "gen-tokens", { min: 1, int: true }) ?? 64,
    threads,
    repeats: num(values.repeats, "repeats", { min: 1, max: 100, int: true }) ?? 3,
    backend,
  };
  const b = await import("../tools/bench.ts");
  if (values.profile) {
    const p = await b.profileOurs(o);
    process.stdout.write(b.fmtProfile(p, o) + "\n");
    if (values.json) process.stdout.write(JSON.stringify(p) + "\n");
    return 0;
  }
  if (values.rounds !== undefined) {
    const rounds = num(values.rounds, "rounds", { min: 1, max: 1000, int: true })!;
    const r = await b.benchInterleaved(o, rounds, (line) => process.stderr.write(line + "\n"));
    const sp = (x: { median: number; min: number; max: number }) => `${x.median.toFixed(3)} (${x.min.toFixed(3)}-${x.max.toFixed(3)})`;
    process.stdout.write(`ours (median of ${rounds} rounds): prefill ${r.ours.prefill_tok_s.toFixed(2)} tok/s, decode ${r.ours.decode_tok_s.toFixed(2)} tok/s\n`);
    process.stdout.write(`llama.cpp (median, ${o.threads} thread${o.threads > 1 ? "s" : ""}): prefill ${r.llama_cpp.prefill_tok_s.toFixed(2)} tok/s, decode ${r.llama_cpp.decode_tok_s.toFixed(2)} tok/s\n`);
    process.stdout.write(`ratio ours/llama.cpp per round, median (min-max): decode ${sp(r.ratio_decode)}, prefill ${sp(r.ratio_prefill)}\n`);
    if (values.json) process.stdout.write(JSON.stringify(r) + "\n");
    return 0;
  }
  if (values.internal === "ours" || values.internal === "llama-cpp") {
    const r = values.internal === "ours" ? await b.measureOurs(o) : await b.measureLlamaCpp(o);
    process.stdout.write(JSON.stringify(r) + "\n");
    return 0;
  }
  if (o.threads > 1 && o.backend !== "wasm") process.stderr.write(`note: --threads ${o.threads} applies to llama.cpp; the ${o.backend} backend has no threads\n`);
  const r = await b.bench(o, !!values["vs-llama-cpp"], (line) => process.stderr.write(line + "\n"));
  process.stdout.write(`ours (median of ${o.repeats}): ${b.fmt(r)}\n`);
  if (r.llama_cpp) {
    process.stdout.write(`llama.cpp (median of ${o.repeats}, ${o.threads} thread${o.threads > 1 ? "s" : ""}): ${b.fmt(r.llama_cpp)}\n`);
    process.stdout.write(`ratio ours/llama.cpp: decode ${r.ratio_decode!.toFixed(2)}, prefill ${r.ratio_prefill!.toFixed(2)}\n`);
  }
  if (values.json) process.stdout.write(JSON.stringify(r) + "\n");
  return 0;
}
