// Many users at once against `gemma-edge serve` (the Node host) on the tiny model, loopback only: a bounded load
// (every request answered in full or refused with 429 + Retry-After, none lost, the server serves afterwards and
// its memory returns), disconnects in the middle of a batch (the other streams' tokens do not change), the
// prompt cache over HTTP (usage.prompt_tokens_details.cached_tokens), request ids and /metrics.
import type { ServerType } from "@hono/node-server";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LocalModelService } from "../src/hosts/model-service.ts";
import { startNodeServer } from "../src/hosts/node-server.ts";
import { testModel } from "./helpers/models.ts";

let server: ServerType;
let url = "";
let service: LocalModelService;
let client: OpenAI;
const MAX_QUEUE = 8;
const MAX_BATCH = 4;

beforeAll(async () => {
  const { path } = await testModel("tiny", "q4_0");
  const s = await startNodeServer({ model: path, port: 0, modelId: "tiny", maxQueue: MAX_QUEUE, maxBatchSize: MAX_BATCH, promptCacheSlots: 2, contextSize: 512 });
  server = s.server;
  url = s.url;
  service = s.service;
  await service.load();
  client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "none", maxRetries: 0 });
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const chat = (content: string, extra: Record<string, unknown> = {}) => ({ model: "tiny", messages: [{ role: "user" as const, content }], max_tokens: 24, temperature: 0, ...extra });

/** A streamed chat completion's text, through the official client. */
async function streamText(body: ReturnType<typeof chat>, signal?: AbortSignal, stopAfter = Infinity): Promise<string> {
  const s = await client.chat.completions.create({ ...body, stream: true } as never, { signal }) as unknown as AsyncIterable<{ choices: { delta: { content?: string } }[] }>;
  let text = "";
  let n = 0;
  for await (const c of s) {
    text += c.choices[0]?.delta.content ?? "";
    if (++n >= stopAfter) break;
  }
  return text;
}

const gc = (() => {
  setFlagsFromString("--expose_gc");
  return runInNewContext("gc") as () => void;
})();

describe("many users at once (gemma-edge serve, tiny model)", () => {
  it("50 concurrent clients: each gets a whole answer or 429 with Retry-After; none is lost; memory returns", async () => {
    await streamText(chat("warm up")); // first-use allocations before the baseline
    gc();
    const before = process.memoryUsage().heapUsed;
    const N = 50;
    const results = await Promise.all(
      Array.from({ length: N }, async (_, i) => {
        const res = await fetch(`${url}/v1/chat/completions`, {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ ...chat(`user ${i} says hello`), stream: i % 2 === 0, cache_prompt: false }),
        });
        const text = await res.text();
        return { status: res.status, retryAfter: res.headers.get("Retry-After"), text };
      }),
    );
    const ok = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status === 429);
    expect(ok.length + refused.length).toBe(N); // nothing else: no 5xx, no lost request
    // the queue limit holds: at most MAX_BATCH running and MAX_QUEUE waiting were ever accepted at once
    expect(ok.length).toBeGreaterThanOrEqual(MAX_BATCH + MAX_QUEUE);
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) expect(Number(r.retryAfter)).toBeGreaterThan(0);
    for (const [i, r] of results.entries()) {
      if (r.status !== 200) continue;
      if (i % 2 === 0) expect(r.text.trimEnd().endsWith("data: [DONE]")).toBe(true);
      else expect(JSON.parse(r.text).choices[0].finish_reason).toMatch(/^(stop|length)$/);
    }
    // served afterwards, with nothing left running or queued
    expect((await fetch(`${url}/health`)).status).toBe(200);
    expect(await streamText(chat("after the load"))).toBeTypeOf("string");
    const st = await service.status();
    expect(st.queue_length).toBe(0);
    gc();
    const after = process.memoryUsage().heapUsed;
    expect(after - before).toBeLessThan(16 * 2 ** 20); // 16 MiB: the heap returns to its level before the load
  });

  it("queued requests arriving together cannot overshoot the queue limit", async () => {
    const body = JSON.stringify({ ...chat("x", { max_tokens: 200 }), cache_prompt: false });
    const statuses = await Promise.all(Array.from({ length: MAX_BATCH + MAX_QUEUE + 6 }, () =>
      fetch(`${url}/v1/chat/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body }).then(async (r) => (await r.text(), r.status))));
    expect(statuses.filter((s) => s === 200)).toHaveLength(MAX_BATCH + MAX_QUEUE);
    expect(statuses.filter((s) => s === 429)).toHaveLength(6);
  });

  it("a client that disconnects while queued loses its place at once (not at the next keep-alive)", async () => {
    const long = JSON.stringify({ ...chat("long one", { max_tokens: 400 }), stream: true, cache_prompt: false });
    const running = await Promise.all(Array.from({ length: MAX_BATCH }, async () => {
      const ac = new AbortController();
      const r = await fetch(`${url}/v1/chat/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: long, signal: ac.signal });
      await r.body!.getReader().read();
      return ac;
    }));
    const ac = new AbortController();
    const queued = await fetch(`${url}/v1/chat/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: long, signal: ac.signal });
    expect(queued.status).toBe(200);
    expect((await service.status()).queue_length).toBe(MAX_BATCH + 1);
    ac.abort();
    const t0 = Date.now();
    while ((await service.status()).queue_length > MAX_BATCH && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 5));
    expect(Date.now() - t0).toBeLessThan(500); // the keep-alive interval here is the default 10 s
    for (const a of running) a.abort();
  });

  it("concurrent sampled streams with seeds are each the text they get alone", async () => {
    const bodies = [1, 2, 3].map((i) => chat(`dream ${i}`, { temperature: 1, seed: 40 + i, cache_prompt: false }));
    const alone: string[] = [];
    for (const b of bodies) alone.push(await streamText(b));
    expect(await Promise.all(bodies.map((b) => streamText(b)))).toEqual(alone);
  });

  it("disconnects in the middle of a batch free their slots and leave the other streams' tokens unchanged", async () => {
    const bodies = [0, 1, 2, 3].map((i) => chat(`story number ${i}, please`, { max_tokens: 40, cache_prompt: false }));
    const alone: string[] = [];
    for (const b of bodies) alone.push(await streamText(b));
    const acs = bodies.map(() => new AbortController());
    const runs = bodies.map((b, i) => streamText(b, acs[i]!.signal, i % 2 ? 3 : Infinity).catch((e) => `aborted: ${(e as Error).name}`));
    const got = await Promise.all(runs);
    expect(got[0]).toBe(alone[0]);
    expect(got[2]).toBe(alone[2]);
    // the two that left after 3 chunks freed their slots: nothing runs now
    for (let i = 0; i < 40 && (await service.status()).queue_length !== 0; i++) await new Promise((r) => setTimeout(r, 25));
    expect((await service.status()).queue_length).toBe(0);
  });

  it("a later chat turn reuses the kept prefix and says so in usage; cache_prompt: false computes it whole", async () => {
    const first = await client.chat.completions.create(chat("tell me about the sea"));
    // (earlier chats share the template's opening tokens with it)
    expect(first.usage!.prompt_tokens_details!.cached_tokens).toBeLessThan(first.usage!.prompt_tokens - 3);
    const messages = [
      { role: "user" as const, content: "tell me about the sea" },
      { role: "assistant" as const, content: first.choices[0]!.message.content ?? "" },
      { role: "user" as const, content: "and the mountains?" },
    ];
    const second = await client.chat.completions.create({ model: "tiny", messages, max_tokens: 8, temperature: 0 });
    expect(second.usage!.prompt_tokens_details!.cached_tokens).toBeGreaterThanOrEqual(first.usage!.prompt_tokens);
    const uncached = await client.chat.completions.create({ model: "tiny", messages, max_tokens: 8, temperature: 0, cache_prompt: false } as never);
    expect(uncached.usage!.prompt_tokens_details!.cached_tokens).toBe(0);
    const tgi = await (await fetch(`${url}/generate`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ inputs: "tell me about the sea and", parameters: { max_new_tokens: 2, details: true } }) })).json() as { details: { cached_tokens: number } };
    expect(tgi.details.cached_tokens).toBeGreaterThan(0);
  });

  it("every response carries X-Request-Id (the client's, when it sends one); /metrics counts what happened", async () => {
    const mine = await fetch(`${url}/health`, { headers: { "X-Request-Id": "req-abc-123" } });
    expect(mine.headers.get("X-Request-Id")).toBe("req-abc-123");
    const theirs = await fetch(`${url}/v1/models`);
    expect(theirs.headers.get("X-Request-Id")).toMatch(/^[0-9a-f-]{36}$/);
    const bad = await fetch(`${url}/v1/chat/completions`, { method: "POST", body: "{" });
    expect([bad.status, bad.headers.get("X-Request-Id")?.length]).toEqual([400, 36]);
    const res = await fetch(`${url}/metrics`);
    expect(res.headers.get("Content-Type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    const text = await res.text();
    const value = (line: RegExp) => Number(text.split("\n").find((l) => line.test(l))?.split(" ").at(-1));
    expect(value(/^gemma_edge_http_requests_total\{route="\/v1\/chat\/completions",method="POST",status="429"\}/)).toBeGreaterThan(0);
    expect(value(/^gemma_edge_http_requests_total\{route="\/v1\/chat\/completions",method="POST",status="400"\}/)).toBe(1);
    expect(value(/^tgi_request_failure\{err="overloaded"\}/)).toBeGreaterThan(0);
    expect(value(/^tgi_queue_size /)).toBe(0);
    expect(value(/^tgi_batch_current_size /)).toBe(0);
    expect(value(/^llamacpp:tokens_predicted_total /)).toBeGreaterThan(100);
    expect(value(/^gemma_edge_prompt_cache_hit_tokens_total /)).toBeGreaterThan(0);
    expect(value(/^gemma_edge_kv_slots /)).toBe(MAX_BATCH + 2);
    expect(value(/^gemma_edge_batch_step_sequences_bucket\{le="4"\}/)).toBeLessThanOrEqual(value(/^gemma_edge_batch_step_sequences_count /));
    expect(value(/^gemma_edge_batch_step_sequences_bucket\{le="2"\}/)).toBeLessThan(value(/^gemma_edge_batch_step_sequences_count /)); // steps of 3-4 happened
    expect(text).toMatch(/^# TYPE tgi_request_queue_duration histogram$/m);
  });
});
