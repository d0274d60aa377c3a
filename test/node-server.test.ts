// The Node host (`gemma-edge serve`): the Worker's app with the engine in-process, same routes and behaviour.
import type { ServerType } from "@hono/node-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNodeServer } from "../src/hosts/node-server.ts";
import { testModel } from "./helpers/models.ts";

let server: ServerType;
let url = "";
beforeAll(async () => {
  const { path } = await testModel("tiny", "q4_0");
  const s = await startNodeServer({ model: path, port: 0, modelId: "tiny", keepAliveMs: 50, maxQueue: 1, maxBatchSize: 1 });
  server = s.server;
  url = s.url;
  await s.service.load();
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const post = (path: string, body: unknown) => fetch(`${url}${path}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

describe("gemma-edge serve", () => {
  it("answers health, chat and TGI routes", async () => {
    expect((await fetch(`${url}/health`)).status).toBe(200);
    const c = (await (await post("/v1/chat/completions", { model: "tiny", messages: [{ role: "user", content: "Hi" }], max_tokens: 4, temperature: 0 })).json()) as any;
    expect(c.choices[0].finish_reason).toBe("length");
    const g = (await (await post("/generate", { inputs: "Hi", parameters: { max_new_tokens: 4, details: true } })).json()) as any;
    expect(g.details.generated_tokens).toBe(4);
  });

  it("gives the same greedy text as the Worker app would (same engine)", async () => {
    const a = (await (await post("/v1/completions", { model: "tiny", prompt: "Hello", max_tokens: 8, temperature: 0 })).json()) as any;
    const b = (await (await post("/generate", { inputs: "Hello", parameters: { max_new_tokens: 8 } })).json()) as any;
    expect(a.choices[0].text).toBe(b.generated_text);
  });

  it("frees the model when a streaming client disconnects, and queues with 429 past the limit", async () => {
    const ac = new AbortController();
    const body = JSON.stringify({ model: "tiny", messages: [{ role: "user", content: "Hi" }], max_tokens: 400, stream: true });
    const first = await fetch(`${url}/v1/chat/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body, signal: ac.signal });
    const reader = first.body!.getReader();
    await reader.read();
    const second = fetch(`${url}/v1/chat/completions`, { method: "POST", headers: { "Content-Type": "application/json" }, body });
    await new Promise((r) => setTimeout(r, 30));
    const third = await post("/v1/chat/completions", JSON.parse(body));
    expect(third.status).toBe(429);
    ac.abort();
    const s = await second;
    expect(s.status).toBe(200);
    const r2 = s.body!.getReader();
    let text = "";
    while (!text.includes("assistant")) text += new TextDecoder().decode((await r2.read()).value);
    await r2.cancel();
    let q = -1;
    for (let i = 0; i < 40 && q !== 0; i++) {
      await new Promise((r) => setTimeout(r, 25));
      q = ((await (await fetch(`${url}/health`)).json()) as any).queue_length;
    }
    expect(q).toBe(0);
  });
});
