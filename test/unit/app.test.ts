// The HTTP app in process (`app.request`, as Hono's own tests do) over a scripted model service: every way a
// request fails reaches the client in its family's envelope (OpenAI's on /v1/*, TGI's elsewhere) with the right
// status and headers, and a failure in the middle of a stream becomes an error event. No workerd, no model.
import { describe, expect, it } from "vitest";
import { createApp, defaultConfig } from "../../src/api/app.ts";
import type { ModelService, ServiceEvent, ServiceRequest } from "../../src/service/contract.ts";

const token = (id: number, text: string): ServiceEvent => ({ type: "token", id, text, logprob: -0.5, top: [], special: false, piece: text, bytes: [...new TextEncoder().encode(text)] });
const accepted: ServiceEvent = { type: "accepted", promptTokens: 3, maxTokens: 4, queuePosition: 0, seed: 7 };

/** A model service that answers every generation with `script` (and records the requests). */
function fake(script: ServiceEvent[]): ModelService & { requests: ServiceRequest[] } {
  const requests: ServiceRequest[] = [];
  return {
    modelId: "fake",
    requests,
    async status() {
      return { status: "ready", model: "fake", progress: 1, loaded_bytes: 1, total_bytes: 1, queue_length: 0 };
    },
    async info() {
      return { model: "fake", contextSize: 64, vocabSize: 10, architecture: "gemma", kvBytesPerSequence: 4096 };
    },
    async tokenize(text) {
      return { ids: [...text].map((_, i) => i), pieces: [...text] };
    },
    async *generate(req) {
      requests.push(req);
      for (const ev of script) yield ev;
    },
    async metrics() {
      return "tgi_queue_size 0\n";
    },
  };
}

const appWith = (script: ServiceEvent[], over: Partial<Parameters<typeof defaultConfig>[0]> = {}) => {
  const service = fake(script);
  return { app: createApp(defaultConfig({ modelId: "fake", ...over }), () => service), service };
};
const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  ({ method: "POST", headers: { "Content-Type": "application/json", ...headers }, body: typeof body === "string" ? body : JSON.stringify(body) });
const chat = { model: "fake", messages: [{ role: "user", content: "hi" }], max_tokens: 4 };
const done: ServiceEvent = { type: "done", finishReason: "length", text: "", promptTokens: 3, completionTokens: 2, cachedTokens: 1 };

describe("the HTTP app over a scripted model service", () => {
  it("answers a chat completion from the service's events, with usage and cached tokens", async () => {
    const { app, service } = appWith([accepted, token(5, "Hel"), token(6, "lo"), done]);
    const r = await app.request("/v1/chat/completions", post("/v1/chat/completions", { ...chat, cache_prompt: false, temperature: 0 }));
    expect(r.status).toBe(200);
    const b = (await r.json()) as any;
    expect(b.choices[0].message.content).toBe("Hello");
    expect(b.usage).toEqual({ prompt_tokens: 3, completion_tokens: 2, total_tokens: 5, prompt_tokens_details: { cached_tokens: 1 } });
    expect(service.requests[0]).toMatchObject({ cachePrompt: false, maxTokens: 4, sampling: { temperature: 0 } });
    expect(r.headers.get("X-Request-Id")).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("asks the service for token logprobs only where the answer shows them (OpenAI: logprobs true; TGI: always)", async () => {
    const { app, service } = appWith([accepted, token(5, "Hel"), done]);
    await app.request("/v1/chat/completions", post("/v1/chat/completions", chat));
    await app.request("/v1/chat/completions", post("/v1/chat/completions", { ...chat, logprobs: true }));
    await app.request("/v1/completions", post("/v1/completions", { model: "fake", prompt: "hi", max_tokens: 4 }));
    await app.request("/generate", post("/generate", { inputs: "hi", parameters: { max_new_tokens: 4 } }));
    expect(service.requests.map((q) => q.logprobs)).toEqual([false, true, false, undefined]);
  });

  // service error (before anything streamed) -> status, envelope fields, Retry-After
  const SERVICE: [ServiceEvent & { type: "error" }, number, string, string | null, string | null][] = [
    [{ type: "error", kind: "validation", status: 400, message: "too long", field: "messages" }, 400, "invalid_request_error", "messages", null],
    [{ type: "error", kind: "template", status: 422, message: "roles must alternate", field: "messages" }, 422, "invalid_request_error", "messages", null],
    [{ type: "error", kind: "overloaded", status: 429, message: "busy" }, 429, "rate_limit_error", null, "2"],
    [{ type: "error", kind: "unavailable", status: 503, message: "model is unavailable: gone" }, 503, "service_unavailable", null, "5"],
  ];
  it.each(SERVICE)("a service %j error is %i with type %s (OpenAI) and TGI's envelope on /generate", async (ev, status, type, param, retry) => {
    const { app } = appWith([ev]);
    const r = await app.request("/v1/chat/completions", post("/v1/chat/completions", chat));
    expect(r.status).toBe(status);
    expect(r.headers.get("Retry-After")).toBe(retry);
    expect(((await r.json()) as any).error).toMatchObject({ message: ev.message, type, param });
    const t = await appWith([ev]).app.request("/generate", post("/generate", { inputs: "x" }));
    expect(t.status).toBe(status);
    const tb = (await t.json()) as any;
    expect(Object.keys(tb).sort()).toEqual(["error", "error_type"]);
    expect(tb.error).toBe(ev.message);
  });

  it("a failure mid-stream is an error event (OpenAI: an error object, then no [DONE]; TGI: {error, error_type})", async () => {
    const mid: ServiceEvent = { type: "error", kind: "timeout", status: 504, message: "the request exceeded the time limit" };
    const { app } = appWith([accepted, token(5, "a"), mid]);
    const raw = await (await app.request("/v1/chat/completions", post("/v1/chat/completions", { ...chat, stream: true }))).text();
    const events = raw.split("\n\n").filter((e) => e.startsWith("data: ")).map((e) => e.slice(6));
    expect(JSON.parse(events.at(-1)!).error).toMatchObject({ message: mid.message, type: "timeout_error" });
    expect(raw).not.toContain("[DONE]");
    const tgi = await (await appWith([accepted, token(5, "a"), mid]).app.request("/generate_stream", post("/generate_stream", { inputs: "x" }))).text();
    const last = JSON.parse(tgi.trim().split("\n\n").at(-1)!.slice(5));
    expect(last).toEqual({ error: mid.message, error_type: "incomplete_generation" });
  });

  it("keep-alives while queued are SSE comments", async () => {
    const { app } = appWith([accepted, { type: "keepalive" }, token(5, "a"), done]);
    const raw = await (await app.request("/v1/completions", post("/v1/completions", { model: "fake", prompt: "x", stream: true }))).text();
    expect(raw).toMatch(/^: keep-alive\n\ndata: \{/); // before the first token
  });

  // requests refused by the app itself, before the service is asked
  const BAD: [string, number, RegExp, RequestInit][] = [
    ["/v1/chat/completions", 400, /not valid JSON/, post("", "{")],
    ["/v1/chat/completions", 400, /temperature/, post("", { ...chat, temperature: 3 })],
    ["/v1/chat/completions", 400, /max_tokens/, post("", { ...chat, max_tokens: "four" })],
    ["/v1/chat/completions", 400, /'n' must be 1/, post("", { ...chat, n: 2 })],
    ["/v1/chat/completions", 413, /larger than/, post("", "x".repeat(2 << 20))],
    ["/generate", 400, /'inputs'/, post("", { inputs: 5 })],
    ["/v1/nowhere", 404, /no route/, post("", {})],
  ];
  it.each(BAD)("%s -> %i (%s)", async (path, status, msg, init) => {
    const { app, service } = appWith([accepted, done]);
    const r = await app.request(path, init);
    expect(r.status).toBe(status);
    const b = (await r.json()) as any;
    expect(path.startsWith("/v1/") ? b.error.message : b.error).toMatch(msg);
    expect(service.requests).toHaveLength(0);
  });

  it("the API key guards everything but /health and the page, /metrics included", async () => {
    const { app } = appWith([accepted, done], { apiKey: "k" });
    expect((await app.request("/metrics")).status).toBe(401);
    expect((await app.request("/metrics", { headers: { Authorization: "Bearer k" } })).status).toBe(200);
    expect((await app.request("/health")).status).toBe(200);
    expect(((await (await app.request("/v1/models")).json()) as any).error.code).toBe("invalid_api_key");
  });
});
