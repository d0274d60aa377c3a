// The Worker's HTTP API inside workerd: exact wire formats (OpenAI and TGI), bad requests, auth and CORS,
// disconnects, the queue, a model that is missing or corrupt, and time limits.
import { beforeAll, describe, expect, it } from "vitest";
import type { ChatTemplate } from "../../src/engine/chat-template.ts";
import type { Tokenizer } from "../../src/engine/tokenizer.ts";
import { call, envWith, MODEL, readSse, seedModels, waitReady } from "./helpers.ts";

let tok: Tokenizer;
let tpl: ChatTemplate;
beforeAll(async () => {
  ({ tok, tpl } = await seedModels());
  await waitReady();
});

const chat = (extra: Record<string, unknown> = {}) => ({ model: MODEL, messages: [{ role: "user", content: "Hello" }], max_tokens: 6, temperature: 0, ...extra });

describe("GET /health, /v1/models, /info", () => {
  it("/health is 200 ready with the load figures", async () => {
    const r = await call("/health");
    expect(r.status).toBe(200);
    const b = (await r.json()) as Record<string, unknown>;
    // the tiny Gemma 1 model: 2 layers x keys and values x 512 positions x 1 KV head of 32, f16
    expect(b).toMatchObject({ status: "ready", model: MODEL, progress: 1, context_size: 512, architecture: "gemma", kv_bytes_per_sequence: 2 * 2 * 512 * 32 * 2 });
    expect(b.total_bytes).toBeGreaterThan(0);
    expect(b.loaded_bytes).toBe(b.total_bytes);
  });
  it("/v1/models lists the model in OpenAI's list shape", async () => {
    const b = await (await call("/v1/models")).json();
    expect(b).toMatchObject({ object: "list", data: [{ id: MODEL, object: "model", owned_by: "gemma-edge", meta: { architecture: "gemma", context_size: 512 } }] });
  });
  it("/info answers TGI's info shape", async () => {
    const b = (await (await call("/info")).json()) as Record<string, unknown>;
    expect(b).toMatchObject({ model_id: MODEL, max_total_tokens: 512, max_input_tokens: 511, max_stop_sequences: 4, max_best_of: 1, model_architecture: "gemma" });
  });
});

describe("POST /v1/chat/completions", () => {
  it("answers a chat.completion with exact usage", async () => {
    const r = await call("/v1/chat/completions", { json: chat({ cache_prompt: false }) });
    expect(r.status).toBe(200);
    const b = (await r.json()) as any;
    expect(b.id).toMatch(/^chatcmpl-/);
    expect(b.object).toBe("chat.completion");
    expect(b.model).toBe(MODEL);
    expect(b.choices).toHaveLength(1);
    expect(b.choices[0]).toMatchObject({ index: 0, message: { role: "assistant" }, logprobs: null, finish_reason: "length" });
    const promptTokens = tpl.encode([{ role: "user", content: "Hello" }]).length;
    expect(b.usage).toEqual({ prompt_tokens: promptTokens, completion_tokens: 6, total_tokens: promptTokens + 6, prompt_tokens_details: { cached_tokens: 0 } });
    // the same prompt again starts from the sequence kept in the prompt cache: all but its last token
    const again = (await (await call("/v1/chat/completions", { json: chat() })).json()) as any;
    expect(again.usage.prompt_tokens_details).toEqual({ cached_tokens: promptTokens - 1 });
    expect(again.choices[0].message.content).toBe(b.choices[0].message.content);
  });

  it("serves /metrics in Prometheus text format, from the front and the model's Durable Object", async () => {
    const r = await call("/metrics");
    expect(r.status).toBe(200);
    expect(r.headers.get("Content-Type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(r.headers.get("X-Request-Id")).toMatch(/^[0-9a-f-]{36}$/);
    const text = await r.text();
    expect(text).toMatch(/^gemma_edge_http_requests_total\{route="\/v1\/chat\/completions",method="POST",status="200"\} [1-9]/m);
    expect(text).toMatch(/^llamacpp:tokens_predicted_total [1-9]/m);
    expect(text).toMatch(/^gemma_edge_prompt_cache_hit_tokens_total [1-9]/m);
    expect(text).toMatch(/^tgi_queue_size 0$/m);
    const echoed = await call("/health", { headers: { "X-Request-Id": "trace-42" } });
    expect(echoed.headers.get("X-Request-Id")).toBe("trace-42");
  });

  it("streams chunks with one id, the role first, one finish chunk, the usage chunk, then [DONE]", async () => {
    const whole = ((await (await call("/v1/chat/completions", { json: chat() })).json()) as any).choices[0].message.content;
    const r = await call("/v1/chat/completions", { json: chat({ stream: true, stream_options: { include_usage: true } }) });
    expect(r.status).toBe(200);
    expect(r.headers.get("Content-Type")).toMatch(/^text\/event-stream/);
    expect(r.headers.get("Cache-Control")).toBe("no-cache");
    expect(r.headers.get("Content-Encoding")).toBe("identity");
    const { data, raw } = await readSse(r);
    expect(raw).toMatch(/^data: \{/); // a space after "data:", no event: lines
    expect(raw).not.toMatch(/^event:/m);
    expect(data.at(-1)).toBe("[DONE]");
    const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    expect(new Set(chunks.map((c) => c.created)).size).toBe(1);
    for (const c of chunks) expect(c.object).toBe("chat.completion.chunk");
    expect(chunks[0].choices[0].delta).toEqual({ role: "assistant", content: "" });
    const usageChunk = chunks.at(-1);
    expect(usageChunk.choices).toEqual([]);
    expect(usageChunk.usage.completion_tokens).toBe(6);
    const choiceChunks = chunks.slice(0, -1);
    for (const c of choiceChunks) expect(c.usage).toBeNull();
    const finishes = choiceChunks.filter((c) => c.choices[0].finish_reason !== null);
    expect(finishes).toHaveLength(1);
    expect(finishes[0].choices[0]).toEqual({ index: 0, delta: {}, logprobs: null, finish_reason: "length" });
    expect(choiceChunks.at(-1)).toBe(finishes[0]);
    expect(choiceChunks.slice(1, -1).map((c) => c.choices[0].delta.content).join("")).toBe(whole);
  });

  it("omits usage fields without stream_options.include_usage", async () => {
    const { data } = await readSse(await call("/v1/chat/completions", { json: chat({ stream: true }) }));
    for (const d of data.slice(0, -1)) expect(JSON.parse(d)).not.toHaveProperty("usage");
  });

  it("reports logprobs and top alternatives", async () => {
    const b = (await (await call("/v1/chat/completions", { json: chat({ logprobs: true, top_logprobs: 2 }) })).json()) as any;
    const lp = b.choices[0].logprobs.content;
    expect(lp).toHaveLength(6);
    for (const t of lp) {
      expect(t.logprob).toBeLessThanOrEqual(0);
      expect(t.top_logprobs).toHaveLength(2);
      expect(t.top_logprobs[0].logprob).toBeGreaterThanOrEqual(t.top_logprobs[1].logprob);
      expect(Array.isArray(t.bytes)).toBe(true);
    }
    // greedy: the chosen token is the most likely one
    expect(lp[0].logprob).toBe(lp[0].top_logprobs[0].logprob);
  });

  it("accepts a system message and array content parts", async () => {
    const r = await call("/v1/chat/completions", {
      json: { model: MODEL, max_tokens: 2, messages: [{ role: "system", content: "Be brief." }, { role: "user", content: [{ type: "text", text: "Hel" }, { type: "text", text: "lo" }] }] },
    });
    expect(r.status).toBe(200);
    const b = (await r.json()) as any;
    expect(b.usage.prompt_tokens).toBe(tpl.encode([{ role: "system", content: "Be brief." }, { role: "user", content: "Hello" }]).length);
  });

  it("stops at a stop string and leaves it out", async () => {
    const long = ((await (await call("/v1/chat/completions", { json: chat({ max_tokens: 20 }) })).json()) as any).choices[0].message.content as string;
    const stop = long.slice(4, 7);
    const b = (await (await call("/v1/chat/completions", { json: chat({ max_tokens: 20, stop: [stop] }) })).json()) as any;
    expect(b.choices[0].finish_reason).toBe("stop");
    expect(b.choices[0].message.content).toBe(long.slice(0, long.indexOf(stop)));
  });

  it("reproduces a seeded sampled answer", async () => {
    const body = chat({ temperature: 1, seed: 1234, max_tokens: 10 });
    const a = ((await (await call("/v1/chat/completions", { json: body })).json()) as any).choices[0].message.content;
    const b = ((await (await call("/v1/chat/completions", { json: body })).json()) as any).choices[0].message.content;
    expect(a).toBe(b);
  });
});

describe("structured output in workerd (xgrammar imported statically)", () => {
  it("answers a json_schema request with an object of the schema, and a TGI regex with a match", async () => {
    const schema = { type: "object", properties: { ok: { type: "boolean" }, n: { type: "integer", minimum: 0, maximum: 9 } }, required: ["ok", "n"], additionalProperties: false };
    const r = await call("/v1/chat/completions", { json: chat({ max_tokens: 40, response_format: { type: "json_schema", json_schema: { name: "x", schema, strict: true } } }) });
    expect(r.status).toBe(200);
    const b = (await r.json()) as any;
    expect(b.choices[0].finish_reason).toBe("stop");
    const v = JSON.parse(b.choices[0].message.content);
    expect(Object.keys(v)).toEqual(["ok", "n"]);
    expect(typeof v.ok).toBe("boolean");
    expect(Number.isInteger(v.n) && v.n >= 0 && v.n <= 9).toBe(true);
    const g = (await (await call("/generate", { json: { inputs: "x", parameters: { max_new_tokens: 20, grammar: { type: "regex", value: "(yes|no)[0-9]" } } } })).json()) as any;
    expect(g.generated_text).toMatch(/^(yes|no)[0-9]$/);
  });
});

describe("POST /v1/completions", () => {
  it("answers a text_completion (greedy, as the engine's own greedy continuation)", async () => {
    const b = (await (await call("/v1/completions", { json: { model: MODEL, prompt: "Hello", max_tokens: 5, temperature: 0 } })).json()) as any;
    expect(b.object).toBe("text_completion");
    expect(b.id).toMatch(/^cmpl-/);
    expect(b.choices[0]).toMatchObject({ index: 0, logprobs: null, finish_reason: "length" });
    expect(b.usage.prompt_tokens).toBe(tok.encode("Hello", { addBos: true }).length);
  });
  it("generates 16 tokens when max_tokens is absent (OpenAI's default for completions)", async () => {
    const b = (await (await call("/v1/completions", { json: { model: MODEL, prompt: "Hello", temperature: 0 } })).json()) as any;
    expect(b.usage.completion_tokens).toBe(16);
  });
  it("streams text_completion chunks and [DONE]", async () => {
    const whole = ((await (await call("/v1/completions", { json: { model: MODEL, prompt: "Hello", max_tokens: 5, temperature: 0 } })).json()) as any).choices[0].text;
    const { data } = await readSse(await call("/v1/completions", { json: { model: MODEL, prompt: "Hello", max_tokens: 5, temperature: 0, stream: true } }));
    expect(data.at(-1)).toBe("[DONE]");
    const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
    expect(chunks.map((c) => c.choices[0].text).join("")).toBe(whole);
    expect(chunks.at(-1).choices[0].finish_reason).toBe("length");
    for (const c of chunks) expect(c.object).toBe("text_completion");
  });
});

describe("TGI routes", () => {
  it("/generate answers generated_text and details", async () => {
    const b = (await (await call("/generate", { json: { inputs: "Hello", parameters: { max_new_tokens: 4, details: true } } })).json()) as any;
    expect(typeof b.generated_text).toBe("string");
    expect(b.details).toMatchObject({ finish_reason: "length", generated_tokens: 4, seed: null, prefill: [] });
    expect(b.details.tokens).toHaveLength(4);
    expect(b.details.tokens[0]).toEqual({ id: expect.any(Number), text: expect.any(String), logprob: expect.any(Number), special: false });
  });
  it("/generate with return_full_text prepends the input", async () => {
    const a = (await (await call("/generate", { json: { inputs: "Hello", parameters: { max_new_tokens: 3 } } })).json()) as any;
    const b = (await (await call("/generate", { json: { inputs: "Hello", parameters: { max_new_tokens: 3, return_full_text: true } } })).json()) as any;
    expect(b.generated_text).toBe("Hello" + a.generated_text);
  });
  it("/generate_stream sends data: events without a space and without [DONE]", async () => {
    const a = (await (await call("/generate", { json: { inputs: "Hello", parameters: { max_new_tokens: 4 } } })).json()) as any;
    const r = await call("/generate_stream", { json: { inputs: "Hello", parameters: { max_new_tokens: 4, details: true } } });
    const { data, raw } = await readSse(r);
    expect(raw).toMatch(/^data:\{/);
    expect(raw).not.toContain("[DONE]");
    const evs = data.map((d) => JSON.parse(d));
    expect(evs.map((e) => e.index)).toEqual([1, 2, 3, 4]);
    for (const e of evs.slice(0, -1)) expect(e).toMatchObject({ generated_text: null, details: null });
    expect(evs.at(-1).generated_text).toBe(a.generated_text);
    expect(evs.at(-1).details).toMatchObject({ finish_reason: "length", generated_tokens: 4, input_length: tok.encode("Hello", { addBos: true }).length });
  });
  it("/generate finish reasons: eos_token / stop_sequence / length", async () => {
    const a = (await (await call("/generate", { json: { inputs: "Hello", parameters: { max_new_tokens: 12 } } })).json()) as any;
    const stop = a.generated_text.slice(2, 4);
    const b = (await (await call("/generate", { json: { inputs: "Hello", parameters: { max_new_tokens: 12, stop: [stop], details: true } } })).json()) as any;
    expect(b.details.finish_reason).toBe("stop_sequence");
  });
  it("/tokenize answers the tokenizer's ids with offsets", async () => {
    const b = (await (await call("/tokenize", { json: { inputs: "Hello world" } })).json()) as any[];
    expect(b.map((t) => t.id)).toEqual(tok.encode("Hello world"));
    expect(b[0].start).toBe(0);
    expect(b.map((t) => t.text).join("")).toBe("Hello world");
  });
});

// [path, body, status, param (OpenAI) or null, message pattern]
const BAD: [string, unknown, number, string | null, RegExp][] = [
  ["/v1/chat/completions", "not json", 400, "body", /not valid JSON/],
  ["/v1/chat/completions", [], 400, "body", /must be a JSON object/],
  ["/v1/chat/completions", { messages: [{ role: "user", content: "x" }] }, 400, "model", /'model' is required/],
  ["/v1/chat/completions", { model: 7, messages: [{ role: "user", content: "x" }] }, 400, "model", /'model' must be a string/],
  ["/", { inputs: "x", stream: "yes" }, 400, null, /'stream' must be a boolean/],
  ["/v1/chat/completions", { model: MODEL }, 400, "messages", /non-empty array/],
  ["/v1/chat/completions", { model: MODEL, messages: [] }, 400, "messages", /non-empty array/],
  ["/v1/chat/completions", { model: MODEL, messages: ["hi"] }, 400, "messages[0]", /must be a JSON object/],
  ["/v1/chat/completions", { model: MODEL, messages: [{ role: "wizard", content: "x" }] }, 400, "messages[0].role", /must be one of/],
  ["/v1/chat/completions", { model: MODEL, messages: [{ role: "user", content: 5 }] }, 400, "messages[0].content", /string or an array of text parts/],
  ["/v1/chat/completions", { model: MODEL, messages: [{ role: "user", content: [{ type: "image_url", image_url: {} }] }] }, 400, "messages[0].content[0]", /only text parts/],
  ["/v1/chat/completions", { model: MODEL, messages: [{ role: "tool", content: "x" }] }, 400, "messages[0].tool_call_id", /needs 'tool_call_id'/],
  ["/v1/chat/completions", { model: MODEL, messages: [{ role: "assistant", content: "x" }] }, 422, "messages", /roles must alternate/],
  ["/v1/chat/completions", { model: MODEL, messages: [{ role: "user", content: "a" }, { role: "user", content: "b" }] }, 422, "messages", /roles must alternate/],
  ["/v1/chat/completions", { ...chat(), temperature: "hot" }, 400, "temperature", /must be a number/],
  ["/v1/chat/completions", { ...chat(), temperature: 3 }, 400, "temperature", /<= 2/],
  ["/v1/chat/completions", { ...chat(), top_p: 0 }, 400, "top_p", /> 0/],
  ["/v1/chat/completions", { ...chat(), top_k: 1.5 }, 400, "top_k", /integer/],
  ["/v1/chat/completions", { ...chat(), max_tokens: 0 }, 400, "max_tokens", />= 1/],
  ["/v1/chat/completions", { ...chat(), max_tokens: 100000 }, 400, "max_tokens", /maximum context length is 512 tokens/],
  ["/v1/chat/completions", { ...chat(), max_completion_tokens: 600 }, 400, "max_completion_tokens", /maximum context length is 512/],
  ["/v1/chat/completions", { ...chat(), messages: [{ role: "user", content: "word ".repeat(600) }] }, 400, "messages", /maximum context length is 512 tokens/],
  ["/v1/chat/completions", { ...chat(), n: 2 }, 400, "n", /'n' must be 1/],
  ["/v1/chat/completions", { ...chat(), stop: ["a", "b", "c", "d", "e"] }, 400, "stop", /at most 4/],
  ["/v1/chat/completions", { ...chat(), stop: 5 }, 400, "stop", /string or an array/],
  ["/v1/chat/completions", { ...chat(), tools: [{ type: "function", function: { name: "f g" } }] }, 400, "tools[0].function.name", /1-64 letters/],
  ["/v1/chat/completions", { ...chat(), response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "object", not: {} } } } }, 400, "response_format.json_schema.schema", /'not' is not supported/],
  ["/v1/chat/completions", { ...chat(), grammar: "root ::= (" }, 400, "grammar", /EBNF parser error/],
  ["/v1/chat/completions", { ...chat(), logit_bias: { "5": 500 } }, 400, "logit_bias", /from -100 to 100/],
  ["/v1/chat/completions", { ...chat(), typical_p: 0.9 }, 400, "typical_p", /not supported/],
  ["/v1/chat/completions", { ...chat(), top_logprobs: 3 }, 400, "top_logprobs", /requires 'logprobs'/],
  ["/v1/chat/completions", { ...chat(), seed: -1 }, 400, "seed", />= 0/],
  ["/v1/chat/completions", { ...chat(), stream: "yes" }, 400, "stream", /boolean/],
  ["/v1/chat/completions", { ...chat(), presence_penalty: 5 }, 400, "presence_penalty", /<= 2/],
  ["/v1/completions", { model: MODEL }, 400, "prompt", /must be a string/],
  ["/v1/completions", { model: MODEL, prompt: ["a", "b"] }, 400, "prompt", /one prompt per request/],
  ["/v1/completions", { model: MODEL, prompt: "x", echo: true }, 400, "echo", /not supported/],
  ["/v1/completions", { model: MODEL, prompt: "x", suffix: "y" }, 400, "suffix", /not supported/],
  ["/generate", {}, 400, null, /'inputs' must be a string/],
  ["/generate", { inputs: "" }, 400, null, /must not be empty/],
  ["/generate", { inputs: "x", parameters: { max_new_tokens: -1 } }, 400, null, /'max_new_tokens' must be >= 1/],
  ["/generate", { inputs: "x", parameters: { max_new_tokens: 5000 } }, 400, null, /maximum context length/],
  ["/generate", { inputs: "x", parameters: { temperature: 0 } }, 400, null, /'temperature' must be > 0/],
  ["/generate", { inputs: "x", parameters: { grammar: { type: "xml", value: "" } } }, 400, null, /must be "json" or "regex"/],
  ["/generate_stream", { inputs: "x", parameters: { stop: ["a", "b", "c", "d", "e"] } }, 400, null, /at most 4/],
  ["/tokenize", { inputs: 3 }, 400, null, /'inputs' must be a string/],
];

describe("one model per server", () => {
  it("answers whatever model a request names (as TGI and llama.cpp do) and names its own; STRICT_MODEL=1 answers 404", async () => {
    const r = await call("/v1/chat/completions", { json: { ...chat(), model: "http://127.0.0.1:8080" } });
    expect(r.status).toBe(200);
    expect(((await r.json()) as any).model).toBe(MODEL);
    const strict = await call("/v1/chat/completions", { json: { ...chat(), model: "gpt-4" } }, envWith({ STRICT_MODEL: "1" }));
    expect(strict.status).toBe(404);
    expect(((await strict.json()) as any).error).toMatchObject({ type: "not_found_error", param: "model", code: "model_not_found", message: expect.stringMatching(/'gpt-4' does not exist/) });
    expect((await call("/v1/chat/completions", { json: chat() }, envWith({ STRICT_MODEL: "1" }))).status).toBe(200);
  });

  it("POST / is TGI's /generate, or /generate_stream with stream: true", async () => {
    const body = { inputs: "Hello", parameters: { max_new_tokens: 5, details: true } };
    const plain = (await (await call("/generate", { json: body })).json()) as any;
    const root = (await (await call("/", { json: body })).json()) as any;
    expect(root).toEqual(plain);
    const streamed = await call("/", { json: { ...body, stream: true } });
    expect(streamed.headers.get("Content-Type")).toMatch(/^text\/event-stream/);
    const { data } = await readSse(streamed);
    expect(JSON.parse(data.at(-1)!).generated_text).toBe(plain.generated_text);
  });
});

describe("bad requests get the right status and envelope, and the server keeps serving", () => {
  it(`has at least 30 cases (${BAD.length})`, () => expect(BAD.length).toBeGreaterThanOrEqual(30));
  it.each(BAD)("%s %j -> %i", async (path, body, status, param, msg) => {
    const r = await call(path, { method: "POST", body: typeof body === "string" ? body : JSON.stringify(body), headers: { "Content-Type": "application/json" } });
    expect(r.status).toBe(status);
    const b = (await r.json()) as any;
    if (path.startsWith("/v1/")) {
      expect(Object.keys(b.error).sort()).toEqual(["code", "message", "param", "type"]);
      expect(b.error.message).toMatch(msg);
      expect(b.error.param).toBe(param);
      expect(b.error.type).toBe(status === 404 ? "not_found_error" : "invalid_request_error");
    } else {
      expect(Object.keys(b).sort()).toEqual(["error", "error_type"]);
      expect(b.error).toMatch(msg);
      expect(b.error_type).toBe("validation");
    }
  });
  it("answers unknown routes 404 in the family's envelope", async () => {
    const a = await call("/v1/embeddings", { json: {} });
    expect(a.status).toBe(404);
    expect(((await a.json()) as any).error.type).toBe("not_found_error");
    const b = await call("/nope");
    expect(b.status).toBe(404);
    expect(((await b.json()) as any).error_type).toBe("not_found");
  });
  it("answers 413 to a body over the limit", async () => {
    const r = await call("/v1/chat/completions", { json: chat({ messages: [{ role: "user", content: "x".repeat(2_000_000) }] }) });
    expect(r.status).toBe(413);
    expect(((await r.json()) as any).error.message).toMatch(/larger than 1048576 bytes/);
  });
  it("still serves after all that", async () => {
    expect((await call("/v1/chat/completions", { json: chat() })).status).toBe(200);
  });
});

describe("GET /v1/models/{id}/gguf (the model file, for the in-browser engine)", () => {
  const url = `/v1/models/${MODEL}/gguf`;
  it("serves the R2 object whole, by range, with an ETag and caching headers", async () => {
    const { bytes } = await seedModels();
    const whole = await call(url);
    expect(whole.status).toBe(200);
    expect(whole.headers.get("Accept-Ranges")).toBe("bytes");
    expect(whole.headers.get("Cache-Control")).toMatch(/max-age=\d+/);
    expect(new Uint8Array(await whole.arrayBuffer())).toEqual(bytes);
    const etag = whole.headers.get("ETag")!;
    expect(etag).toMatch(/^".+"$/);

    const head = await call(url, { method: "HEAD" });
    expect([head.status, head.headers.get("Content-Length"), head.headers.get("ETag")]).toEqual([200, String(bytes.length), etag]);

    const first = await call(url, { headers: { Range: "bytes=0-3" } });
    expect(first.status).toBe(206);
    expect(first.headers.get("Content-Range")).toBe(`bytes 0-3/${bytes.length}`);
    expect(new TextDecoder().decode(await first.arrayBuffer())).toBe("GGUF");
    const mid = await call(url, { headers: { Range: "bytes=1000-1999" } });
    expect(new Uint8Array(await mid.arrayBuffer())).toEqual(bytes.subarray(1000, 2000));
    const tail = await call(url, { headers: { Range: "bytes=-16" } });
    expect([tail.status, tail.headers.get("Content-Range")]).toEqual([206, `bytes ${bytes.length - 16}-${bytes.length - 1}/${bytes.length}`]);
    expect(new Uint8Array(await tail.arrayBuffer())).toEqual(bytes.subarray(bytes.length - 16));

    const past = await call(url, { headers: { Range: `bytes=${bytes.length}-` } });
    expect([past.status, past.headers.get("Content-Range")]).toEqual([416, `bytes */${bytes.length}`]);
    const same = await call(url, { headers: { "If-None-Match": etag } });
    expect(same.status).toBe(304);
  });
  it("404 for another model id, 503 naming a missing object", async () => {
    await seedModels();
    const other = await call("/v1/models/nope/gguf");
    expect(other.status).toBe(404);
    expect(((await other.json()) as any).error.code).toBe("model_not_found");
    const missing = await call("/v1/models/ghost/gguf", {}, envWith({ MODEL_ID: "ghost", MODEL_KEY: "ghost.gguf" }));
    expect(missing.status).toBe(503);
    expect(((await missing.json()) as any).error.message).toMatch(/file of model "ghost" is missing/);
  });
});

describe("API key and CORS", () => {
  const keyed = () => envWith({ API_KEY: "sekret" });
  it("requires the bearer key on every route but /health and the chat page", async () => {
    const e = keyed();
    expect((await call("/health", {}, e)).status).toBeOneOf([200, 503]);
    const page = await call("/", {}, e);
    expect(page.status).toBe(200);
    expect(page.headers.get("Content-Type")).toMatch(/^text\/html/);
    const html = await page.text();
    expect(html).toContain("<title>gemma-edge chat</title>");
    expect(html).toContain("/v1/chat/completions"); // the bundled script is inlined
    expect(html).not.toContain("/*SCRIPT*/");
    const none = await call("/v1/models", {}, e);
    expect(none.status).toBe(401);
    expect(((await none.json()) as any).error).toMatchObject({ type: "authentication_error", code: "invalid_api_key" });
    expect((await call("/v1/models", { headers: { Authorization: "Bearer nope" } }, e)).status).toBe(401);
    const tgi = await call("/generate", { json: { inputs: "x" } }, e);
    expect(tgi.status).toBe(401);
    expect(((await tgi.json()) as any).error_type).toBe("authentication");
    expect((await call("/v1/models", { headers: { Authorization: "Bearer sekret" } }, e)).status).toBe(200);
    expect((await call("/metrics", {}, e)).status).toBe(401);
    expect((await call("/metrics", { headers: { Authorization: "Bearer sekret" } }, e)).status).toBe(200);
  });
  it("answers CORS preflights without the key, allowing Authorization", async () => {
    const r = await call("/v1/chat/completions", {
      method: "OPTIONS",
      headers: { Origin: "https://app.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type" },
    }, keyed());
    expect(r.status).toBe(204);
    expect(r.headers.get("Access-Control-Allow-Origin")).toBe("*");
    expect(r.headers.get("Access-Control-Allow-Headers")?.toLowerCase()).toContain("authorization");
    expect(r.headers.get("Access-Control-Allow-Methods")).toContain("POST");
  });
  it("allows only the configured origins", async () => {
    const e = envWith({ CORS_ORIGINS: "https://a.example, https://b.example" });
    const ok = await call("/v1/models", { headers: { Origin: "https://b.example" } }, e);
    expect(ok.headers.get("Access-Control-Allow-Origin")).toBe("https://b.example");
    const no = await call("/v1/models", { headers: { Origin: "https://evil.example" } }, e);
    expect(no.headers.get("Access-Control-Allow-Origin")).toBeNull();
  });
});

describe("streaming, disconnects and the queue", () => {
  it("stops generating when the client disconnects and frees the model", async () => {
    const e = envWith({ MODEL_ID: "disconnect-test", MODEL_KEY: "gemma-edge-tiny.gguf" });
    await waitReady(e);
    const r = await call("/v1/chat/completions", { json: { ...chat({ max_tokens: 400, stream: true }), model: "disconnect-test" } }, e);
    const reader = r.body!.getReader();
    await reader.read();
    await reader.cancel();
    let queue = -1;
    for (let i = 0; i < 40 && queue !== 0; i++) {
      await new Promise((res) => setTimeout(res, 25));
      queue = ((await (await call("/health", {}, e)).json()) as any).queue_length;
    }
    expect(queue).toBe(0);
    const next = await call("/v1/chat/completions", { json: { ...chat(), model: "disconnect-test" } }, e);
    expect(next.status).toBe(200);
  });

  it("queues in order with keep-alives, and answers 429 with Retry-After when the queue is full", async () => {
    const e = envWith({ MODEL_ID: "queue-test", MODEL_KEY: "gemma-edge-tiny.gguf", MAX_QUEUE: "1", MAX_BATCH_SIZE: "1" });
    await waitReady(e);
    const body = { ...chat({ max_tokens: 400, stream: true }), model: "queue-test" };
    const first = await call("/v1/chat/completions", { json: body }, e);
    const firstReader = first.body!.getReader();
    await firstReader.read();
    const second = await call("/v1/chat/completions", { json: body }, e);
    expect(second.status).toBe(200);
    const third = await call("/v1/chat/completions", { json: body }, e);
    expect(third.status).toBe(429);
    expect(third.headers.get("Retry-After")).toBe("2");
    expect(((await third.json()) as any).error).toMatchObject({ type: "rate_limit_error", code: "queue_full" });
    // the waiting request gets keep-alive comments before its first chunk
    const secondReader = second.body!.getReader();
    const { value } = await secondReader.read();
    expect(new TextDecoder().decode(value)).toMatch(/^: keep-alive\n\n/);
    await firstReader.cancel();
    // then its turn comes
    let text = "";
    for (;;) {
      const { done, value: v } = await secondReader.read();
      if (done) break;
      text += new TextDecoder().decode(v);
      if (text.includes('"role":"assistant"')) break;
    }
    expect(text).toContain('"role":"assistant"');
    await secondReader.cancel();
  });
});

describe("a missing or corrupt model", () => {
  it("is 503 on /health and on requests, naming the key, and the worker keeps serving", async () => {
    const e = envWith({ MODEL_ID: "missing-model", MODEL_KEY: "no-such-file.gguf" });
    const h = await call("/health", {}, e);
    expect(h.status).toBe(503);
    let body = (await h.json()) as any;
    for (let i = 0; i < 40 && body.status !== "error"; i++) {
      await new Promise((res) => setTimeout(res, 25));
      body = await (await call("/health", {}, e)).json();
    }
    expect(body.status).toBe("error");
    expect(body.error).toMatch(/R2 object "no-such-file\.gguf" was not found/);
    const r = await call("/v1/chat/completions", { json: { ...chat(), model: "missing-model" } }, e);
    expect(r.status).toBe(503);
    expect(r.headers.get("Retry-After")).toBe("5");
    expect(((await r.json()) as any).error.message).toMatch(/model "missing-model" is unavailable: R2 object "no-such-file\.gguf" was not found/);
    expect((await call("/v1/chat/completions", { json: chat() })).status).toBe(200);
  });

  it("names the problem of a truncated file", async () => {
    const e = envWith({ MODEL_ID: "corrupt-model", MODEL_KEY: "corrupt.gguf" });
    const r = await call("/generate", { json: { inputs: "x" } }, e);
    expect(r.status).toBe(503);
    expect(((await r.json()) as any).error).toMatch(/truncated GGUF header/);
  });
});

describe("time limits", () => {
  it("ends a runaway request with a clear error (504, or an error event mid-stream)", async () => {
    const e = envWith({ MODEL_ID: "timeout-test", MODEL_KEY: "gemma-edge-tiny.gguf", REQUEST_TIMEOUT_MS: "30" });
    await waitReady(e);
    const r = await call("/v1/chat/completions", { json: { ...chat({ max_tokens: 400 }), model: "timeout-test" } }, e);
    expect(r.status).toBe(504);
    expect(((await r.json()) as any).error.message).toMatch(/exceeded the time limit of 30 ms/);
    const s = await call("/v1/chat/completions", { json: { ...chat({ max_tokens: 400, stream: true }), model: "timeout-test" } }, e);
    const { data } = await readSse(s);
    const last = JSON.parse(data.at(-1)!);
    expect(last.error.message).toMatch(/exceeded the time limit/);
  });
});

describe("a model replaced in R2 is reloaded", () => {
  it("the first request after the object's etag changes runs on the new file", async () => {
    const { makeTestModelBytes, SHAPES } = await import("../../src/tools/make-test-model.ts");
    const { GGML_TYPE } = await import("../../src/engine/ggml-types.ts");
    const { env: cfEnv } = await import("cloudflare:workers");
    const bucket = (cfEnv as unknown as { MODELS: R2Bucket }).MODELS;
    const e = envWith({ MODEL_ID: "swapped", MODEL_KEY: "swapped.gguf" });
    const ctxOf = async () => ((await (await call("/health", {}, e)).json()) as { context_size?: number }).context_size;
    const ask = async () => (await call("/v1/chat/completions", { json: { ...chat(), model: "swapped", max_tokens: 1 } }, e)).status;

    await bucket.put("swapped.gguf", await makeTestModelBytes({ shape: SHAPES.tiny!, type: GGML_TYPE.Q4_0, seed: 1 }));
    await waitReady(e);
    expect(await ctxOf()).toBe(512);
    expect(await ask()).toBe(200);
    expect(await ctxOf()).toBe(512); // unchanged object: no reload

    await bucket.put("swapped.gguf", await makeTestModelBytes({ shape: { ...SHAPES.tiny!, contextLength: 256 }, type: GGML_TYPE.Q4_0, seed: 2 }));
    expect(await ctxOf()).toBe(512); // health probes do not reload; requests do
    expect(await ask()).toBe(200);
    expect(await ctxOf()).toBe(256);

    await bucket.delete("swapped.gguf");
    expect(await ask()).toBe(200); // deleted: keeps serving what it has
  });
});
