// Text Generation Inference routes: /generate, /generate_stream, POST / (either, by `stream`), /info, /tokenize (huggingface/text-generation-
// inference router/src/server.rs): `data:{...}` events without [DONE], finish reasons eos_token / stop_sequence /
// length, and TGI's {"error", "error_type"} envelope.
import type { Context, Hono } from "hono";
import type { DoneEvent } from "../engine/generate.ts";
import type { ServiceEvent } from "../service/contract.ts";
import type { AppEnv } from "./app.ts";
import { ApiError } from "./errors.ts";
import { collect, sse, start } from "./run.ts";
import { tgiGrammar } from "./structured.ts";
import { bad, bool, num, object, stops, unsupported, type Json } from "./validate.ts";

type TokenEv = Extract<ServiceEvent, { type: "token" }>;

const DEFAULT_MAX_NEW_TOKENS = 100;

function parse(b: Json) {
  const inputs = b.inputs;
  if (typeof inputs !== "string") throw bad("inputs", `'inputs' must be a string`);
  if (inputs === "") throw bad("inputs", `'inputs' must not be empty`);
  const p = b.parameters === undefined || b.parameters === null ? {} : object(b.parameters, "parameters");
  const field = (f: string) => `parameters.${f}`;
  const n = (f: string, o: Parameters<typeof num>[2]) => {
    try {
      return num(p, f, o);
    } catch (e) {
      throw bad(field(f), (e as Error).message);
    }
  };
  const grammar = tgiGrammar(p.grammar, field("grammar"));
  unsupported(p, "watermark", "watermarking is not implemented", (v) => v === false);
  unsupported(p, "decoder_input_details", "prompt token details are not implemented", (v) => v === false);
  unsupported(p, "truncate", "input truncation is not implemented");
  const typical = n("typical_p", { above: 0, max: 1 });
  if (typical !== undefined && typical < 1) throw bad(field("typical_p"), `'typical_p' is not supported by this server`);
  const bestOf = n("best_of", { int: true, min: 1 });
  if (bestOf !== undefined && bestOf > 1) throw bad(field("best_of"), `'best_of' must be 1: this server generates one sequence`);
  const temperature = n("temperature", { above: 0, max: 100 });
  const topK = n("top_k", { min: 1, int: true });
  const topP = n("top_p", { above: 0, max: 1 });
  if (topP === 1) throw bad(field("top_p"), `'top_p' must be < 1`);
  let doSample = bool(p, "do_sample") ?? false;
  // TGI samples as soon as a sampling parameter is given
  if (temperature !== undefined && temperature !== 1) doSample = true;
  if (topK !== undefined || topP !== undefined) doSample = true;
  let stop: string[] | undefined;
  try {
    stop = stops(p, "stop", 4);
  } catch (e) {
    throw bad(field("stop"), (e as Error).message);
  }
  return {
    inputs,
    maxNewTokens: n("max_new_tokens", { min: 1, int: true }) ?? DEFAULT_MAX_NEW_TOKENS,
    sampling: {
      temperature: doSample ? (temperature ?? 1) : 0,
      topK: topK ?? 0,
      topP: topP ?? 1,
      repetitionPenalty: n("repetition_penalty", { above: 0, max: 10 }) ?? 1,
      frequencyPenalty: n("frequency_penalty", { min: -2, max: 2 }) ?? 0,
      seed: n("seed", { min: 0, max: 2 ** 32 - 1, int: true }),
    },
    stop,
    returnFullText: bool(p, "return_full_text") ?? false,
    details: bool(p, "details") ?? false,
    topN: n("top_n_tokens", { min: 0, max: 5, int: true }) ?? 0,
    cachePrompt: bool(p, "cache_prompt"),
    grammar,
  };
}

const tgiFinish = (d: DoneEvent) => (d.finishReason === "length" ? "length" : typeof d.stoppedBy === "string" ? "stop_sequence" : "eos_token");
const token = (t: TokenEv) => ({ id: t.id, text: t.piece, logprob: t.logprob, special: t.special });
const topTokens = (t: TokenEv) => t.top.map((a) => ({ id: a.id, text: a.piece, logprob: a.logprob, special: false }));

async function generateRoute(c: Context<AppEnv>, streaming: boolean) {
  const b = object(await c.req.json().catch((e) => {
    throw bad("body", `the request body is not valid JSON: ${(e as Error).message}`);
  }));
  const r = parse(b);
  const run = await start(c, c.get("service"), {
    prompt: { text: r.inputs },
    promptField: "inputs",
    maxTokens: r.maxNewTokens,
    maxTokensField: "parameters.max_new_tokens",
    sampling: r.sampling,
    stop: r.stop,
    topLogprobs: r.topN,
    cachePrompt: r.cachePrompt,
    ...(r.grammar ? { constraint: r.grammar.spec, constraintField: r.grammar.field } : {}),
  });
  const prefix = r.returnFullText ? r.inputs : "";
  const details = (d: DoneEvent, tokens?: TokenEv[]) => ({
    finish_reason: tgiFinish(d),
    generated_tokens: d.completionTokens,
    cached_tokens: d.cachedTokens ?? 0,
    seed: r.sampling.temperature > 0 ? run.seed : null,
    ...(tokens ? { prefill: [], tokens: tokens.map(token), ...(r.topN ? { top_tokens: tokens.map(topTokens) } : {}) } : { input_length: run.promptTokens }),
  });

  if (!streaming) {
    const out = await collect(run);
    return c.json({ generated_text: prefix + out.text, ...(r.details ? { details: details(out.done, out.tokens) } : {}) });
  }
  let index = 0;
  let text = "";
  let last: TokenEv | undefined;
  const event = (o: Json) => `data:${JSON.stringify(o)}\n\n`;
  return sse(c, run, (ev) => {
    if (ev.type === "token") {
      // each event carries one token; the previous one is sent when the next arrives, so that the last token
      // event can carry the final text and details
      const prev = last;
      last = ev;
      text += ev.text;
      if (!prev) return "";
      index++;
      return event({ index, token: token(prev), ...(r.topN ? { top_tokens: topTokens(prev) } : {}), generated_text: null, details: null });
    }
    if (ev.type === "done") {
      text += ev.text;
      if (!last) return "";
      index++;
      return event({ index, token: token(last), ...(r.topN ? { top_tokens: topTokens(last) } : {}), generated_text: prefix + text, details: r.details ? details(ev) : null });
    }
    if (ev.type === "error") {
      const e = ApiError.fromService(ev);
      return event({ error: e.message, error_type: ev.kind === "timeout" ? "incomplete_generation" : "generation" });
    }
    return "";
  });
}

export function tgiRoutes(app: Hono<AppEnv>) {
  // TGI's compatibility route: /generate or /generate_stream by the body's `stream`
  app.post("/", async (c) => {
    const b = object(await c.req.json().catch((e) => {
      throw bad("body", `the request body is not valid JSON: ${(e as Error).message}`);
    }));
    if (b.stream !== undefined && typeof b.stream !== "boolean") throw bad("stream", `'stream' must be a boolean, got ${JSON.stringify(b.stream)}`);
    return generateRoute(c, b.stream === true);
  });
    app.post("/generate", (c) => generateRoute(c, false));
  app.post("/generate_stream", (c) => generateRoute(c, true));
  app.post("/tokenize", async (c) => {
    const b = object(await c.req.json().catch(() => {
      throw bad("body", "the request body is not valid JSON");
    }));
    if (typeof b.inputs !== "string") throw bad("inputs", `'inputs' must be a string`);
    const { ids, pieces } = await c.get("service").tokenize(b.inputs).catch((e) => {
      throw ApiError.fromService({ type: "error", kind: "unavailable", status: 503, message: (e as Error).message });
    });
    // start/stop: character offsets of each token's text in the input
    let pos = 0;
    return c.json(ids.map((id, i) => {
      const text = pieces[i]!;
      const entry = { id, text, start: pos, stop: pos + text.length };
      pos += text.length;
      return entry;
    }));
  });
  app.get("/info", async (c) => {
    const { modelId, version, maxQueue } = c.get("config");
    const info = await c.get("service").info().catch((e) => {
      throw ApiError.fromService({ type: "error", kind: "unavailable", status: 503, message: (e as Error).message });
    });
    return c.json({
      model_id: modelId,
      model_sha: null,
      model_dtype: "gguf",
      model_device_type: "wasm",
      model_pipeline_tag: "text-generation",
      model_architecture: info.architecture,
      kv_bytes_per_sequence: info.kvBytesPerSequence,
      max_concurrent_requests: maxQueue + (c.get("config").maxBatchSize ?? 1),
      max_best_of: 1,
      max_stop_sequences: 4,
      max_input_tokens: info.contextSize - 1,
      max_total_tokens: info.contextSize,
      validation_workers: 1,
      max_client_batch_size: 1,
      router: "gemma-edge",
      version,
    });
  });
}
