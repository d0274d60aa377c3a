// End to end: `npm start` (wrangler dev, the Worker, its Durable Object and local R2) on a free loopback port in
// its own process group, driven by the official openai client and by raw HTTP, then stopped by process group.
import { spawn, type ChildProcess, execFile } from "node:child_process";
import { resolve } from "node:path";
import { promisify } from "node:util";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../helpers/wrangler-dev.ts";

const root = resolve(import.meta.dirname, "../..");
let child: ChildProcess;
let base = "";
let log = "";
const MODEL = "gemma-edge-tiny";

beforeAll(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  child = spawn("npm", ["start"], {
    cwd: root,
    detached: true, // its own process group, stopped as a whole
    env: { ...process.env, PORT: String(port), MODEL: "", CLOUDFLARE_CF_FETCH_ENABLED: "false" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout!.on("data", (d) => (log += d));
  child.stderr!.on("data", (d) => (log += d));
  for (let i = 0; i < 600; i++) {
    try {
      const r = await fetch(`${base}/health`);
      if (r.status === 200) return;
    } catch {
      // not up yet
    }
    if (child.exitCode !== null) throw new Error(`npm start exited early:\n${log}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`the server did not become ready:\n${log}`);
}, 180_000);

afterAll(async () => {
  if (child?.pid) {
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {
      // already gone
    }
    await new Promise((r) => setTimeout(r, 500));
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      // gone
    }
  }
});

describe("the official openai client against npm start", () => {
  const client = () => new OpenAI({ baseURL: `${base}/v1`, apiKey: "not-needed", maxRetries: 0 });

  it("creates a chat completion", async () => {
    const r = await client().chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "Hello" }], max_tokens: 8, temperature: 0 });
    expect(r.object).toBe("chat.completion");
    expect(typeof r.choices[0]!.message.content).toBe("string");
    expect(r.choices[0]!.finish_reason).toBe("length");
    expect(r.usage!.completion_tokens).toBe(8);
  });

  it("streams the same greedy answer token by token, with usage", async () => {
    const whole = (await client().chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "Hi" }], max_tokens: 12, temperature: 0 })).choices[0]!.message.content;
    const stream = await client().chat.completions.create({
      model: MODEL, messages: [{ role: "user", content: "Hi" }], max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true },
    });
    let text = "";
    let chunks = 0;
    let usage;
    for await (const c of stream) {
      chunks++;
      if (c.choices[0]?.delta.content) text += c.choices[0].delta.content;
      if (c.usage) usage = c.usage;
    }
    expect(text).toBe(whole);
    expect(chunks).toBeGreaterThan(3);
    expect(usage!.completion_tokens).toBe(12);
  });

  it("creates completions", async () => {
    const r = await client().completions.create({ model: MODEL, prompt: "Once upon a time", max_tokens: 5, temperature: 0 });
    expect(r.object).toBe("text_completion");
    expect(r.choices[0]!.finish_reason).toBe("length");
  });

  it("turns errors into the SDK's error classes", async () => {
    await expect(client().chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "x" }], max_tokens: 100000 })).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    await expect(client().chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "x" }] })).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client().chat.completions.create({ model: MODEL, messages: [{ role: "assistant", content: "x" }] })).rejects.toBeInstanceOf(OpenAI.UnprocessableEntityError);
    const e = await client().chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "x" }], n: 3 }).catch((x) => x);
    expect(e).toBeInstanceOf(OpenAI.BadRequestError);
    expect(e.param).toBe("n");
  });
});

describe("raw HTTP against npm start", () => {
  it("greedy /v1/completions equals gemma-edge generate --temperature 0 on the same file", async () => {
    const r = (await (await fetch(`${base}/v1/completions`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: MODEL, prompt: "The quick brown fox", max_tokens: 16, temperature: 0 }),
    })).json()) as any;
    const { stdout } = await promisify(execFile)(process.execPath, [resolve(root, "bin/gemma-edge.js"), "generate", "--model", resolve(root, "models/gemma-edge-tiny.gguf"), "--prompt", "The quick brown fox", "--max-tokens", "16", "--temperature", "0", "--json"]);
    const cli = JSON.parse(stdout);
    expect(r.choices[0].text).toBe(cli.text);
    expect(r.usage.completion_tokens).toBe(cli.ids.length);
    expect(r.usage.prompt_tokens).toBe(cli.prompt_ids.length);
  });

  it("streams SSE incrementally and keeps serving after a client disconnects", async () => {
    const ac = new AbortController();
    const res = await fetch(`${base}/v1/chat/completions`, {
      method: "POST", headers: { "Content-Type": "application/json" }, signal: ac.signal,
      body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "Hello" }], max_tokens: 300, stream: true }),
    });
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toMatch(/^data: /);
    ac.abort();
    await reader.cancel().catch(() => {});
    let health: any;
    for (let i = 0; i < 50; i++) {
      health = await (await fetch(`${base}/health`)).json();
      if (health.queue_length === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(health.queue_length).toBe(0);
    const after = await fetch(`${base}/v1/models`);
    expect(after.status).toBe(200);
  });
});
